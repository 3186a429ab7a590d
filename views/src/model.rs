//! The view rows. Each row holds the *facts* the events established, merged
//! so that the result does not depend on arrival order (latest by event
//! time, earliest first contact, union of provided parameters), plus a few
//! derived fields kept up to date by [`crate::projection`] so that an event
//! never has to read a whole deployment to recompute an aggregate.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use crate::event::{Awaited, Parameter};

/// Orders events that happened at the same time, deterministically: the
/// event time first, then a stable hash of (source, id). "Latest" always
/// means "greatest stamp", so ties do not depend on arrival order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub time: Timestamp,
    pub tiebreak: u64,
}

impl Stamp {
    pub fn new(time: Timestamp, source: &str, id: &str) -> Self {
        Self {
            time,
            tiebreak: stable_hash(source, id),
        }
    }
}

/// FNV-1a over `source \0 id`: stable across builds and platforms (unlike
/// std's hasher), since stamps are stored.
pub fn stable_hash(source: &str, id: &str) -> u64 {
    fnv1a(source.bytes().chain([0u8]).chain(id.bytes()))
}

/// 64-bit FNV-1a: small, stable, good enough for tiebreaks and ETags.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

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

/// The latest `deployment.registered` of a deployment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeploymentRegistration {
    pub stamp: Stamp,
    /// How many instances it listed (the expected set itself is kept as a
    /// flag on each instance row, so this row stays small).
    pub expected: u32,
}

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
    /// The config servers that reported on this deployment.
    pub sources: BTreeSet<String>,
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
            sources: BTreeSet::new(),
            tally: Tally::default(),
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
            && self.status() == Status::Incomplete
            && self
                .last_progress
                .is_some_and(|t| t < now.plus_seconds(-stall_after_seconds))
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

/// The latest instance-config of an instance.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InstanceRegistration {
    pub stamp: Stamp,
    pub assembly: Name,
    /// Parameters the agent must report back.
    pub provided_parameters: Vec<Name>,
    /// The configured services, in config order.
    pub services: Vec<Name>,
}

/// One instance (its services are [`Service`] rows of their own).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub uuid: InstanceId,
    pub deployment: DeploymentId,
    pub registration: Option<InstanceRegistration>,
    /// Listed by the deployment's latest `deployment.registered`.
    pub expected: bool,
    pub first_contacted: Option<Timestamp>,
    pub last_contacted: Option<Timestamp>,
    /// Provided parameters reported, with the earliest time each was.
    pub provided: BTreeMap<Name, Timestamp>,
    /// Services that have reported a return code at least once: any code
    /// resolves a service-reference to them.
    pub ended_services: BTreeSet<Name>,
    /// How many references in current configs point at each thing this
    /// instance provides. Kept here, on the source, so that providing a
    /// parameter resolves its waiters without reading them.
    pub dependents: BTreeMap<Awaited, u32>,
    /// Derived: worst of the configured services (see [`crate::projection`]).
    pub status: Status,
    /// Derived: when the instance completed, once it has.
    pub completed: Option<Timestamp>,
}

impl Instance {
    pub fn new(uuid: InstanceId, deployment: DeploymentId) -> Self {
        Self {
            uuid,
            deployment,
            registration: None,
            expected: false,
            first_contacted: None,
            last_contacted: None,
            provided: BTreeMap::new(),
            ended_services: BTreeSet::new(),
            dependents: BTreeMap::new(),
            status: Status::Incomplete,
            completed: None,
        }
    }

    /// Whether what a reference awaits from this instance is there.
    pub fn has_provided(&self, awaited: &Awaited) -> bool {
        match awaited {
            Awaited::Parameter(p) => self.provided.contains_key(p),
            Awaited::ServiceReturnCode(s) => self.ended_services.contains(s),
        }
    }

    /// Declared provided parameters not yet provided.
    pub fn pending_return_parameters(&self) -> Vec<&Name> {
        self.registration
            .iter()
            .flat_map(|r| r.provided_parameters.iter())
            .filter(|p| !self.provided.contains_key(*p))
            .collect()
    }

    /// References waiting on this instance that are still unresolved.
    pub fn unresolved_dependents(&self) -> i64 {
        self.dependents
            .iter()
            .filter(|(awaited, _)| !self.has_provided(awaited))
            .map(|(_, n)| i64::from(*n))
            .sum()
    }
}

