//! Reading the event log: every accepted event, in log order (by
//! deployment, then time), and an entity's history. Heartbeats sit under
//! the all-zero deployment.

use rocksdb::{Direction, IteratorMode};

use audrey_core::domain::{DeploymentId, InstanceId};
use audrey_core::Event;

use crate::db::{Db, CF_EVENTS};
use crate::error::StoreError;
use crate::keys::hex;

/// A page of an entity's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Matching events in all.
    pub total: u64,
    pub events: Vec<Event>,
}

/// The accepted events of a deployment, or of one of its instances, in
/// time order, `limit` of them from `offset`.
pub(crate) fn history(
    db: &Db,
    deployment: DeploymentId,
    instance: Option<InstanceId>,
    offset: u64,
    limit: u64,
) -> Result<HistoryPage, StoreError> {
    let mut total = 0;
    let mut events = Vec::new();
    scan_log(db, deployment.as_bytes(), |_, event| {
        if instance.is_none() || event.instance() == instance {
            if total >= offset && (events.len() as u64) < limit {
                events.push(event);
            }
            total += 1;
        }
        Ok(true)
    })?;
    Ok(HistoryPage { total, events })
}

/// How many entries the event log holds (exact: walks it).
pub(crate) fn count(db: &Db) -> Result<u64, StoreError> {
    let mut n = 0;
    for item in db.rocks.iterator_cf(db.cf(CF_EVENTS), IteratorMode::Start) {
        item?;
        n += 1;
    }
    Ok(n)
}

/// How many events the log holds (an estimate from RocksDB, for progress).
pub(crate) fn estimated_count(db: &Db) -> u64 {
    db.rocks
        .property_int_value_cf(db.cf(CF_EVENTS), "rocksdb.estimate-num-keys")
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Visits the log entries under a key prefix (a deployment, or nothing for
/// the whole log), decoded, in order, while `visit` returns true.
pub(crate) fn scan_log(
    db: &Db,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], Event) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mode = IteratorMode::From(prefix, Direction::Forward);
    for item in db.rocks.iterator_cf(db.cf(CF_EVENTS), mode) {
        let (key, value) = item?;
        if !key.starts_with(prefix) {
            break;
        }
        // No size limit: the event was accepted once, under whatever
        // `--max-event-bytes` was then, and its canonical form may be longer
        // than what was delivered.
        let event = Event::decode(&value, usize::MAX)
            .map_err(|e| StoreError::corrupt(&format!("event {}", hex(&key)), e))?;
        if !visit(&key, event)? {
            break;
        }
    }
    Ok(())
}
