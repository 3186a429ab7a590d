//! Rendered reports, kept while they stay what a fresh computation would
//! give: a report asked for again is a memory copy, and an
//! `If-None-Match` that still matches is answered without reading the
//! store.
//!
//! # When an entry is still right
//!
//! A report is a function of the views and of the clock. The views only
//! change when a batch is written, and each written batch moves the
//! *epoch* (`Store::writes`, counted by the store after the write,
//! whichever path wrote: ingest, retention, import). An
//! entry remembers the epoch read *before* the snapshot it was computed
//! from, so it holds everything applied up to that epoch; it serves
//! while the epoch has not moved. A deployment report made from its own
//! rows alone (its row, its instances', its config servers': see the
//! parts below) serves after too, until the store says one of those rows
//! may have changed (`Store::deployment_changed_after`, [`Reach`]). Any
//! other entry is retired by the next batch; one whose report computes
//! to the same ETag again is then kept (its rendering is reused, not
//! redone).
//!
//! As for the clock, the durations still running (a deployment's,
//! an instance's, a service's) are left out of the kept bytes and put in
//! when answering ([`Rendered::running`]). Apart from them, instance and
//! service reports read the same whatever the time; a deployment's is
//! kept until a known instant ([`Validity::of_deployment`]): until it
//! would be said stalled, its blocker's "14 min ago" or comparison with
//! its peers would change, or one of its config servers would be said
//! down (its heartbeat deadline) or forgotten. Byte for byte, a kept report is what the uncached path renders at the
//! same epoch and time, watermark and durations included (the `as-of` is
//! not part of the entry: it is put in when answering, from the latest
//! epoch's).
//!
//! # A deployment report's parts
//!
//! Most of a deployment report's cost is reading and decoding its
//! instances, and a rendered report is retired by any batch that touches
//! the views and whenever its clock-dependent text changes (its stalled
//! flag, its blocker's "ago"). What its rows give is kept apart:
//! the report's parts ([`DeploymentReportParts`]), from which the report
//! of the moment is made and rendered without reading the store, byte for
//! byte what the uncached path gives then. Parts computed from the
//! deployment's own rows alone (its row, its instances', its config
//! servers') stay right across batches until the store says one of those
//! rows may have changed (`Store::deployment_changed_after`): while events
//! for other deployments flow in, they stay. Parts that read rows of
//! other deployments' instances serve only their epoch.
//!
//! # Memory
//!
//! At most [`DEFAULT_BUDGET_BYTES`] of rendered reports (bodies, ETags,
//! keys, and a fixed overhead each) and [`DEFAULT_PARTS_BUDGET_BYTES`] of
//! parts, each in shards of two generations: new entries go
//! into the current generation, and when it is full the previous one is
//! dropped and the current one becomes the previous. A hit in the
//! previous generation moves the entry forward, so what is asked for
//! often stays.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use audrey_core::domain::ConfigServerStatus;
use audrey_core::projection::seconds_between;
use audrey_core::query::{
    ago_reads_the_same_for, BlockedOn, DeploymentReport, DeploymentReportParts, ReportContext,
    Seconds,
};
use audrey_core::{DeploymentId, InstanceId, Name, Status, Timestamp};

use crate::routes::Format;

/// Bytes of rendered reports kept at most (with their bookkeeping). The
/// service peaked at 189 MiB without the cache in the query benchmark
/// (10,000 deployments, 6,000 events/s applied meanwhile) against a
/// 200 MiB goal; a 20 MiB budget peaked at 226 MiB (bodies counted by
/// length then, not capacity), 8 MiB at 201 MiB: 4 MiB.
pub const DEFAULT_BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of deployment reports' parts kept at most (with their
/// bookkeeping): about 1.5 KiB for a deployment of ten instances. A
/// generation holds half the budget, and entries asked for after it was
/// filled are dropped with the older one: the budget is twice what the
/// query benchmark's 10,000 deployments take (~15 MiB), so that they
/// stay instead of being read again. Memory holds each entry once,
/// whatever the budget: what they take, not the budget.
pub const DEFAULT_PARTS_BUDGET_BYTES: usize = 40 * 1024 * 1024;

