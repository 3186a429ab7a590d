//! The event log: history in time order, rebuild equal to the live views,
//! retention that keeps the log bounded without breaking rebuild.

use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, ReportContext};
use audrey_core::rows::Counts;
use audrey_core::scenario::script::*;
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::EventType;
use audrey_store::{Retention, Store};

fn ctx() -> ReportContext {
    ReportContext::at(at(100_000))
}

#[test]
fn history_lists_an_entitys_events_in_time_order_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = vec![
        cs.register(
            0,
            MYSQL,
            "mysql",
            &["ipaddress"],
            vec![service("mysql", vec![])],
        ),
        cs.contacted(10, MYSQL),
        cs.provided(11, MYSQL, &["ipaddress"]),
        cs.register(1, WORDPRESS, "wordpress", &[], vec![]),
        cs.contacted(12, WORDPRESS),
    ];
    events.reverse(); // arrival order does not matter
    store.apply_batch(&events).unwrap();

    let all = store.history(deployment(BLOG), None, 0, 100).unwrap();
    assert_eq!(all.total, 5);
    let times: Vec<_> = all.events.iter().map(|e| e.time()).collect();
    assert_eq!(times, vec![at(0), at(1), at(10), at(11), at(12)]);
    let mysql = store
        .history(deployment(BLOG), Some(instance(MYSQL)), 1, 1)
        .unwrap();
    assert_eq!(mysql.total, 3);
    assert_eq!(mysql.events.len(), 1);
    assert_eq!(mysql.events[0].time(), at(10));
}

fn stream(seed: u64) -> Vec<audrey_core::Event> {
    let mut cs = ConfigServerScript::new("/configserver/cs-01", seed);
    let shape = Shape {
        instances: 4,
        services_per_instance: 2,
        give_up_rate: 0.2,
        ..Shape::default()
    };
    let mut events: Vec<_> = (0..8)
        .flat_map(|d| cs.deployment(at(d * 10), &shape))
        .collect();
    let gone = events[0].deployment().unwrap();
    events.push(cs.delete(at(5_000), gone));
    events.extend(cs.heartbeats(at(0), at(600), 30));
    events
}

#[test]
fn rebuild_gives_the_views_built_live() {
    let events = stream(4);
    let expected = MemoryViews::from_events(&events);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut shuffled = events.clone();
    Rng::new(9).shuffle(&mut shuffled);
    for chunk in shuffled.chunks(50) {
        store.apply_batch(chunk).unwrap();
    }
    let before: Vec<_> = expected
        .deployments
        .keys()
        .map(|id| query::deployment_report(&store.reader(), *id, &ctx()).unwrap())
        .collect();
    let mut seen = Vec::new();
    let replayed = store.rebuild(|n| seen.push(n)).unwrap();
    assert_eq!(replayed, events.len() as u64);
    assert_eq!(seen.last(), Some(&replayed));
    let after: Vec<_> = expected
        .deployments
        .keys()
        .map(|id| query::deployment_report(&store.reader(), *id, &ctx()).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(query::counts(&store.reader()).unwrap(), expected.counts);
    for id in expected.instances.keys() {
        assert_eq!(
            query::instance_report(&store.reader(), *id, &ctx()).unwrap(),
            query::instance_report(&expected, *id, &ctx()).unwrap()
        );
    }
}

#[test]
fn retention_prunes_deleted_and_old_completed_deployments_and_old_heartbeats() {
    let events = stream(6);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.apply_batch(&events).unwrap();
    let expected = MemoryViews::from_events(&events);
    let completed: Vec<_> = expected
        .deployments
        .values()
        .filter(|d| d.is_completed() && d.deleted.is_none())
        .map(|d| d.uuid)
        .collect();
    let incomplete: Vec<_> = expected
        .deployments
        .values()
        .filter(|d| !d.is_completed() && d.deleted.is_none())
        .map(|d| d.uuid)
        .collect();
    assert!(
        !completed.is_empty() && !incomplete.is_empty(),
        "the stream has both"
    );
    let deleted = expected
        .deployments
        .values()
        .find(|d| d.deleted.is_some())
        .unwrap()
        .uuid;

    // Nothing is old enough yet (events end near at(600); "now" is at(700) with 1 h retention).
    let first = store
        .prune(at(700), &Retention::completed_after(3600.0))
        .unwrap();
    assert_eq!(first.deployments, 1, "only the deleted one");
    assert_eq!(
        store
            .history(deleted, None, 0, 100)
            .unwrap()
            .events
            .iter()
            .map(|e| e.event_type().short_name())
            .collect::<Vec<_>>(),
        vec!["deployment.deleted"]
    );
    let heartbeats = store
        .history(audrey_core::DeploymentId::from_bytes([0; 16]), None, 0, 100)
        .unwrap();
    assert_eq!(
        heartbeats.total, 1,
        "only the latest heartbeat of the one source is kept"
    );

    // A day later the completed ones go; the incomplete ones keep their whole log.
    let second = store
        .prune(at(86_400), &Retention::completed_after(3600.0))
        .unwrap();
    assert_eq!(second.deployments, completed.len() as u64);
    for d in &completed {
        assert_eq!(store.history(*d, None, 0, 10).unwrap().total, 0);
    }
    for d in &incomplete {
        assert_eq!(
            store.history(*d, None, 0, 1000).unwrap().total,
            events.iter().filter(|e| e.deployment() == Some(*d)).count() as u64
        );
    }
    // Views are untouched by pruning.
    assert_eq!(query::counts(&store.reader()).unwrap(), expected.counts);

    // Rebuild still works for the rest: incomplete deployments are exact,
    // the deleted one stays deleted, the pruned completed ones are gone.
    store.rebuild(|_| {}).unwrap();
    let reader = store.reader();
    for d in &incomplete {
        assert_eq!(
            query::deployment_report(&reader, *d, &ctx()).unwrap(),
            query::deployment_report(&expected, *d, &ctx()).unwrap()
        );
    }
    assert!(query::deployment_report(&reader, deleted, &ctx())
        .unwrap()
        .is_none());
    assert_eq!(
        query::config_servers(&reader, &ctx()).unwrap(),
        query::config_servers(&expected, &ctx()).unwrap()
    );
    let late = events
        .iter()
        .find(|e| e.deployment() == Some(deleted) && e.event_type() != EventType::DeploymentDeleted)
        .unwrap();
    store.apply_batch(std::slice::from_ref(late)).unwrap();
    assert!(
        query::deployment_report(&store.reader(), deleted, &ctx())
            .unwrap()
            .is_none(),
        "a late event does not resurrect it"
    );
}

#[test]
fn with_a_short_retention_the_log_stays_bounded_however_long_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cs = ConfigServerScript::new("/configserver/cs-01", 77);
    let shape = Shape {
        instances: 3,
        services_per_instance: 2,
        give_up_rate: 0.0,
        failure_rate: 0.1,
        retry_rate: 1.0,
        reregister_rate: 0.0,
    };
    let mut sizes = Vec::new();
    let mut total_applied = 0;
    for round in 0..30i64 {
        let start = at(round * 3_600);
        let mut events: Vec<_> = (0..5)
            .flat_map(|d| cs.deployment(start.plus_seconds(d as f64), &shape))
            .collect();
        events.extend(cs.heartbeats(start, start.plus_seconds(600.0), 10));
        total_applied += events.len();
        store.apply_batch(&events).unwrap();
        store
            .prune(
                start.plus_seconds(3_000.0),
                &Retention::completed_after(60.0),
            )
            .unwrap();
        sizes.push(store.logged_events().unwrap());
    }
    let bound = *sizes.iter().max().unwrap();
    assert!(
        bound < (total_applied / 10) as u64,
        "log held at most {bound} of {total_applied} events"
    );
    assert_eq!(store.logged_events().unwrap(), sizes[sizes.len() - 1]);
    let counts: Counts = query::counts(&store.reader()).unwrap();
    assert_eq!(
        counts.deployments.total(),
        150,
        "the views keep every deployment"
    );
}

