//! The RocksDB shell around the projection.
//!
//! Column families:
//!
//! | family | key | value |
//! | --- | --- | --- |
//! | `deployments` | deployment uuid | [`Deployment`] |
//! | `instances` | instance uuid | the [`Instance`] row, then its services by name (an [`InstanceState`]) |
//! | `services` | (empty since views version 2) | kept so that older stores open and `rebuild` empties it |
//! | `members` | deployment uuid, instance uuid | (empty): the instances of a deployment |
//! | `deployment_status` | status byte, deployment uuid | last progress (i64 ns, BE): lists by status, stalled |
//! | `config_servers` | source | [`ConfigServer`] |
//! | `events` | deployment uuid (zeros for heartbeats), time, tiebreak | the event, canonical JSON: the raw log `rebuild` and `export` read |
//! | `dedup` | source, 0, id | the event's log key |
//! | `meta` | `views_version`, `counts` | the views' version; the global [`Counts`] |
//!
//! [`Store::apply_batch`] folds a batch of events into one `WriteBatch`
//! (views, counts, log, dedup markers) and writes it with the WAL synced
//! before returning: a caller may acknowledge the events once it returns.
//! One writer at a time (a mutex), which remembers the instances of recent
//! batches decoded and hands RocksDB its writes in key order; readers take
//! a snapshot ([`Store::reader`]) so one report is consistent.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, Options,
    ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::domain::{DeploymentId, InstanceId, Status, Timestamp};
use crate::event::Event;
use crate::model::{stable_hash, ConfigServer, Counts, Deployment, Instance, InstanceState};
use crate::projection::{self, Effect, ViewRead, ViewWrite};
use crate::query::ListDeployments;

/// The memtables of all column families together.
const DB_WRITE_BUFFER_BYTES: usize = 48 << 20;
/// One column family's memtable.
const CF_WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The block cache shared by every column family.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// How many decoded instances the writer keeps per generation (see
/// [`RecentInstances`]): a few MiB, enough for the instances of the
/// deployments in flight at once.
const RECENT_INSTANCES: usize = 1024;

/// Bumped whenever the projection or the row encoding changes meaning:
/// views of another version must be rebuilt from the event log.
/// Version 2 keeps an instance's services inside its row.
pub const VIEWS_VERSION: u32 = 2;

pub(crate) const CF_DEPLOYMENTS: &str = "deployments";
const CF_INSTANCES: &str = "instances";
/// Held the service rows before views version 2: still opened (RocksDB
/// refuses to open a store without all its families) and emptied by a
/// rebuild.
const CF_SERVICES: &str = "services";
const CF_MEMBERS: &str = "members";
const CF_DEPLOYMENT_STATUS: &str = "deployment_status";
const CF_CONFIG_SERVERS: &str = "config_servers";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_DEDUP: &str = "dedup";
pub(crate) const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 9] = [
    CF_DEPLOYMENTS,
    CF_INSTANCES,
    CF_SERVICES,
    CF_MEMBERS,
    CF_DEPLOYMENT_STATUS,
    CF_CONFIG_SERVERS,
    CF_EVENTS,
    CF_DEDUP,
    CF_META,
];
/// The column families that hold views: a rebuild empties them.
pub(crate) const VIEW_FAMILIES: [&str; 6] = [
    CF_DEPLOYMENTS,
    CF_INSTANCES,
    CF_SERVICES,
    CF_MEMBERS,
    CF_DEPLOYMENT_STATUS,
    CF_CONFIG_SERVERS,
];
pub(crate) const KEY_VERSION: &[u8] = b"views_version";
pub(crate) const KEY_COUNTS: &[u8] = b"counts";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored row `{what}` is corrupt: {problem}")]
    Corrupt { what: String, problem: String },
    #[error(
        "the views in {path} are of version {found}, this build makes version {expected}: \
         run `audrey-reporting rebuild --data-dir {path}` to rebuild them from the event log"
    )]
    ViewsOutdated {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("{0}")]
    Invalid(String),
}

