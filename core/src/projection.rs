//! The projection: how one event changes the views. Pure logic over plain
//! rows; the rows are read and written through [`crate::views::ViewRead`]
//! and [`ViewWrite`], which the in-memory map of the tests and the RocksDB
//! store both implement.
//!
//! Every rule merges facts so that the result depends only on the *set* of
//! events, never on their order or on duplicates: "latest" is the greatest
//! [`Stamp`] (event time, then a stable tiebreak), "first contact" is a
//! minimum, provided parameters are a union, deletion is a tombstone.
//!
//! Aggregates are incremental: a deployment keeps the [`Tally`] of its
//! instances, and an instance keeps on itself how many references wait on
//! what it provides, so an event reads its own instance and deployment (and
//! the sources of changed references) but never the whole deployment. Only
//! `deployment.registered` and `deployment.deleted` visit every instance.

use std::collections::BTreeMap;

use crate::contract::{
    Awaited, DeploymentEvent, Event, EventData, Heartbeat,
    InstanceRegistration as RegistrationEvent,
};
use crate::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use crate::rows::{
    ConfigServer, Counts, Deployment, DeploymentRegistration, InstanceRegistration, InstanceState,
    Service, Stamp, Tally,
};
use crate::views::ViewWrite;

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Its facts are in the views (possibly changing nothing, when older
    /// facts were already superseded).
    Applied,
    /// Its deployment was deleted: deletion is final, the event is ignored.
    DeploymentDeleted,
    /// It names an instance that another deployment owns: kept in this
    /// deployment's claim on the instance (see
    /// [`InstanceState::other_claims`]), shown in no report.
    InstanceInOtherDeployment,
}

/// Something that finished with an event: what the duration histograms
/// count. Each is noted once, by the event that completes it (whatever
/// the order the events came in), and again only for a new run.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Every instance of the deployment completed: from the deployment's
    /// first event to its latest.
    Deployment { status: Status, seconds: f64 },
    /// Every configured service of the instance ended: from its
    /// registration to its latest configuration end.
    Instance { status: Status, seconds: f64 },
    /// A service's configuration run ended: from its start to its end.
    Service {
        name: Name,
        status: Status,
        seconds: f64,
    },
}

/// Folds one event into the views.
pub fn apply<V: ViewWrite>(views: &mut V, event: &Event) -> Result<Effect, V::Error> {
    apply_noting(views, event, &mut Vec::new())
}

/// [`apply`], noting in `completions` what the event completed.
pub fn apply_noting<V: ViewWrite>(
    views: &mut V,
    event: &Event,
    completions: &mut Vec<Completion>,
) -> Result<Effect, V::Error> {
    let stamp = Stamp::of(event);
    match event {
        Event::Heartbeat(heartbeat) => apply_heartbeat(views, heartbeat, stamp),
        Event::Deployment(event) => apply_deployment_event(views, event, stamp, completions),
    }
}

/// A config server's latest heartbeat wins.
fn apply_heartbeat<V: ViewWrite>(
    views: &mut V,
    heartbeat: &Heartbeat,
    stamp: Stamp,
) -> Result<Effect, V::Error> {
    let newer = views
        .config_server(heartbeat.source.as_str())?
        .is_none_or(|known| stamp > known.last_heartbeat);
    if newer {
        views.put_config_server(ConfigServer {
            source: heartbeat.source.clone(),
            last_heartbeat: stamp,
            version: heartbeat.version.clone(),
            interval_seconds: heartbeat.interval_seconds,
        })?;
    }
    Ok(Effect::Applied)
}

