//! The deployment row.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::counts::{Counts, Tally};
use super::stamp::Stamp;
use crate::domain::{DeploymentId, Name, Source, Status, Timestamp};

/// The latest `deployment.registered` of a deployment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeploymentRegistration {
    pub stamp: Stamp,
    /// How many instances it listed (the expected set itself is kept as a
    /// flag on each instance row, so this row stays small).
    pub expected: u32,
}

/// The most config servers a deployment row names: a deployment is
/// handled by one or two; beyond this, the row only says there are more.
pub const MAX_SOURCES: usize = 16;

/// One deployment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Deployment {
    pub uuid: DeploymentId,
    /// The name, from the latest registration that named it.
    pub name: Option<(Stamp, Name)>,
    pub registration: Option<DeploymentRegistration>,
    /// Set once `deployment.deleted` arrived: the row stays as a tombstone
    /// so that late events of a deleted deployment cannot resurrect it.
    pub deleted: Option<Timestamp>,
    /// The latest event time of any event of this deployment.
    pub last_progress: Option<Timestamp>,
    /// The earliest event time of any event of this deployment: its age,
    /// and where its durations start.
    pub first_event: Option<Timestamp>,
    /// The config servers that reported on this deployment: the first
    /// [`MAX_SOURCES`] by name (so the set does not depend on the order
    /// they were heard in).
    pub sources: BTreeSet<Source>,
    /// Set when more config servers than [`MAX_SOURCES`] reported.
    pub more_sources: bool,
    /// Sum of the [`Instance::tally`] of its instances.
    pub tally: Tally,
}

impl Deployment {
    pub fn new(uuid: DeploymentId) -> Self {
        Self {
            uuid,
            name: None,
            registration: None,
            deleted: None,
            last_progress: None,
            first_event: None,
            sources: BTreeSet::new(),
            more_sources: false,
            tally: Tally::default(),
        }
    }

    /// Notes that `source` reported on this deployment, keeping the set
    /// bounded: a network peer inventing sources cannot grow the row.
    pub fn add_source(&mut self, source: &Source) {
        if self.sources.contains(source) {
            return;
        }
        self.sources.insert(source.clone());
        if self.sources.len() > MAX_SOURCES {
            self.sources.pop_last();
            self.more_sources = true;
        }
    }

    /// Worst of its instances; incomplete while it has none.
    pub fn status(&self) -> Status {
        self.tally.instances.worst().unwrap_or(Status::Incomplete)
    }

    /// Registered once `deployment.registered` arrived and every expected
    /// instance is registered; without that event, once any instance is.
    pub fn is_registered(&self) -> bool {
        match &self.registration {
            Some(_) => self.tally.expected_missing == 0,
            None => self.tally.registered > 0,
        }
    }

    /// Completed once every instance has completed (and it has instances).
    pub fn is_completed(&self) -> bool {
        let total = self.tally.instances.total();
        total > 0 && self.tally.completed == total && self.tally.expected_missing == 0
    }

    /// Incomplete, and no event for longer than `stall_after` before `now`.
    pub fn is_stalled(&self, now: Timestamp, stall_after_seconds: f64) -> bool {
        self.deleted.is_none()
            && is_stalled(self.status(), self.last_progress, now, stall_after_seconds)
    }

    pub fn name(&self) -> Option<&Name> {
        self.name.as_ref().map(|(_, n)| n)
    }

    /// What this row adds to the global counts (tombstones add nothing).
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        if self.deleted.is_none() {
            counts.deployments.add(self.status(), 1);
        }
        counts
    }
}

/// Whether a deployment (not deleted) of `status` whose last progress was
/// at `last_progress` is stalled at `now`: incomplete, and no event for
/// longer than `stall_after_seconds`.
pub fn is_stalled(
    status: Status,
    last_progress: Option<Timestamp>,
    now: Timestamp,
    stall_after_seconds: f64,
) -> bool {
    status == Status::Incomplete
        && last_progress.is_some_and(|t| t < now.plus_seconds(-stall_after_seconds))
}
