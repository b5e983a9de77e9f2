//! RFC 3339 timestamps from and to Unix seconds (UTC), for in-toto and OpenLineage documents:
//! `tidegate_vocab::Timestamp`'s, with the artifact store's error.

use tidegate_vocab::Timestamp;

use crate::ArtifactError;

/// Formats Unix seconds as RFC 3339 UTC, e.g. `2026-11-23T19:10:00Z`.
///
/// # Errors
/// [`ArtifactError::Invalid`] for a time outside the representable range.
pub fn format_rfc3339(unix: u64) -> Result<String, ArtifactError> {
    Timestamp::from_unix_secs(unix)
        .to_rfc3339()
        .map_err(|e| ArtifactError::Invalid(format!("time {unix}: {e}")))
}

/// Parses an RFC 3339 timestamp into Unix seconds.
///
/// # Errors
/// [`ArtifactError::Invalid`] if the text is not RFC 3339 or is before 1970.
pub fn parse_rfc3339(text: &str) -> Result<u64, ArtifactError> {
    let t = Timestamp::parse_rfc3339(text)
        .map_err(|e| ArtifactError::Invalid(format!("timestamp {text:?}: {e}")))?;
    if t.millis() < 0 {
        return Err(ArtifactError::Invalid(format!(
            "timestamp {text:?} is before 1970"
        )));
    }
    Ok(t.unix_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let s = format_rfc3339(1_800_000_000).ok();
        assert_eq!(s.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(
            parse_rfc3339("2027-01-15T08:00:00Z").ok(),
            Some(1_800_000_000)
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