fn apply_deployment_event<V: ViewWrite>(
    views: &mut V,
    event: &DeploymentEvent,
    stamp: Stamp,
    completions: &mut Vec<Completion>,
) -> Result<Effect, V::Error> {
    let deployment = event.deployment;
    let mut p = Projector {
        views,
        deployments: BTreeMap::new(),
        owners: BTreeMap::new(),
        completions,
    };
    let row = p.deployment(deployment)?;
    if row.deleted.is_some() && !matches!(event.data, EventData::DeploymentDeleted) {
        // The row taken goes back as it was.
        p.finish()?;
        return Ok(Effect::DeploymentDeleted);
    }
    let row = p.deployment(deployment)?;
    row.last_progress = row.last_progress.max(Some(event.time));
    row.first_event = Some(row.first_event.map_or(event.time, |t| t.min(event.time)));
    row.add_source(&event.source);

    let time = event.time;
    // The event's own claim on the instance it names.
    let named = Whose::Claim {
        deployment,
        named_at: Some(stamp),
    };
    match &event.data {
        EventData::InstanceRegistered(registration) => {
            p.register_instance(deployment, stamp, registration)?
        }
        EventData::DeploymentRegistered { name, instances } => {
            let row = p.deployment(deployment)?;
            if row.name.as_ref().is_none_or(|(s, _)| stamp > *s) {
                row.name = Some((stamp, name.clone()));
            }
            p.register_deployment(deployment, stamp, instances)?
        }
        EventData::InstanceContacted { instance, .. } => {
            p.update_instance(*instance, named, |s| {
                touch(s, time);
                Changed::Progress
            })?;
        }
        EventData::ConfigurationStarted { instance, service } => {
            p.update_instance(*instance, named, |s| {
                touch(s, time);
                let known = s.services.contains_key(service);
                let row = s
                    .services
                    .entry(service.clone())
                    .or_insert_with(|| Service::new(*instance, service.clone()));
                row.started = row.started.max(Some(stamp));
                if known {
                    Changed::Progress
                } else {
                    Changed::More
                }
            })?;
        }
        EventData::ConfigurationEnded {
            instance,
            service,
            return_code,
        } => {
            p.update_instance(*instance, named, |s| {
                touch(s, time);
                let known =
                    s.services.contains_key(service) && s.instance.ended_services.contains(service);
                if !known {
                    s.instance.ended_services.insert(service.clone());
                }
                let row = s
                    .services
                    .entry(service.clone())
                    .or_insert_with(|| Service::new(*instance, service.clone()));
                if row.ended.is_none_or(|(known, _)| stamp > known) {
                    row.ended = Some((stamp, *return_code));
                }
                if known {
                    Changed::Progress
                } else {
                    Changed::More
                }
            })?;
        }
        EventData::ParametersProvided {
            instance,
            parameters,
        } => {
            p.update_instance(*instance, named, |s| {
                touch(s, time);
                for name in parameters {
                    let at = s.instance.provided.entry(name.clone()).or_insert(time);
                    *at = (*at).min(time);
                }
                Changed::More
            })?;
        }
        EventData::DeploymentDeleted => p.delete_deployment(deployment, time)?,
    }
    // Applied to a claim that another deployment owns: it shows nowhere.
    let mut effect = Effect::Applied;
    if let Some(instance) = event.data.instance() {
        let owner = match p.owners.get(&instance) {
            Some(owner) => *owner,
            None => p.views.instance_row(instance)?.map(|i| i.deployment),
        };
        if owner.is_some_and(|owner| owner != deployment) {
            effect = Effect::InstanceInOtherDeployment;
        }
    }
    p.finish()?;
    Ok(effect)
}

/// What an update changed of the claim it was given: the store writes an
/// instance whose progress alone changed without encoding the rest (a
/// batch spread over a large deployment does that for most of its
/// instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    /// At most its progress (see `InstanceState::without_progress`).
    Progress,
    /// Possibly more.
    More,
}

/// Any agent request (and a configuration start or end, or provided
/// parameters, are agent requests) is a contact.
fn touch(state: &mut InstanceState, time: Timestamp) {
    let i = &mut state.instance;
    i.first_contacted = Some(i.first_contacted.map_or(time, |t| t.min(time)));
    i.last_contacted = Some(i.last_contacted.map_or(time, |t| t.max(time)));
}

