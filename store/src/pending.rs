//! The batch that overlays pending writes on the committed store: what
//! the projection reads and writes while a batch is applied. Reads see the
//! batch's own writes; [`Pending::write_into`] turns them into puts and
//! deletes, each row once, with the indexes kept in step.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rocksdb::DBPinnableSlice;

use audrey_core::domain::{DeploymentId, InstanceId, Source, Status, Timestamp};
use audrey_core::rows::{ConfigServer, Counts, Deployment, Instance, InstanceState};
use audrey_core::views::{ViewRead, ViewWrite};

use crate::codec::encode;
use crate::db::{
    Db, CF_CONFIG_SERVERS, CF_DEPLOYMENTS, CF_DEPLOYMENT_STATUS, CF_INSTANCES, CF_MEMBERS, CF_META,
};
use crate::error::StoreError;
use crate::instance_parts::{
    instance_write, progress_write, InstanceWrite, StoredInstance, StoredRow,
};
use crate::keys::{member_key, status_key, KEY_COUNTS};
use crate::raw::{
    read_config_server, read_config_servers, read_counts, read_deployment, read_members,
    read_stored_instance, KeyValueVisitor, Raw, Scanners,
};
use crate::recent::{Committed, RecentDeployments, RecentInstances, WriterMemory};
use crate::sorted_writes::SortedWrites;

/// The rows one batch has changed so far, over the committed store. Reads
/// see the batch's own writes; [`Pending::write_into`] turns them into puts
/// and deletes, each row once, with the indexes kept in step.
pub(crate) struct Pending<'s> {
    /// The committed store under the batch.
    db: &'s Db,
    /// Deployment rows written by this batch.
    deployments: HashMap<DeploymentId, Deployment>,
    /// Instances written by this batch (`None`: deleted in it).
    instances: HashMap<InstanceId, Option<InstanceState>>,
    /// Instances put back by this batch with more than their progress
    /// changed ([`ViewWrite::put_instance`]): the others among those taken
    /// keep their stored stable part, written without encoding it.
    more_than_progress: HashSet<InstanceId>,
    /// Config servers written by this batch.
    config_servers: HashMap<Source, ConfigServer>,
    /// The global counts, once this batch changed them.
    counts: Option<Counts>,
    /// Iterators over the committed store, reused by the batch's scans.
    scanners: Scanners<'s>,
    /// Rows as committed before this batch, read once: later reads of the
    /// same row skip RocksDB, and writing compares with them so that only
    /// what changed is written.
    committed_deployments: RefCell<HashMap<DeploymentId, Option<Deployment>>>,
    committed_instances: RefCell<HashMap<InstanceId, Before>>,
    /// Instances committed by earlier batches, decoded.
    recent: RefCell<RecentInstances>,
    /// Deployment rows committed by earlier batches: moved into
    /// `committed_deployments` when this batch first reads them, and back
    /// with what it wrote ([`Pending::committed`]).
    recent_deployments: RefCell<RecentDeployments>,
    /// The row of each instance [`Pending::write_into`] wrote, as it is
    /// now stored: what the next batch compares with.
    rows_written: HashMap<InstanceId, StoredRow>,
    /// Whether [`Pending::write_into`] deleted an instance row or gave an
    /// instance another owner: what readers remember of what instances
    /// provided may no longer hold after such a batch (`crate::provided`).
    pub(crate) provided_may_shrink: bool,
    /// The deployments whose rows, or whose instances' rows,
    /// [`Pending::write_into`] wrote ([`crate::changes`]).
    pub(crate) changed_deployments: HashSet<DeploymentId>,
}

/// An instance as this batch found it committed.
#[derive(Clone)]
enum Before {
    /// Read, and shared with the writer's memory of recent instances.
    Read(Committed),
    /// Handed over to the projection to change
    /// ([`ViewWrite::take_instance`]) without a copy: only the deployments
    /// that claimed it are kept, for the members index, and what is known
    /// of its stored row, to write only its progress when that is all that
    /// changed. A batch that
    /// touches many instances spent a quarter of its time cloning them
    /// (BENCHMARKS.md, scale).
    Taken {
        claims: Vec<DeploymentId>,
        row: StoredRow,
    },
}

