//! Counts by status: a deployment's tally of its instances, and the global
//! counts behind the metrics.

use serde::{Deserialize, Serialize};

use crate::domain::Status;

/// How many of something are in each status.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct StatusCounts {
    pub success: i64,
    pub incomplete: i64,
    pub error: i64,
}

impl StatusCounts {
    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Success => self.success,
            Status::Incomplete => self.incomplete,
            Status::Error => self.error,
        }
    }

    pub fn add(&mut self, status: Status, n: i64) {
        match status {
            Status::Success => self.success += n,
            Status::Incomplete => self.incomplete += n,
            Status::Error => self.error += n,
        }
    }

    pub fn total(&self) -> i64 {
        self.success + self.incomplete + self.error
    }

    /// The worst status present; `None` when empty.
    pub fn worst(&self) -> Option<Status> {
        Status::ALL.into_iter().rev().find(|s| self.get(*s) > 0)
    }
}

/// What one instance adds to its deployment's aggregates. The deployment
/// keeps the sum over its instances, updated by "minus old, plus new" each
/// time an instance row changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Instances by status.
    pub instances: StatusCounts,
    /// Instances whose every service has ended.
    pub completed: i64,
    /// Instances whose config Conductor has posted.
    pub registered: i64,
    /// Instances listed by `deployment.registered` but not yet registered.
    pub expected_missing: i64,
    /// References from waiting services whose source is not yet provided,
    /// counted on the *source* instance's deployment.
    pub unresolved_dependencies: i64,
    /// Configured services by status.
    pub services: StatusCounts,
}

impl Tally {
    pub fn add(&mut self, other: &Tally, sign: i64) {
        for status in Status::ALL {
            self.instances
                .add(status, sign * other.instances.get(status));
            self.services.add(status, sign * other.services.get(status));
        }
        self.completed += sign * other.completed;
        self.registered += sign * other.registered;
        self.expected_missing += sign * other.expected_missing;
        self.unresolved_dependencies += sign * other.unresolved_dependencies;
    }
}

/// The global counts behind the metrics, kept in the same write batch as
/// the views so a scrape never scans.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    pub deployments: StatusCounts,
    pub instances: StatusCounts,
    pub services: StatusCounts,
    pub unresolved_dependencies: i64,
}
