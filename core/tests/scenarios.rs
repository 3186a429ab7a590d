//! Each rule of "Semantics of the views" as a named scenario, over the
//! in-memory views (no RocksDB): what a reader would see at each step.

mod common;

use audrey_core::domain::ConfigServerStatus;
use audrey_core::memory::MemoryViews;
use audrey_core::projection::Effect;
use audrey_core::query::{self, AwaitedSource, DeploymentFilter, ReportContext};
use audrey_core::Status;
use common::*;

fn ctx() -> ReportContext {
    ReportContext::at(at(120))
}

#[test]
fn wordpress_waits_for_mysql_ipaddress_then_both_complete() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    for e in blog_registered(&mut cs) {
        views.apply(&e);
    }
    // Registered, nobody has booted: wordpress waits for mysql's ipaddress and its mysql service.
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, Status::Incomplete);
    assert_eq!(d.registered, Some(at(2)));
    assert!(d.missing_instances.is_empty());
    assert_eq!(d.completed, None);
    assert_eq!(d.unresolved_dependencies.len(), 2);
    let dep = &d.unresolved_dependencies[0];
    assert_eq!(
        (dep.instance, dep.service.as_str(), dep.parameter.as_str()),
        (instance(WORDPRESS), "wordpress", "mysql_ip")
    );
    assert_eq!(dep.source_instance, instance(MYSQL));
    assert_eq!(dep.awaited, AwaitedSource::Parameter(name("ipaddress")));
    assert_eq!(
        d.unresolved_dependencies[1].awaited,
        AwaitedSource::Service(name("mysql"))
    );
    let mysql = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        mysql.first_contacted, None,
        "no first-contacted before the first agent request"
    );
    assert_eq!(
        mysql.pending_return_parameters,
        vec![name("ipaddress"), name("hostname")]
    );

    // mysql boots and reports its ipaddress: that dependency resolves even before wordpress calls.
    views.apply(&cs.contacted(30, MYSQL));
    views.apply(&cs.provided(31, MYSQL, &["ipaddress"]));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.unresolved_dependencies.len(), 1);
    assert_eq!(
        d.unresolved_dependencies[0].parameter.as_str(),
        "mysql_done"
    );
    let mysql = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(mysql.first_contacted, Some(at(30)));
    assert_eq!(mysql.last_contacted, Some(at(31)));
    assert_eq!(mysql.pending_return_parameters, vec![name("hostname")]);

    views.apply(&cs.provided(32, MYSQL, &["hostname"]));
    views.apply(&cs.started(33, MYSQL, "mysql"));
    views.apply(&cs.ended(40, MYSQL, "mysql", 0));
    let mysql = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(mysql.status, Status::Success);
    assert_eq!(mysql.completed, Some(at(40)));
    assert!(mysql.pending_return_parameters.is_empty());
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert!(d.unresolved_dependencies.is_empty());
    assert_eq!(d.status, Status::Incomplete, "wordpress has not run yet");

    views.apply(&cs.contacted(41, WORDPRESS));
    views.apply(&cs.started(42, WORDPRESS, "http"));
    views.apply(&cs.ended(45, WORDPRESS, "http", 0));
    views.apply(&cs.started(46, WORDPRESS, "wordpress"));
    let wp = query::service_report(&views, instance(WORDPRESS), &name("wordpress"), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(wp.status, Status::Incomplete);
    assert_eq!(wp.configuration_started, Some(at(46)));
    assert_eq!(wp.configuration_ended, None);
    views.apply(&cs.ended(50, WORDPRESS, "wordpress", 0));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, Status::Success);
    assert_eq!(d.completed, Some(at(50)));
    assert_eq!(views.counts, recount(&views));
    assert_eq!(views.counts.deployments, status_counts(1, 0, 0));
    assert_eq!(views.counts.services, status_counts(3, 0, 0));
}

