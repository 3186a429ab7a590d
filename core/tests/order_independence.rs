//! The central promise: any order, any duplicates, the same views.

mod common;

use audrey_core::memory::MemoryViews;
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::{Event, Timestamp};
use proptest::prelude::*;

/// Several realistic deployments from two config servers, sometimes with
/// one deleted, in the order they were observed.
fn stream(seed: u64, deployments: usize, shape: &Shape, delete_one: bool) -> Vec<Event> {
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
    for cs in &mut servers {
        events.extend(cs.heartbeats(start, start.plus_seconds(120.0), 30));
    }
    events.sort_by_key(|e| e.time());
    events
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
    ) {
        let shape = Shape { instances, services_per_instance: services, failure_rate, retry_rate: 0.5, give_up_rate: 0.15, reregister_rate: 0.2 };
        let in_order = stream(seed, deployments, &shape, delete_one);
        let expected = MemoryViews::from_events(&in_order);
        prop_assert_eq!(expected.counts, common::recount(&expected));

        let mut rng = Rng::new(seed.rotate_left(17));
        let mut shuffled = in_order.clone();
        for e in &in_order {
            if rng.chance(duplicate_rate) {
                shuffled.push(e.clone());
            }
        }
        rng.shuffle(&mut shuffled);
        let actual = MemoryViews::from_events(&shuffled);
        prop_assert_eq!(&actual, &expected);
        prop_assert_eq!(actual.counts, common::recount(&actual));
    }
}

#[test]
fn big_deployments_keep_counts_exact_in_any_order() {
    let shape = Shape {
        instances: 40,
        services_per_instance: 3,
        failure_rate: 0.2,
        ..Shape::default()
    };
    let in_order = stream(99, 3, &shape, true);
    let expected = MemoryViews::from_events(&in_order);
    let mut reversed = in_order.clone();
    reversed.reverse();
    assert_eq!(MemoryViews::from_events(&reversed), expected);
    assert_eq!(expected.counts, common::recount(&expected));
    assert!(expected.counts.services.total() > 100);
}
