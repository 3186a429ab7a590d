//! The cache of recent instances: what the single writer remembers from
//! one batch to the next.

use std::collections::HashMap;
use std::sync::Arc;

use audrey_core::domain::InstanceId;

use crate::instance_parts::StoredInstance;

/// How many decoded instances the writer keeps per generation: a few MiB,
/// enough for the instances of the deployments in flight at once.
pub(crate) const RECENT_INSTANCES: usize = 1024;

/// The instances the latest batches read or wrote, decoded, as committed
/// (`None`: known not to exist). Events of an instance come close together
/// (an agent contacts, starts, ends, provides), so most events find their
/// instance here instead of reading and decoding its row again. Bounded:
/// two generations of at most [`RECENT_INSTANCES`]; when the current one
/// is full it becomes the older one and the oldest is dropped, and a hit in
/// the older one moves back to the current one.
pub(crate) struct RecentInstances {
    current: HashMap<InstanceId, Committed>,
    older: HashMap<InstanceId, Committed>,
    /// The most instances one generation holds.
    pub(crate) capacity: usize,
}

impl Default for RecentInstances {
    fn default() -> Self {
        Self::with_capacity(RECENT_INSTANCES)
    }
}

/// An instance as committed (`None`: not stored), with its stable part's
/// bytes, shared between the writer's memory and the batch reading it,
/// never changed in place.
pub(crate) type Committed = Option<Arc<StoredInstance>>;

impl RecentInstances {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            older: HashMap::new(),
            capacity,
        }
    }

    pub(crate) fn get(&mut self, id: InstanceId) -> Option<Committed> {
        if let Some(state) = self.current.get(&id) {
            return Some(state.clone());
        }
        let state = self.older.remove(&id)?;
        self.insert(id, state.clone());
        Some(state)
    }

    /// Forgets an instance: a batch took it to change (it comes back
    /// with the batch's outcome).
    pub(crate) fn remove(&mut self, id: InstanceId) {
        self.current.remove(&id);
        self.older.remove(&id);
    }

    pub(crate) fn insert(&mut self, id: InstanceId, state: Committed) {
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
