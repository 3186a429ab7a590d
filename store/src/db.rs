//! The RocksDB database: its column families, how each is tuned, and the
//! few raw operations every other module builds on.
//!
//! | family | key | value |
//! | --- | --- | --- |
//! | `deployments` | deployment uuid | the `Deployment` row |
//! | `instances` | instance uuid | an `InstanceState` as one row in two parts, its progress written apart as merge operands (`instance_parts`) |
//! | `services` | (empty since views version 2) | kept so that older stores open and `rebuild` empties it |
//! | `members` | deployment uuid, instance uuid | (empty): the instances of a deployment |
//! | `deployment_status` | status byte, deployment uuid | last progress (i64 ns, BE): lists by status, stalled |
//! | `config_servers` | source | the `ConfigServer` row |
//! | `events` | deployment uuid (zeros for heartbeats), time, tiebreak | the event, canonical JSON: the raw log `rebuild` and `export` read |
//! | `dedup` | source, 0, id | the event's log key |
//! | `meta` | `views_version`, `counts` | the views' version; the global `Counts` |
//!
//! Key layouts are in [`crate::keys`], value encodings in [`crate::codec`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    MergeOperands, Options, WriteBatch, WriteOptions, DB,
};

use audrey_core::DeploymentId;

use crate::changes::{Changed, Stamps};
use crate::error::StoreError;
use crate::instance_parts::merge_progress;

/// The memtables of all column families together.
const DB_WRITE_BUFFER_BYTES: usize = 48 << 20;
/// One column family's memtable.
const CF_WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The block cache shared by every column family: a few percent of the
/// query benchmark's 418 MiB of rows whether 24 or 32 MiB, and report
/// rates the same with either; 24 MiB leaves the kept reports' parts room
/// under the 200 MiB goal (BENCHMARKS.md, "Twelfth round").
const BLOCK_CACHE_BYTES: usize = 24 << 20;

