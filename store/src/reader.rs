//! The reader over a snapshot: what every report reads from, so that one
//! report is consistent even while batches are written.

use rocksdb::{DBPinnableSlice, ReadOptions, SnapshotWithThreadMode, DB};

use audrey_core::contract::Awaited;
use audrey_core::domain::{DeploymentId, InstanceId, Status, Timestamp};
use audrey_core::rows::{ConfigServer, Counts, Deployment, Instance, InstanceState};
use audrey_core::views::{ListDeployments, ViewRead};

use crate::db::{Db, CF_INSTANCES};
use crate::error::StoreError;
use crate::instance_parts::decode_instance;
use crate::provided::{ProvidedMemory, SnapshotBounds};
use crate::raw::{
    read_as_of, read_config_server, read_config_servers, read_counts, read_deployment,
    read_instance, read_instance_row, read_members, scan_deployments, KeyValueVisitor, Raw,
    Scanners,
};

/// A snapshot of the store: implements [`ViewRead`] for the queries.
pub struct Reader<'s> {
    db: &'s Db,
    /// Read options naming the snapshot, made once for all of a report's
    /// point reads rather than once per read. Declared before the snapshot
    /// it points to, so it is dropped first.
    options: ReadOptions,
    snapshot: SnapshotWithThreadMode<'s, DB>,
    /// Iterators over the snapshot, reused by the scans of one report.
    scanners: Scanners<'s>,
    /// What instances have provided, as every reader of the store has seen
    /// it: a reference's source need not be read again.
    provided: &'s ProvidedMemory,
    /// Where the snapshot lies, for what `provided` may tell it and learn
    /// from it.
    bounds: SnapshotBounds,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(db: &'s Db, provided: &'s ProvidedMemory) -> Self {
        let (snapshot, bounds) = SnapshotBounds::around(db, || db.rocks.snapshot());
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
        Self {
            db,
            options,
            snapshot,
            scanners: Scanners::new(),
            provided,
            bounds,
        }
    }

    /// Notes what an instance read here has provided.
    fn learn(&self, row: &Instance) {
        self.provided.learn(&self.bounds, row);
    }

    /// The freshness watermark: the time of the latest event applied (the
    /// same on every replica that applied the same events).
    pub fn as_of(&self) -> Result<Option<Timestamp>, StoreError> {
        read_as_of(self)
    }

    /// Whether a deployment is known and not deleted (one small read).
    pub fn deployment_exists(&self, id: DeploymentId) -> Result<bool, StoreError> {
        Ok(ViewRead::deployment(self, id)?.is_some_and(|d| d.deleted.is_none()))
    }
}

impl Raw for Reader<'_> {
    fn pinned(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>, StoreError> {
        let cf = self.db.cf(cf);
        Ok(self.db.rocks.get_pinned_cf_opt(cf, key, &self.options)?)
    }

    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        let create = || {
            let mut options = ReadOptions::default();
            options.set_snapshot(&self.snapshot);
            self.db.rocks.raw_iterator_cf_opt(self.db.cf(cf), options)
        };
        self.scanners.scan(cf, prefix, create, visit)
    }
}

impl ViewRead for Reader<'_> {
    type Error = StoreError;

    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        read_deployment(self, id)
    }
    fn instance_row(&self, id: InstanceId) -> Result<Option<Instance>, StoreError> {
        let row = read_instance_row(self, id)?;
        row.iter().for_each(|row| self.learn(row));
        Ok(row)
    }
    fn remembered_provided(&self, source: InstanceId, awaited: &Awaited) -> bool {
        self.provided.remembers(&self.bounds, source, awaited)
    }
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        let state = read_instance(self, id)?;
        state.iter().for_each(|state| self.learn(&state.instance));
        Ok(state)
    }
    /// One RocksDB `MultiGet`: it looks the keys up together, level by
    /// level, instead of one full lookup each (a deployment report).
    fn instances(&self, ids: &[InstanceId]) -> Result<Vec<InstanceState>, StoreError> {
        let sorted = ids.is_sorted();
        let keys = ids.iter().map(|id| id.as_bytes());
        let cf = self.db.cf(CF_INSTANCES);
        let mut states = Vec::with_capacity(ids.len());
        for found in self
            .db
            .rocks
            .batched_multi_get_cf_opt(cf, keys, sorted, &self.options)
        {
            // Not learned from: a deployment report has its instances in
            // hand for their references.
            if let Some(bytes) = found? {
                states.push(decode_instance(&bytes)?);
            }
        }
        Ok(states)
    }
    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, StoreError> {
        read_members(self, id)
    }
    fn config_server(&self, source: &str) -> Result<Option<ConfigServer>, StoreError> {
        read_config_server(self, source)
    }
    fn config_servers(&self) -> Result<Vec<ConfigServer>, StoreError> {
        read_config_servers(self)
    }
    fn counts(&self) -> Result<Counts, StoreError> {
        read_counts(self)
    }
}

impl ListDeployments for Reader<'_> {
    fn deployments_with_status(
        &self,
        status: Option<Status>,
        visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        scan_deployments(self, status, visit)
    }
}
