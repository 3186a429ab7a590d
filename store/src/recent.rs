//! What the single writer remembers from one batch to the next: the
//! instances and deployments the latest batches read or wrote, decoded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use audrey_core::domain::{DeploymentId, InstanceId};
use audrey_core::rows::Deployment;

use crate::instance_parts::StoredInstance;

/// How many decoded instances the writer keeps per generation: a few MiB,
/// enough for the instances of the deployments in flight at once.
pub(crate) const RECENT_INSTANCES: usize = 1024;

/// How many decoded deployment rows the writer keeps per generation: a
/// batch of live events is spread over the deployments in flight, and each
/// of them was otherwise read and decoded again by every batch that
/// touched it (BENCHMARKS.md, seventeenth round).
pub(crate) const RECENT_DEPLOYMENTS: usize = 1024;

/// What the writer lock guards. Taken out while a batch runs and put back
/// with what the batch committed; a batch that fails leaves it empty, so
/// nothing it read is trusted again. Only batches of events write
/// instance and deployment rows (retention removes events, config servers
/// and dedup markers, never these), so what is remembered stays what is
/// stored.
#[derive(Default)]
pub(crate) struct WriterMemory {
    pub(crate) instances: RecentInstances,
    pub(crate) deployments: RecentDeployments,
}

impl WriterMemory {
    /// Nothing remembered, with the same bounds.
    pub(crate) fn emptied(&self) -> Self {
        Self {
            instances: RecentInstances::with_capacity(self.instances.capacity),
            deployments: RecentDeployments::with_capacity(self.deployments.capacity),
        }
    }
}

/// The instances the latest batches read or wrote, decoded, as committed
/// (`None`: known not to exist). Events of an instance come close together
/// (an agent contacts, starts, ends, provides), so most events find their
/// instance here instead of reading and decoding its row again.
pub(crate) type RecentInstances = Recent<InstanceId, Committed>;

/// The deployment rows the latest batches read or wrote, as committed
/// (`None`: not stored).
pub(crate) type RecentDeployments = Recent<DeploymentId, Option<Deployment>>;

/// Bounded: two generations of at most `capacity` entries; when the
/// current one is full it becomes the older one and the oldest is dropped,
/// and a hit in the older one moves back to the current one.
pub(crate) struct Recent<K, V> {
    current: HashMap<K, V>,
    older: HashMap<K, V>,
    /// The most entries one generation holds.
    pub(crate) capacity: usize,
}

impl Default for RecentInstances {
    fn default() -> Self {
        Self::with_capacity(RECENT_INSTANCES)
    }
}

impl Default for RecentDeployments {
    fn default() -> Self {
        Self::with_capacity(RECENT_DEPLOYMENTS)
    }
}

/// An instance as committed (`None`: not stored), with its stable part's
/// bytes, shared between the writer's memory and the batch reading it,
/// never changed in place.
pub(crate) type Committed = Option<Arc<StoredInstance>>;

impl<K: Hash + Eq + Copy, V: Clone> Recent<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            older: HashMap::new(),
            capacity,
        }
    }

    pub(crate) fn get(&mut self, id: K) -> Option<V> {
        if let Some(state) = self.current.get(&id) {
            return Some(state.clone());
        }
        let state = self.older.remove(&id)?;
        self.insert(id, state.clone());
        Some(state)
    }

    /// Moves an entry out: a batch holds it until it puts back what it
    /// committed.
    pub(crate) fn take(&mut self, id: K) -> Option<V> {
        let current = self.current.remove(&id);
        let older = self.older.remove(&id);
        current.or(older)
    }

    /// Forgets an entry: a batch took it to change (it comes back
    /// with the batch's outcome).
    pub(crate) fn remove(&mut self, id: K) {
        self.take(id);
    }

    pub(crate) fn insert(&mut self, id: K, state: V) {
        if self.current.len() >= self.capacity && !self.current.contains_key(&id) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(id, state);
    }
}

#[cfg(test)]
mod tests {
    use audrey_core::domain::DeploymentId;
    use audrey_core::rows::InstanceState;

    use super::*;
    use crate::instance_parts::StoredRow;

    fn state(n: u8) -> Committed {
        let id = InstanceId::from_bytes([n; 16]);
        let state = InstanceState::new(id, DeploymentId::from_bytes([0; 16]));
        let row = StoredRow {
            stable: vec![n],
            operands: 0,
        };
        Some(Arc::new(StoredInstance { state, row }))
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
}
