//! The central promise: any order, any duplicates, the same views.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;

use audrey_core::memory::MemoryViews;
use audrey_core::projection;
use audrey_core::rows::{ConfigServer, Counts, Deployment, InstanceState};
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::views::{ViewRead, ViewWrite};
use audrey_core::{
    DeploymentEvent, DeploymentId, Event, EventData, EventId, InstanceId, Timestamp,
};
use proptest::prelude::*;

/// Several realistic deployments from two config servers, sometimes with
/// one deleted, in the order they were observed. With `clash`, the second
/// deployment also names some instances of the first (a misconfiguration:
/// two deployments claiming one UUID), some earlier, some later.
fn stream(
    seed: u64,
    deployments: usize,
    shape: &Shape,
    delete_one: bool,
    clash: bool,
) -> Vec<Event> {
    let start = Timestamp::from_unix_seconds(1_795_615_200);
    let mut servers = [
        ConfigServerScript::new("/configserver/cs-01", seed),
        ConfigServerScript::new("/configserver/cs-02", seed ^ 0xabcdef),
    ];
    let mut events = Vec::new();
    for d in 0..deployments {
        let cs = &mut servers[d % 2];
        let mut life = cs.deployment(start.plus_seconds(d as f64 * 7.0), shape);
        if delete_one && d == 0 {
            let deployment = life[0].deployment().unwrap();
            let end = life.last().unwrap().time();
            life.push(cs.delete(end.plus_seconds(-3.0), deployment));
        }
        events.extend(life);
    }
    if clash {
        events.extend(claims_of_another_deployment(seed, &events));
    }
    for cs in &mut servers {
        events.extend(cs.heartbeats(start, start.plus_seconds(120.0), 30));
    }
    events.sort_by_key(|e| e.time());
    events
}

/// Copies of about half the events that name instances of the first
/// deployment, moved to the second one (new ids, times up to 30 s earlier
/// or later).
fn claims_of_another_deployment(seed: u64, events: &[Event]) -> Vec<Event> {
    let mut deployments = events.iter().filter_map(Event::deployment);
    let (Some(first), Some(second)) = (
        deployments.next(),
        deployments.find(|d| *d != events[0].deployment().unwrap()),
    ) else {
        return Vec::new();
    };
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut copies = Vec::new();
    for (n, event) in events.iter().enumerate() {
        let Event::Deployment(e) = event else {
            continue;
        };
        if e.deployment != first || e.data.instance().is_none() || !rng.chance(0.5) {
            continue;
        }
        let shift = rng.below(61) as f64 - 30.0;
        copies.push(Event::Deployment(DeploymentEvent {
            id: EventId::parse(&format!("clash-{n}")).unwrap(),
            deployment: second,
            time: e.time.plus_seconds(shift),
            ..e.clone()
        }));
    }
    copies
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shuffled_and_duplicated_streams_give_the_same_views(
        seed in any::<u64>(),
        deployments in 1usize..4,
        instances in 1usize..6,
        services in 0usize..4,
        failure_rate in 0.0f64..0.6,
        delete_one in any::<bool>(),
        duplicate_rate in 0.0f64..0.3,
        clash in any::<bool>(),
    ) {
        let shape = Shape { instances, services_per_instance: services, failure_rate, retry_rate: 0.5, give_up_rate: 0.15, reregister_rate: 0.2 };
        let in_order = stream(seed, deployments, &shape, delete_one, clash);
        let expected = MemoryViews::from_events(&in_order);
        prop_assert_eq!(expected.counts, common::recount(&expected));
        common::assert_well_formed(&expected);

        let mut rng = Rng::new(seed.rotate_left(17));
        let mut shuffled = in_order.clone();
        for e in &in_order {
            if rng.chance(duplicate_rate) {
                shuffled.push(e.clone());
            }
        }
        rng.shuffle(&mut shuffled);
        // Applied through views that check what is put back as progress
        // alone (`ProgressChecked`).
        let actual = ProgressChecked::from_events(&shuffled).views;
        common::assert_well_formed(&actual);
        // Row by row first: a difference names its row.
        for (id, row) in &expected.deployments {
            prop_assert_eq!(actual.deployments.get(id), Some(row), "deployment {}", id);
        }
        for (id, row) in &expected.instances {
            prop_assert_eq!(actual.instances.get(id), Some(row), "instance {}", id);
        }
        prop_assert_eq!(&actual, &expected);
        prop_assert_eq!(actual.counts, common::recount(&actual));
    }
}

/// Views in memory that hold the projection to its word: an instance put
/// back as progress alone differs from the instance taken only in its
/// progress (the store then writes the progress alone and keeps the rest
/// as stored). Whatever the order, duplicates, deletions and clashing
/// claims (the proptest above applies its shuffled streams through it).
#[derive(Default)]
struct ProgressChecked {
    views: MemoryViews,
    /// Each instance taken and not yet put back, as it was taken.
    taken: HashMap<InstanceId, InstanceState>,
    progress_puts: usize,
}