/// An event with its log encoding made beforehand: the consumer encodes
/// while the single writer applies the previous batch, so the writer does
/// not spend its time on JSON.
#[derive(Debug, Clone)]
pub struct Encoded {
    event: Event,
    /// [`Event::to_bytes`]: what the log stores.
    bytes: Vec<u8>,
}

impl Encoded {
    pub fn new(event: Event) -> Self {
        let bytes = event.to_bytes();
        Self { event, bytes }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// What [`Store::apply_batch`] takes: an event, encoded for the log now
/// ([`Event`]) or beforehand ([`Encoded`]).
pub trait Loggable {
    fn event(&self) -> &Event;
    fn log_bytes(&self) -> Cow<'_, [u8]>;
}

impl Loggable for Event {
    fn event(&self) -> &Event {
        self
    }
    fn log_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.to_bytes())
    }
}

impl Loggable for Encoded {
    fn event(&self) -> &Event {
        &self.event
    }
    fn log_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
}

/// What happened to each event of a batch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// New: logged and projected (see the effect).
    Applied(Effect),
    /// Seen before (same source and id): changed nothing.
    Duplicate,
}

/// The outcome of one synced batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub outcomes: Vec<EventOutcome>,
}

impl BatchOutcome {
    pub fn applied(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, EventOutcome::Applied(_)))
            .count()
    }

    pub fn duplicates(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, EventOutcome::Duplicate))
            .count()
    }
}

/// The embedded store: views, event log and dedup index.
pub struct Store {
    pub(crate) db: DB,
    path: PathBuf,
    /// One batch at a time: a batch reads rows, then writes them. The lock
    /// also guards what the writer remembers between batches.
    pub(crate) writer: Mutex<Writer>,
}

/// What the single writer keeps from one batch to the next.
#[derive(Default)]
pub(crate) struct Writer {
    recent: RecentInstances,
}

impl Writer {
    /// Forgets every remembered row: after the views were changed other
    /// than by a batch (a rebuild empties them).
    pub(crate) fn forget(&mut self) {
        self.recent = RecentInstances::with_capacity(self.recent.capacity);
    }
}

/// The instances the latest batches read or wrote, decoded, as committed
/// (`None`: known not to exist). Events of an instance come close together
/// (an agent contacts, starts, ends, provides), so most events find their
/// instance here instead of reading and decoding its row again. Bounded:
/// two generations of at most [`RECENT_INSTANCES`]; when the current one
/// is full it becomes the older one and the oldest is dropped, and a hit in
/// the older one moves back to the current one.
struct RecentInstances {
    current: HashMap<InstanceId, Committed>,
    older: HashMap<InstanceId, Committed>,
    /// The most instances one generation holds.
    capacity: usize,
}

impl Default for RecentInstances {
    fn default() -> Self {
        Self::with_capacity(RECENT_INSTANCES)
    }
}

/// An instance as committed (`None`: not stored), shared between the
/// writer's memory and the batch reading it, never changed in place.
type Committed = Option<Arc<InstanceState>>;

impl RecentInstances {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            older: HashMap::new(),
            capacity,
        }
    }

    fn get(&mut self, id: InstanceId) -> Option<Committed> {
        if let Some(state) = self.current.get(&id) {
            return Some(state.clone());
        }
        let state = self.older.remove(&id)?;
        self.insert(id, state.clone());
        Some(state)
    }

    fn insert(&mut self, id: InstanceId, state: Committed) {
        if self.current.len() >= self.capacity && !self.current.contains_key(&id) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(id, state);
    }
}

impl Store {
    /// Opens (creating if needed) the store in `path`. Refuses views of
    /// another version with [`StoreError::ViewsOutdated`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let store = Self::open_any_version(path)?;
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

