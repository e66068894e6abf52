//! A moment in the replicated state: when a version was written or deleted, when a key was
//! made. Nanoseconds since the Unix epoch, UTC; shown as RFC 3339.
//!
//! The time in a command is taken by the node that received the request, before the command
//! enters the log; applying the command copies it and never reads a clock, so every node
//! records the same moment.

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// This node's clock now (for a command it is about to submit).
    pub fn now() -> Timestamp {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(u64::try_from(nanos).unwrap_or(0))
    }

    pub fn from_unix_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
}

impl std::fmt::Display for Timestamp {
    /// RFC 3339, as the API and the CLI show times.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        match t.format(&time::format_description::well_known::Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}ns", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_rfc3339_in_utc() {
        let t = Timestamp::from_unix_nanos(1_765_000_000_123_000_000);
        assert_eq!(t.to_string(), "2025-12-06T05:46:40.123Z");
        assert!(Timestamp::now() > t);
    }
}
