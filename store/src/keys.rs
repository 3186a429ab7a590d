//! The layout of every key the store writes. Keys sort the way the store
//! scans: a deployment's members and its log are each one key range.

use audrey_core::domain::{DeploymentId, EventId, InstanceId, Source, Status};
use audrey_core::rows::stable_hash;
use audrey_core::Event;

use crate::error::StoreError;

/// Meta key: the version of the views on disk.
pub(crate) const KEY_VERSION: &[u8] = b"views_version";
/// Meta key: present while a rebuild runs (written with the emptying of
/// the views, removed with the new version): views that carry it are half
/// rebuilt.
pub(crate) const KEY_REBUILDING: &[u8] = b"rebuild_unfinished";
/// Meta key: the time of the latest event applied (i64 ns, BE): the
/// freshness watermark of every report.
pub(crate) const KEY_AS_OF: &[u8] = b"as_of";
/// Meta key: the global counts.
pub(crate) const KEY_COUNTS: &[u8] = b"counts";

/// The byte a status is stored as in `deployment_status` keys. Written out
/// rather than taken from the enum's order: the layout on disk must not
/// move when the enum does.
pub(crate) fn status_byte(status: Status) -> u8 {
    match status {
        Status::Success => 0,
        Status::Incomplete => 1,
        Status::Error => 2,
    }
}

/// `deployment_status`: status byte, deployment uuid.
pub(crate) fn status_key(status: Status, id: DeploymentId) -> Vec<u8> {
    let mut key = vec![status_byte(status)];
    key.extend_from_slice(id.as_bytes());
    key
}

/// `members`: deployment uuid, instance uuid.
pub(crate) fn member_key(deployment: DeploymentId, instance: InstanceId) -> Vec<u8> {
    [deployment.as_bytes().as_slice(), instance.as_bytes()].concat()
}

/// `dedup`: source, 0, id.
pub(crate) fn dedup_key(source: &Source, id: &EventId) -> Vec<u8> {
    [source.as_str().as_bytes(), &[0], id.as_str().as_bytes()].concat()
}

/// The log prefix of heartbeats (which belong to no deployment).
pub(crate) const HEARTBEAT_LOG_PREFIX: [u8; 16] = [0u8; 16];

/// `events`: deployment, then event time, then the event's tiebreak. A
/// deployment's history is one range, in time order, and a rebuild replays
/// each deployment's events together.
pub(crate) fn log_key(event: &Event) -> Vec<u8> {
    let deployment = event
        .deployment()
        .map_or(HEARTBEAT_LOG_PREFIX, |d| *d.as_bytes());
    let time = (event.time().nanos() as u64) ^ (1 << 63);
    [
        deployment.as_slice(),
        &time.to_be_bytes(),
        &stable_hash(event.source().as_str(), event.id().as_str()).to_be_bytes(),
    ]
    .concat()
}

pub(crate) fn instance_from_key(bytes: &[u8]) -> Result<InstanceId, StoreError> {
    bytes
        .try_into()
        .map(InstanceId::from_bytes)
        .map_err(|_| StoreError::corrupt("instance key", format!("{} bytes", bytes.len())))
}

pub(crate) fn deployment_from_key(bytes: &[u8]) -> Result<DeploymentId, StoreError> {
    bytes
        .try_into()
        .map(DeploymentId::from_bytes)
        .map_err(|_| StoreError::corrupt("deployment key", format!("{} bytes", bytes.len())))
}

/// A key in hex, for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `source NUL id` is unambiguous because neither may hold a NUL (the
    /// newtypes refuse it): two different (source, id) pairs never share a
    /// dedup key, even when their concatenations would.
    #[test]
    fn dedup_keys_are_unambiguous() {
        let pair = |s: &str, i: &str| (Source::parse(s).unwrap(), EventId::parse(i).unwrap());
        let pairs = [
            pair("a", "bc"),
            pair("ab", "c"),
            pair("/cs", "0"),
            pair("/cs0", "0"),
        ];
        let keys: std::collections::BTreeSet<Vec<u8>> =
            pairs.iter().map(|(s, i)| dedup_key(s, i)).collect();
        assert_eq!(keys.len(), pairs.len());
        // The pairs that would collide once joined by a NUL cannot be made.
        assert!(EventId::parse("b\u{0}c").is_err());
        assert!(Source::parse("a\u{0}b").is_err());
    }
}