#[test]
fn service_status_comes_from_the_latest_run_by_event_time_not_arrival() {
    let mut cs = DeploymentScript::new(BLOG);
    let reg = cs.register(0, MYSQL, "mysql", &[], vec![service("mysql", vec![])]);
    let first_start = cs.started(10, MYSQL, "mysql");
    let failed = cs.ended(20, MYSQL, "mysql", 3);
    let retry = cs.started(30, MYSQL, "mysql");
    let succeeded = cs.ended(40, MYSQL, "mysql", 0);
    // Arrives newest first.
    let views = MemoryViews::from_events([&succeeded, &retry, &failed, &first_start, &reg]);
    let s = query::service_report(&views, instance(MYSQL), &name("mysql"), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(s.status, Status::Success);
    assert_eq!(s.configuration_started, Some(at(30)));
    assert_eq!(s.configuration_ended, Some(at(40)));
    assert_eq!(s.completion_status, Some(0));
    // Without the final end, the retry is under way: incomplete, no end shown.
    let views = MemoryViews::from_events([&retry, &failed, &first_start, &reg]);
    let s = query::service_report(&views, instance(MYSQL), &name("mysql"), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(s.status, Status::Incomplete);
    assert_eq!(s.completion_status, None);
    let views = MemoryViews::from_events([&failed, &first_start, &reg]);
    let s = query::service_report(&views, instance(MYSQL), &name("mysql"), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!((s.status, s.completion_status), (Status::Error, Some(3)));
}

#[test]
fn a_failed_service_makes_instance_and_deployment_error_but_still_completes_and_resolves() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    for e in blog_registered(&mut cs) {
        views.apply(&e);
    }
    views.apply(&cs.provided(5, MYSQL, &["ipaddress", "hostname"]));
    views.apply(&cs.started(6, MYSQL, "mysql"));
    views.apply(&cs.ended(7, MYSQL, "mysql", 1));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert!(
        d.unresolved_dependencies.is_empty(),
        "any return code resolves a service-reference"
    );
    assert_eq!(d.status, Status::Error);
    for (t, s) in [(8, "http"), (9, "wordpress")] {
        views.apply(&cs.started(t, WORDPRESS, s));
        views.apply(&cs.ended(t, WORDPRESS, s, 0));
    }
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, Status::Error);
    assert_eq!(d.completed, Some(at(9)));
    let mysql = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        (mysql.status, mysql.completed),
        (Status::Error, Some(at(7)))
    );
    assert_eq!(views.counts, recount(&views));
}

#[test]
fn an_instance_without_services_completes_once_contacted_with_all_parameters_provided() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    views.apply(&cs.register(0, MYSQL, "mysql", &["ipaddress"], vec![]));
    let status = |v: &MemoryViews| {
        query::instance_report(v, instance(MYSQL), &ctx())
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(status(&views), Status::Incomplete);
    views.apply(&cs.contacted(5, MYSQL));
    assert_eq!(
        status(&views),
        Status::Incomplete,
        "ipaddress still pending"
    );
    views.apply(&cs.provided(9, MYSQL, &["ipaddress"]));
    assert_eq!(status(&views), Status::Success);
    assert_eq!(
        query::instance_report(&views, instance(MYSQL), &ctx())
            .unwrap()
            .unwrap()
            .completed,
        Some(at(9))
    );
}

#[test]
fn deployment_is_registered_only_once_every_expected_instance_is() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    views.apply(&cs.register_deployment(5, &[MYSQL, WORDPRESS]));
    views.apply(&cs.register(6, MYSQL, "mysql", &[], vec![]));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.registered, None);
    assert_eq!(d.missing_instances, vec![instance(WORDPRESS)]);
    assert_eq!(
        d.instances.len(),
        2,
        "the missing one is listed, incomplete"
    );
    views.apply(&cs.register(9, WORDPRESS, "wordpress", &[], vec![]));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.registered, Some(at(9)));
    assert!(d.missing_instances.is_empty());
}

#[test]
fn without_deployment_registered_the_latest_instance_registration_counts() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    views.apply(&cs.register(3, WORDPRESS, "wordpress", &[], vec![]));
    views.apply(&cs.register(1, MYSQL, "mysql", &[], vec![]));
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(d.registered, Some(at(3)));
    assert_eq!(d.name.as_ref().map(|n| n.as_str()), Some("blog"));
}

#[test]
fn re_registration_replaces_the_config_and_its_references() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    for e in blog_registered(&mut cs) {
        views.apply(&e);
    }
    assert_eq!(views.counts.unresolved_dependencies, 2);
    // Conductor re-posts wordpress without the mysql dependency, and with a new service.
    let newer = cs.register(
        10,
        WORDPRESS,
        "wordpress",
        &["url"],
        vec![service("nginx", vec![])],
    );
    views.apply(&newer);
    let wp = query::instance_report(&views, instance(WORDPRESS), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        wp.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["nginx"]
    );
    assert_eq!(wp.pending_return_parameters, vec![name("url")]);
    assert_eq!(views.counts.unresolved_dependencies, 0);
    let d = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert!(d.unresolved_dependencies.is_empty());
    // An older config arriving late changes nothing.
    let before = views.clone();
    let older = cs.register(
        4,
        WORDPRESS,
        "wordpress",
        &[],
        vec![service("http", vec![])],
    );
    views.apply(&older);
    assert_eq!(views.instances, before.instances);
    assert_eq!(views.counts, recount(&views));
}