/// Shards, each with its own lock: requests on different reports rarely
/// wait for each other.
const SHARDS: usize = 16;

/// Bookkeeping bytes counted per entry besides its body and ETag: the
/// hash table slot, the `Arc`, the key.
const ENTRY_OVERHEAD: usize = 160;

/// Which report, in which representation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Deployment(DeploymentId, Format),
    Instance(InstanceId, Format),
    Service(InstanceId, Name, Format),
}

impl Key {
    fn bytes(&self) -> usize {
        match self {
            Key::Service(_, name, _) => 24 + name.as_str().len(),
            _ => 24,
        }
    }
}

/// A report rendered without its watermark and without the durations
/// that run (the two things in it that move without a batch).
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub content_type: &'static str,
    /// The body, without the `as-of` watermark or running durations.
    pub body: Vec<u8>,
    /// Where the watermark goes in `body`, and whether it is the only
    /// member of a JSON object there (no comma after it).
    pub as_of_at: Option<(usize, bool)>,
    /// Where the value of each duration still running goes in `body`
    /// (after the watermark's place, in ascending order), and since when
    /// it runs: an unfinished deployment's report is then kept, and each
    /// answer gives its duration at the moment it is made.
    pub running: Vec<(usize, Timestamp)>,
    /// The weak ETag of the state shown.
    pub etag: String,
}

impl Rendered {
    /// The answer's body at `now`, with the watermark and the running
    /// durations put in: one copy.
    pub fn body_with(&self, format: Format, as_of: Option<Timestamp>, now: Timestamp) -> Vec<u8> {
        let as_of = as_of.zip(self.as_of_at);
        if as_of.is_none() && self.running.is_empty() {
            return self.body.clone();
        }
        let mut out = Vec::with_capacity(self.body.len() + 48 + 16 * self.running.len());
        let mut copied = 0;
        if let Some((as_of, (at, alone))) = as_of {
            let as_of = as_of.rfc3339();
            let as_of = as_of.as_str();
            out.extend_from_slice(&self.body[..at]);
            copied = at;
            match format {
                Format::Json => {
                    out.extend_from_slice(b"\"as_of\":\"");
                    out.extend_from_slice(as_of.as_bytes());
                    out.extend_from_slice(if alone { b"\"" } else { b"\"," });
                }
                Format::Xml => {
                    out.extend_from_slice(b" as-of=\"");
                    out.extend_from_slice(as_of.as_bytes());
                    out.push(b'"');
                }
            }
        }
        for &(at, since) in &self.running {
            debug_assert!(at >= copied, "running durations follow the watermark");
            out.extend_from_slice(&self.body[copied..at]);
            copied = at;
            let seconds = Seconds::between(since, now);
            match format {
                // As the report's serialisation writes it.
                Format::Json => {
                    serde_json::to_writer(&mut out, &seconds).expect("a number always serialises")
                }
                // As `Xml::seconds` writes it (digits need no escaping).
                Format::Xml => out.extend_from_slice(seconds.rounded().to_string().as_bytes()),
            }
        }
        out.extend_from_slice(&self.body[copied..]);
        out
    }

    /// What it holds in memory: the allocations' capacities.
    fn bytes(&self) -> usize {
        self.body.capacity()
            + self.etag.capacity()
            + self.running.capacity() * std::mem::size_of::<(usize, Timestamp)>()
    }
}

/// Until when a report reads the same, as far as the clock goes, apart
/// from its running durations ([`Rendered::running`]). An instance's or a
/// service's report has nothing else that moves with the clock: it is
/// [`Validity::Always`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The same until (not including) this instant.
    Until(Timestamp),
    /// The same whatever the time.
    Always,
}

impl Validity {
    /// Whether a report of this validity still reads the same at `now`.
    pub fn holds_at(self, now: Timestamp) -> bool {
        match self {
            Validity::Until(end) => now < end,
            Validity::Always => true,
        }
    }

