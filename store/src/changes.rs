//! Which deployments each written batch may have changed, so that a reader
//! who kept what it computed from a deployment's rows (the API's
//! deployment reports' parts) knows whether it still holds after later
//! batches, without reading the store.
//!
//! Every write is numbered by the store's write count (`Db::writes`). A
//! deployment's *stamp* is the number of the latest write that changed
//! its row, the row of one of its instances (an instance changes the
//! deployments it claims, before and after), or the row of a config
//! server; a write that does not say what it changed (retention, import,
//! rebuild) stamps every deployment. What was computed from a snapshot
//! taken after reading the count `n` still holds while the deployment's
//! stamp is at most `n`.
//!
//! Stamps are kept in a fixed table, by a hash of the deployment's uuid:
//! deployments that share a slot share a stamp, which only makes a
//! reader compute again what had not changed. While a write is under way
//! the slots it changes hold [`IN_FLIGHT`], so a reader never trusts
//! what a write may have changed before that write is counted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use audrey_core::DeploymentId;

/// Slots of the table: 512 KiB, and for the 10,000 deployments of the
/// query benchmark, one deployment in about seven shares its slot.
const SLOTS: usize = 1 << 16;

/// The stamp of a slot while a write that changes it is under way.
const IN_FLIGHT: u64 = u64::MAX;

/// What one write changed, as far as the stamps go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Changed<'a> {
    /// Anything: every deployment is stamped.
    Everything,
    /// These deployments' rows or their instances' rows, and the config
    /// servers' rows when `config_servers`.
    Deployments {
        ids: &'a HashSet<DeploymentId>,
        config_servers: bool,
    },
}

/// The stamps (see the module documentation).
pub(crate) struct Stamps {
    /// By slot: the latest write that changed a deployment of the slot.
    slots: Box<[AtomicU64]>,
    /// The latest write that changed every deployment (or a config
    /// server, which any deployment may list).
    everything: AtomicU64,
}

impl Default for Stamps {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            everything: AtomicU64::new(0),
        }
    }
}

impl Stamps {
    fn slot(&self, id: DeploymentId) -> &AtomicU64 {
        // The uuids are random (v4): their low bytes are a hash already.
        let b = id.as_bytes();
        let i = usize::from(u16::from_le_bytes([b[14], b[15]])) % SLOTS;
        &self.slots[i]
    }

    /// Before a write that changes `changed`: its slots are in flight.
    /// The caller orders writes (one at a time).
    pub(crate) fn begin(&self, changed: Changed<'_>) {
        self.set(changed, IN_FLIGHT);
    }

    /// After the write numbered `write` (counted already).
    pub(crate) fn end(&self, changed: Changed<'_>, write: u64) {
        self.set(changed, write);
    }

    fn set(&self, changed: Changed<'_>, stamp: u64) {
        match changed {
            Changed::Everything => self.everything.store(stamp, Ordering::Release),
            Changed::Deployments {
                ids,
                config_servers,
            } => {
                if config_servers {
                    self.everything.store(stamp, Ordering::Release);
                }
                for id in ids {
                    self.slot(*id).store(stamp, Ordering::Release);
                }
            }
        }
    }

    /// Whether deployment `id` may have changed in a write numbered after
    /// `write`. Ask after reading the write count that the answer goes
    /// with: every write counted by then has its stamps set.
    pub(crate) fn changed_after(&self, id: DeploymentId, write: u64) -> bool {
        self.everything.load(Ordering::Acquire) > write
            || self.slot(id).load(Ordering::Acquire) > write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeploymentId {
        let mut b = [n; 16];
        b[15] = n;
        DeploymentId::from_bytes(b)
    }

    #[test]
    fn a_deployment_changes_when_a_write_names_it_or_everything() {
        let stamps = Stamps::default();
        let one: HashSet<_> = [id(1)].into();
        let changed = Changed::Deployments {
            ids: &one,
            config_servers: false,
        };
        stamps.begin(changed);
        // Under way: whatever was read before is not trusted.
        assert!(stamps.changed_after(id(1), 7));
        assert!(!stamps.changed_after(id(2), 7));
        stamps.end(changed, 8);
        assert!(stamps.changed_after(id(1), 7));
        assert!(!stamps.changed_after(id(1), 8));
        assert!(!stamps.changed_after(id(2), 0));

        // A config server's row: every deployment may list it.
        let servers = Changed::Deployments {
            ids: &one,
            config_servers: true,
        };
        stamps.begin(servers);
        stamps.end(servers, 9);
        assert!(stamps.changed_after(id(2), 8));
        assert!(!stamps.changed_after(id(2), 9));

        stamps.begin(Changed::Everything);
        stamps.end(Changed::Everything, 10);
        assert!(stamps.changed_after(id(3), 9));
        assert!(!stamps.changed_after(id(3), 10));
    }
}