    /// Opens without checking the views' version (for `rebuild` and `export`).
    pub fn open_any_version(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // All memtables together stay under this (RocksDB's default is
        // 64 MiB per column family, nine of them): bounded memory.
        options.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
        // One block cache for every family's data blocks, and bloom filters
        // so that point reads of rows that are not there skip the files.
        // The filters and indexes stay in memory beside the cache (about
        // 1.3 bytes per key): held in the cache, a data-heavy workload
        // evicted them and every dedup lookup read a whole filter block
        // back from the file (two thirds of the apply time at 1.4 M
        // events, BENCHMARKS.md).
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let families = COLUMN_FAMILIES.iter().map(|name| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            let mut cf = Options::default();
            // The raw log (JSON) compresses well; view rows are small
            // postcard and read on every report: they stay uncompressed.
            let compression = if [CF_EVENTS, CF_DEDUP].contains(name) {
                rocksdb::DBCompressionType::Lz4
            } else {
                rocksdb::DBCompressionType::None
            };
            cf.set_compression_type(compression);
            cf.set_block_based_table_factory(&table);
            cf.set_write_buffer_size(CF_WRITE_BUFFER_BYTES);
            // Most dedup lookups miss: a memtable bloom filter answers them
            // without walking the memtable.
            cf.set_memtable_whole_key_filtering(true);
            cf.set_memtable_prefix_bloom_ratio(0.05);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let fresh = !path.join("CURRENT").exists();
        let db = DB::open_cf_descriptors(&options, &path, families)?;
        let store = Store {
            db,
            path,
            writer: Mutex::new(Writer::default()),
        };
        if fresh {
            store.put_meta(KEY_VERSION, &VIEWS_VERSION)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the views on disk.
    pub fn views_version(&self) -> Result<u32, StoreError> {
        let raw = self.db.get_cf(self.cf(CF_META), KEY_VERSION)?;
        Ok(match raw {
            Some(bytes) => decode("views_version", &bytes)?,
            None => 0,
        })
    }

    pub(crate) fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), key, encode(value));
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is opened")
    }

    /// Applies a batch of events atomically and durably: dedup, log,
    /// projection, counts, all in one `WriteBatch`, WAL synced before
    /// returning.
    pub fn apply_batch(&self, events: &[impl Loggable]) -> Result<BatchOutcome, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_locked(&mut writer, events, true)
    }

    /// Applies events with the writer lock held. `record`: dedup, log and
    /// sync them (live events); without it, only the views are written and
    /// not synced (a rebuild replaying the log, flushed at its end).
    pub(crate) fn apply_locked(
        &self,
        writer: &mut Writer,
        events: &[impl Loggable],
        record: bool,
    ) -> Result<BatchOutcome, StoreError> {
        // Taken out while the batch runs: if it fails, the rows it read
        // are forgotten with it.
        let empty = RecentInstances::with_capacity(writer.recent.capacity);
        let mut pending = Pending::new(self, std::mem::replace(&mut writer.recent, empty));
        let mut outcomes = Vec::with_capacity(events.len());
        let mut writes = SortedWrites::default();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for logged in events {
            let event = logged.event();
            if !record {
                outcomes.push(EventOutcome::Applied(projection::apply(
                    &mut pending,
                    event,
                )?));
                continue;
            }
            let dedup_key = dedup_key(&event.source, &event.id);
            let duplicate = !seen.insert((&event.source, &event.id))
                || self
                    .db
                    .get_pinned_cf(self.cf(CF_DEDUP), &dedup_key)?
                    .is_some();
            if duplicate {
                outcomes.push(EventOutcome::Duplicate);
                continue;
            }
            let effect = projection::apply(&mut pending, event)?;
            let log_key = log_key(event);
            writes.put(CF_EVENTS, log_key.clone(), logged.log_bytes());
            writes.put(CF_DEDUP, dedup_key, log_key);
            outcomes.push(EventOutcome::Applied(effect));
        }
        pending.write_into(&mut writes)?;
        let batch = writes.into_batch(self);
        let mut options = WriteOptions::default();
        options.set_sync(record);
        self.db.write_opt(batch, &options)?;
        writer.recent = pending.committed();
        Ok(BatchOutcome { outcomes })
    }

    /// A consistent, read-only view of the store at this moment.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            store: self,
            snapshot: self.db.snapshot(),
            scanners: Scanners::new(),
        }
    }

    /// How many events the log holds (an estimate from RocksDB, for progress).
    pub fn estimated_logged_events(&self) -> u64 {
        self.db
            .property_int_value_cf(self.cf(CF_EVENTS), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Flushes memtables to SST files (used before measuring disk use and
    /// after unsynced bulk work).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}

/// A snapshot of the store: implements [`ViewRead`] for the queries.
pub struct Reader<'s> {
    store: &'s Store,
    snapshot: SnapshotWithThreadMode<'s, DB>,
    scanners: Scanners<'s>,
}

/// Sees one key and value of a scan; returns whether to go on.
type KeyValueVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

/// Raw key-value access, from the live DB (for the single writer) or from
/// a snapshot (for readers).
trait Raw {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits keys starting with `prefix`, in order, until `visit` says stop.
    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError>;
}

/// One raw iterator per column family, created on first use and re-seeked
/// after: creating a RocksDB iterator costs far more than a seek, and a
/// report or a batch scans the services of many instances.
struct Scanners<'s> {
    iterators: RefCell<HashMap<&'static str, DBRawIteratorWithThreadMode<'s, DB>>>,
}

impl<'s> Scanners<'s> {
    fn new() -> Self {
        Self {
            iterators: RefCell::new(HashMap::new()),
        }
    }

    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        create: impl FnOnce() -> DBRawIteratorWithThreadMode<'s, DB>,
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut iterators = self.iterators.borrow_mut();
        let iterator = iterators.entry(cf).or_insert_with(create);
        iterator.seek(prefix);
        while iterator.valid() {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            if !key.starts_with(prefix) || !visit(key, value)? {
                break;
            }
            iterator.next();
        }
        iterator.status()?;
        Ok(())
    }
}