#[test]
fn deletion_removes_the_deployment_and_late_events_do_not_resurrect_it() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    for e in blog_registered(&mut cs) {
        views.apply(&e);
    }
    let late = cs.contacted(50, MYSQL);
    views.apply(&cs.deleted(40));
    assert!(query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .is_none());
    assert!(query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .is_none());
    assert_eq!(views.apply(&late), Effect::DeploymentDeleted);
    assert!(query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .is_none());
    assert_eq!(
        views.counts,
        Default::default(),
        "gone from the metrics too"
    );
    let page = query::deployment_page(&views, DeploymentFilter::All, 0, 10, &ctx()).unwrap();
    assert_eq!(page.total, 0);
    assert!(page.deployments.is_empty());
}

#[test]
fn stalled_means_incomplete_and_silent_for_longer_than_the_threshold() {
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    views.apply(&cs.register(0, MYSQL, "mysql", &[], vec![service("mysql", vec![])]));
    views.apply(&cs.contacted(10, MYSQL));
    let mut ctx = ReportContext::at(at(10 + 899));
    let stalled = |v: &MemoryViews, c: &ReportContext| {
        query::deployment_report(v, deployment(BLOG), c)
            .unwrap()
            .unwrap()
            .stalled
    };
    assert!(!stalled(&views, &ctx));
    ctx.now = at(10 + 901);
    assert!(stalled(&views, &ctx));
    let page = query::deployment_page(&views, DeploymentFilter::Stalled, 0, 10, &ctx).unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(
        query::incomplete_deployments(&views, &ctx).unwrap().stalled,
        1
    );
    views.apply(&cs.started(905, MYSQL, "mysql"));
    views.apply(&cs.ended(906, MYSQL, "mysql", 0));
    assert!(!stalled(&views, &ctx), "complete deployments never stall");
}

#[test]
fn heartbeats_are_per_source_and_the_latest_wins() {
    let mut views = MemoryViews::new();
    let beat = |source: &str, t: i64, interval: u32, id: &str| {
        audrey_core::Event::Heartbeat(audrey_core::Heartbeat {
            id: audrey_core::EventId::parse(id).unwrap(),
            source: audrey_core::Source::parse(source).unwrap(),
            time: at(t),
            version: format!("v{t}"),
            interval_seconds: interval,
        })
    };
    views.apply(&beat("/cs-01", 100, 30, "a"));
    views.apply(&beat("/cs-01", 40, 10, "b"));
    views.apply(&beat("/cs-02", 10, 10, "c"));
    let servers = query::config_servers(&views, &ReportContext::at(at(150))).unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(
        (
            servers[0].source.as_str(),
            servers[0].status,
            servers[0].version.as_deref()
        ),
        ("/cs-01", ConfigServerStatus::Running, Some("v100"))
    );
    assert_eq!(
        servers[1].status,
        ConfigServerStatus::Down,
        "cs-02 missed three 10 s beats"
    );
    let later = query::config_servers(&views, &ReportContext::at(at(191))).unwrap();
    assert_eq!(
        later[0].status,
        ConfigServerStatus::Down,
        "cs-01 silent for more than 3 x 30 s"
    );
}