    fn min(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::Always, v) | (v, Validity::Always) => v,
            (Validity::Until(a), Validity::Until(b)) => Validity::Until(a.min(b)),
        }
    }

    /// A deployment report, apart from its duration while it runs (put
    /// in when answering, see [`Rendered::running`]): until it would be
    /// said stalled (an incomplete one with no progress), its running
    /// blocker slower than its peers, or its blocker's explanation read
    /// differently ("14 min ago" becomes "15 min ago"), or one of its
    /// config servers would be said down (its heartbeat deadline passed)
    /// or be forgotten.
    pub fn of_deployment(
        parts: &DeploymentReportParts,
        r: &DeploymentReport,
        ctx: &ReportContext,
    ) -> Validity {
        let mut validity = match &r.blocked_on {
            Some(blocker) => Validity::of_blocker(blocker, ctx.now),
            None => Validity::Always,
        };
        if r.status == Status::Incomplete && !r.stalled {
            if let Some(progress) = r.last_progress {
                // Stalled once `progress < now - after` (is_stalled).
                let stalled = progress.plus_seconds(ctx.stall_after_seconds - 0.001);
                validity = validity.min(Validity::Until(stalled));
            }
        }
        let slower_later = r
            .blocked_on
            .as_ref()
            .is_some_and(|b| b.slower_than_peers_seconds.is_none());
        if let Some(from) = parts.slower_than_peers_from().filter(|_| slower_later) {
            // Slower once its run so far passes the peers' longest.
            validity = validity.min(Validity::Until(from.plus_seconds(-0.001)));
        }
        for server in &r.config_servers {
            let Some(heard) = server.last_heartbeat else {
                continue; // unknown: only a heartbeat (a batch) changes it
            };
            // Forgotten once `heard < now - forget`: a millisecond early,
            // so rounding of the two sums never keeps it a moment late.
            let forgotten = heard.plus_seconds(ctx.forget_config_server_after_seconds - 0.001);
            validity = validity.min(Validity::Until(forgotten));
            if server.status == ConfigServerStatus::Running {
                // Running while `now <= deadline` (ConfigServer::is_running).
                let interval = f64::from(server.interval_seconds.unwrap_or(0));
                let deadline = heard.plus_seconds(interval * ctx.heartbeat_tolerance);
                validity = validity.min(Validity::Until(deadline));
            }
        }
        validity
    }

    /// A blocker's explanation says how long ago what it names began and
    /// when the agent last made contact: it reads the same until one of
    /// those spans, as people say them, changes.
    fn of_blocker(b: &BlockedOn, now: Timestamp) -> Validity {
        [b.since, b.last_contacted]
            .into_iter()
            .flatten()
            .map(|t| Validity::of_ago(t, now))
            .fold(Validity::Always, Validity::min)
    }

    /// Until when "… ago" of `t` (`just now`, `42 s ago`, `14 min ago`,
    /// `3 h ago`, `2 d ago`) reads as it does at `now`: a millisecond
    /// before it may change, so that rounding of the sums never keeps it
    /// a moment late.
    fn of_ago(t: Timestamp, now: Timestamp) -> Validity {
        let same = ago_reads_the_same_for(seconds_between(t, now));
        Validity::Until(now.plus_seconds(same - 0.001))
    }
}

/// How far a kept report stays right as batches are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// At the epoch it was made at only: a batch may have changed any of
    /// the rows it read.
    Epoch,
    /// Also after, while the store says none of its deployment's rows
    /// changed: a deployment report made from its own rows alone.
    ItsRows,
}

impl Reach {
    /// How far a deployment report made from `parts` reaches.
    pub fn of(parts: &DeploymentReportParts) -> Reach {
        if parts.read_only_its_own_rows() {
            Reach::ItsRows
        } else {
            Reach::Epoch
        }
    }
}

/// One kept report.
struct Entry {
    rendered: Arc<Rendered>,
    /// The epoch it is right for.
    epoch: u64,
    /// And after it, while its deployment's rows stay the same.
    reach: Reach,
    validity: Validity,
}

impl Weighed<Key> for Entry {
    fn bytes(&self, key: &Key) -> usize {
        self.rendered.bytes() + key.bytes() + ENTRY_OVERHEAD
    }
}

/// The parts of one deployment's report kept ([`ReportCache::parts`]).
struct PartsEntry {
    parts: Arc<DeploymentReportParts>,
    /// The epoch they are right for.
    epoch: u64,
}