/// Recomputes an instance's derived status and completion from its facts.
///
/// Status is the worst of its configured services. An instance with no
/// services is incomplete until it has been contacted and has provided all
/// its return parameters. `completed` is the latest configuration end once
/// every configured service's current run has ended, whatever the result.
fn refresh(state: &mut InstanceState) {
    let (status, completed) = match &state.instance.registration {
        None => (Status::Incomplete, None),
        Some(r) if r.services.is_empty() => {
            let i = &state.instance;
            let provided: Option<Vec<Timestamp>> = r
                .provided_parameters
                .iter()
                .map(|p| i.provided.get(p).copied())
                .collect();
            match (i.first_contacted, provided) {
                (Some(contact), Some(times)) => {
                    let done = times.into_iter().fold(contact, Timestamp::max);
                    (Status::Success, Some(done))
                }
                _ => (Status::Incomplete, None),
            }
        }
        Some(r) => {
            let mut status = Status::Success;
            let mut completed = Some(Timestamp::from_nanos(i64::MIN));
            for name in &r.services {
                let service = state.services.get(name);
                status = status.max(service.map_or(Status::Incomplete, Service::status));
                let end = service.and_then(Service::current_end);
                completed = match (completed, end) {
                    (Some(latest), Some((stamp, _))) => Some(latest.max(stamp.time)),
                    _ => None,
                };
            }
            (status, completed)
        }
    };
    state.instance.status = status;
    state.instance.completed = completed;
}

/// Each service's current run: (start, end) when it has both.
fn runs(state: &InstanceState) -> BTreeMap<Name, (Stamp, Stamp)> {
    state
        .services
        .values()
        .filter_map(|s| Some((s.name.clone(), (s.started?, s.current_end()?.0))))
        .collect()
}

/// Notes the runs and the instance completion that an update finished.
fn note_completions(
    state: &InstanceState,
    before_runs: &BTreeMap<Name, (Stamp, Stamp)>,
    was_completed: bool,
    completions: &mut Vec<Completion>,
) {
    for (name, run) in runs(state) {
        if before_runs.get(&name) != Some(&run) {
            let service = &state.services[&name];
            completions.push(Completion::Service {
                status: service.status(),
                seconds: seconds_between(run.0.time, run.1.time),
                name,
            });
        }
    }
    let i = &state.instance;
    if let (false, Some(done), Some(registration)) =
        (was_completed, i.completed, i.registration.as_ref())
    {
        completions.push(Completion::Instance {
            status: i.status,
            seconds: seconds_between(registration.stamp.time, done),
        });
    }
}

/// Seconds from `from` to `to`, never negative (clocks of different
/// machines may disagree).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    ((to.nanos() as f64 - from.nanos() as f64) / 1e9).max(0.0)
}

/// The references of the configured services of an instance.
fn references(state: &InstanceState) -> Vec<(InstanceId, Awaited)> {
    state
        .services
        .values()
        .filter_map(|s| s.parameters.as_ref())
        .flatten()
        .filter_map(|p| p.source.reference())
        .collect()
}

/// Adds `n` (negative to take away) to a count in a map of counts; a count
/// that reaches zero leaves the map.
fn add_count<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K, n: i64) {
    let count = counts.entry(key).or_default();
    let updated = (i64::from(*count) + n).max(0) as u32;
    *count = updated;
    if updated == 0 {
        counts.retain(|_, c| *c != 0);
    }
}

/// What an instance adds to the views besides its own row: taken before a
/// change, to be moved to what it adds after.
struct Contribution {
    /// The deployment of the owning claim.
    owner: DeploymentId,
    /// What it adds to that deployment's tally.
    tally: Tally,
    /// The references of the owning claim's config.
    references: Vec<(InstanceId, Awaited)>,
}

impl Contribution {
    fn of(state: &InstanceState) -> Self {
        Self {
            owner: state.instance.deployment,
            tally: state.tally(),
            references: references(state),
        }
    }
}

/// Which claim on an instance an update changes.
#[derive(Debug, Clone, Copy)]
enum Whose {
    /// `deployment`'s own claim, made if missing. `named_at`: the stamp of
    /// the event naming the instance (it may move the claim's `claimed`
    /// earlier); `None` for changes that do not name it.
    Claim {
        deployment: DeploymentId,
        named_at: Option<Stamp>,
    },
    /// Whichever claim owns the instance (the references waiting on it are
    /// the instance's, not a claim's); made in `deployment` when the
    /// instance is unknown.
    Owner { deployment: DeploymentId },
}