impl<'s> Pending<'s> {
    pub(crate) fn new(db: &'s Db, memory: WriterMemory) -> Self {
        Self {
            recent: RefCell::new(memory.instances),
            recent_deployments: RefCell::new(memory.deployments),
            db,
            scanners: Scanners::new(),
            deployments: HashMap::new(),
            instances: HashMap::new(),
            more_than_progress: HashSet::new(),
            config_servers: HashMap::new(),
            counts: None,
            committed_deployments: RefCell::new(HashMap::new()),
            committed_instances: RefCell::new(HashMap::new()),
            rows_written: HashMap::new(),
            provided_may_shrink: false,
            changed_deployments: HashSet::new(),
        }
    }

    fn committed_deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        self.read_committed_deployment(id)?;
        Ok(self.committed_deployments.borrow()[&id].clone())
    }

    /// Puts the deployment as committed before this batch into
    /// `committed_deployments`, unless it is there already.
    fn read_committed_deployment(&self, id: DeploymentId) -> Result<(), StoreError> {
        if self.committed_deployments.borrow().contains_key(&id) {
            return Ok(());
        }
        let remembered = self.recent_deployments.borrow_mut().take(id);
        let row = match remembered {
            Some(row) => row,
            None => read_deployment(self, id)?,
        };
        self.committed_deployments.borrow_mut().insert(id, row);
        Ok(())
    }

    fn committed_instance(&self, id: InstanceId) -> Result<Committed, StoreError> {
        match self.committed_instances.borrow().get(&id) {
            Some(Before::Read(state)) => return Ok(state.clone()),
            // Handed over and not put back yet: read again (the
            // projection does not read an instance it holds).
            Some(Before::Taken { .. }) => return Ok(read_stored_instance(self, id)?.map(Arc::new)),
            None => {}
        }
        let remembered = self.recent.borrow_mut().get(id);
        let state = match remembered {
            Some(state) => state,
            None => read_stored_instance(self, id)?.map(Arc::new),
        };
        self.committed_instances
            .borrow_mut()
            .insert(id, Before::Read(state.clone()));
        Ok(state)
    }

    /// The committed instance, owned: moved out of the batch's and the
    /// writer's memory when nothing else holds it, so that changing it
    /// copies nothing.
    fn take_committed_instance(
        &mut self,
        id: InstanceId,
    ) -> Result<Option<InstanceState>, StoreError> {
        let state = self.committed_instance(id)?;
        let Some(stored) = state else {
            return Ok(None);
        };
        let claims = stored.state.claim_deployments().collect();
        // The batch's and the writer's references go first, so that the
        // row is usually held by nothing else and moves out uncopied.
        self.committed_instances.get_mut().remove(&id);
        self.recent.get_mut().remove(id);
        let StoredInstance { state, row } =
            Arc::try_unwrap(stored).unwrap_or_else(|shared| (*shared).clone());
        let taken = Before::Taken { claims, row };
        self.committed_instances.get_mut().insert(id, taken);
        Ok(Some(state))
    }

    /// The instances as this batch leaves them, once it is written: what
    /// the next batch starts from.
    pub(crate) fn committed(self) -> WriterMemory {
        let mut deployments = self.recent_deployments.into_inner();
        let mut written_deployments = self.deployments;
        for (id, before) in self.committed_deployments.into_inner() {
            let row = written_deployments.remove(&id).or(before);
            deployments.insert(id, row);
        }
        // Every row written was read first (the projection reads before it
        // writes); should one not be, it is remembered as written.
        for (id, row) in written_deployments {
            deployments.insert(id, Some(row));
        }
        let mut recent = self.recent.into_inner();
        let mut written = self.instances;
        let mut rows_written = self.rows_written;
        for (id, before) in self.committed_instances.into_inner() {
            let state = match (written.remove(&id), before) {
                (Some(Some(state)), _) => match rows_written.remove(&id) {
                    Some(row) => Some(Arc::new(StoredInstance { state, row })),
                    // Not written (the batch was not): read again when needed.
                    None => continue,
                },
                (Some(None), _) => None,
                (None, Before::Read(state)) => state,
                // Taken and never put back (the batch failed half way):
                // read again when needed.
                (None, Before::Taken { .. }) => continue,
            };
            recent.insert(id, state);
        }
        WriterMemory {
            instances: recent,
            deployments,
        }
    }

    /// Whether [`Pending::write_into`] writes a config server's row.
    pub(crate) fn wrote_config_servers(&self) -> bool {
        !self.config_servers.is_empty()
    }

    pub(crate) fn write_into(&mut self, batch: &mut SortedWrites<'_>) -> Result<(), StoreError> {
        for (id, row) in &self.deployments {
            // Compared where it is kept, without a copy.
            self.read_committed_deployment(*id)?;
            let was_listed = {
                let committed = self.committed_deployments.borrow();
                let before = committed.get(id).and_then(Option::as_ref);
                if before == Some(row) {
                    continue;
                }
                before.and_then(listing)
            };
            // The status index changes only when the status or the last
            // progress does (a record less per deployment and batch when
            // the status stays).
            let listed = listing(row);
            if was_listed != listed {
                if let Some((status, _)) = was_listed {
                    // Under the same status, the put below overwrites it.
                    if listed.map(|(now, _)| now) != Some(status) {
                        batch.delete(CF_DEPLOYMENT_STATUS, status_key(status, *id));
                    }
                }
                if let Some((status, progress)) = listed {
                    batch.put(
                        CF_DEPLOYMENT_STATUS,
                        status_key(status, *id),
                        progress.to_be_bytes().to_vec(),
                    );
                }
            }
            batch.put(CF_DEPLOYMENTS, id.as_bytes().to_vec(), encode(row));
            self.changed_deployments.insert(*id);
        }
        let mut rows_written = HashMap::new();
        for (id, state) in &self.instances {
            // A deployment's members are every instance it claims.
            let claims = |s: Option<&InstanceState>| -> Vec<DeploymentId> {
                s.map(|s| s.claim_deployments().collect())
                    .unwrap_or_default()
            };
            let taken = match self.committed_instances.borrow_mut().get_mut(id) {
                Some(Before::Taken { claims, row }) => {
                    Some((std::mem::take(claims), std::mem::take(row)))
                }
                _ => None,
            };
            // A row handed over is written back whether it changed or not:
            // comparing would need the copy that handing over saves. Its
            // stable part is compared by its bytes, unless only its
            // progress changed.
            let progress_only = taken.is_some() && !self.more_than_progress.contains(id);
            let (was, row_before) = match taken {
                Some((claims, row)) => (claims, Some(row)),
                None => {
                    let before = self.committed_instance(*id)?;
                    let before_state = before.as_deref().map(|b| &b.state);
                    if before_state == state.as_ref() {
                        continue;
                    }
                    (claims(before_state), before.map(|b| b.row.clone()))
                }
            };
            let is = claims(state.as_ref());
            // Its deployments' reports show it (the owner's), or list it
            // among the members to leave out (the others').
            self.changed_deployments.extend(was.iter().chain(&is));
            // The owner's claim is what a reference's source shows: a row
            // that goes, or another claim taking its place, may take back
            // what it provided. A new row had nothing to take.
            if !was.is_empty() && was.first() != is.first() {
                self.provided_may_shrink = true;
            }
            for gone in was.iter().filter(|d| !is.contains(d)) {
                batch.delete(CF_MEMBERS, member_key(*gone, *id));
            }
            for new in is.iter().filter(|d| !was.contains(d)) {
                batch.put(CF_MEMBERS, member_key(*new, *id), Vec::new());
            }
            let key = || id.as_bytes().to_vec();
            match state {
                Some(state) => {
                    let (write, row) = match row_before {
                        Some(before) if progress_only => progress_write(before, state),
                        before => instance_write(before.as_ref(), state),
                    };
                    match write {
                        InstanceWrite::Whole(row) => batch.put(CF_INSTANCES, key(), row),
                        InstanceWrite::Progress(operand) => {
                            batch.merge(CF_INSTANCES, key(), operand)
                        }
                    }
                    rows_written.insert(*id, row);
                }
                None => batch.delete(CF_INSTANCES, key()),
            }
        }
        self.rows_written = rows_written;
        for (source, row) in &self.config_servers {
            batch.put(
                CF_CONFIG_SERVERS,
                source.as_str().as_bytes().to_vec(),
                encode(row),
            );
        }
        if let Some(counts) = &self.counts {
            batch.put(CF_META, KEY_COUNTS.to_vec(), encode(counts));
        }
        Ok(())
    }
}

