//! Event time: when a config server observed something.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::text::truncate;

/// A point in time, in UTC, to the nanosecond: when a config server observed
/// something (never when we received it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Parses RFC 3339, with or without fractions, with `Z` or an offset.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        if !is_strict_rfc3339(text) {
            return Err(format!(
                "`{}` is not an RFC 3339 timestamp like 2026-11-25T14:00:00.123Z",
                truncate(text)
            ));
        }
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("`{}` is not an RFC 3339 timestamp ({e})", truncate(text)))?;
        parsed
            .with_timezone(&Utc)
            .timestamp_nanos_opt()
            .map(Self)
            .ok_or_else(|| format!("`{}` is out of the supported range", truncate(text)))
    }

    pub fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1_000_000_000))
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn unix_seconds_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The time `seconds` later (or earlier, if negative), saturating.
    pub fn plus_seconds(self, seconds: f64) -> Self {
        Self(self.0.saturating_add((seconds * 1e9) as i64))
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// RFC 3339 in UTC with `Z`, with as many fraction digits as needed
    /// (0, 3, 6 or 9).
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The shape chrono is lenient about: `T` (or `t`) between date and time,
/// seconds 00-59, at most 9 fraction digits, `Z` or `+hh:mm`.
fn is_strict_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
        || !matches!(b[10], b'T' | b't')
        || !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19))
        || b[17] > b'5'
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let fraction = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction == 0 || fraction > 9 {
            return false;
        }
        rest = &rest[1 + fraction..];
    }
    matches!(rest, [b'Z' | b'z'])
        || (rest.len() == 6
            && matches!(rest[0], b'+' | b'-')
            && rest[1..3].iter().all(u8::is_ascii_digit)
            && rest[3] == b':'
            && rest[4..6].iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_accept_fractions_and_offsets_and_store_utc() {
        let a = Timestamp::parse_rfc3339("2026-11-25T14:00:00Z").unwrap();
        let b = Timestamp::parse_rfc3339("2026-11-25T16:00:00.000+02:00").unwrap();
        let c = Timestamp::parse_rfc3339("2026-11-25T14:00:00.123456789Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_rfc3339(), "2026-11-25T14:00:00Z");
        assert_eq!(c.to_rfc3339(), "2026-11-25T14:00:00.123456789Z");
        assert!(Timestamp::parse_rfc3339("25/11/2026 14:00").is_err());
        assert!(
            Timestamp::parse_rfc3339("2026-11-25T14:00:00").is_err(),
            "offset is required"
        );
        for lenient in [
            "2026-11-25 14:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-11-25T14:00:00.1234567890Z",
            "2026-11-25T14:00Z",
            "2026-02-30T14:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(lenient).is_err(), "{lenient}");
        }
    }
}