impl Weighed<DeploymentId> for PartsEntry {
    fn bytes(&self, _: &DeploymentId) -> usize {
        self.parts.bytes() + 16 + ENTRY_OVERHEAD
    }
}

/// What a look-up found.
pub enum Lookup {
    /// Still right: answer with it.
    Hit(Arc<Rendered>),
    /// Kept for an older epoch: if the report computes to the same ETag
    /// now and the validity still holds, its rendering can be reused.
    Stale(Arc<Rendered>, Validity),
    Miss,
}

/// What an entry holds in memory, its key included.
trait Weighed<K> {
    fn bytes(&self, key: &K) -> usize;
}

struct Shard<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    current_bytes: usize,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            current_bytes: 0,
        }
    }
}

/// Entries of at most a budget of bytes, in shards of two generations
/// (see the module documentation).
struct Generations<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    /// Bytes per generation of one shard.
    generation_bytes: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Eq + std::hash::Hash + Clone, V: Weighed<K>> Generations<K, V> {
    fn with_budget(budget: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation_bytes: budget / SHARDS / 2,
            hasher: Default::default(),
        }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `judge` makes of the entry for `key`; an entry it makes
    /// nothing of (`None`) is left where it is. A hit in the previous
    /// generation moves the entry to the current one.
    fn get<R>(&self, key: &K, judge: impl FnOnce(&V) -> Option<R>) -> Option<R> {
        let mut shard = self.shard(key);
        let shard = &mut *shard;
        if let Some(entry) = shard.current.get(key) {
            return judge(entry);
        }
        let entry = shard.previous.remove(key)?;
        let found = judge(&entry)?;
        self.put_in(shard, key.clone(), entry);
        Some(found)
    }

    fn put(&self, key: K, entry: V) {
        let mut shard = self.shard(&key);
        shard.previous.remove(&key);
        self.put_in(&mut shard, key, entry);
    }

    fn put_in(&self, shard: &mut Shard<K, V>, key: K, entry: V) {
        let size = entry.bytes(&key);
        if size > self.generation_bytes {
            shard.current.remove(&key);
            return;
        }
        if shard.current_bytes + size > self.generation_bytes {
            shard.previous = std::mem::take(&mut shard.current);
            shard.current_bytes = 0;
        }
        if let Some(old) = shard.current.insert(key.clone(), entry) {
            shard.current_bytes -= old.bytes(&key);
        }
        shard.current_bytes += size;
    }

    /// Entries and bytes kept now.
    fn size(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), shard| {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let bytes: usize = shard
                .current
                .iter()
                .chain(shard.previous.iter())
                .map(|(k, e)| e.bytes(k))
                .sum();
            (n + shard.current.len() + shard.previous.len(), b + bytes)
        })
    }
}

/// The cache of rendered reports, and of the parts of deployment reports
/// (see the module documentation).
pub struct ReportCache {
    rendered: Generations<Key, Entry>,
    parts: Generations<DeploymentId, PartsEntry>,
    /// The watermark of the latest epoch seen: `(epoch, as-of)`.
    as_of: Mutex<(u64, Option<Timestamp>)>,
}

impl Default for ReportCache {
    fn default() -> Self {
        Self::with_budgets(DEFAULT_BUDGET_BYTES, DEFAULT_PARTS_BUDGET_BYTES)
    }
}

impl ReportCache {
    /// A cache of at most `budget` bytes of rendered reports and as much
    /// of deployment reports' parts (0: keeps nothing).
    pub fn with_budget(budget: usize) -> Self {
        Self::with_budgets(budget, budget)
    }

    /// A cache of at most `rendered` bytes of rendered reports and `parts`
    /// bytes of deployment reports' parts.
    pub fn with_budgets(rendered: usize, parts: usize) -> Self {
        Self {
            rendered: Generations::with_budget(rendered),
            parts: Generations::with_budget(parts),
            as_of: Mutex::new((u64::MAX, None)),
        }
    }

