//! The vocabulary of the views: identifiers that parse instead of validate,
//! names, timestamps and statuses.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest name (service, parameter, assembly, deployment) we accept, in
/// characters. Names end up in URLs and XML attributes; an unbounded one
/// would let one event bloat every report that mentions it.
pub const MAX_NAME_CHARS: usize = 255;

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the hyphenated form (the only one config servers send).
            pub fn parse(text: &str) -> Result<Self, String> {
                if text.len() != 36 {
                    return Err(format!("`{}` is not a hyphenated UUID", truncate(text)));
                }
                Uuid::try_parse(text)
                    .map(Self)
                    .map_err(|_| format!("`{}` is not a UUID", truncate(text)))
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

uuid_newtype!(
    /// Conductor's deployment UUID.
    DeploymentId
);
uuid_newtype!(
    /// An instance's UUID: the agent identifies itself with it.
    InstanceId
);

/// Shortens untrusted text quoted in an error message.
pub(crate) fn truncate(text: &str) -> String {
    if text.chars().count() <= 64 {
        text.to_owned()
    } else {
        let head: String = text.chars().take(64).collect();
        format!("{head}...")
    }
}

/// The control characters refused in names and free text: C0 and DEL, as
/// in `schemas/events.schema.json` (XML 1.0 cannot carry most of C0).
pub(crate) fn is_control(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}'
}

/// A service, parameter, assembly or deployment name: 1 to 255 characters,
/// no control characters (XML 1.0 cannot carry most of them) and no `/`
/// (service names are path segments of the reporting API).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars == 0 {
            return Err("is empty".into());
        }
        if chars > MAX_NAME_CHARS {
            return Err(format!(
                "is {chars} characters long, more than {MAX_NAME_CHARS}"
            ));
        }
        if let Some(c) = text.chars().find(|c| is_control(*c)) {
            return Err(format!("contains the control character U+{:04X}", c as u32));
        }
        if text.contains('/') {
            return Err(format!("`{}` contains `/`", truncate(text)));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

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

/// The status of a service, instance or deployment, as the original Audrey
/// reported it. The derived order is "how bad": `Success < Incomplete <
/// Error`, so the status of a group is the `max` of its members.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Incomplete,
    Error,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Success, Status::Incomplete, Status::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Incomplete => "incomplete",
            Status::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    #[test]
    fn names_are_bounded_and_safe_for_paths_and_xml() {
        assert!(Name::parse("wordpress").is_ok());
        assert!(Name::parse(&"x".repeat(255)).is_ok());
        assert!(Name::parse(&"x".repeat(256)).unwrap_err().contains("256"));
        assert!(Name::parse("").is_err());
        assert!(Name::parse("a/b").is_err());
        assert!(Name::parse("a\u{1}b").unwrap_err().contains("U+0001"));
        assert!(Name::parse("a\u{7f}b").is_err());
        assert!(
            Name::parse("caf\u{e9} \u{85}").is_ok(),
            "C1 is allowed, as in the schema"
        );
    }

    #[test]
    fn uuids_must_be_hyphenated_uuids() {
        assert!(InstanceId::parse("0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e").is_ok());
        assert!(InstanceId::parse("0b6a4d1e7c2f4a8b9e3d5f1a2b3c4d5e").is_err());
        assert!(InstanceId::parse("not-a-uuid").is_err());
        assert!(InstanceId::parse("0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5g").is_err());
    }

    #[test]
    fn status_order_is_worst_last() {
        assert_eq!(
            [Status::Incomplete, Status::Error, Status::Success]
                .iter()
                .max(),
            Some(&Status::Error)
        );
        assert!(Status::Success < Status::Incomplete);
    }
}