impl Raw for Reader<'_> {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshot.get_cf(self.store.cf(cf), key)?)
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
            self.store
                .db
                .raw_iterator_cf_opt(self.store.cf(cf), options)
        };
        self.scanners.scan(cf, prefix, create, visit)
    }
}

impl Raw for Pending<'_> {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.store.db.get_cf(self.store.cf(cf), key)?)
    }

    /// Scans the committed data: nothing else writes while a batch is
    /// pending (the writer lock), so iterators made early stay current.
    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        let create = || self.store.db.raw_iterator_cf(self.store.cf(cf));
        self.scanners.scan(cf, prefix, create, visit)
    }
}

fn get_row<T: DeserializeOwned>(
    raw: &impl Raw,
    cf: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    raw.get(cf, key)?
        .map(|bytes| decode(cf, &bytes))
        .transpose()
}

/// An instance and its services: one row, one read. The [`Instance`] is
/// encoded first so that [`read_instance_row`] can stop after it.
fn read_instance(raw: &impl Raw, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
    let Some(bytes) = raw.get(CF_INSTANCES, id.as_bytes())? else {
        return Ok(None);
    };
    decode_instance(&bytes).map(Some)
}

/// Only the instance fields of an instance row (a reference's source):
/// its services are not decoded.
fn read_instance_row(raw: &impl Raw, id: InstanceId) -> Result<Option<Instance>, StoreError> {
    let Some(bytes) = raw.get(CF_INSTANCES, id.as_bytes())? else {
        return Ok(None);
    };
    let (instance, _services) =
        postcard::take_from_bytes(&bytes).map_err(|e| corrupt(CF_INSTANCES, e))?;
    Ok(Some(instance))
}

fn encode_instance(state: &InstanceState) -> Vec<u8> {
    encode(&(&state.instance, &state.services))
}

fn decode_instance(bytes: &[u8]) -> Result<InstanceState, StoreError> {
    let (instance, services) = decode(CF_INSTANCES, bytes)?;
    Ok(InstanceState { instance, services })
}

