//! Identifiers that parse instead of validate: the UUIDs Conductor and the
//! agents use, and the CloudEvents `id` and `source` that identify an event.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::text::{refused_char_problem, truncate};

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

/// The longest event `id` or `source` we accept, in characters: they are
/// stored with every event and quoted in reports.
pub const MAX_ID_CHARS: usize = 255;

macro_rules! text_id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// 1 to [`MAX_ID_CHARS`] characters, none of them refused
            /// (see [`super::is_refused_char`]): no NUL, so a dedup key
            /// built as `source NUL id` is unambiguous.
            pub fn parse(text: &str) -> Result<Self, String> {
                check_id_text(text).map(|()| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Ordered and hashed as its text, so maps keyed by it can be
        /// looked up with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

text_id_newtype!(
    /// A CloudEvents `id`: unique per source, so (source, id) identifies an
    /// event for dedup.
    EventId
);
text_id_newtype!(
    /// A CloudEvents `source`: the config server that observed the event
    /// (heartbeats are per source).
    Source
);

fn check_id_text(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if chars == 0 {
        return Err("is empty".into());
    }
    if chars > MAX_ID_CHARS {
        return Err(format!("is longer than {MAX_ID_CHARS} characters"));
    }
    match refused_char_problem(text) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_must_be_hyphenated_uuids() {
        assert!(InstanceId::parse("0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e").is_ok());
        assert!(InstanceId::parse("0b6a4d1e7c2f4a8b9e3d5f1a2b3c4d5e").is_err());
        assert!(InstanceId::parse("not-a-uuid").is_err());
        assert!(InstanceId::parse("0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5g").is_err());
    }

    #[test]
    fn event_ids_and_sources_are_bounded() {
        assert!(EventId::parse("e1").is_ok());
        assert_eq!(EventId::parse("").unwrap_err(), "is empty");
        assert!(Source::parse(&"s".repeat(255)).is_ok());
        assert!(Source::parse(&"s".repeat(256)).unwrap_err().contains("255"));
        for refused in ["a\u{0}b", "a\u{1}", "\u{7f}", "x\u{fffe}", "\u{ffff}"] {
            assert!(EventId::parse(refused).is_err(), "{refused:?}");
            assert!(Source::parse(refused).is_err(), "{refused:?}");
        }
        assert!(Source::parse("/configserver/caf\u{e9}").is_ok());
    }
}
