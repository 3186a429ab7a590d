//! The RocksDB store gives the same views as the pure projection, keeps
//! them across a reopen, dedups, and writes everything of a batch at once.

use audrey_core::memory::MemoryViews;
use audrey_core::projection::Effect;
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::views::ViewRead;
use audrey_core::{Event, EventData, Timestamp};
use audrey_store::EventOutcome;
use audrey_store::Store;
use audrey_testkit::compare::assert_store_matches;

fn stream(seed: u64, deployments: usize) -> Vec<Event> {
    let start = Timestamp::from_unix_seconds(1_795_615_200);
    let mut cs = ConfigServerScript::new("/configserver/cs-01", seed);
    let shape = Shape {
        instances: 4,
        services_per_instance: 2,
        failure_rate: 0.2,
        ..Shape::default()
    };
    let mut events: Vec<Event> = (0..deployments)
        .flat_map(|d| cs.deployment(start.plus_seconds(d as f64), &shape))
        .collect();
    let first = events[0].deployment().unwrap();
    events.push(cs.delete(start.plus_seconds(500.0), first));
    events.extend(cs.heartbeats(start, start.plus_seconds(60.0), 30));
    events
}

/// Every report the store serves equals the one built in memory.
fn assert_same_reports(store: &Store, expected: &MemoryViews) {
    let now = Timestamp::from_unix_seconds(1_795_615_200 + 3_600);
    assert_store_matches(store, expected, now);
}