fn read_members(raw: &impl Raw, id: DeploymentId) -> Result<Vec<InstanceId>, StoreError> {
    let mut members = Vec::new();
    raw.scan(CF_MEMBERS, id.as_bytes(), &mut |key, _| {
        members.push(instance_from_key(&key[16..])?);
        Ok(true)
    })?;
    Ok(members)
}

fn read_config_servers(raw: &impl Raw) -> Result<Vec<ConfigServer>, StoreError> {
    let mut rows = Vec::new();
    raw.scan(CF_CONFIG_SERVERS, b"", &mut |_, value| {
        rows.push(decode(CF_CONFIG_SERVERS, value)?);
        Ok(true)
    })?;
    Ok(rows)
}

fn read_counts(raw: &impl Raw) -> Result<Counts, StoreError> {
    Ok(get_row(raw, CF_META, KEY_COUNTS)?.unwrap_or_default())
}

/// Visits deployments with a status (or all, in uuid order), with their
/// last progress, without reading tombstones.
fn scan_deployments(
    raw: &impl Raw,
    status: Option<Status>,
    visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    match status {
        Some(status) => raw.scan(
            CF_DEPLOYMENT_STATUS,
            &[status_byte(status)],
            &mut |key, value| {
                let id = deployment_from_key(&key[1..])?;
                let progress = value
                    .try_into()
                    .ok()
                    .map(|b: [u8; 8]| i64::from_be_bytes(b))
                    .filter(|n| *n != i64::MIN)
                    .map(Timestamp::from_nanos);
                visit(id, progress)
            },
        ),
        None => raw.scan(CF_DEPLOYMENTS, b"", &mut |_, value| {
            let row: Deployment = decode(CF_DEPLOYMENTS, value)?;
            if row.deleted.is_some() {
                return Ok(true);
            }
            visit(row.uuid, row.last_progress)
        }),
    }
}

impl ViewRead for Reader<'_> {
    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        get_row(self, CF_DEPLOYMENTS, id.as_bytes())
    }
    fn instance_row(&self, id: InstanceId) -> Result<Option<Instance>, StoreError> {
        read_instance_row(self, id)
    }
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        read_instance(self, id)
    }
    /// One RocksDB `MultiGet`: it looks the keys up together, level by
    /// level, instead of one full lookup each (a deployment report).
    fn instances(&self, ids: &[InstanceId]) -> Result<Vec<InstanceState>, StoreError> {
        let mut options = ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        let sorted = ids.is_sorted();
        let keys = ids.iter().map(|id| id.as_bytes());
        let cf = self.store.cf(CF_INSTANCES);
        let mut states = Vec::with_capacity(ids.len());
        for found in self
            .store
            .db
            .batched_multi_get_cf_opt(cf, keys, sorted, &options)
        {
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
        get_row(self, CF_CONFIG_SERVERS, source.as_bytes())
    }
    fn config_servers(&self) -> Result<Vec<ConfigServer>, StoreError> {
        read_config_servers(self)
    }
    fn counts(&self) -> Result<Counts, StoreError> {
        read_counts(self)
    }
}

impl Reader<'_> {
    /// Whether a deployment is known and not deleted (one small read).
    pub fn deployment_exists(&self, id: DeploymentId) -> Result<bool, StoreError> {
        Ok(ViewRead::deployment(self, id)?.is_some_and(|d| d.deleted.is_none()))
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

/// The rows one batch has changed so far, over the committed store. Reads
/// see the batch's own writes; [`Pending::write_into`] turns them into puts
/// and deletes, each row once, with the indexes kept in step.
struct Pending<'s> {
    store: &'s Store,
    deployments: HashMap<DeploymentId, Deployment>,
    /// `None`: deleted in this batch.
    instances: HashMap<InstanceId, Option<InstanceState>>,
    config_servers: HashMap<String, ConfigServer>,
    counts: Option<Counts>,
    scanners: Scanners<'s>,
    /// Rows as committed before this batch, read once: later reads of the
    /// same row skip RocksDB, and writing compares with them so that only
    /// what changed is written.
    committed_deployments: RefCell<HashMap<DeploymentId, Option<Deployment>>>,
    committed_instances: RefCell<HashMap<InstanceId, Committed>>,
    /// Instances committed by earlier batches, decoded.
    recent: RefCell<RecentInstances>,
}

