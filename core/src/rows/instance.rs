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

/// One deployment's claim on an instance UUID (its services are in its
/// [`InstanceState`]). Normally an instance has one claim, its
/// deployment's; see [`InstanceState::other_claims`] for the rest.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub uuid: InstanceId,
    pub deployment: DeploymentId,
    /// The earliest event of this deployment that named the instance: with
    /// `first_registered`, what decides which claim owns the instance.
    pub claimed: Option<Stamp>,
    /// The earliest registration (the latest is `registration`).
    pub first_registered: Option<Stamp>,
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
    /// The same references, counted by the deployment they come from: an
    /// instance that no deployment names but that references wait on is a
    /// stub in the first of these deployments (by UUID).
    pub waiting_deployments: BTreeMap<DeploymentId, u32>,
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
            claimed: None,
            first_registered: None,
            registration: None,
            expected: false,
            first_contacted: None,
            last_contacted: None,
            provided: BTreeMap::new(),
            ended_services: BTreeSet::new(),
            dependents: BTreeMap::new(),
            waiting_deployments: BTreeMap::new(),
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
/// Its `instance` and `services` are the owning deployment's claim.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub instance: Instance,
    pub services: BTreeMap<Name, Service>,
    /// Other deployments' claims on the same UUID (each with no claims of
    /// its own), by deployment. UUIDs are unique, so this is a
    /// misconfiguration; the facts are kept so that which deployment owns
    /// the instance does not depend on the order events arrive in (see
    /// [`InstanceState::settle_ownership`]). They show in no report and
    /// count in no tally.
    pub other_claims: Vec<InstanceState>,
}

impl InstanceState {
    pub fn new(uuid: InstanceId, deployment: DeploymentId) -> Self {
        Self {
            instance: Instance::new(uuid, deployment),
            services: BTreeMap::new(),
            other_claims: Vec::new(),
        }
    }

    /// The instance without its progress: its contacts, derived status and
    /// completion, and each service's latest start and end, which change
    /// on almost every event, cleared. Two states equal here differ at
    /// most in progress, the promise of
    /// [`crate::views::ViewWrite::put_instance_progress`].
    pub fn without_progress(&self) -> InstanceState {
        let mut rest = self.clone();
        let i = &mut rest.instance;
        i.first_contacted = None;
        i.last_contacted = None;
        i.status = Status::Incomplete;
        i.completed = None;
        for service in rest.services.values_mut() {
            service.started = None;
            service.ended = None;
        }
        rest
    }

    /// Which of two claims owns the instance (lesser wins): one with facts
    /// before a stub, then the earliest registered, then, while none is
    /// registered, the earliest named, then the lesser deployment UUID. It
    /// depends on the claims' facts only, never on which arrived first.
    fn ownership_key(&self) -> (bool, bool, bool, Option<Stamp>, DeploymentId) {
        let i = &self.instance;
        (
            !self.has_facts(),
            i.first_registered.is_none(),
            i.claimed.is_none(),
            i.first_registered.or(i.claimed),
            i.deployment,
        )
    }

    /// Whether this claim holds a fact of its own: an event of its
    /// deployment named the instance, or its deployment expects it. A claim
    /// without is a stub, there only because references wait on an
    /// instance no deployment has named.
    pub fn has_facts(&self) -> bool {
        let i = &self.instance;
        i.claimed.is_some()
            || i.first_registered.is_some()
            || i.registration.is_some()
            || i.expected
            || i.first_contacted.is_some()
            || !i.provided.is_empty()
            || !i.ended_services.is_empty()
            || !self.services.is_empty()
    }

    /// No deployment claims the instance and no reference waits on it: its
    /// row goes.
    pub fn is_forgotten(&self) -> bool {
        !self.has_facts() && self.other_claims.is_empty() && self.instance.dependents.is_empty()
    }

    /// Moves what waits on the instance (the references, by what they
    /// await and by the deployment they come from) from `from` to `self`.
    fn take_waiters(&mut self, from: &mut InstanceState) {
        self.instance.dependents = std::mem::take(&mut from.instance.dependents);
        self.instance.waiting_deployments = std::mem::take(&mut from.instance.waiting_deployments);
    }

    /// Every deployment that claims this UUID, the owner first.
    pub fn claim_deployments(&self) -> impl Iterator<Item = DeploymentId> + '_ {
        std::iter::once(self.instance.deployment)
            .chain(self.other_claims.iter().map(|c| c.instance.deployment))
    }

    /// `deployment`'s claim (the owner's or another), made if missing.
    pub fn claim_mut(&mut self, deployment: DeploymentId) -> &mut InstanceState {
        if self.instance.deployment == deployment {
            return self;
        }
        let at = match self
            .other_claims
            .binary_search_by_key(&deployment, |c| c.instance.deployment)
        {
            Ok(at) => at,
            Err(at) => {
                let claim = InstanceState::new(self.instance.uuid, deployment);
                self.other_claims.insert(at, claim);
                at
            }
        };
        &mut self.other_claims[at]
    }

    /// `deployment`'s claim, if it has one.
    pub fn claim(&self, deployment: DeploymentId) -> Option<&InstanceState> {
        if self.instance.deployment == deployment {
            return Some(self);
        }
        self.other_claims
            .iter()
            .find(|c| c.instance.deployment == deployment)
    }

    /// Makes the claim that should own the instance its owner. The
    /// references waiting on the instance (`dependents`) belong to the
    /// instance, not to a claim: they move to the new owner.
    /// A claim without facts that does not own the instance is nothing, and
    /// a stub owner lives in the first deployment whose references wait on
    /// it (so that neither depends on the order of events).
    pub fn settle_ownership(&mut self) {
        self.take_ownership_from_the_best_claim();
        self.other_claims.retain(InstanceState::has_facts);
        if !self.has_facts() {
            if let Some(first) = self.instance.waiting_deployments.keys().next() {
                self.instance.deployment = *first;
            }
        }
    }

    fn take_ownership_from_the_best_claim(&mut self) {
        let best = self
            .other_claims
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ownership_key() < self.ownership_key())
            .min_by_key(|(_, c)| c.ownership_key())
            .map(|(at, _)| at);
        let Some(at) = best else { return };
        let mut owner = self.other_claims.remove(at);
        std::mem::swap(&mut owner.instance, &mut self.instance);
        std::mem::swap(&mut owner.services, &mut self.services);
        self.take_waiters(&mut owner);
        let at = self
            .other_claims
            .binary_search_by_key(&owner.instance.deployment, |c| c.instance.deployment)
            .unwrap_or_else(|at| at);
        self.other_claims.insert(at, owner);
    }

    /// Removes `deployment`'s claim. When it owned the instance, the next
    /// claim in line takes it over (with the waiting references), or, with
    /// none left, a stub keeps the references; `None` when nothing is left.
    pub fn without_claim(mut self, deployment: DeploymentId) -> Option<InstanceState> {
        if self.instance.deployment != deployment {
            self.other_claims
                .retain(|c| c.instance.deployment != deployment);
            return Some(self);
        }
        let next = self
            .other_claims
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.ownership_key())
            .map(|(at, _)| at);
        let mut owner = match next {
            Some(at) => self.other_claims.remove(at),
            None => InstanceState::new(self.instance.uuid, deployment),
        };
        owner.take_waiters(&mut self);
        owner.other_claims = std::mem::take(&mut self.other_claims);
        owner.settle_ownership();
        (!owner.is_forgotten()).then_some(owner)
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
