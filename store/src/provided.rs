//! What instances have provided, remembered across reports: an instance
//! report says, for each parameter that waits on another instance, whether
//! that instance has provided it, and reading the other instance's row
//! for it was a third of the report's time (BENCHMARKS.md, "Reports: what
//! a parameter's source costs").
//!
//! Within an instance's row, what its owner's claim has provided (its
//! parameters, its ended services) only grows. It can shrink only when
//! the row is deleted or another claim becomes the owner, and the writer
//! counts the writes that may do either (`Db::write`, as opposed to
//! `Db::write_keeping_provided`). So a fact seen in one snapshot holds in
//! another when no such write came between them and the other is not
//! older. Each reader carries [`SnapshotBounds`] to check both.

use std::collections::HashMap;
use std::sync::Mutex;

use audrey_core::contract::Awaited;
use audrey_core::domain::InstanceId;
use audrey_core::rows::Instance;

use crate::db::Db;

/// At most this many facts are kept (about 64 bytes each, 16 MiB in
/// all); past it, all are forgotten and learned again.
const MAX_FACTS: usize = 1 << 18;

/// The facts, shared by every reader of a store.
#[derive(Default)]
pub(crate) struct ProvidedMemory {
    facts: Mutex<Facts>,
}

#[derive(Default)]
struct Facts {
    /// The writes that may take what an instance provided, begun before
    /// (and done before) every fact here was seen: a reader for whom more
    /// have begun trusts none of them.
    may_shrink: u64,
    /// By instance: what it provided, and the sequence number from which
    /// that is known to hold.
    provided: HashMap<InstanceId, Vec<(Awaited, u64)>>,
    /// How many facts `provided` holds.
    count: usize,
}

/// Where a reader's snapshot lies among the writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SnapshotBounds {
    /// RocksDB's latest sequence number before the snapshot was taken: the
    /// snapshot holds every write up to it.
    floor: u64,
    /// The same, after: the snapshot holds no write past it.
    ceiling: u64,
    /// Writes that may take what an instance provided, done before the
    /// snapshot was taken.
    may_shrink_done_before: u64,
    /// The same, begun by the time the snapshot had been taken.
    may_shrink_begun_after: u64,
}

impl SnapshotBounds {
    /// Takes a snapshot with `take`, noting where it lies.
    pub(crate) fn around<S>(db: &Db, take: impl FnOnce() -> S) -> (S, SnapshotBounds) {
        let may_shrink_done_before = db.provided_may_shrink_done();
        let floor = db.rocks.latest_sequence_number();
        let snapshot = take();
        let ceiling = db.rocks.latest_sequence_number();
        let may_shrink_begun_after = db.provided_may_shrink_begun();
        let bounds = SnapshotBounds {
            floor,
            ceiling,
            may_shrink_done_before,
            may_shrink_begun_after,
        };
        (snapshot, bounds)
    }
}

impl ProvidedMemory {
    /// Whether `source` is known to have provided `awaited` in the
    /// snapshot of `bounds`: seen so in a snapshot no newer than it, with
    /// no write between the two that could have taken it back.
    pub(crate) fn remembers(
        &self,
        bounds: &SnapshotBounds,
        source: InstanceId,
        awaited: &Awaited,
    ) -> bool {
        let facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        facts.may_shrink == bounds.may_shrink_begun_after
            && facts.provided.get(&source).is_some_and(|known| {
                known
                    .iter()
                    .any(|(what, since)| what == awaited && *since <= bounds.floor)
            })
    }

