//! Event time: when a config server observed something.

use std::fmt;

use chrono::{DateTime, Utc};
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
        self.rfc3339().as_str().to_owned()
    }

    /// [`Timestamp::to_rfc3339`] without allocating: reports write several
    /// times each, and chrono's general formatter was 4 % of an instance
    /// report's CPU (BENCHMARKS.md). The same text as chrono's
    /// `to_rfc3339_opts(SecondsFormat::AutoSi, true)` (a test holds them
    /// together).
    pub fn rfc3339(self) -> Rfc3339 {
        let seconds = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let mut text = Rfc3339 {
            bytes: [0; RFC3339_MAX],
            len: 0,
        };
        // Years of an i64 of nanoseconds are 1677 to 2262: four digits.
        text.digits(year as u32, 4);
        text.push(b'-');
        text.digits(month, 2);
        text.push(b'-');
        text.digits(day, 2);
        text.push(b'T');
        text.digits(of_day / 3600, 2);
        text.push(b':');
        text.digits(of_day / 60 % 60, 2);
        text.push(b':');
        text.digits(of_day % 60, 2);
        if nanos != 0 {
            text.push(b'.');
            if nanos.is_multiple_of(1_000_000) {
                text.digits(nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                text.digits(nanos / 1_000, 6);
            } else {
                text.digits(nanos, 9);
            }
        }
        text.push(b'Z');
        text
    }
}

/// The longest text [`Timestamp::rfc3339`] writes:
/// `2262-04-11T23:47:16.854775807Z`.
const RFC3339_MAX: usize = 30;

/// A timestamp's RFC 3339 text, on the stack ([`Timestamp::rfc3339`]).
#[derive(Clone, Copy)]
pub struct Rfc3339 {
    bytes: [u8; RFC3339_MAX],
    len: usize,
}

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("only ASCII digits and separators")
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded.
    fn digits(&mut self, mut value: u32, width: usize) {
        for at in (self.len..self.len + width).rev() {
            self.bytes[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }
}

/// The proleptic Gregorian date of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, public domain): year, month 1-12,
/// day 1-31.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc3339().as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc3339().as_str())
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
    use chrono::SecondsFormat;

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

    /// What chrono writes, which the hand-written formatter replaced.
    fn chrono_text(t: Timestamp) -> String {
        t.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    #[test]
    fn the_text_is_chronos_at_the_edges() {
        for nanos in [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            999_999_999,
            1_000_000_000,
            // 2000-02-29 and 2100-03-01 (leap day, and a century without one)
            951_782_400_000_000_000,
            4_107_542_400_000_000_000,
            // 1900-03-01 (before 1970, a century without a leap day)
            -2_203_891_200_000_000_000,
            1_764_079_200_123_000_000,
            1_764_079_200_123_456_000,
            1_764_079_200_123_456_789,
            i64::MAX - 1,
            i64::MAX,
        ] {
            let t = Timestamp::from_nanos(nanos);
            assert_eq!(t.to_rfc3339(), chrono_text(t), "{nanos}");
        }
        assert_eq!(
            Timestamp::from_nanos(i64::MAX).to_rfc3339().len(),
            RFC3339_MAX
        );
    }

    proptest::proptest! {
        #[test]
        fn the_text_is_chronos(nanos in proptest::num::i64::ANY) {
            let t = Timestamp::from_nanos(nanos);
            proptest::prop_assert_eq!(t.to_rfc3339(), chrono_text(t));
        }

        /// Whole seconds, milliseconds and microseconds: the shorter
        /// fractions, which random nanoseconds almost never hit.
        #[test]
        fn the_text_is_chronos_for_round_fractions(
            seconds in -9_000_000_000i64..9_000_000_000,
            fraction in 0i64..1_000,
            unit in proptest::sample::select(vec![0i64, 1_000, 1_000_000]),
        ) {
            let t = Timestamp::from_nanos(seconds * 1_000_000_000 + fraction * unit);
            proptest::prop_assert_eq!(t.to_rfc3339(), chrono_text(t));
        }
    }
}