/// The set of expired deployments is found before the writer lock is
/// taken: a deployment that receives an event in between is no longer
/// expired, and keeps its log.
#[test]
fn a_deployment_that_progresses_while_retention_runs_keeps_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([
        cs.contacted(10, MYSQL),
        cs.provided(11, MYSQL, &["ipaddress", "hostname"]),
        cs.started(12, MYSQL, "mysql"),
        cs.ended(13, MYSQL, "mysql", 0),
        cs.contacted(14, WORDPRESS),
        cs.started(15, WORDPRESS, "http"),
        cs.ended(16, WORDPRESS, "http", 0),
        cs.started(17, WORDPRESS, "wordpress"),
        cs.ended(18, WORDPRESS, "wordpress", 0),
    ]);
    store.apply_batch(&events).unwrap();
    let logged = store.history(deployment(BLOG), None, 0, 100).unwrap().total;
    // Completed at 18 s; an hour of retention; "now" two hours on: expired.
    // While the pass runs, the agent starts wordpress again (a retry).
    let retry = cs.started(7_000, WORDPRESS, "wordpress");
    let pruned = store
        .prune_racing_for_tests(at(7_200), &Retention::completed_after(3_600.0), || {
            store.apply_batch(std::slice::from_ref(&retry)).unwrap();
        })
        .unwrap();
    assert_eq!(pruned.deployments, 0);
    assert_eq!(
        store.history(deployment(BLOG), None, 0, 100).unwrap().total,
        logged + 1,
        "the whole log is kept"
    );
}

/// Config servers silent for longer than the forget window leave the
/// store: their row and their last heartbeat.
#[test]
fn silent_config_servers_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut loud = ConfigServerScript::new("/configserver/loud", 1);
    let mut quiet = ConfigServerScript::new("/configserver/quiet", 2);
    store
        .apply_batch(&[
            quiet.heartbeat(at(0), 30),
            loud.heartbeat(at(0), 30),
            loud.heartbeat(at(86_400 * 8), 30),
        ])
        .unwrap();
    let retention = Retention {
        retain_completed_seconds: 3_600.0,
        forget_config_server_after_seconds: 7.0 * 86_400.0,
    };
    let pruned = store.prune(at(86_400 * 8 + 60), &retention).unwrap();
    assert_eq!(pruned.config_servers, 1);
    let rows = audrey_core::views::ViewRead::config_servers(&store.reader()).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(),
        vec!["/configserver/loud"]
    );
    let heartbeats = store
        .history(audrey_core::DeploymentId::from_bytes([0; 16]), None, 0, 100)
        .unwrap();
    assert_eq!(heartbeats.total, 1, "only loud's latest heartbeat is left");
}
