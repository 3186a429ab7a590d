//! The answers a reader asks for beyond the facts: what a deployment waits
//! for at the root (`blocked_on`), how long each step took, and what each
//! event completed (for the duration histograms).

mod common;

use audrey_core::domain::ConfigServerStatus;
use audrey_core::memory::MemoryViews;
use audrey_core::projection::{apply_noting, Completion};
use audrey_core::query::{self, fingerprint, BlockReason, BlockedOn, ReportContext};
use audrey_core::{Event, Status};
use common::*;

/// 14:02:00, two minutes after the scripts' epoch.
fn ctx() -> ReportContext {
    ReportContext::at(at(120))
}

fn views_of(events: &[Event]) -> MemoryViews {
    MemoryViews::from_events(events)
}

fn blocked(views: &MemoryViews, d: &str) -> Option<BlockedOn> {
    query::deployment_report(views, deployment(d), &ctx())
        .unwrap()
        .unwrap()
        .blocked_on
}

#[test]
fn an_instance_never_registered_is_the_root_of_what_waits_on_it() {
    let mut cs = DeploymentScript::new(BLOG);
    // Conductor listed both, but only wordpress posted its config.
    let events = vec![
        blog_registered(&mut cs).remove(1),
        cs.register_deployment(2, &[MYSQL, WORDPRESS]),
    ];
    let b = blocked(&views_of(&events), BLOG).expect("incomplete: blocked");
    assert_eq!(b.reason, BlockReason::NeverRegistered);
    assert_eq!(b.instance, instance(MYSQL));
    assert_eq!(b.assembly, None, "nothing says what mysql is yet");
    assert_eq!(b.chain.len(), 1);
    assert_eq!(b.chain[0].instance, instance(WORDPRESS));
    assert_eq!(b.chain[0].service.as_str(), "wordpress");
    assert_eq!(b.chain[0].waits_for, instance(MYSQL));
    assert_eq!(
        b.explanation,
        format!(
            "waiting for instance {MYSQL}: never registered (Conductor has not posted its config)"
        )
    );
}

#[test]
fn registered_but_never_contacted_says_since_when() {
    let mut cs = DeploymentScript::new(BLOG);
    let b = blocked(&views_of(&blog_registered(&mut cs)), BLOG).unwrap();
    assert_eq!(b.reason, BlockReason::NeverContacted);
    assert_eq!(b.instance, instance(MYSQL));
    assert_eq!(b.assembly.as_ref().map(|a| a.as_str()), Some("mysql"));
    assert_eq!(b.since, Some(at(0)));
    assert_eq!(
        b.explanation,
        format!(
            "waiting for instance mysql ({MYSQL}): registered 2 min ago, its agent never contacted the config server"
        )
    );
}

/// The blog, mysql's service running since 31 s, wordpress's http
/// service run from 40 to 50 s: after 10 s mysql has run longer.
fn mysql_running_since_31_s() -> Vec<Event> {
    blog_with_mysql_running(&mut DeploymentScript::new(BLOG))
}

#[test]
fn a_service_running_is_followed_through_the_chain_and_compared_with_its_peers() {
    let events = mysql_running_since_31_s();
    let b = blocked(&views_of(&events), BLOG).unwrap();
    assert_eq!(b.reason, BlockReason::ServiceRunning);
    assert_eq!(b.instance, instance(MYSQL));
    assert_eq!(b.service.as_ref().map(|s| s.as_str()), Some("mysql"));
    assert_eq!(b.since, Some(at(31)));
    assert_eq!(b.last_contacted, Some(at(31)));
    assert_eq!(b.slower_than_peers_seconds.map(|s| s.0), Some(10.0));
    assert_eq!(
        b.explanation,
        format!(
            "waiting for instance mysql ({MYSQL}): service mysql started 89 s ago, never ended \
             (longer than any other run of the deployment: the longest took 10 s); \
             its agent last contacted 89 s ago"
        )
    );
    // The chain: wordpress waits for mysql's ipaddress.
    assert_eq!(b.chain.len(), 1);
    assert_eq!(b.chain[0].parameter.as_str(), "mysql_ip");

    // The same state later: the explanation moves with the clock, the
    // summary and the fingerprint (what the ETag names) do not.
    let later = ReportContext::at(at(500)); // not stalled yet either
    let views = views_of(&events);
    let now = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    let then = query::deployment_report(&views, deployment(BLOG), &later)
        .unwrap()
        .unwrap();
    let (b_now, b_then) = (
        now.blocked_on.clone().unwrap(),
        then.blocked_on.clone().unwrap(),
    );
    assert_ne!(b_now.explanation, b_then.explanation);
    assert!(b_then.explanation.contains("started 8 min ago"));
    assert_eq!(b_now.summary(), b_then.summary());
    assert!(b_now.summary().contains("started at 2026-11-25T14:00:31Z"));
    assert!(!b_now.summary().contains("ago"));
    assert_ne!(now.duration_seconds, then.duration_seconds);
    assert_eq!(fingerprint(&now), fingerprint(&then));
}