/// Two deployments registering the same instance UUID (Conductor would
/// never; a broken one might): the instance belongs to the deployment that
/// registered it first by event time, whatever order the events arrive in;
/// the other deployment's facts are kept aside, shown nowhere, and take
/// over if the owner is deleted.
#[test]
fn an_instance_claimed_by_two_deployments_belongs_to_the_earliest_registration() {
    const OTHER: &str = "00000000-0000-4000-8000-0000000000aa";
    let mut blog = DeploymentScript::new(BLOG);
    let mut other = DeploymentScript::new(OTHER).with_source("/configserver/cs-02");
    let mysql = || vec![service("mysql", vec![])];
    let events = vec![
        blog.register(5, MYSQL, "mysql", &[], mysql()),
        other.register(3, MYSQL, "mariadb", &[], mysql()),
        blog.started(10, MYSQL, "mysql"),
        other.ended(12, MYSQL, "mysql", 0),
        blog.register(
            6,
            WORDPRESS,
            "wordpress",
            &[],
            vec![service(
                "wordpress",
                vec![param_ref("ip", MYSQL, "ipaddress")],
            )],
        ),
    ];
    let mut reversed = events.clone();
    reversed.reverse();
    let views = MemoryViews::from_events(&events);
    assert_eq!(
        MemoryViews::from_events(&reversed),
        views,
        "order independent"
    );
    assert_eq!(views.counts, recount(&views));

    let report = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        report.deployment,
        deployment(OTHER),
        "registered first (t=3 < t=5)"
    );
    assert_eq!(report.assembly, Some(name("mariadb")));
    assert_eq!(report.status, Status::Success);
    let blog_report = query::deployment_report(&views, deployment(BLOG), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        blog_report
            .instances
            .iter()
            .map(|i| i.uuid)
            .collect::<Vec<_>>(),
        vec![instance(WORDPRESS)],
        "the blog does not show an instance another deployment owns"
    );
    // wordpress still waits on mysql's ipaddress, wherever mysql belongs.
    assert_eq!(blog_report.unresolved_dependencies.len(), 1);

    let mut views = views;
    let late = blog.contacted(20, MYSQL);
    assert_eq!(views.apply(&late), Effect::InstanceInOtherDeployment);
    views.apply(&other.deleted(30));
    let report = query::instance_report(&views, instance(MYSQL), &ctx())
        .unwrap()
        .unwrap();
    assert_eq!(
        report.deployment,
        deployment(BLOG),
        "the blog's claim takes over"
    );
    assert_eq!(report.assembly, Some(name("mysql")));
    assert_eq!(
        report.status,
        Status::Incomplete,
        "the blog's own run is under way"
    );
    assert_eq!(views.counts, recount(&views));
}

/// Sources come from the network: a deployment names at most 16 (the
/// first by name, in any order) and says there were more; config servers
/// silent for longer than the forget window leave the reports.
#[test]
fn what_config_servers_add_to_the_views_is_bounded() {
    let events: Vec<_> = (0..40)
        .map(|n| {
            let mut cs =
                DeploymentScript::new(BLOG).with_source(&format!("/configserver/cs-{n:02}"));
            cs.contacted(n, MYSQL)
        })
        .collect();
    let mut reversed = events.clone();
    reversed.reverse();
    let views = MemoryViews::from_events(&events);
    assert_eq!(MemoryViews::from_events(&reversed), views);
    let row = &views.deployments[&deployment(BLOG)];
    assert_eq!(row.sources.len(), audrey_core::rows::MAX_SOURCES);
    assert!(row.more_sources);
    assert_eq!(row.sources.first().unwrap().as_str(), "/configserver/cs-00");
    assert_eq!(row.sources.last().unwrap().as_str(), "/configserver/cs-15");

    let mut views = MemoryViews::new();
    let beat = audrey_core::Event::Heartbeat(audrey_core::Heartbeat {
        id: audrey_core::EventId::parse("hb").unwrap(),
        source: audrey_core::Source::parse("/configserver/gone").unwrap(),
        time: at(0),
        version: "1".into(),
        interval_seconds: 30,
    });
    views.apply(&beat);
    let week = 7.0 * 86_400.0;
    let soon = ReportContext::at(at(0).plus_seconds(week - 1.0));
    let later = ReportContext::at(at(0).plus_seconds(week + 1.0));
    assert_eq!(query::config_servers(&views, &soon).unwrap().len(), 1);
    assert!(query::config_servers(&views, &later).unwrap().is_empty());
}

#[test]
fn applying_an_event_twice_changes_nothing() {
    let mut cs = DeploymentScript::new(BLOG);
    let events = blog_registered(&mut cs);
    let once = MemoryViews::from_events(&events);
    let twice = MemoryViews::from_events(events.iter().chain(events.iter()));
    assert_eq!(once, twice);
}

#[test]
fn lists_by_status_page_in_uuid_order() {
    let mut views = MemoryViews::new();
    let ids = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    ];
    for (i, d) in ids.iter().enumerate() {
        let mut cs = DeploymentScript::new(d);
        let inst = format!("10000000-0000-4000-8000-00000000000{i}");
        views.apply(&cs.register(0, &inst, "mysql", &[], vec![service("mysql", vec![])]));
        if i != 1 {
            views.apply(&cs.ended(5, &inst, "mysql", 0));
        }
    }
    let page = query::deployment_page(
        &views,
        DeploymentFilter::Status(Status::Success),
        1,
        5,
        &ctx(),
    )
    .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.deployments.len(), 1);
    assert_eq!(page.deployments[0].uuid, deployment(ids[2]));
    let page = query::deployment_page(
        &views,
        DeploymentFilter::Status(Status::Incomplete),
        0,
        5,
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        page.deployments.iter().map(|d| d.uuid).collect::<Vec<_>>(),
        vec![deployment(ids[1])]
    );
    assert_eq!(page.deployments[0].instances.incomplete, 1);
}

