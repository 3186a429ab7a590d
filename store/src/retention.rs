//! Retention: keeping the event log bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use rocksdb::{IteratorMode, WriteBatch};

use audrey_core::domain::{HumanDuration, Source, Timestamp};
use audrey_core::rows::Deployment;
use audrey_core::{Event, EventData};

use crate::codec::decode;
use crate::db::{Db, CF_DEDUP, CF_DEPLOYMENTS, CF_EVENTS};
use crate::error::StoreError;
use crate::keys::{dedup_key, HEARTBEAT_LOG_PREFIX};
use crate::log::scan_log;
use crate::recent::RecentInstances;

/// The default of `--retain-completed`: the log of a deployment completed
/// 30 days ago is pruned.
pub const DEFAULT_RETAIN_COMPLETED: HumanDuration = HumanDuration::from_secs(30 * 86_400);
/// The default of `--prune-every`.
pub const DEFAULT_PRUNE_EVERY: HumanDuration = HumanDuration::from_secs(10 * 60);

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Deployments whose log was pruned in this pass.
    pub deployments: u64,
    /// Log entries (and their dedup markers) removed.
    pub events: u64,
}

/// One retention pass: drops from the log every event of deleted
/// deployments (but the deletion itself, so a rebuild still knows they are
/// gone), every event of deployments completed before `now` minus
/// `retain_completed_seconds`, and every heartbeat but the latest of each
/// config server. Their dedup markers go with them. The views of completed
/// deployments stay; a later `rebuild` only knows what the log still holds.
pub(crate) fn prune(
    db: &Db,
    write_lock: &Mutex<RecentInstances>,
    now: Timestamp,
    retain_completed_seconds: f64,
) -> Result<Pruned, StoreError> {
    let cutoff = now.plus_seconds(-retain_completed_seconds);
    let mut expired = Vec::new();
    for item in db
        .rocks
        .iterator_cf(db.cf(CF_DEPLOYMENTS), IteratorMode::Start)
    {
        let (_, value) = item?;
        let row: Deployment = decode(CF_DEPLOYMENTS, &value)?;
        let old_enough = row.last_progress.is_some_and(|t| t < cutoff);
        if row.deleted.is_some() || (row.is_completed() && old_enough) {
            expired.push(row.uuid);
        }
    }
    let _writer = write_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut pruned = Pruned::default();
    for deployment in expired {
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        scan_log(db, deployment.as_bytes(), |key, event| {
            let is_deletion = matches!(
                &event,
                Event::Deployment(e) if e.data == EventData::DeploymentDeleted
            );
            if !is_deletion {
                batch.delete_cf(db.cf(CF_EVENTS), key);
                batch.delete_cf(db.cf(CF_DEDUP), dedup_key(event.source(), event.id()));
                removed += 1;
            }
            Ok(true)
        })?;
        if removed > 0 {
            db.write_synced(batch)?;
            pruned.deployments += 1;
            pruned.events += removed;
        }
    }
    // Heartbeats: only the latest of each source matters to the views; the
    // older ones go, with their dedup markers.
    let mut latest: HashMap<Source, (Vec<u8>, Vec<u8>)> = HashMap::new();
    let mut batch = WriteBatch::default();
    scan_log(db, &HEARTBEAT_LOG_PREFIX, |key, event| {
        let marker = dedup_key(event.source(), event.id());
        // Keys are in time order: the one seen before is older.
        if let Some((older, older_marker)) =
            latest.insert(event.source().clone(), (key.to_vec(), marker))
        {
            batch.delete_cf(db.cf(CF_EVENTS), older);
            batch.delete_cf(db.cf(CF_DEDUP), older_marker);
            pruned.events += 1;
        }
        Ok(true)
    })?;
    db.write_synced(batch)?;
    if pruned.events > 0 {
        db.rocks
            .compact_range_cf(db.cf(CF_EVENTS), None::<&[u8]>, None::<&[u8]>);
        db.rocks
            .compact_range_cf(db.cf(CF_DEDUP), None::<&[u8]>, None::<&[u8]>);
    }
    Ok(pruned)
}
