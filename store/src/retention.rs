//! Retention: keeping the event log bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use rocksdb::{IteratorMode, WriteBatch};

use audrey_core::domain::{HumanDuration, Source, Timestamp};
use audrey_core::rows::{ConfigServer, Deployment};
use audrey_core::{Event, EventData};

use crate::codec::decode;
use crate::db::{Db, CF_CONFIG_SERVERS, CF_DEDUP, CF_DEPLOYMENTS, CF_EVENTS};
use crate::error::StoreError;
use crate::keys::{dedup_key, HEARTBEAT_LOG_PREFIX};
use crate::log::scan_log;
use crate::raw::read_deployment;
use crate::recent::WriterMemory;

/// The default of `--retain-completed`: the log of a deployment completed
/// 30 days ago is pruned.
pub const DEFAULT_RETAIN_COMPLETED: HumanDuration = HumanDuration::from_secs(30 * 86_400);
/// The default of `--prune-every`.
pub const DEFAULT_PRUNE_EVERY: HumanDuration = HumanDuration::from_secs(10 * 60);

/// How long the log keeps what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// The log of a deployment completed longer ago than this is pruned.
    pub retain_completed_seconds: f64,
    /// A config server not heard from for this long is forgotten: its row
    /// and its last heartbeat go.
    pub forget_config_server_after_seconds: f64,
}

impl Retention {
    /// Completed deployments kept for `seconds`; config servers forgotten
    /// after the default silence.
    pub fn completed_after(seconds: f64) -> Self {
        Self {
            retain_completed_seconds: seconds,
            forget_config_server_after_seconds:
                audrey_core::query::DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS,
        }
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Deployments whose log was pruned in this pass.
    pub deployments: u64,
    /// Log entries (and their dedup markers) removed.
    pub events: u64,
    /// Config servers forgotten.
    pub config_servers: u64,
}

/// One retention pass: drops from the log every event of deleted
/// deployments (but the deletion itself, so a rebuild still knows they are
/// gone), every event of deployments completed before `now` minus
/// `retain_completed_seconds`, and every heartbeat but the latest of each
/// config server. Their dedup markers go with them. The views of completed
/// deployments stay; a later `rebuild` only knows what the log still holds.
/// Config servers silent for longer than the forget window go entirely:
/// their row and their last heartbeat.
pub(crate) fn prune(
    db: &Db,
    write_lock: &Mutex<WriterMemory>,
    now: Timestamp,
    retention: &Retention,
) -> Result<Pruned, StoreError> {
    prune_with(db, write_lock, now, retention, || {})
}

/// [`prune`], with `between` run after the expired deployments are found
/// and before the writer lock is taken: lets a test put a batch exactly
/// there.
pub(crate) fn prune_with(
    db: &Db,
    write_lock: &Mutex<WriterMemory>,
    now: Timestamp,
    retention: &Retention,
    between: impl FnOnce(),
) -> Result<Pruned, StoreError> {
    let cutoff = now.plus_seconds(-retention.retain_completed_seconds);
    let forget_before = now.plus_seconds(-retention.forget_config_server_after_seconds);
    let expired_row = |row: &Deployment| {
        let old_enough = row.last_progress.is_some_and(|t| t < cutoff);
        row.deleted.is_some() || (row.is_completed() && old_enough)
    };
    // Found without the writer lock (a scan of every deployment), so
    // checked again under it: a deployment that received an event in
    // between may no longer be expired.
    let mut candidates = Vec::new();
    for item in db
        .rocks
        .iterator_cf(db.cf(CF_DEPLOYMENTS), IteratorMode::Start)
    {
        let (_, value) = item?;
        let row: Deployment = decode(CF_DEPLOYMENTS, &value)?;
        if expired_row(&row) {
            candidates.push(row.uuid);
        }
    }
    between();
    let _writer = write_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut expired = Vec::with_capacity(candidates.len());
    for deployment in candidates {
        let row = read_deployment(db, deployment)?;
        if row.as_ref().is_some_and(expired_row) {
            expired.push(deployment);
        }
    }
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
    let mut latest: HashMap<Source, (Vec<u8>, Vec<u8>, Timestamp)> = HashMap::new();
    let mut batch = WriteBatch::default();
    scan_log(db, &HEARTBEAT_LOG_PREFIX, |key, event| {
        let marker = dedup_key(event.source(), event.id());
        // Keys are in time order: the one seen before is older.
        if let Some((older, older_marker, _)) =
            latest.insert(event.source().clone(), (key.to_vec(), marker, event.time()))
        {
            batch.delete_cf(db.cf(CF_EVENTS), older);
            batch.delete_cf(db.cf(CF_DEDUP), older_marker);
            pruned.events += 1;
        }
        Ok(true)
    })?;
    // Silent config servers: the latest heartbeat and the row go too (a
    // later heartbeat brings them back).
    for (key, marker, time) in latest.into_values() {
        if time < forget_before {
            batch.delete_cf(db.cf(CF_EVENTS), key);
            batch.delete_cf(db.cf(CF_DEDUP), marker);
            pruned.events += 1;
        }
    }
    for item in db
        .rocks
        .iterator_cf(db.cf(CF_CONFIG_SERVERS), IteratorMode::Start)
    {
        let (key, value) = item?;
        let row: ConfigServer = decode(CF_CONFIG_SERVERS, &value)?;
        if row.last_heartbeat.time < forget_before {
            batch.delete_cf(db.cf(CF_CONFIG_SERVERS), key);
            pruned.config_servers += 1;
        }
    }
    db.write_synced(batch)?;
    if pruned.events > 0 {
        db.rocks
            .compact_range_cf(db.cf(CF_EVENTS), None::<&[u8]>, None::<&[u8]>);
        db.rocks
            .compact_range_cf(db.cf(CF_DEDUP), None::<&[u8]>, None::<&[u8]>);
    }
    Ok(pruned)
}