impl ViewRead for ProgressChecked {
    type Error = Infallible;
    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, Infallible> {
        self.views.deployment(id)
    }
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, Infallible> {
        self.views.instance(id)
    }
    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, Infallible> {
        self.views.deployment_instances(id)
    }
    fn config_server(&self, source: &str) -> Result<Option<ConfigServer>, Infallible> {
        self.views.config_server(source)
    }
    fn config_servers(&self) -> Result<Vec<ConfigServer>, Infallible> {
        self.views.config_servers()
    }
    fn counts(&self) -> Result<Counts, Infallible> {
        self.views.counts()
    }
}

impl ViewWrite for ProgressChecked {
    fn put_deployment(&mut self, row: Deployment) -> Result<(), Infallible> {
        self.views.put_deployment(row)
    }
    fn take_instance(&mut self, id: InstanceId) -> Result<Option<InstanceState>, Infallible> {
        let state = self.views.instance(id)?;
        match &state {
            Some(state) => self.taken.insert(id, state.clone()),
            None => self.taken.remove(&id),
        };
        Ok(state)
    }
    fn put_instance(&mut self, state: InstanceState) -> Result<(), Infallible> {
        self.taken.remove(&state.instance.uuid);
        self.views.put_instance(state)
    }
    fn put_instance_progress(&mut self, state: InstanceState) -> Result<(), Infallible> {
        let id = state.instance.uuid;
        let taken = self
            .taken
            .remove(&id)
            .unwrap_or_else(|| panic!("{id} put back as progress but not taken"));
        assert_eq!(
            state.without_progress(),
            taken.without_progress(),
            "{id}: put back as progress alone, but more changed"
        );
        self.progress_puts += 1;
        self.views.put_instance(state)
    }
    fn delete_instance(&mut self, id: InstanceId) -> Result<(), Infallible> {
        self.taken.remove(&id);
        self.views.delete_instance(id)
    }
    fn put_config_server(&mut self, row: ConfigServer) -> Result<(), Infallible> {
        self.views.put_config_server(row)
    }
    fn put_counts(&mut self, counts: Counts) -> Result<(), Infallible> {
        self.views.put_counts(counts)
    }
}

impl ProgressChecked {
    fn from_events(events: &[Event]) -> Self {
        let mut checked = ProgressChecked::default();
        for event in events {
            let Ok(_) = projection::apply(&mut checked, event);
        }
        checked
    }
}

/// In the order a config server sees them, contacts, starts and ends come
/// after their instance's registration and are put back as progress alone
/// (what makes the store's cheaper write worth having), all but the first
/// end of each service, which notes the service among those that ended
/// (what a reference on its return code waits for).
#[test]
fn contacts_starts_and_ends_in_order_are_progress() {
    let shape = Shape {
        instances: 5,
        services_per_instance: 3,
        failure_rate: 0.2,
        ..Shape::default()
    };
    let events = stream(11, 3, &shape, false, false);
    let progress_kinds = events
        .iter()
        .filter(|e| {
            matches!(
                e.as_deployment_event().map(|e| &e.data),
                Some(
                    EventData::InstanceContacted { .. }
                        | EventData::ConfigurationStarted { .. }
                        | EventData::ConfigurationEnded { .. }
                )
            )
        })
        .count();
    let checked = ProgressChecked::from_events(&events);
    assert!(
        checked.progress_puts * 3 >= progress_kinds * 2,
        "{} of {progress_kinds} put back as progress",
        checked.progress_puts
    );
    assert_eq!(checked.views, MemoryViews::from_events(&events));
}

#[test]
fn big_deployments_keep_counts_exact_in_any_order() {
    let shape = Shape {
        instances: 40,
        services_per_instance: 3,
        failure_rate: 0.2,
        ..Shape::default()
    };
    for delete_one in [false, true] {
        let in_order = stream(99, 3, &shape, delete_one, true);
        let expected = MemoryViews::from_events(&in_order);
        let mut reversed = in_order.clone();
        reversed.reverse();
        assert_eq!(MemoryViews::from_events(&reversed), expected);
        assert_eq!(expected.counts, common::recount(&expected));
        common::assert_well_formed(&expected);
        assert!(expected.counts.services.total() > 100);
        let claimed_twice = expected
            .instances
            .values()
            .filter(|s| !s.other_claims.is_empty())
            .count();
        // Deleting the first deployment leaves the second the only claim.
        assert_eq!(claimed_twice > 5, !delete_one, "{claimed_twice} clashes");
    }
}