/// Counts the instance rows the projection reads.
struct CountingViews {
    inner: MemoryViews,
    instance_reads: std::cell::Cell<usize>,
}

impl audrey_core::views::ViewRead for CountingViews {
    type Error = std::convert::Infallible;

    fn deployment(
        &self,
        id: audrey_core::DeploymentId,
    ) -> Result<Option<audrey_core::rows::Deployment>, std::convert::Infallible> {
        self.inner.deployment(id)
    }
    fn instance(
        &self,
        id: audrey_core::InstanceId,
    ) -> Result<Option<audrey_core::rows::InstanceState>, std::convert::Infallible> {
        self.instance_reads.set(self.instance_reads.get() + 1);
        self.inner.instance(id)
    }
    fn deployment_instances(
        &self,
        id: audrey_core::DeploymentId,
    ) -> Result<Vec<audrey_core::InstanceId>, std::convert::Infallible> {
        self.instance_reads
            .set(self.instance_reads.get() + 1_000_000);
        self.inner.deployment_instances(id)
    }
    fn config_server(
        &self,
        source: &str,
    ) -> Result<Option<audrey_core::rows::ConfigServer>, std::convert::Infallible> {
        self.inner.config_server(source)
    }
    fn config_servers(
        &self,
    ) -> Result<Vec<audrey_core::rows::ConfigServer>, std::convert::Infallible> {
        self.inner.config_servers()
    }
    fn counts(&self) -> Result<audrey_core::rows::Counts, std::convert::Infallible> {
        self.inner.counts()
    }
}

impl audrey_core::views::ViewWrite for CountingViews {
    fn put_deployment(
        &mut self,
        row: audrey_core::rows::Deployment,
    ) -> Result<(), std::convert::Infallible> {
        self.inner.put_deployment(row)
    }
    fn put_instance(
        &mut self,
        state: audrey_core::rows::InstanceState,
    ) -> Result<(), std::convert::Infallible> {
        self.inner.put_instance(state)
    }
    fn delete_instance(
        &mut self,
        id: audrey_core::InstanceId,
    ) -> Result<(), std::convert::Infallible> {
        self.inner.delete_instance(id)
    }
    fn put_config_server(
        &mut self,
        row: audrey_core::rows::ConfigServer,
    ) -> Result<(), std::convert::Infallible> {
        self.inner.put_config_server(row)
    }
    fn put_counts(
        &mut self,
        counts: audrey_core::rows::Counts,
    ) -> Result<(), std::convert::Infallible> {
        self.inner.put_counts(counts)
    }
}

#[test]
fn an_event_on_a_deployment_of_1000_instances_reads_only_its_own_instance_and_sources() {
    use audrey_core::projection::apply;
    let mut cs = DeploymentScript::new(BLOG);
    let mut views = MemoryViews::new();
    let ids: Vec<String> = (0..1000)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        // Everyone waits for the first instance's ipaddress.
        let params = if i == 0 {
            vec![]
        } else {
            vec![param_ref("db_ip", &ids[0], "ipaddress")]
        };
        views.apply(&cs.register(i as i64, id, "web", &[], vec![service("web", params)]));
    }
    assert_eq!(views.counts.unresolved_dependencies, 999);
    let mut counting = CountingViews {
        inner: views,
        instance_reads: std::cell::Cell::new(0),
    };
    for event in [
        cs.contacted(2000, &ids[500]),
        cs.started(2001, &ids[500], "web"),
        cs.ended(2002, &ids[500], "web", 0),
        cs.provided(2003, &ids[0], &["ipaddress"]),
    ] {
        counting.instance_reads.set(0);
        apply(&mut counting, &event).unwrap();
        assert!(
            counting.instance_reads.get() <= 2,
            "{} instance reads for {:?}",
            counting.instance_reads.get(),
            event.event_type()
        );
    }
    assert_eq!(
        counting.inner.counts.unresolved_dependencies, 0,
        "999 waiters resolved by one event on the source"
    );
    assert_eq!(counting.inner.counts, recount(&counting.inner));
}
