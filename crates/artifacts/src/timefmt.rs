//! RFC 3339 timestamps from and to Unix seconds (UTC), for in-toto and OpenLineage documents.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ArtifactError;

/// Formats Unix seconds as RFC 3339 UTC, e.g. `2026-11-23T19:10:00Z`.
///
/// # Errors
/// [`ArtifactError::Invalid`] for a time outside the representable range.
pub fn format_rfc3339(unix: u64) -> Result<String, ArtifactError> {
    let secs = i64::try_from(unix)
        .map_err(|_| ArtifactError::Invalid(format!("time {unix} out of range")))?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| ArtifactError::Invalid(format!("time {unix}: {e}")))?
        .format(&Rfc3339)
        .map_err(|e| ArtifactError::Invalid(format!("time {unix}: {e}")))
}

/// Parses an RFC 3339 timestamp into Unix seconds.
///
/// # Errors
/// [`ArtifactError::Invalid`] if the text is not RFC 3339 or is before 1970.
pub fn parse_rfc3339(text: &str) -> Result<u64, ArtifactError> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| ArtifactError::Invalid(format!("timestamp {text:?}: {e}")))?;
    u64::try_from(t.unix_timestamp())
        .map_err(|_| ArtifactError::Invalid(format!("timestamp {text:?} is before 1970")))
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