impl<'s> Pending<'s> {
    fn new(store: &'s Store, recent: RecentInstances) -> Self {
        Self {
            recent: RefCell::new(recent),
            store,
            scanners: Scanners::new(),
            deployments: HashMap::new(),
            instances: HashMap::new(),
            config_servers: HashMap::new(),
            counts: None,
            committed_deployments: RefCell::new(HashMap::new()),
            committed_instances: RefCell::new(HashMap::new()),
        }
    }

    fn committed_deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        if let Some(row) = self.committed_deployments.borrow().get(&id) {
            return Ok(row.clone());
        }
        let row: Option<Deployment> = get_row(self, CF_DEPLOYMENTS, id.as_bytes())?;
        self.committed_deployments
            .borrow_mut()
            .insert(id, row.clone());
        Ok(row)
    }

    fn committed_instance(&self, id: InstanceId) -> Result<Committed, StoreError> {
        if let Some(state) = self.committed_instances.borrow().get(&id) {
            return Ok(state.clone());
        }
        let remembered = self.recent.borrow_mut().get(id);
        let state = match remembered {
            Some(state) => state,
            None => read_instance(self, id)?.map(Arc::new),
        };
        self.committed_instances
            .borrow_mut()
            .insert(id, state.clone());
        Ok(state)
    }

    /// The instances as this batch leaves them, once it is written: what
    /// the next batch starts from.
    fn committed(self) -> RecentInstances {
        let mut recent = self.recent.into_inner();
        let mut written = self.instances;
        for (id, state) in self.committed_instances.into_inner() {
            let state = match written.remove(&id) {
                Some(written) => written.map(Arc::new),
                None => state,
            };
            recent.insert(id, state);
        }
        recent
    }

    fn write_into(&self, batch: &mut SortedWrites<'_>) -> Result<(), StoreError> {
        for (id, row) in &self.deployments {
            let before = self.committed_deployment(*id)?;
            if before.as_ref() == Some(row) {
                continue;
            }
            if let Some(before) = before.filter(|b| b.deleted.is_none()) {
                batch.delete(CF_DEPLOYMENT_STATUS, status_key(before.status(), *id));
            }
            if row.deleted.is_none() {
                let progress = row.last_progress.map_or(i64::MIN, Timestamp::nanos);
                batch.put(
                    CF_DEPLOYMENT_STATUS,
                    status_key(row.status(), *id),
                    progress.to_be_bytes().to_vec(),
                );
            }
            batch.put(CF_DEPLOYMENTS, id.as_bytes().to_vec(), encode(row));
        }
        for (id, state) in &self.instances {
            let before = self.committed_instance(*id)?;
            if before.as_deref() == state.as_ref() {
                continue;
            }
            let before_deployment = before.as_ref().map(|b| b.instance.deployment);
            let deployment = state.as_ref().map(|s| s.instance.deployment);
            if before_deployment != deployment {
                if let Some(before) = before_deployment {
                    batch.delete(CF_MEMBERS, member_key(before, *id));
                }
                if let Some(now) = deployment {
                    batch.put(CF_MEMBERS, member_key(now, *id), Vec::new());
                }
            }
            match state {
                Some(state) => {
                    batch.put(CF_INSTANCES, id.as_bytes().to_vec(), encode_instance(state))
                }
                None => batch.delete(CF_INSTANCES, id.as_bytes().to_vec()),
            }
        }
        for (source, row) in &self.config_servers {
            batch.put(CF_CONFIG_SERVERS, source.as_bytes().to_vec(), encode(row));
        }
        if let Some(counts) = &self.counts {
            batch.put(CF_META, KEY_COUNTS.to_vec(), encode(counts));
        }
        Ok(())
    }
}