/// One service of one instance.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Service {
    pub instance: InstanceId,
    pub name: Name,
    /// The parameters, while the service is in the instance's current
    /// config; `None` for a service known only from its runs.
    pub parameters: Option<Vec<Parameter>>,
    /// The latest configuration start.
    pub started: Option<Stamp>,
    /// The latest configuration end and its return code.
    pub ended: Option<(Stamp, i32)>,
}

impl Service {
    pub fn new(instance: InstanceId, name: Name) -> Self {
        Self {
            instance,
            name,
            parameters: None,
            started: None,
            ended: None,
        }
    }

    pub fn is_configured(&self) -> bool {
        self.parameters.is_some()
    }

    /// The end of the current run: the latest end, unless a later start
    /// shows that a new run is under way (a start and an end at the same
    /// instant are one run).
    pub fn current_end(&self) -> Option<(Stamp, i32)> {
        match (self.started, self.ended) {
            (Some(started), Some(ended)) if started.time > ended.0.time => None,
            (_, ended) => ended,
        }
    }

    /// `success` when the current run ended with 0, `error` with any other
    /// code, `incomplete` otherwise.
    pub fn status(&self) -> Status {
        match self.current_end() {
            Some((_, 0)) => Status::Success,
            Some(_) => Status::Error,
            None => Status::Incomplete,
        }
    }
}

/// An instance with all its service rows: the unit the projection works on.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub instance: Instance,
    pub services: BTreeMap<Name, Service>,
}

impl InstanceState {
    pub fn new(uuid: InstanceId, deployment: DeploymentId) -> Self {
        Self {
            instance: Instance::new(uuid, deployment),
            services: BTreeMap::new(),
        }
    }

    /// The services a report shows: the configured ones in config order,
    /// or, before the config arrived, those known from their runs.
    pub fn visible_services(&self) -> Vec<&Service> {
        match &self.instance.registration {
            Some(r) => r
                .services
                .iter()
                .filter_map(|n| self.services.get(n))
                .collect(),
            None => self.services.values().collect(),
        }
    }

    /// What this instance adds to its deployment's [`Tally`].
    pub fn tally(&self) -> Tally {
        let i = &self.instance;
        let mut tally = Tally::default();
        tally.instances.add(i.status, 1);
        tally.completed = i64::from(i.completed.is_some());
        tally.registered = i64::from(i.registration.is_some());
        tally.expected_missing = i64::from(i.expected && i.registration.is_none());
        tally.unresolved_dependencies = i.unresolved_dependents();
        for service in self.services.values().filter(|s| s.is_configured()) {
            tally.services.add(service.status(), 1);
        }
        tally
    }
}

/// One config server, from its heartbeats.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ConfigServer {
    pub source: String,
    /// The latest heartbeat.
    pub last_heartbeat: Stamp,
    pub version: String,
    /// How often it promised to beat; it counts as down after a few missed.
    pub interval_seconds: u32,
}

impl ConfigServer {
    /// Running while its last heartbeat is younger than `tolerance` times
    /// its announced interval.
    pub fn is_running(&self, now: Timestamp, tolerance: f64) -> bool {
        let deadline = self
            .last_heartbeat
            .time
            .plus_seconds(f64::from(self.interval_seconds) * tolerance);
        now <= deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seconds: i64) -> Stamp {
        Stamp::new(
            Timestamp::from_unix_seconds(seconds),
            "/cs",
            &seconds.to_string(),
        )
    }

    #[test]
    fn a_restarted_service_is_incomplete_until_its_new_run_ends() {
        let mut s = Service::new(
            InstanceId::from_bytes([1; 16]),
            Name::parse("httpd").unwrap(),
        );
        assert_eq!(s.status(), Status::Incomplete);
        s.started = Some(stamp(10));
        s.ended = Some((stamp(20), 1));
        assert_eq!(s.status(), Status::Error);
        s.started = Some(stamp(30));
        assert_eq!(s.status(), Status::Incomplete, "retry under way");
        s.ended = Some((stamp(40), 0));
        assert_eq!(s.status(), Status::Success);
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash("/cs", "1"), stable_hash("/cs", "1"));
        assert_ne!(stable_hash("/cs", "1"), stable_hash("/cs1", ""));
        assert_eq!(stable_hash("", ""), 0xaf63_bd4c_8601_b7df);
    }
}
