//! What the raw event log is for besides dedup: an entity's history,
//! rebuilding every view from it, and retention that keeps it bounded.
//!
//! The log is keyed by deployment, then event time: a deployment's history
//! is one key range, in time order; heartbeats sit under the all-zero
//! deployment.

use std::collections::HashMap;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::domain::{DeploymentId, InstanceId, Timestamp};
use crate::event::{Event, EventData, DEFAULT_MAX_EVENT_BYTES};
use crate::model::Deployment;
use crate::store::{
    decode, dedup_key, hex, Store, StoreError, CF_DEDUP, CF_DEPLOYMENTS, CF_EVENTS, CF_META,
    KEY_COUNTS, KEY_VERSION, VIEWS_VERSION, VIEW_FAMILIES,
};

/// Events replayed per unsynced batch during a rebuild.
const REBUILD_BATCH: usize = 5_000;

/// A page of an entity's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Matching events in all.
    pub total: u64,
    pub events: Vec<Event>,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Deployments whose log was pruned in this pass.
    pub deployments: u64,
    /// Log entries (and their dedup markers) removed.
    pub events: u64,
}

impl Store {
    /// The accepted events of a deployment, or of one of its instances, in
    /// time order, `limit` of them from `offset`.
    pub fn history(
        &self,
        deployment: DeploymentId,
        instance: Option<InstanceId>,
        offset: u64,
        limit: u64,
    ) -> Result<HistoryPage, StoreError> {
        let mut total = 0;
        let mut events = Vec::new();
        self.scan_log(deployment.as_bytes(), |_, event| {
            if instance.is_none() || event.data.instance() == instance {
                if total >= offset && (events.len() as u64) < limit {
                    events.push(event);
                }
                total += 1;
            }
            Ok(true)
        })?;
        Ok(HistoryPage { total, events })
    }

    /// Empties every view and replays the whole event log through the
    /// projection, then records the current views version. `progress` is
    /// told how many events have been replayed so far.
    pub fn rebuild(&self, mut progress: impl FnMut(u64)) -> Result<u64, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.forget();
        // No key of ours starts with 64 bytes of 0xff (UTF-8 never has one).
        let end = [0xffu8; 64];
        let mut clear = WriteBatch::default();
        for family in VIEW_FAMILIES {
            clear.delete_range_cf(self.cf(family), [].as_slice(), end.as_slice());
        }
        clear.delete_cf(self.cf(CF_META), KEY_COUNTS);
        self.db.write(clear)?;

        let mut replayed = 0u64;
        let mut batch = Vec::with_capacity(REBUILD_BATCH);
        let mut failure = None;
        self.for_each_logged_event(|event| {
            batch.push(event);
            if batch.len() == REBUILD_BATCH {
                if let Err(e) = self.apply_locked(&mut writer, &batch, false) {
                    failure = Some(e);
                    return Ok(false);
                }
                replayed += batch.len() as u64;
                batch.clear();
                progress(replayed);
            }
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.apply_locked(&mut writer, &batch, false)?;
        replayed += batch.len() as u64;
        progress(replayed);
        self.flush()?;
        self.put_meta(KEY_VERSION, &VIEWS_VERSION)?;
        Ok(replayed)
    }

    /// One retention pass: drops from the log every event of deleted
    /// deployments (but the deletion itself, so a rebuild still knows they
    /// are gone), every event of deployments completed before `now` minus
    /// `retain_completed_seconds`, and every heartbeat but the latest of
    /// each config server. Their dedup markers go with them. The views of
    /// completed deployments stay; a later `rebuild` only knows what the
    /// log still holds.
    pub fn prune(
        &self,
        now: Timestamp,
        retain_completed_seconds: f64,
    ) -> Result<Pruned, StoreError> {
        let cutoff = now.plus_seconds(-retain_completed_seconds);
        let mut expired = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_DEPLOYMENTS), IteratorMode::Start)
        {
            let (_, value) = item?;
            let row: Deployment = decode(CF_DEPLOYMENTS, &value)?;
            let old_enough = row.last_progress.is_some_and(|t| t < cutoff);
            if row.deleted.is_some() || (row.is_completed() && old_enough) {
                expired.push(row.uuid);
            }
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut pruned = Pruned::default();
        for deployment in expired {
            let mut batch = WriteBatch::default();
            let mut removed = 0;
            self.scan_log(deployment.as_bytes(), |key, event| {
                if !matches!(event.data, EventData::DeploymentDeleted) {
                    batch.delete_cf(self.cf(CF_EVENTS), key);
                    batch.delete_cf(self.cf(CF_DEDUP), dedup_key(&event.source, &event.id));
                    removed += 1;
                }
                Ok(true)
            })?;
            if removed > 0 {
                self.write_synced(batch)?;
                pruned.deployments += 1;
                pruned.events += removed;
            }
        }
        // Heartbeats: only the latest of each source matters to the views;
        // the older ones go, with their dedup markers.
        let mut latest: HashMap<String, (Vec<u8>, Vec<u8>)> = HashMap::new();
        let mut batch = WriteBatch::default();
        self.scan_log(&[0u8; 16], |key, event| {
            let marker = dedup_key(&event.source, &event.id);
            // Keys are in time order: the one seen before is older.
            if let Some((older, older_marker)) =
                latest.insert(event.source.clone(), (key.to_vec(), marker))
            {
                batch.delete_cf(self.cf(CF_EVENTS), older);
                batch.delete_cf(self.cf(CF_DEDUP), older_marker);
                pruned.events += 1;
            }
            Ok(true)
        })?;
        self.write_synced(batch)?;
        if pruned.events > 0 {
            self.db
                .compact_range_cf(self.cf(CF_EVENTS), None::<&[u8]>, None::<&[u8]>);
            self.db
                .compact_range_cf(self.cf(CF_DEDUP), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(pruned)
    }

    /// How many entries the event log holds (exact: walks it).
    pub fn logged_events(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(CF_EVENTS), IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Visits the accepted events in log order (by deployment, then time),
    /// decoded. Stops early when `visit` returns false.
    pub fn for_each_logged_event(
        &self,
        mut visit: impl FnMut(Event) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.scan_log(&[], |_, event| visit(event))
    }

    /// Visits the log entries under a deployment prefix, decoded, in order,
    /// while `visit` returns true.
    fn scan_log(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], Event) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_EVENTS), mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let event = Event::decode(&value, DEFAULT_MAX_EVENT_BYTES).map_err(|e| {
                StoreError::Corrupt {
                    what: format!("event {}", hex(&key)),
                    problem: e.to_string(),
                }
            })?;
            if !visit(&key, event)? {
                break;
            }
        }
        Ok(())
    }
}