impl ViewRead for Pending<'_> {
    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, StoreError> {
        match self.deployments.get(&id) {
            Some(row) => Ok(Some(row.clone())),
            None => self.committed_deployment(id),
        }
    }
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        match self.instances.get(&id) {
            Some(state) => Ok(state.clone()),
            None => Ok(self.committed_instance(id)?.as_deref().cloned()),
        }
    }
    fn instance_deployment(&self, id: InstanceId) -> Result<Option<DeploymentId>, StoreError> {
        Ok(match self.instances.get(&id) {
            Some(state) => state.as_ref().map(|s| s.instance.deployment),
            None => self.committed_instance(id)?.map(|s| s.instance.deployment),
        })
    }
    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, StoreError> {
        let mut members: std::collections::BTreeSet<InstanceId> =
            read_members(self, id)?.into_iter().collect();
        for (instance, state) in &self.instances {
            match state {
                Some(s) if s.instance.deployment == id => {
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
            None => get_row(self, CF_CONFIG_SERVERS, source.as_bytes()),
        }
    }
    fn config_servers(&self) -> Result<Vec<ConfigServer>, StoreError> {
        let mut rows: BTreeMap<String, ConfigServer> = read_config_servers(self)?
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
    fn put_instance(&mut self, state: InstanceState) -> Result<(), StoreError> {
        self.instances.insert(state.instance.uuid, Some(state));
        Ok(())
    }
    /// Hands over the batch's own copy when it has one; otherwise a clone,
    /// as [`ViewRead::instance`] gives (a deletion in this batch stays
    /// recorded).
    fn take_instance(&mut self, id: InstanceId) -> Result<Option<InstanceState>, StoreError> {
        if let Some(Some(_)) = self.instances.get(&id) {
            return Ok(self.instances.remove(&id).flatten());
        }
        self.instance(id)
    }
    fn delete_instance(&mut self, id: InstanceId) -> Result<(), StoreError> {
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

/// The writes of one batch, handed to RocksDB sorted by family and key.
/// Each memtable is a skip list that starts an insert from where its last
/// one went, so keys in order cost far less than keys in arrival order
/// (which, for a batch touching many instances, is random).
/// Values are borrowed where they can be (an event's log bytes encoded
/// beforehand), so they are copied once, into the `WriteBatch`.
#[derive(Default)]
struct SortedWrites<'v> {
    /// In the order made: a delete and a put of the same key keep their
    /// order.
    writes: Vec<Write<'v>>,
}

/// One write: family, key, and `Some(value)` to put or `None` to delete.
type Write<'v> = (&'static str, Vec<u8>, Option<Cow<'v, [u8]>>);

impl<'v> SortedWrites<'v> {
    fn put(&mut self, cf: &'static str, key: Vec<u8>, value: impl Into<Cow<'v, [u8]>>) {
        self.writes.push((cf, key, Some(value.into())));
    }

    fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.writes.push((cf, key, None));
    }

    fn into_batch(mut self, store: &Store) -> WriteBatch {
        // Stable: the order of writes to the same key is kept.
        self.writes
            .sort_by(|(a_cf, a_key, _), (b_cf, b_key, _)| (a_cf, a_key).cmp(&(b_cf, b_key)));
        let mut batch = WriteBatch::default();
        for (cf, key, value) in self.writes {
            match value {
                Some(value) => batch.put_cf(store.cf(cf), key, value),
                None => batch.delete_cf(store.cf(cf), key),
            }
        }
        batch
    }
}

/// Rows are stored in postcard: compact and fast, not self-describing
/// (a change of row layout bumps [`VIEWS_VERSION`] and needs a rebuild).
fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    postcard::to_stdvec(row).expect("view rows always serialise")
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(what, e))
}

fn corrupt(what: &str, problem: postcard::Error) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        problem: problem.to_string(),
    }
}

fn status_byte(status: Status) -> u8 {
    status.index() as u8
}

fn status_key(status: Status, id: DeploymentId) -> Vec<u8> {
    let mut key = vec![status_byte(status)];
    key.extend_from_slice(id.as_bytes());
    key
}