#[test]
fn batches_in_any_order_give_the_projections_views_and_survive_a_reopen() {
    let events = stream(5, 6);
    let expected = MemoryViews::from_events(&events);
    let dir = tempfile::tempdir().unwrap();
    let mut shuffled = events.clone();
    Rng::new(1).shuffle(&mut shuffled);
    {
        let store = Store::open(dir.path()).unwrap();
        for batch in shuffled.chunks(37) {
            let outcome = store.apply_batch(batch).unwrap();
            assert_eq!(outcome.duplicates(), 0);
        }
        assert_same_reports(&store, &expected);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_same_reports(&store, &expected);
    // Redelivery of everything: all duplicates, nothing changes.
    let outcome = store.apply_batch(&events).unwrap();
    assert_eq!(outcome.duplicates(), events.len());
    assert_same_reports(&store, &expected);
}

#[test]
fn rows_forgotten_by_the_writer_are_read_back_the_same() {
    // Many more instances and deployments than the writer remembers: most
    // batches read some rows back from RocksDB, others from memory.
    let events = stream(9, 40);
    let expected = MemoryViews::from_events(&events);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.set_writer_memory_for_tests(8);
    let mut shuffled = events.clone();
    Rng::new(2).shuffle(&mut shuffled);
    for batch in shuffled.chunks(23) {
        store.apply_batch(batch).unwrap();
    }
    assert!(expected.instances.len() > 4 * 8);
    assert!(expected.deployments.len() > 4 * 8);
    assert_same_reports(&store, &expected);
}

#[test]
fn late_events_in_the_batch_that_deletes_their_deployment_change_nothing() {
    // The deletion and, after it, events of the same deployment, in one
    // batch: the deleted row, which the batch itself wrote, stays.
    let mut events = stream(7, 1);
    let deletion = events
        .iter()
        .position(|e| matches!(e, Event::Deployment(d) if d.data == EventData::DeploymentDeleted))
        .unwrap();
    let deleted = events.remove(deletion);
    events.insert(deletion - 3, deleted);
    let expected = MemoryViews::from_events(&events);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let outcome = store.apply_batch(&events).unwrap();
    let late = outcome.outcomes[deletion - 2..=deletion].to_vec();
    let ignored = EventOutcome::Applied(Effect::DeploymentDeleted);
    assert_eq!(late, vec![ignored; 3]);
    assert_same_reports(&store, &expected);
    let deployment = events[0].deployment().unwrap();
    let row = store.reader().deployment(deployment).unwrap();
    assert!(
        row.is_some_and(|row| row.deleted.is_some()),
        "the deletion stays"
    );
}

#[test]
fn duplicates_inside_one_batch_are_caught() {
    let events = stream(6, 1);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = vec![events[0].clone(), events[1].clone(), events[0].clone()];
    let outcome = store.apply_batch(&batch).unwrap();
    assert!(matches!(outcome.outcomes[0], EventOutcome::Applied(_)));
    assert_eq!(outcome.outcomes[2], EventOutcome::Duplicate);
    assert_eq!(outcome.applied(), 2);
}

#[test]
fn the_event_log_holds_every_accepted_event_once() {
    let events = stream(7, 3);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.apply_batch(&events).unwrap();
    store.apply_batch(&events[..10]).unwrap();
    let mut logged = Vec::new();
    store
        .for_each_logged_event(|e| {
            logged.push(e);
            Ok(true)
        })
        .unwrap();
    assert_eq!(logged.len(), events.len());
    let mut a: Vec<_> = logged.iter().map(|e| e.id().clone()).collect();
    let mut b: Vec<_> = events.iter().map(|e| e.id().clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn views_of_another_version_are_refused_with_a_hint_to_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    // Tamper the version as an older build would have left it.
    {
        let store = Store::open_any_version(dir.path()).unwrap();
        store.set_views_version_for_tests(0).unwrap();
    }
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("rebuild"), "{err}");
}

/// A report finds what a parameter's source provided from what earlier
/// reports read, and never once the source's row could have lost it:
/// here the deployment that owns the source is deleted, and the source's
/// other claim, which provided nothing, becomes its owner. After every
/// batch, instance reports equal those built in memory.
#[test]
fn what_a_source_provided_is_remembered_only_while_it_holds() {
    use audrey_core::contract::Awaited;
    use audrey_core::query::{instance_report, ReportContext};
    use audrey_core::scenario::script::{
        at, instance, name, param_ref, service, static_param, DeploymentScript, MYSQL, WORDPRESS,
    };
    use audrey_core::views::ViewRead;

    const OTHER_DEPLOYMENT: &str = "5a0e4c1b-2d3f-4e5a-8b6c-7d8e9f0a1b2c";
    const OTHER_WORDPRESS: &str = "6b1f5d2c-3e4a-4f6b-9c7d-8e9f0a1b2c3d";
    let mut blog = DeploymentScript::new(audrey_core::scenario::script::BLOG);
    // Another config server: event ids are unique per source.
    let mut other = DeploymentScript::new(OTHER_DEPLOYMENT).with_source("/configserver/cs-02");
    let wordpress = |cs: &mut DeploymentScript, t: i64, uuid: &str| {
        cs.register(
            t,
            uuid,
            "wordpress",
            &[],
            vec![service(
                "wordpress",
                vec![param_ref("mysql_ip", MYSQL, "ipaddress")],
            )],
        )
    };
    let batches: Vec<Vec<Event>> = vec![
        vec![
            blog.register(
                0,
                MYSQL,
                "mysql",
                &["ipaddress"],
                vec![service("mysql", vec![static_param("root_pw")])],
            ),
            wordpress(&mut blog, 1, WORDPRESS),
            blog.register_deployment(2, &[MYSQL, WORDPRESS]),
        ],
        vec![blog.provided(3, MYSQL, &["ipaddress"])],
        vec![
            other.register(4, MYSQL, "mysql", &["ipaddress"], vec![]),
            wordpress(&mut other, 5, OTHER_WORDPRESS),
        ],
        vec![blog.deleted(6)],
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ctx = ReportContext::at(at(60));
    let ipaddress = Awaited::Parameter(name("ipaddress"));
    let mut applied = Vec::new();
    let mut remembered_at = Vec::new();
    let mut provided_before = false;
    for batch in &batches {
        let before = store.reader();
        store.apply_batch(batch).unwrap();
        applied.extend(batch.iter().cloned());
        let expected = MemoryViews::from_events(&applied);
        // Twice: the first report reads the sources, the second may find
        // them remembered.
        for _ in 0..2 {
            for uuid in [WORDPRESS, OTHER_WORDPRESS] {
                let Ok(want) = instance_report(&expected, instance(uuid), &ctx);
                let got = instance_report(&store.reader(), instance(uuid), &ctx).unwrap();
                assert_eq!(got, want, "{uuid} after {} events", applied.len());
            }
        }
        let remembered = store
            .reader()
            .remembered_provided(instance(MYSQL), &ipaddress);
        let Ok(source) = expected.instance_row(instance(MYSQL));
        let provided = source.as_ref().is_some_and(|s| s.has_provided(&ipaddress));
        assert!(!remembered || provided, "remembered what is not so");
        assert!(
            !before.remembered_provided(instance(MYSQL), &ipaddress) || provided_before,
            "remembered in a snapshot older than the batch that provided it"
        );
        provided_before = provided;
        remembered_at.push((remembered, source.map(|s| s.deployment)));
    }
    let blog_id = blog.deployment;
    let other_id = other.deployment;
    assert_eq!(
        remembered_at,
        vec![
            (false, Some(blog_id)),
            (true, Some(blog_id)),
            (true, Some(blog_id)),
            (false, Some(other_id)),
        ],
        "remembered once provided, forgotten when another claim owns it"
    );
}

/// What the store says of a deployment's rows after a write count holds:
/// a deployment it says unchanged since reports what it reported then,
/// through batches of every kind (registrations, runs, deletions,
/// heartbeats), and most deployments stay unchanged through a batch about
/// others.
#[test]
fn a_deployment_the_store_says_unchanged_reports_the_same_as_before() {
    use audrey_core::query::{self, ReportContext};
    use std::collections::BTreeSet;

    let events = stream(7, 12);
    let deployments: BTreeSet<_> = events.iter().filter_map(Event::deployment).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ctx = ReportContext::at(Timestamp::from_unix_seconds(1_795_615_200 + 3_600));
    let report_now = |id| {
        let reader = store.reader();
        let row = audrey_core::views::ViewRead::deployment(&reader, id).unwrap();
        let parts = row.and_then(|row| query::deployment_report_parts(&reader, row).unwrap());
        parts.map(|p| (p.read_only_its_own_rows(), p.at(&ctx)))
    };
    let mut kept = Vec::new();
    let (mut unchanged, mut changed) = (0, 0);
    for chunk in events.chunks(9) {
        let writes = store.writes();
        for id in &deployments {
            match report_now(*id) {
                Some((true, report)) => kept.push((writes, *id, Some(report))),
                Some((false, _)) => {} // reads other deployments' rows
                None => kept.push((writes, *id, None)),
            }
        }
        store.apply_batch(chunk).unwrap();
        for (writes, id, report) in &kept {
            if store.deployment_changed_after(*id, *writes) {
                changed += 1;
            } else {
                unchanged += 1;
                let now = report_now(*id).map(|(_, r)| r);
                assert_eq!(&now, report, "{id} said unchanged after write {writes}");
            }
        }
    }
    assert!(unchanged > 1_000, "{unchanged} unchanged");
    assert!(changed > 1_000, "{changed} changed");
}