    /// Notes what `row` (read in the snapshot of `bounds`) has provided of
    /// what other instances wait on it for: nothing else is ever asked.
    pub(crate) fn learn(&self, bounds: &SnapshotBounds, row: &Instance) {
        let mut seen = row
            .dependents
            .keys()
            .filter(|awaited| row.has_provided(awaited))
            .peekable();
        if seen.peek().is_none() {
            return;
        }
        // A write that may take facts back was under way as the snapshot
        // was taken: whether the snapshot holds it is not known.
        if bounds.may_shrink_done_before != bounds.may_shrink_begun_after {
            return;
        }
        let mut facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        if bounds.may_shrink_begun_after != facts.may_shrink {
            if bounds.may_shrink_begun_after < facts.may_shrink {
                return; // an older snapshot than the facts kept
            }
            facts.provided.clear();
            facts.count = 0;
            facts.may_shrink = bounds.may_shrink_begun_after;
        }
        let known = facts.provided.get(&row.uuid);
        let already = |what: &Awaited| known.is_some_and(|k| k.iter().any(|(w, _)| w == what));
        if seen.clone().all(already) {
            return; // known from this snapshot or an older one
        }
        let learned: Vec<(Awaited, u64)> = seen
            .cloned()
            .map(|what| {
                // Known from an older snapshot already: it holds from there.
                let since = known
                    .and_then(|k| k.iter().find(|(w, _)| *w == what))
                    .map_or(bounds.ceiling, |(_, since)| (*since).min(bounds.ceiling));
                (what, since)
            })
            .collect();
        let count = facts.count - known.map_or(0, Vec::len) + learned.len();
        if count > MAX_FACTS {
            facts.provided.clear();
            facts.count = learned.len();
        } else {
            facts.count = count;
        }
        facts.provided.insert(row.uuid, learned);
    }
}

#[cfg(test)]
mod tests {
    use audrey_core::domain::{DeploymentId, Name, Timestamp};

    use super::*;

    fn bounds(floor: u64, ceiling: u64, done: u64, begun: u64) -> SnapshotBounds {
        SnapshotBounds {
            floor,
            ceiling,
            may_shrink_done_before: done,
            may_shrink_begun_after: begun,
        }
    }

    fn mysql() -> Instance {
        let mut row = Instance::new(
            InstanceId::from_bytes([2; 16]),
            DeploymentId::from_bytes([1; 16]),
        );
        row.provided.insert(
            Name::parse("ipaddress").unwrap(),
            Timestamp::from_unix_seconds(1),
        );
        row.dependents.insert(ipaddress(), 1);
        row
    }

    fn ipaddress() -> Awaited {
        Awaited::Parameter(Name::parse("ipaddress").unwrap())
    }

    /// A fact holds for snapshots no older than the one it was seen in,
    /// until a write that may take it back begins; what was not provided
    /// is never remembered.
    #[test]
    fn a_fact_holds_from_its_snapshot_until_a_write_may_take_it_back() {
        let memory = ProvidedMemory::default();
        let row = mysql();
        memory.learn(&bounds(10, 12, 0, 0), &row);
        assert!(memory.remembers(&bounds(12, 12, 0, 0), row.uuid, &ipaddress()));
        assert!(memory.remembers(&bounds(40, 41, 0, 0), row.uuid, &ipaddress()));
        assert!(
            !memory.remembers(&bounds(11, 12, 0, 0), row.uuid, &ipaddress()),
            "a snapshot that may be older than the one it was seen in"
        );
        let hostname = Awaited::Parameter(Name::parse("hostname").unwrap());
        assert!(!memory.remembers(&bounds(40, 41, 0, 0), row.uuid, &hostname));
        assert!(
            !memory.remembers(&bounds(40, 41, 0, 1), row.uuid, &ipaddress()),
            "a write that may take it back has begun"
        );
        // Seen again after that write: trusted again, from then.
        memory.learn(&bounds(50, 50, 1, 1), &row);
        assert!(memory.remembers(&bounds(50, 50, 1, 1), row.uuid, &ipaddress()));
        assert!(!memory.remembers(&bounds(45, 50, 1, 1), row.uuid, &ipaddress()));
    }

    /// Nothing is learned from a snapshot taken while a write that may take
    /// facts back was under way, nor from one older than the facts kept.
    #[test]
    fn nothing_is_learned_across_a_write_in_flight_or_from_an_older_snapshot() {
        let memory = ProvidedMemory::default();
        let row = mysql();
        memory.learn(&bounds(10, 10, 0, 1), &row);
        assert!(!memory.remembers(&bounds(20, 20, 1, 1), row.uuid, &ipaddress()));
        memory.learn(&bounds(30, 30, 2, 2), &row);
        memory.learn(&bounds(25, 25, 1, 1), &row);
        assert!(memory.remembers(&bounds(30, 30, 2, 2), row.uuid, &ipaddress()));
        assert!(!memory.remembers(&bounds(30, 30, 1, 1), row.uuid, &ipaddress()));
    }
}