fn member_key(deployment: DeploymentId, instance: InstanceId) -> Vec<u8> {
    [deployment.as_bytes().as_slice(), instance.as_bytes()].concat()
}

pub(crate) fn dedup_key(source: &str, id: &str) -> Vec<u8> {
    [source.as_bytes(), &[0], id.as_bytes()].concat()
}

/// Orders the log by deployment, then event time: a deployment's history is
/// one range, and a rebuild replays each deployment's events together.
pub(crate) fn log_key(event: &Event) -> Vec<u8> {
    let deployment = event.deployment.map_or([0u8; 16], |d| *d.as_bytes());
    let time = (event.time.nanos() as u64) ^ (1 << 63);
    [
        deployment.as_slice(),
        &time.to_be_bytes(),
        &stable_hash(&event.source, &event.id).to_be_bytes(),
    ]
    .concat()
}

fn instance_from_key(bytes: &[u8]) -> Result<InstanceId, StoreError> {
    bytes
        .try_into()
        .map(InstanceId::from_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "instance key".into(),
            problem: format!("{} bytes", bytes.len()),
        })
}

fn deployment_from_key(bytes: &[u8]) -> Result<DeploymentId, StoreError> {
    bytes
        .try_into()
        .map(DeploymentId::from_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "deployment key".into(),
            problem: format!("{} bytes", bytes.len()),
        })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Makes the writer remember at most `n` instances per generation:
    /// lets tests see instances forgotten and read again.
    #[doc(hidden)]
    pub fn set_recent_instances_for_tests(&self, n: usize) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.recent = RecentInstances::with_capacity(n);
    }

    /// Overwrites the stored views version: lets tests play an older build.
    #[doc(hidden)]
    pub fn set_views_version_for_tests(&self, version: u32) -> Result<(), StoreError> {
        self.put_meta(KEY_VERSION, &version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: u8) -> Committed {
        let id = InstanceId::from_bytes([n; 16]);
        Some(Arc::new(InstanceState::new(
            id,
            DeploymentId::from_bytes([0; 16]),
        )))
    }

    #[test]
    fn recent_instances_stay_within_two_generations_and_keep_what_is_used() {
        let mut recent = RecentInstances::with_capacity(2);
        let id = |n: u8| InstanceId::from_bytes([n; 16]);
        recent.insert(id(1), state(1));
        recent.insert(id(2), state(2));
        recent.insert(id(3), state(3)); // 1 and 2 become the older generation
        assert_eq!(recent.get(id(1)), Some(state(1))); // promoted back
        recent.insert(id(4), state(4)); // current {3, 1} is full: it becomes the older one
        assert_eq!(recent.get(id(2)), None, "the oldest generation is dropped");
        for n in [1, 3, 4] {
            assert_eq!(recent.get(id(n)), Some(state(n)), "instance {n}");
        }
        assert!(recent.current.len() + recent.older.len() <= 4);
        recent.insert(id(5), None);
        assert_eq!(recent.get(id(5)), Some(None), "known not to exist");
    }

    #[test]
    fn writes_to_one_key_keep_their_order_when_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writes = SortedWrites::default();
        writes.put(CF_MEMBERS, b"b".to_vec(), b"1".to_vec());
        writes.delete(CF_MEMBERS, b"a".to_vec());
        writes.put(CF_MEMBERS, b"a".to_vec(), b"2".to_vec());
        writes.delete(CF_MEMBERS, b"b".to_vec());
        writes.put(CF_DEPLOYMENTS, b"a".to_vec(), b"3".to_vec());
        store.db.write(writes.into_batch(&store)).unwrap();
        let get = |cf, key: &[u8]| store.db.get_cf(store.cf(cf), key).unwrap();
        assert_eq!(get(CF_MEMBERS, b"a"), Some(b"2".to_vec()));
        assert_eq!(get(CF_MEMBERS, b"b"), None);
        assert_eq!(get(CF_DEPLOYMENTS, b"a"), Some(b"3".to_vec()));
    }
}