/// Applies one event's changes, keeping the deployments it touches in hand
/// until the end so that each is written (and counted) once.
struct Projector<'v, V> {
    views: &'v mut V,
    /// Deployment rows touched: what each added to the global counts
    /// before this event (`None`: a new row), and the row as it is
    /// becoming, taken from the views without a copy.
    deployments: BTreeMap<DeploymentId, (Option<Counted>, Deployment)>,
    /// Who owns each instance this event put in place (`None`: gone), so
    /// that telling whether the event shows needs no second read (a copy
    /// of the instance row, on every event).
    owners: BTreeMap<InstanceId, Option<DeploymentId>>,
    /// What the event completed, for the duration histograms.
    completions: &'v mut Vec<Completion>,
}

impl<V: ViewWrite> Projector<'_, V> {
    fn deployment(&mut self, id: DeploymentId) -> Result<&mut Deployment, V::Error> {
        if !self.deployments.contains_key(&id) {
            let row = self.views.take_deployment(id)?;
            let before = row.as_ref().map(Counted::of);
            let current = row.unwrap_or_else(|| Deployment::new(id));
            self.deployments.insert(id, (before, current));
        }
        Ok(&mut self.deployments.get_mut(&id).expect("just inserted").1)
    }

    /// Loads an instance, lets `f` change the facts of the claim `whose`
    /// names, re-derives that claim's status, settles which claim owns the
    /// instance, and moves the owning deployments' tallies from the old
    /// contribution to the new. Returns false, changing nothing, when the
    /// claim's deployment has been deleted.
    fn update_instance(
        &mut self,
        id: InstanceId,
        whose: Whose,
        f: impl FnOnce(&mut InstanceState) -> Changed,
    ) -> Result<bool, V::Error> {
        let state = self.views.take_instance(id)?;
        let before = state.as_ref().map(Contribution::of);
        let (target, named_at) = match whose {
            Whose::Claim {
                deployment,
                named_at,
            } => (deployment, named_at),
            Whose::Owner { deployment } => (
                state.as_ref().map_or(deployment, |s| s.instance.deployment),
                None,
            ),
        };
        if self.deployment(target)?.deleted.is_some() {
            if let Some(taken) = state {
                self.views.put_instance(taken)?;
            }
            return Ok(false);
        }
        // Only a claim that already owns the instance alone, with facts,
        // can change by its progress alone: a new claim, another one, or
        // a change of owner changes more (and an owner with facts keeps
        // them: facts only grow with progress, so ownership stays).
        let owner_alone = state.as_ref().is_some_and(|s| {
            s.instance.deployment == target && s.other_claims.is_empty() && s.has_facts()
        });
        let mut state = state.unwrap_or_else(|| InstanceState::new(id, target));
        let claim = state.claim_mut(target);
        let claimed_before = claim.instance.claimed;
        if let Some(stamp) = named_at {
            let claimed = &mut claim.instance.claimed;
            *claimed = Some(claimed.map_or(stamp, |c| c.min(stamp)));
        }
        let before_runs = runs(claim);
        let was_completed = claim.instance.completed.is_some();
        let changed = f(claim);
        refresh(claim);
        note_completions(claim, &before_runs, was_completed, self.completions);
        let changed = if owner_alone && claim.instance.claimed == claimed_before {
            changed
        } else {
            Changed::More
        };
        state.settle_ownership();
        self.commit_instance(id, before, Some(state), changed)?;
        Ok(true)
    }

    /// Puts an instance's new state in place (`None`: it is gone) and
    /// moves what it contributes from the old state's to the new: its
    /// owning deployment's tally, and the references its owning claim's
    /// config makes, counted on their sources (`dependents`), so that only
    /// the claims that show count.
    fn commit_instance(
        &mut self,
        id: InstanceId,
        before: Option<Contribution>,
        after: Option<InstanceState>,
        changed: Changed,
    ) -> Result<(), V::Error> {
        let after = after.filter(|state| !state.is_forgotten());
        // A change of progress alone keeps the owner and the config (the
        // promise of `Changed::Progress`), so the references it makes are
        // the ones it made: nothing moves on their sources, and they are
        // neither listed again nor netted (most events of a deployment
        // under way are contacts, starts and ends).
        let references_kept = changed == Changed::Progress
            && matches!((&before, &after), (Some(b), Some(a)) if b.owner == a.instance.deployment);
        debug_assert!(
            !references_kept
                || before.as_ref().map(|b| &b.references)
                    == after.as_ref().map(references).as_ref(),
            "a change of progress alone changed the references"
        );
        // References by (source, what they await, where they come from).
        let mut delta: BTreeMap<(InstanceId, Awaited, DeploymentId), i64> = BTreeMap::new();
        if let Some(before) = before {
            self.deployment(before.owner)?.tally.add(&before.tally, -1);
            if !references_kept {
                for (source, awaited) in before.references {
                    *delta.entry((source, awaited, before.owner)).or_default() -= 1;
                }
            }
        }
        match after {
            Some(state) => {
                let owner = state.instance.deployment;
                self.owners.insert(id, Some(owner));
                self.deployment(owner)?.tally.add(&state.tally(), 1);
                if !references_kept {
                    for (source, awaited) in references(&state) {
                        *delta.entry((source, awaited, owner)).or_default() += 1;
                    }
                }
                match changed {
                    Changed::Progress => self.views.put_instance_progress(state)?,
                    Changed::More => self.views.put_instance(state)?,
                }
            }
            None => {
                self.owners.insert(id, None);
                self.views.delete_instance(id)?
            }
        }
        // Net change per source, so each source is written once.
        let mut by_source: BTreeMap<InstanceId, Vec<(Awaited, DeploymentId, i64)>> =
            BTreeMap::new();
        for ((source, awaited, from), n) in delta.into_iter().filter(|(_, n)| *n != 0) {
            by_source
                .entry(source)
                .or_default()
                .push((awaited, from, n));
        }
        for (source, changes) in by_source {
            // Fewer references to an instance that is gone: nothing to do
            // (and nothing to make).
            if changes.iter().all(|(.., n)| *n < 0) && self.views.instance_row(source)?.is_none() {
                continue;
            }
            let first_waiting = changes.iter().map(|(_, from, _)| *from).min();
            let deployment = first_waiting.expect("a source has at least one change");
            self.update_instance(source, Whose::Owner { deployment }, |state| {
                let i = &mut state.instance;
                for (awaited, from, n) in changes {
                    add_count(&mut i.dependents, awaited, n);
                    add_count(&mut i.waiting_deployments, from, n);
                }
                Changed::More
            })?;
        }
        Ok(())
    }

    fn register_instance(
        &mut self,
        deployment: DeploymentId,
        stamp: Stamp,
        event: &RegistrationEvent,
    ) -> Result<(), V::Error> {
        let row = self.deployment(deployment)?;
        if row.name.as_ref().is_none_or(|(s, _)| stamp > *s) {
            row.name = Some((stamp, event.deployment_name.clone()));
        }
        let id = event.instance;
        let named = Whose::Claim {
            deployment,
            named_at: Some(stamp),
        };
        let first_registered = |state: &mut InstanceState| {
            let first = &mut state.instance.first_registered;
            *first = Some(first.map_or(stamp, |f| f.min(stamp)));
            Changed::More
        };
        let known = self.views.instance(id)?;
        let claim = known.as_ref().and_then(|s| s.claim(deployment));
        if claim
            .and_then(|s| s.instance.registration.as_ref())
            .is_some_and(|r| r.stamp >= stamp)
        {
            // An older config than the one we have: it changes nothing but
            // when the instance was first named and registered.
            self.update_instance(id, named, first_registered)?;
            return Ok(());
        }
        // The references of the new config reach their sources through
        // `commit_instance`.
        self.update_instance(id, named, |state| {
            first_registered(state);
            state.instance.registration = Some(InstanceRegistration {
                stamp,
                assembly: event.assembly.clone(),
                provided_parameters: event.provided_parameters.clone(),
                services: event.services.iter().map(|s| s.name.clone()).collect(),
            });
            for service in state.services.values_mut() {
                service.parameters = None;
            }
            for config in &event.services {
                state
                    .services
                    .entry(config.name.clone())
                    .or_insert_with(|| Service::new(id, config.name.clone()))
                    .parameters = Some(config.parameters.clone());
            }
            // A service dropped from the config and never run leaves no trace.
            state
                .services
                .retain(|_, s| s.is_configured() || s.started.is_some() || s.ended.is_some());
            Changed::More
        })?;
        Ok(())
    }

    fn register_deployment(
        &mut self,
        deployment: DeploymentId,
        stamp: Stamp,
        instances: &[InstanceId],
    ) -> Result<(), V::Error> {
        let row = self.deployment(deployment)?;
        if row.registration.as_ref().is_some_and(|r| r.stamp >= stamp) {
            return Ok(()); // an older expected set than the one we have
        }
        row.registration = Some(DeploymentRegistration {
            stamp,
            expected: instances.len() as u32,
        });
        let listed: std::collections::BTreeSet<InstanceId> = instances.iter().copied().collect();
        // The expected set says what this deployment waits for; it does not
        // name the instances in the sense of ownership (a superseded set
        // would then count by the order it arrived in).
        let claim = Whose::Claim {
            deployment,
            named_at: None,
        };
        for id in self.views.deployment_instances(deployment)? {
            if !listed.contains(&id) {
                self.update_instance(id, claim, |s| {
                    s.instance.expected = false;
                    Changed::More
                })?;
            }
        }
        for id in listed {
            self.update_instance(id, claim, |s| {
                s.instance.expected = true;
                Changed::More
            })?;
        }
        Ok(())
    }

    fn delete_deployment(
        &mut self,
        deployment: DeploymentId,
        time: Timestamp,
    ) -> Result<(), V::Error> {
        // Its claims go (and with an owning claim, the references its
        // config made); an instance another deployment also claims passes
        // to that deployment.
        for id in self.views.deployment_instances(deployment)? {
            let Some(state) = self.views.take_instance(id)? else {
                continue;
            };
            let before = Contribution::of(&state);
            let rest = state.without_claim(deployment);
            self.commit_instance(id, Some(before), rest, Changed::More)?;
        }
        // A bare tombstone: what it looked like before depends on which
        // events arrived before the deletion, so none of it is kept.
        let row = self.deployment(deployment)?;
        let deleted = row.deleted.map_or(time, |t| t.min(time));
        *row = Deployment {
            deleted: Some(deleted),
            ..Deployment::new(deployment)
        };
        Ok(())
    }

    /// Puts back the touched deployments (every row taken goes back, changed
    /// or not: the store writes only what differs from what it holds) and
    /// moves the global counts from what they contributed before to what
    /// they contribute now.
    fn finish(self) -> Result<(), V::Error> {
        if self.deployments.is_empty() {
            return Ok(());
        }
        let mut counts = self.views.counts()?;
        for (_, (before, after)) in self.deployments {
            if let Some(before) = &before {
                add_counts(&mut counts, &before.counts, -1);
            }
            let was_completed = before.as_ref().is_some_and(|b| b.completed);
            if !was_completed && after.is_completed() && after.deleted.is_none() {
                if let (Some(first), Some(latest)) = (after.first_event, after.last_progress) {
                    self.completions.push(Completion::Deployment {
                        status: after.status(),
                        seconds: seconds_between(first, latest),
                    });
                }
            }
            add_counts(&mut counts, &contribution(&after), 1);
            self.views.put_deployment(after)?;
        }
        self.views.put_counts(counts)
    }
}

/// What a deployment row was before the event, as far as the global counts
/// and the completion histograms need it: kept instead of a copy of the row.
struct Counted {
    /// What it added to the global counts.
    counts: Counts,
    /// Whether it was completed already (a completion is counted once).
    completed: bool,
}

impl Counted {
    fn of(row: &Deployment) -> Self {
        Self {
            counts: contribution(row),
            completed: row.is_completed(),
        }
    }
}

/// What one deployment row adds to the global counts.
fn contribution(d: &Deployment) -> Counts {
    let mut counts = d.counts();
    counts.instances = d.tally.instances;
    counts.services = d.tally.services;
    counts.unresolved_dependencies = d.tally.unresolved_dependencies;
    counts
}

fn add_counts(total: &mut Counts, part: &Counts, sign: i64) {
    for status in Status::ALL {
        total
            .deployments
            .add(status, sign * part.deployments.get(status));
        total
            .instances
            .add(status, sign * part.instances.get(status));
        total.services.add(status, sign * part.services.get(status));
    }
    total.unresolved_dependencies += sign * part.unresolved_dependencies;
}
