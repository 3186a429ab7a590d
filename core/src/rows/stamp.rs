//! Ordering events by time, ties broken the same way on every replica.

use serde::{Deserialize, Serialize};

use crate::contract::Event;
use crate::domain::Timestamp;

/// Orders events that happened at the same time, deterministically: the
/// event time first, then a stable hash of (source, id). "Latest" always
/// means "greatest stamp", so ties do not depend on arrival order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub time: Timestamp,
    pub tiebreak: u64,
}

impl Stamp {
    pub fn new(time: Timestamp, source: &str, id: &str) -> Self {
        Self {
            time,
            tiebreak: stable_hash(source, id),
        }
    }

    /// The stamp of an event: its time, then its (source, id).
    pub fn of(event: &Event) -> Self {
        Self::new(event.time(), event.source().as_str(), event.id().as_str())
    }
}

/// FNV-1a over `source \0 id`: stable across builds and platforms (unlike
/// std's hasher), since stamps are stored.
pub fn stable_hash(source: &str, id: &str) -> u64 {
    fnv1a(source.bytes().chain([0u8]).chain(id.bytes()))
}

/// 64-bit FNV-1a: small, stable, good enough for tiebreaks and ETags.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash("/cs", "1"), stable_hash("/cs", "1"));
        assert_ne!(stable_hash("/cs", "1"), stable_hash("/cs1", ""));
        assert_eq!(stable_hash("", ""), 0xaf63_bd4c_8601_b7df);
    }
}