/// Where a deployment is listed in the status index, and the last
/// progress kept there (`None`: deleted, listed nowhere).
fn listing(row: &Deployment) -> Option<(Status, i64)> {
    let progress = row.last_progress.map_or(i64::MIN, Timestamp::nanos);
    row.deleted.is_none().then(|| (row.status(), progress))
}

impl ViewRead for Pending<'_> {
    type Error = StoreError;

    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        match self.deployments.get(&id) {
            Some(row) => Ok(Some(row.clone())),
            None => self.committed_deployment(id),
        }
    }
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        match self.instances.get(&id) {
            Some(state) => Ok(state.clone()),
            None => Ok(self.committed_instance(id)?.map(|s| s.state.clone())),
        }
    }
    /// Without copying the services (asked once per event: who owns the
    /// instance it names).
    fn instance_row(&self, id: InstanceId) -> Result<Option<Instance>, StoreError> {
        match self.instances.get(&id) {
            Some(state) => Ok(state.as_ref().map(|s| s.instance.clone())),
            None => Ok(self
                .committed_instance(id)?
                .map(|s| s.state.instance.clone())),
        }
    }
    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, StoreError> {
        let mut members: BTreeSet<InstanceId> = read_members(self, id)?.into_iter().collect();
        for (instance, state) in &self.instances {
            match state {
                Some(s) if s.claim(id).is_some() => {
                    members.insert(*instance);
                }
                _ => {
                    members.remove(instance);
                }
            }
        }
        Ok(members.into_iter().collect())
    }
    fn config_server(&self, source: &str) -> Result<Option<ConfigServer>, StoreError> {
        match self.config_servers.get(source) {
            Some(row) => Ok(Some(row.clone())),
            None => read_config_server(self, source),
        }
    }
    fn config_servers(&self) -> Result<Vec<ConfigServer>, StoreError> {
        let mut rows: BTreeMap<Source, ConfigServer> = read_config_servers(self)?
            .into_iter()
            .map(|r| (r.source.clone(), r))
            .collect();
        rows.extend(self.config_servers.clone());
        Ok(rows.into_values().collect())
    }
    fn counts(&self) -> Result<Counts, StoreError> {
        match self.counts {
            Some(counts) => Ok(counts),
            None => read_counts(self),
        }
    }
}

