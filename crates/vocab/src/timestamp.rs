//! The one point-in-time type: milliseconds since the Unix epoch (UTC), with the wall clock read
//! in one place and RFC 3339 text parsed and written in one place.
//!
//! Records (the job store, ledger entries) keep milliseconds; documents (in-toto, OpenLineage,
//! manifests' deadlines) carry RFC 3339 text; the scheduler core counts seconds as `f64`. Each
//! converts through this type, so a deadline that does not parse is refused where it is read,
//! never silently dropped further on.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, as the caller's clock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Why a text or a number is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not an RFC 3339 timestamp.
    #[error("{text:?} is not an RFC 3339 timestamp (e.g. 2027-01-15T08:00:00Z): {reason}")]
    NotRfc3339 {
        /// The text given.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// Outside the range a timestamp can be written in.
    #[error("time {0} ms is outside the range RFC 3339 can write")]
    OutOfRange(i64),
}

impl Timestamp {
    /// The wall clock now. Pure code takes the time as a parameter instead.
    #[must_use]
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    /// From Unix seconds.
    #[must_use]
    pub fn from_unix_secs(secs: u64) -> Self {
        Self(
            i64::try_from(secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        )
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch, 0 for a time before it (ledger entries count from it).
    #[must_use]
    pub fn unix_millis(self) -> u64 {
        u64::try_from(self.0).unwrap_or(0)
    }

    /// Whole Unix seconds, 0 for a time before the epoch.
    #[must_use]
    pub fn unix_secs(self) -> u64 {
        u64::try_from(self.0.div_euclid(1000)).unwrap_or(0)
    }

    /// Seconds as the scheduler core counts them.
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Parses RFC 3339 text (`2027-01-15T08:00:00Z`, any offset, fractions kept to the
    /// millisecond).
    ///
    /// # Errors
    /// [`TimeError::NotRfc3339`] for anything else.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| TimeError::NotRfc3339 {
            text: text.to_owned(),
            reason: e.to_string(),
        })?;
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .map(Self)
            .map_err(|_| TimeError::OutOfRange(i64::MAX))
    }

    /// RFC 3339 text in UTC: whole seconds as `2027-01-15T08:00:00Z`, otherwise with the
    /// milliseconds.
    ///
    /// # Errors
    /// [`TimeError::OutOfRange`] for a time RFC 3339 cannot write (before year 0 or after 9999).
    pub fn to_rfc3339(self) -> Result<String, TimeError> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| TimeError::OutOfRange(self.0))?;
        t.format(&Rfc3339)
            .map_err(|_| TimeError::OutOfRange(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_millisecond() {
        let t = Timestamp::parse_rfc3339("2027-01-15T08:00:00Z").unwrap_or(Timestamp(0));
        assert_eq!(t, Timestamp(1_800_000_000_000));
        assert_eq!(t.unix_secs(), 1_800_000_000);
        assert_eq!(t.to_rfc3339().as_deref(), Ok("2027-01-15T08:00:00Z"));
        let f = Timestamp::parse_rfc3339("2027-01-15T09:00:00.250+01:00").unwrap_or(Timestamp(0));
        assert_eq!(f, Timestamp(1_800_000_000_250));
        assert_eq!(f.to_rfc3339().as_deref(), Ok("2027-01-15T08:00:00.25Z"));
        assert_eq!(Timestamp::from_unix_secs(1_800_000_000), t);
        assert!((f.as_secs_f64() - 1_800_000_000.25).abs() < 1e-6);
    }

    #[test]
    fn what_is_not_a_time_is_refused_and_named() {
        for bad in ["yesterday", "2027-01-15", "2027-13-01T00:00:00Z", ""] {
            let e = Timestamp::parse_rfc3339(bad).err();
            assert!(
                matches!(&e, Some(TimeError::NotRfc3339 { text, .. }) if text == bad),
                "{bad}: {e:?}"
            );
        }
        assert!(Timestamp(i64::MAX).to_rfc3339().is_err());
        assert_eq!(Timestamp(-1).unix_millis(), 0);
        assert_eq!(Timestamp(-1).unix_secs(), 0);
    }
}