pub(crate) const CF_DEPLOYMENTS: &str = "deployments";
pub(crate) const CF_INSTANCES: &str = "instances";
/// Held the service rows before views version 2: still opened (RocksDB
/// refuses to open a store without all its families) and emptied by a
/// rebuild.
pub(crate) const CF_SERVICES: &str = "services";
pub(crate) const CF_MEMBERS: &str = "members";
pub(crate) const CF_DEPLOYMENT_STATUS: &str = "deployment_status";
pub(crate) const CF_CONFIG_SERVERS: &str = "config_servers";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_DEDUP: &str = "dedup";
pub(crate) const CF_META: &str = "meta";
pub(crate) const COLUMN_FAMILIES: [&str; 9] = [
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
/// The column families read by key. The others are only iterated (the
/// log, the two indexes, the empty `services`): a bloom filter there, in
/// each file and each memtable, would be memory no read consults, and the
/// log's grows with every event (BENCHMARKS.md, "Twenty-second round").
const POINT_READ_FAMILIES: [&str; 5] = [
    CF_DEPLOYMENTS,
    CF_INSTANCES,
    CF_CONFIG_SERVERS,
    CF_DEDUP,
    CF_META,
];
/// The event log's data blocks (RocksDB's default is 4 KiB).
const EVENTS_BLOCK_BYTES: usize = 16 << 10;
/// The column families that hold views: a rebuild empties them.
pub(crate) const VIEW_FAMILIES: [&str; 6] = [
    CF_DEPLOYMENTS,
    CF_INSTANCES,
    CF_SERVICES,
    CF_MEMBERS,
    CF_DEPLOYMENT_STATUS,
    CF_CONFIG_SERVERS,
];

/// The database with every column family open.
pub(crate) struct Db {
    pub(crate) rocks: DB,
    /// Batches written since the store was opened: whoever caches what it
    /// read knows from this whether anything was written since, whichever
    /// path wrote (ingest, retention, import, rebuild).
    writes: AtomicU64,
    /// Writes begun and done that may have taken from an instance what it
    /// provided (deleted its row, or given it another owner): a reader
    /// trusts what it remembers of provided parameters only across
    /// snapshots between which none was written (`crate::provided`).
    /// Every write counts unless its maker knows otherwise.
    provided_may_shrink_begun: AtomicU64,
    provided_may_shrink_done: AtomicU64,
    /// Which deployments each write may have changed ([`crate::changes`]).
    stamps: Stamps,
    /// One write at a time between stamping its deployments in flight and
    /// stamping them with its number: the stamps need writes in order.
    /// (Batches of events take the writer lock anyway; retention's and
    /// import's writes are rare.)
    write_order: Mutex<()>,
}

impl Db {
    /// Opens (creating if asked) the database in `path`, tuned for this
    /// service: bounded memory, one shared block cache, bloom filters.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Db, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(create);
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
        // A HyperClockCache rather than the LRU cache: its lookups take
        // no lock. Most report reads miss the cache (a few percent of the
        // rows fit), so each read is a lookup and an insert that evicts;
        // the LRU cache's shards (their mutexes, lists and evictions) were
        // 3 – 5 % of a report's samples, and without them a deployment
        // report costs 10 % less CPU idle, 16 % less while events are
        // applied (BENCHMARKS.md, "Eighth round"). Entry charge 0: it
        // sizes its table from the blocks it holds.
        let cache = Cache::new_hyper_clock_cache(BLOCK_CACHE_BYTES, 0);
        let families = COLUMN_FAMILIES.iter().map(|name| {
            let point_read = POINT_READ_FAMILIES.contains(name);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            if point_read {
                table.set_bloom_filter(10.0, false);
            }
            if *name == CF_EVENTS {
                // Read only in order (a deployment's history, export,
                // rebuild): larger blocks make its index, kept in memory
                // beside the cache for every file, a quarter the size.
                table.set_block_size(EVENTS_BLOCK_BYTES);
            }
            let mut cf = Options::default();
            // The raw log (JSON) compresses well; view rows are small
            // postcard and read on every report: they stay uncompressed.
            let compression = if [CF_EVENTS, CF_DEDUP].contains(name) {
                DBCompressionType::Lz4
            } else {
                DBCompressionType::None
            };
            cf.set_compression_type(compression);
            cf.set_block_based_table_factory(&table);
            cf.set_write_buffer_size(CF_WRITE_BUFFER_BYTES);
            // Most dedup lookups miss: a memtable bloom filter answers them
            // without walking the memtable. (800 KiB per memtable: only
            // where keys are looked up.)
            if point_read {
                cf.set_memtable_whole_key_filtering(true);
                cf.set_memtable_prefix_bloom_ratio(0.05);
            }
            if *name == CF_INSTANCES {
                // A batch that changed only an instance's progress writes
                // only that, merged into the row when it is read (the
                // writer bounds the operands over a row:
                // `instance_parts::MAX_PROGRESS_OPERANDS`).
                cf.set_merge_operator(
                    "instance_progress",
                    |_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands| {
                        merge_progress(existing, operands.iter().last()?)
                    },
                    |_key: &[u8], _: Option<&[u8]>, operands: &MergeOperands| {
                        operands.iter().last().map(<[u8]>::to_vec)
                    },
                );
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let rocks = DB::open_cf_descriptors(&options, path, families)?;
        Ok(Db {
            rocks,
            writes: AtomicU64::new(0),
            provided_may_shrink_begun: AtomicU64::new(0),
            provided_may_shrink_done: AtomicU64::new(0),
            stamps: Stamps::default(),
            write_order: Mutex::new(()),
        })
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.rocks
            .cf_handle(name)
            .expect("every column family is opened")
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.rocks.get_cf(self.cf(cf), key)?)
    }

    /// Writes a batch with the WAL synced: durable once this returns.
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write(batch, true, Changed::Everything)
    }

    pub(crate) fn write(
        &self,
        batch: WriteBatch,
        sync: bool,
        changed: Changed<'_>,
    ) -> Result<(), StoreError> {
        self.provided_may_shrink_begun
            .fetch_add(1, Ordering::SeqCst);
        let written = self.write_keeping_provided(batch, sync, changed);
        self.provided_may_shrink_done.fetch_add(1, Ordering::SeqCst);
        written
    }

    /// [`Db::write`] of a batch that takes from no instance anything it
    /// provided: no instance row is deleted or changes owner in it.
    pub(crate) fn write_keeping_provided(
        &self,
        batch: WriteBatch,
        sync: bool,
        changed: Changed<'_>,
    ) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        let _in_order = self.write_order.lock().unwrap_or_else(|e| e.into_inner());
        self.stamps.begin(changed);
        let written = self.rocks.write_opt(batch, &options);
        // After the write: a reader that sees the new count sees the batch.
        // (Counted even when it failed: what it changed is not trusted.)
        let write = self.writes.fetch_add(1, Ordering::Release) + 1;
        self.stamps.end(changed, write);
        written?;
        Ok(())
    }

    /// Whether deployment `id` may have changed in a write after the
    /// `write`th ([`crate::changes`]). Ask after reading the write count.
    pub(crate) fn deployment_changed_after(&self, id: DeploymentId, write: u64) -> bool {
        self.stamps.changed_after(id, write)
    }

    /// Writes begun that may have taken what an instance provided.
    pub(crate) fn provided_may_shrink_begun(&self) -> u64 {
        self.provided_may_shrink_begun.load(Ordering::SeqCst)
    }

    /// Writes done that may have taken what an instance provided.
    pub(crate) fn provided_may_shrink_done(&self) -> u64 {
        self.provided_may_shrink_done.load(Ordering::SeqCst)
    }

    /// Batches written since the store was opened.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Flushes every memtable to SST files.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        for name in COLUMN_FAMILIES {
            self.rocks.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}