impl ViewWrite for Pending<'_> {
    fn put_deployment(&mut self, row: Deployment) -> Result<(), StoreError> {
        self.deployments.insert(row.uuid, row);
        Ok(())
    }
    /// Hands over the batch's own copy when it has one (the events of a
    /// batch mostly fall on a few deployments each), otherwise a copy of
    /// the committed row, which stays to compare with when writing.
    fn take_deployment(&mut self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        match self.deployments.remove(&id) {
            Some(row) => Ok(Some(row)),
            None => self.committed_deployment(id),
        }
    }
    fn put_instance(&mut self, state: InstanceState) -> Result<(), StoreError> {
        self.more_than_progress.insert(state.instance.uuid);
        self.instances.insert(state.instance.uuid, Some(state));
        Ok(())
    }
    fn put_instance_progress(&mut self, state: InstanceState) -> Result<(), StoreError> {
        self.instances.insert(state.instance.uuid, Some(state));
        Ok(())
    }
    /// Hands over the batch's own copy when it has one, otherwise the
    /// committed row itself, moved out of the writer's memory (a deletion
    /// in this batch stays recorded).
    fn take_instance(&mut self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        match self.instances.get(&id) {
            Some(Some(_)) => Ok(self.instances.remove(&id).flatten()),
            Some(None) => Ok(None),
            None => self.take_committed_instance(id),
        }
    }
    fn delete_instance(&mut self, id: InstanceId) -> Result<(), StoreError> {
        self.more_than_progress.insert(id);
        self.instances.insert(id, None);
        Ok(())
    }
    fn put_config_server(&mut self, row: ConfigServer) -> Result<(), StoreError> {
        self.config_servers.insert(row.source.clone(), row);
        Ok(())
    }
    fn put_counts(&mut self, counts: Counts) -> Result<(), StoreError> {
        self.counts = Some(counts);
        Ok(())
    }
}