    /// The report kept for `key`, if it is right at `epoch` and `now`: kept
    /// at that epoch, or (made from its deployment's own rows alone) at an
    /// epoch after which `unchanged_after` says none of them changed.
    pub fn get(
        &self,
        key: &Key,
        epoch: u64,
        now: Timestamp,
        unchanged_after: impl FnOnce(u64) -> bool,
    ) -> Lookup {
        let judge = |entry: &Entry| {
            let right = entry.epoch == epoch
                || (entry.reach == Reach::ItsRows && unchanged_after(entry.epoch));
            match (right, entry.validity.holds_at(now)) {
                (true, true) => Some(Lookup::Hit(Arc::clone(&entry.rendered))),
                (false, true) => Some(Lookup::Stale(Arc::clone(&entry.rendered), entry.validity)),
                (_, false) => None,
            }
        };
        self.rendered.get(key, judge).unwrap_or(Lookup::Miss)
    }

    /// Keeps `rendered` for `key`, right at `epoch` (and as far as
    /// `reach` says) while `validity` holds.
    pub fn put(
        &self,
        key: Key,
        rendered: Arc<Rendered>,
        epoch: u64,
        validity: Validity,
        reach: Reach,
    ) {
        let entry = Entry {
            rendered,
            epoch,
            reach,
            validity,
        };
        self.rendered.put(key, entry);
    }

    /// The parts of deployment `id`'s report kept, if they are right at
    /// `epoch` (the clock does not change them): kept at that epoch, or
    /// computed from the deployment's own rows alone at an epoch after
    /// which `unchanged_after` says none of them changed.
    pub fn parts(
        &self,
        id: DeploymentId,
        epoch: u64,
        unchanged_after: impl FnOnce(u64) -> bool,
    ) -> Option<Arc<DeploymentReportParts>> {
        self.parts.get(&id, |entry| {
            let right = entry.epoch == epoch
                || (entry.parts.read_only_its_own_rows() && unchanged_after(entry.epoch));
            right.then(|| Arc::clone(&entry.parts))
        })
    }

    /// Keeps the parts of deployment `id`'s report, right at `epoch`.
    pub fn put_parts(&self, id: DeploymentId, parts: Arc<DeploymentReportParts>, epoch: u64) {
        self.parts.put(id, PartsEntry { parts, epoch });
    }

    /// The watermark at `epoch`: read with `read` once per epoch (after
    /// the epoch was read, so it is at least as fresh as the epoch).
    pub fn as_of<E>(
        &self,
        epoch: u64,
        read: impl FnOnce() -> Result<Option<Timestamp>, E>,
    ) -> Result<Option<Timestamp>, E> {
        {
            let known = self.as_of.lock().unwrap_or_else(|e| e.into_inner());
            if known.0 == epoch {
                return Ok(known.1);
            }
        }
        let as_of = read()?;
        let mut known = self.as_of.lock().unwrap_or_else(|e| e.into_inner());
        if known.0 == u64::MAX || known.0 < epoch || (known.0 == epoch && known.1 < as_of) {
            *known = (epoch, as_of);
        }
        Ok(as_of)
    }

