//! The instance row and its services.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::counts::Tally;
use super::stamp::Stamp;
use crate::contract::{Awaited, Parameter};
use crate::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};

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

/// One instance (its services are in its [`InstanceState`]).
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
}