impl Raw for Pending<'_> {
    fn pinned(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>, StoreError> {
        self.db.pinned(cf, key)
    }

    /// Scans the committed data: nothing else writes while a batch is
    /// pending (the writer lock), so iterators made early stay current.
    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        let create = || self.db.rocks.raw_iterator_cf(self.db.cf(cf));
        self.scanners.scan(cf, prefix, create, visit)
    }
}

#[cfg(test)]
mod tests {
    use audrey_core::domain::Name;
    use audrey_core::rows::{InstanceRegistration, Service, Stamp};

    use super::*;
    use crate::sorted_writes::Kind;

    fn instance() -> InstanceState {
        let name = |s: &str| Name::parse(s).unwrap();
        let id = InstanceId::from_bytes([2; 16]);
        let mut state = InstanceState::new(id, DeploymentId::from_bytes([1; 16]));
        state.instance.registration = Some(InstanceRegistration {
            stamp: Stamp::new(Timestamp::from_unix_seconds(1), "/cs", "1"),
            assembly: name("mysql"),
            provided_parameters: vec![name("ipaddress")],
            services: vec![name("mysql")],
        });
        let mut service = Service::new(id, name("mysql"));
        service.parameters = Some(Vec::new());
        state.services.insert(name("mysql"), service);
        state
    }

    /// Applies `change` to the instance as one batch, as the projection
    /// does (taken, changed, put back), and returns how the batch writes
    /// it.
    fn write(
        db: &Db,
        recent: &mut WriterMemory,
        change: impl FnOnce(&mut InstanceState),
    ) -> Vec<Kind> {
        write_as(db, recent, change, false)
    }

    /// [`write`], the instance put back as progress alone when
    /// `as_progress`.
    fn write_as(
        db: &Db,
        recent: &mut WriterMemory,
        change: impl FnOnce(&mut InstanceState),
        as_progress: bool,
    ) -> Vec<Kind> {
        let id = instance().instance.uuid;
        let mut pending = Pending::new(db, std::mem::take(recent));
        let mut state = pending.take_instance(id).unwrap().unwrap_or_else(instance);
        change(&mut state);
        if as_progress {
            pending.put_instance_progress(state).unwrap();
        } else {
            pending.put_instance(state).unwrap();
        }
        let mut writes = SortedWrites::default();
        pending.write_into(&mut writes).unwrap();
        let kinds = writes
            .kinds()
            .into_iter()
            .filter(|(cf, key, _)| *cf == CF_INSTANCES && *key == id.as_bytes())
            .map(|(_, _, kind)| kind)
            .collect();
        db.write(
            writes.into_batch(db),
            false,
            crate::changes::Changed::Everything,
        )
        .unwrap();
        *recent = pending.committed();
        kinds
    }