/// A reader may keep a deployment's parts while its rows stay the same:
/// what they give at each later moment moves as the clock does (the run
/// becomes slower than its peers, the deployment stalls, its config
/// server goes down, the "ago"s and the duration grow), and is what a
/// report computed from the rows at that moment says.
#[test]
fn parts_kept_from_one_moment_give_the_report_of_any_later_one() {
    let mut events = mysql_running_since_31_s();
    events.extend([Event::Heartbeat(audrey_core::Heartbeat {
        id: audrey_core::EventId::parse("beat-1").unwrap(),
        source: audrey_core::Source::parse("/configserver/cs-01").unwrap(),
        time: at(50),
        version: "1.0".into(),
        interval_seconds: 30,
    })]);
    let views = views_of(&events);
    let row = views.deployments[&deployment(BLOG)].clone();
    let parts = query::deployment_report_parts(&views, row)
        .unwrap()
        .expect("not deleted");
    let report_at = |t: i64| parts.at(&ReportContext::at(at(t)));

    // mysql started at 31 s; the longest other run took 10 s.
    let early = report_at(40).blocked_on.unwrap();
    assert_eq!(early.slower_than_peers_seconds, None);
    assert!(early.explanation.contains("started 9 s ago, never ended;"));
    let later = report_at(45).blocked_on.unwrap();
    assert_eq!(later.slower_than_peers_seconds.map(|s| s.0), Some(10.0));
    assert!(later
        .explanation
        .contains("started 14 s ago, never ended (longer"));

    // Last progress at 50 s: stalled after 15 min without any.
    assert!(!report_at(50 + 900).stalled);
    assert!(report_at(50 + 901).stalled);
    // The duration runs from the first event (0 s) while incomplete.
    assert_eq!(report_at(100).duration_seconds.map(|s| s.0), Some(100.0));
    assert_eq!(report_at(700).duration_seconds.map(|s| s.0), Some(700.0));

    // Its config server beat at 50 s every 30 s: down after 3 misses.
    let server = |t: i64| report_at(t).config_servers[0].status;
    assert_eq!(server(140), ConfigServerStatus::Running);
    assert_eq!(server(141), ConfigServerStatus::Down);
    // Forgotten after a week: said unknown.
    assert_eq!(server(50 + 7 * 86_400 + 1), ConfigServerStatus::Unknown);

    // At every moment, what a report computed from the rows then says.
    for t in [
        35,
        41,
        42,
        60,
        140,
        141,
        950,
        951,
        4_000,
        50 + 7 * 86_400 + 1,
    ] {
        let fresh = query::deployment_report(&views, deployment(BLOG), &ReportContext::at(at(t)))
            .unwrap()
            .unwrap();
        assert_eq!(report_at(t), fresh, "at {t} s");
    }
}

#[test]
fn a_failed_service_blocks_for_good_and_says_so() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([
        cs.contacted(30, MYSQL),
        cs.started(31, MYSQL, "mysql"),
        cs.ended(60, MYSQL, "mysql", 3),
    ]);
    let views = views_of(&events);
    let report = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(report.status, Status::Error);
    let b = report.blocked_on.unwrap();
    assert_eq!(b.reason, BlockReason::ServiceFailed);
    assert_eq!(b.return_code, Some(3));
    assert_eq!(b.since, Some(at(60)));
    assert!(
        b.explanation.starts_with(&format!(
            "instance mysql ({MYSQL}): service mysql failed with return code 3 60 s ago; \
             what waits on it will not resolve unless it is run again"
        )),
        "{}",
        b.explanation
    );
}

#[test]
fn a_contacted_instance_whose_service_never_started() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.push(cs.contacted(30, MYSQL));
    let b = blocked(&views_of(&events), BLOG).unwrap();
    assert_eq!(b.reason, BlockReason::ServiceNotStarted);
    assert_eq!(b.service.as_ref().map(|s| s.as_str()), Some("mysql"));
}

