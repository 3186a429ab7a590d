//! The store: one RocksDB database holding the views, the event log and the
//! dedup index. Every operation lives in its own module; this is the one
//! `impl Store`, and each method says which module does the work.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rocksdb::WriteBatch;

use audrey_core::domain::{DeploymentId, InstanceId, Timestamp};
use audrey_core::Event;

use crate::apply::{apply_events, BatchOutcome, Loggable, Origin};
use crate::codec::{decode, encode, VIEWS_VERSION};
use crate::db::{Db, CF_META};
use crate::error::StoreError;
use crate::keys::{KEY_REBUILDING, KEY_VERSION};
use crate::log::{self, HistoryPage};
use crate::provided::ProvidedMemory;
use crate::reader::Reader;
use crate::rebuild;
use crate::recent::{RecentDeployments, RecentInstances, WriterMemory};
use crate::retention::{self, Pruned, Retention};

/// The embedded store: views, event log and dedup index.
pub struct Store {
    /// The database and its column families.
    db: Db,
    /// Where it lives, for messages.
    path: PathBuf,
    /// One batch at a time: a batch reads rows, then writes them. The lock
    /// also guards the instances and deployments the writer remembers
    /// between batches.
    write_lock: Mutex<WriterMemory>,
    /// What instances have provided, as readers have seen it
    /// ([`crate::provided`]).
    provided: ProvidedMemory,
}

impl Store {
    /// Opens (creating if needed) the store in `path`. Refuses views of
    /// another version with [`StoreError::ViewsOutdated`], and views a
    /// rebuild left half done with [`StoreError::RebuildUnfinished`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let store = Self::open_any_version(path)?;
        if store.db.get(CF_META, KEY_REBUILDING)?.is_some() {
            return Err(StoreError::RebuildUnfinished {
                path: store.path.display().to_string(),
            });
        }
        let found = store.views_version()?;
        if found != VIEWS_VERSION {
            return Err(StoreError::ViewsOutdated {
                path: store.path.display().to_string(),
                found,
                expected: VIEWS_VERSION,
            });
        }
        Ok(store)
    }

    /// Opens a store that must exist already, without checking its views
    /// (`rebuild`, `export`): a mistyped directory is refused with
    /// [`StoreError::NoStore`] rather than made into an empty store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if !path.join("CURRENT").is_file() {
            return Err(StoreError::NoStore {
                path: path.display().to_string(),
            });
        }
        Self::open_any_version(path)
    }

    /// Opens (creating if needed) without checking the views.
    pub fn open_any_version(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let fresh = !path.join("CURRENT").exists();
        let store = Store {
            db: Db::open(&path, true)?,
            path,
            write_lock: Mutex::new(WriterMemory::default()),
            provided: ProvidedMemory::default(),
        };
        if fresh {
            store.put_views_version(VIEWS_VERSION)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the views on disk (0 when none is recorded).
    pub fn views_version(&self) -> Result<u32, StoreError> {
        Ok(match self.db.get(CF_META, KEY_VERSION)? {
            Some(bytes) => decode("views_version", &bytes)?,
            None => 0,
        })
    }

    fn put_views_version(&self, version: u32) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_META), KEY_VERSION, encode(&version));
        self.db.write_synced(batch)
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterMemory> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch of events atomically and durably ([`crate::apply`]):
    /// dedup, log, projection, counts, all in one `WriteBatch`, WAL synced
    /// before returning.
    pub fn apply_batch(&self, events: &[impl Loggable]) -> Result<BatchOutcome, StoreError> {
        apply_events(&self.db, &mut self.lock_writer(), events, Origin::Live)
    }

    /// How many batches were written since the store was opened, by any
    /// path. Read it *before* taking a reader: what that reader sees holds
    /// at least those batches, so a report computed from it is right for
    /// as long as the count has not moved (the API's report cache).
    pub fn writes(&self) -> u64 {
        self.db.writes()
    }

    /// Whether deployment `id`'s row, one of its instances' rows or a
    /// config server's row may have changed in a batch written after the
    /// first `writes` ([`Store::writes`]): what was computed from a reader
    /// taken after reading `writes` still holds when it has not. Ask
    /// after reading the count the answer goes with.
    pub fn deployment_changed_after(&self, id: DeploymentId, writes: u64) -> bool {
        self.db.deployment_changed_after(id, writes)
    }

    /// A consistent, read-only view of the store at this moment
    /// ([`crate::reader`]).
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.db, &self.provided)
    }

    /// The accepted events of a deployment, or of one of its instances, in
    /// time order ([`crate::log`]).
    pub fn history(
        &self,
        deployment: DeploymentId,
        instance: Option<InstanceId>,
        offset: u64,
        limit: u64,
    ) -> Result<HistoryPage, StoreError> {
        log::history(&self.db, deployment, instance, offset, limit)
    }

    /// Visits the accepted events in log order (by deployment, then time),
    /// decoded. Stops early when `visit` returns false.
    pub fn for_each_logged_event(
        &self,
        mut visit: impl FnMut(Event) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        log::scan_log(&self.db, &[], |_, event| visit(event))
    }

    /// How many entries the event log holds (exact: walks it).
    pub fn logged_events(&self) -> Result<u64, StoreError> {
        log::count(&self.db)
    }

    /// How many events the log holds (an estimate from RocksDB, for progress).
    pub fn estimated_logged_events(&self) -> u64 {
        log::estimated_count(&self.db)
    }

    /// Empties every view and replays the event log ([`crate::rebuild`]).
    pub fn rebuild(&self, progress: impl FnMut(u64)) -> Result<u64, StoreError> {
        rebuild::rebuild(&self.db, &mut self.lock_writer(), progress)
    }

    /// One retention pass over the event log ([`crate::retention`]).
    pub fn prune(&self, now: Timestamp, retention: &Retention) -> Result<Pruned, StoreError> {
        retention::prune(&self.db, &self.write_lock, now, retention)
    }

    /// [`Store::prune`] with `between` run after the expired deployments are
    /// found and before the writer lock is taken: lets tests race it.
    #[doc(hidden)]
    pub fn prune_racing_for_tests(
        &self,
        now: Timestamp,
        retention: &Retention,
        between: impl FnOnce(),
    ) -> Result<Pruned, StoreError> {
        retention::prune_with(&self.db, &self.write_lock, now, retention, between)
    }

    /// A consistent copy of the whole store (views, log, dedup index) in
    /// `dir`, which must not exist yet: hard links to the store's files
    /// where the file system allows, so it is cheap. What a new replica
    /// starts from.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db.rocks)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Flushes memtables to SST files (used before measuring disk use and
    /// after unsynced bulk work).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()
    }

    /// Makes the writer remember at most `n` instances and `n` deployment
    /// rows per generation: lets tests see rows forgotten and read again.
    #[doc(hidden)]
    pub fn set_writer_memory_for_tests(&self, n: usize) {
        let mut memory = self.lock_writer();
        memory.instances = RecentInstances::with_capacity(n);
        memory.deployments = RecentDeployments::with_capacity(n);
    }

    /// Overwrites the stored views version: lets tests play an older build.
    #[doc(hidden)]
    pub fn set_views_version_for_tests(&self, version: u32) -> Result<(), StoreError> {
        self.put_views_version(version)
    }
}