    /// A contact, a start or an end writes only the small progress part of
    /// the instance (a merge operand) over a row the writer remembers; a
    /// change of its registration writes the whole row. Each batch reads back what the batches before it
    /// wrote, whether the writer still remembers the instance or reads it
    /// from the store, and so does a reader after the memtable is flushed
    /// and compacted (where the merge operator runs) and after a restart.
    #[test]
    fn progress_alone_rewrites_only_the_progress_part() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), true).unwrap();
        let mut recent = WriterMemory::default();
        let both = vec![Kind::Put];
        assert_eq!(write(&db, &mut recent, |_| {}), both, "a new instance");
        let contacted = Some(Timestamp::from_unix_seconds(2));
        let written = write(&db, &mut recent, |s| s.instance.last_contacted = contacted);
        assert_eq!(written, vec![Kind::Merge], "a contact");
        for (seconds, remembered) in [(3, true), (4, false)] {
            if !remembered {
                recent = WriterMemory::default();
            }
            let stamp = Stamp::new(Timestamp::from_unix_seconds(seconds), "/cs", "3");
            let started = |s: &mut InstanceState| {
                s.services
                    .values_mut()
                    .for_each(|s| s.started = Some(stamp));
            };
            // Read back from the store, how many operands lie over the
            // row is not known: it is written whole once.
            let expected = if remembered { Kind::Merge } else { Kind::Put };
            assert_eq!(write(&db, &mut recent, started), vec![expected]);
            let registered = |s: &mut InstanceState| {
                let registration = s.instance.registration.as_mut().unwrap();
                registration.stamp = stamp;
            };
            assert_eq!(write(&db, &mut recent, registered), both, "a new config");
        }
        let contacted_again = Some(Timestamp::from_unix_seconds(5));
        let written = write(&db, &mut recent, |s| {
            s.instance.last_contacted = contacted_again
        });
        assert_eq!(written, vec![Kind::Merge], "a contact after a new config");
        let id = instance().instance.uuid;
        let expected = crate::raw::read_instance(&db, id).unwrap().unwrap();
        assert_eq!(expected.instance.last_contacted, contacted_again);
        let registration = expected.instance.registration.as_ref().unwrap();
        assert_eq!(registration.stamp.time, Timestamp::from_unix_seconds(4));
        assert!(expected.services.values().all(|s| s.started.is_some()));
        let memory = crate::provided::ProvidedMemory::default();
        let read = |db: &Db| {
            crate::reader::Reader::new(db, &memory)
                .instances(&[id])
                .unwrap()
        };
        assert_eq!(read(&db), vec![expected.clone()], "through a snapshot");
        db.flush().unwrap();
        let cf = db.cf(CF_INSTANCES);
        db.rocks.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        assert_eq!(read(&db), vec![expected.clone()], "compacted");
        drop(db);
        let db = Db::open(dir.path(), false).unwrap();
        assert_eq!(read(&db), vec![expected], "reopened");
    }

    /// An instance put back as progress alone is written as comparing its
    /// stable part would write it, without encoding that part: progress
    /// operands, a whole row every [`MAX_PROGRESS_OPERANDS`] + 1 writes
    /// and over a row read back from the store, and the row reads back
    /// whole, before and after a compaction.
    #[test]
    fn progress_put_back_is_written_as_comparing_would_write_it() {
        use crate::instance_parts::MAX_PROGRESS_OPERANDS;
        let written = |as_progress: bool| {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), true).unwrap();
            let mut recent = WriterMemory::default();
            let mut kinds = write(&db, &mut recent, |_| {});
            for second in 1..=2 * i64::from(MAX_PROGRESS_OPERANDS) + 4 {
                if second == 5 {
                    recent = WriterMemory::default();
                }
                let contacted = Some(Timestamp::from_unix_seconds(second));
                let contact = |s: &mut InstanceState| s.instance.last_contacted = contacted;
                kinds.extend(write_as(&db, &mut recent, contact, as_progress));
            }
            let id = instance().instance.uuid;
            let read = crate::raw::read_instance(&db, id).unwrap().unwrap();
            db.flush().unwrap();
            let cf = db.cf(CF_INSTANCES);
            db.rocks.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            let compacted = crate::raw::read_instance(&db, id).unwrap().unwrap();
            assert_eq!(read, compacted);
            (kinds, read)
        };
        let (compared, expected) = written(false);
        let (progress, read) = written(true);
        assert_eq!(progress, compared);
        let whole = progress.iter().filter(|k| **k == Kind::Put).count();
        // New, read back (at the fifth contact), and the seventeenth write
        // after that.
        assert_eq!(whole, 3);
        assert_eq!(read, expected);
        let mut last = instance();
        last.instance.last_contacted = Some(Timestamp::from_unix_seconds(
            2 * i64::from(MAX_PROGRESS_OPERANDS) + 4,
        ));
        assert_eq!(read, last);
    }
}