    /// Entries and bytes kept now, rendered reports and parts together
    /// (tests, diagnostics).
    pub fn size(&self) -> (usize, usize) {
        let (n, b) = self.rendered.size();
        let (m, c) = self.parts.size();
        (n + m, b + c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(n: usize) -> Arc<Rendered> {
        Arc::new(Rendered {
            content_type: "application/json",
            body: vec![b'x'; n],
            as_of_at: None,
            running: Vec::new(),
            etag: "W/\"0\"".into(),
        })
    }

    fn key(i: u8) -> Key {
        Key::Instance(InstanceId::from_bytes([i; 16]), Format::Json)
    }

    #[test]
    fn a_running_duration_is_the_one_of_the_moment_of_the_answer() {
        let since = Timestamp::from_unix_seconds(1_700_000_000);
        let as_of = Some(since);
        // The watermark goes after `{`, or after the root's name.
        let kept = |body: &str, at: usize, format| {
            let as_of_at = if format == Format::Json { 1 } else { 2 };
            let body = body.as_bytes().to_vec();
            let rendered = Rendered {
                content_type: "",
                as_of_at: Some((as_of_at, false)),
                body,
                running: vec![(at, since)],
                etag: String::new(),
            };
            let answer = |now| String::from_utf8(rendered.body_with(format, as_of, now)).unwrap();
            (
                answer(since.plus_seconds(12.5)),
                answer(since.plus_seconds(3600.0)),
            )
        };
        let json = r#"{"status":"incomplete","duration_seconds":,"instances":[]}"#;
        let (early, late) = kept(json, json.find(":,").unwrap() + 1, Format::Json);
        let start = r#"{"as_of":"2023-11-14T22:13:20Z","status":"incomplete","duration_seconds":"#;
        assert_eq!(early, format!(r#"{start}12.5,"instances":[]}}"#));
        assert_eq!(late, format!(r#"{start}3600.0,"instances":[]}}"#));
        let xml = "<d><duration-seconds></duration-seconds></d>";
        let (early, late) = kept(xml, xml.find("></").unwrap() + 1, Format::Xml);
        let start = r#"<d as-of="2023-11-14T22:13:20Z"><duration-seconds>"#;
        assert_eq!(early, format!("{start}12.5</duration-seconds></d>"));
        assert_eq!(late, format!("{start}3600</duration-seconds></d>"));
    }

    #[test]
    fn an_entry_serves_only_its_epoch_and_its_time() {
        let cache = ReportCache::with_budget(1 << 20);
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        cache.put(key(1), rendered(10), 7, Validity::Always, Reach::Epoch);
        assert!(matches!(
            cache.get(&key(1), 7, now, |_| false),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.get(&key(1), 8, now, |_| false),
            Lookup::Stale(_, Validity::Always)
        ));
        assert!(matches!(
            cache.get(&key(2), 7, now, |_| false),
            Lookup::Miss
        ));

        let until = now.plus_seconds(1.0);
        // Made from a deployment's own rows: right after its epoch while
        // they stay the same.
        cache.put(key(5), rendered(10), 7, Validity::Always, Reach::ItsRows);
        assert!(matches!(
            cache.get(&key(5), 9, now, |kept| kept == 7),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.get(&key(5), 9, now, |_| false),
            Lookup::Stale(..)
        ));
        assert!(matches!(
            cache.get(&key(1), 9, now, |_| true),
            Lookup::Stale(..)
        ));

        cache.put(
            key(3),
            rendered(10),
            7,
            Validity::Until(until),
            Reach::Epoch,
        );
        assert!(matches!(
            cache.get(&key(3), 7, now, |_| false),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.get(&key(3), 7, until, |_| false),
            Lookup::Miss
        ));
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_what_is_asked_for() {
        let budget = 64 * 1024;
        let cache = ReportCache::with_budget(budget);
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        for i in 0..=255u8 {
            cache.put(key(i), rendered(1000), 1, Validity::Always, Reach::Epoch);
            // The first report is asked for all along: it stays.
            assert!(
                matches!(cache.get(&key(0), 1, now, |_| false), Lookup::Hit(_)),
                "{i}"
            );
            assert!(cache.size().1 <= budget);
        }
        let (entries, bytes) = cache.size();
        assert!(entries > 10 && bytes > budget / 3, "{entries} {bytes}");
        // Larger than a generation of a shard: not kept.
        cache.put(key(9), rendered(budget), 1, Validity::Always, Reach::Epoch);
        assert!(matches!(
            cache.get(&key(9), 1, now, |_| false),
            Lookup::Miss
        ));
    }

    #[test]
    fn the_watermark_is_read_once_per_epoch() {
        let cache = ReportCache::default();
        let t = |s| Some(Timestamp::from_unix_seconds(s));
        let mut reads = 0;
        let mut read = |v| {
            reads += 1;
            Ok::<_, ()>(v)
        };
        assert_eq!(cache.as_of(1, || read(t(10))), Ok(t(10)));
        assert_eq!(cache.as_of(1, || read(t(99))), Ok(t(10)));
        assert_eq!(cache.as_of(2, || read(t(20))), Ok(t(20)));
        assert_eq!(reads, 2);
        // An older epoch's reader does not overwrite a newer one.
        assert_eq!(cache.as_of(1, || Ok::<_, ()>(t(15))), Ok(t(15)));
        assert_eq!(cache.as_of(2, || Ok::<_, ()>(t(0))), Ok(t(20)));
    }
}