#[test]
fn services_done_but_parameters_not_provided() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([
        cs.contacted(30, MYSQL),
        cs.started(31, MYSQL, "mysql"),
        cs.ended(40, MYSQL, "mysql", 0),
    ]);
    let b = blocked(&views_of(&events), BLOG).unwrap();
    assert_eq!(b.reason, BlockReason::ParametersNotProvided);
    assert_eq!(b.instance, instance(MYSQL));
    let names: Vec<&str> = b.parameters.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, ["ipaddress", "hostname"]);
    assert!(b
        .explanation
        .contains("it has not provided ipaddress, hostname"));
}

#[test]
fn a_dependency_cycle_is_reported_not_followed_forever() {
    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    let mut cs = DeploymentScript::new(BLOG);
    let events = vec![
        cs.register(
            0,
            A,
            "primary",
            &["token"],
            vec![service("setup", vec![param_ref("peer", B, "token")])],
        ),
        cs.register(
            1,
            B,
            "replica",
            &["token"],
            vec![service("setup", vec![param_ref("peer", A, "token")])],
        ),
    ];
    let b = blocked(&views_of(&events), BLOG).unwrap();
    assert_eq!(b.reason, BlockReason::Cycle);
    assert_eq!(b.cycle, vec![instance(A), instance(B)]);
    assert_eq!(
        b.explanation,
        format!(
            "dependency cycle: primary ({A}) -> replica ({B}) wait for each other; none of them can finish"
        )
    );
}

#[test]
fn a_deployment_that_succeeded_is_blocked_on_nothing() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([
        cs.contacted(30, MYSQL),
        cs.started(31, MYSQL, "mysql"),
        cs.provided(35, MYSQL, &["ipaddress", "hostname"]),
        cs.ended(40, MYSQL, "mysql", 0),
        cs.contacted(41, WORDPRESS),
        cs.started(42, WORDPRESS, "http"),
        cs.ended(45, WORDPRESS, "http", 0),
        cs.started(46, WORDPRESS, "wordpress"),
        cs.ended(52, WORDPRESS, "wordpress", 0),
    ]);
    let views = views_of(&events);
    let report = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(report.status, Status::Success);
    assert_eq!(report.blocked_on, None);
    // From the first event (mysql's registration at 0) to the last end (52).
    assert_eq!(report.duration_seconds.map(|s| s.0), Some(52.0));
    let mysql = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(mysql.duration_seconds.map(|s| s.0), Some(40.0));
    assert_eq!(mysql.services[0].duration_seconds.map(|s| s.0), Some(9.0));
}

#[test]
fn durations_so_far_while_running() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([cs.contacted(30, MYSQL), cs.started(100, MYSQL, "mysql")]);
    let views = views_of(&events);
    let service = query::service_report(&views, instance(MYSQL), &name("mysql"), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(service.duration_seconds.map(|s| s.0), Some(20.0));
    let wordpress = query::instance_report(&views, instance(WORDPRESS), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(wordpress.duration_seconds.map(|s| s.0), Some(119.0));
    assert_eq!(
        wordpress.services[0].duration_seconds, None,
        "not started: no duration"
    );
}

/// What each event completed, whatever the order the events come in.
#[test]
fn each_completion_is_noted_once_by_the_event_that_completes_it() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.extend([
        cs.contacted(30, MYSQL),
        cs.started(31, MYSQL, "mysql"),
        cs.provided(35, MYSQL, &["ipaddress", "hostname"]),
        cs.ended(40, MYSQL, "mysql", 0),
        cs.contacted(41, WORDPRESS),
        cs.started(42, WORDPRESS, "http"),
        cs.ended(45, WORDPRESS, "http", 0),
        cs.started(46, WORDPRESS, "wordpress"),
        cs.ended(52, WORDPRESS, "wordpress", 2),
    ]);
    let expected = |mut c: Vec<Completion>| {
        c.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        c
    };
    let want = expected(vec![
        Completion::Service {
            name: name("mysql"),
            status: Status::Success,
            seconds: 9.0,
        },
        Completion::Service {
            name: name("http"),
            status: Status::Success,
            seconds: 3.0,
        },
        Completion::Service {
            name: name("wordpress"),
            status: Status::Error,
            seconds: 6.0,
        },
        Completion::Instance {
            status: Status::Success,
            seconds: 40.0,
        },
        Completion::Instance {
            status: Status::Error,
            seconds: 51.0,
        },
        Completion::Deployment {
            status: Status::Error,
            seconds: 52.0,
        },
    ]);
    for order in [events.clone(), events.iter().rev().cloned().collect()] {
        let mut views = MemoryViews::new();
        let mut noted = Vec::new();
        for event in &order {
            apply_noting(&mut views, event, &mut noted).unwrap();
        }
        assert_eq!(expected(noted), want);
    }
}
