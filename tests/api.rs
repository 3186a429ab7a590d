//! The reporting API over real HTTP: every endpoint on an ephemeral port
//! over a store filled by the projection, every answer checked against
//! `schemas/reports.xsd`, the wordpress + mysql lifecycle step by step, and
//! bad input of every kind.

mod common;

use std::sync::Arc;

use audrey_api::{ApiSettings, ApiState, Metrics};
use audrey_core::scenario::script::*;
use audrey_core::{Event, EventId, Heartbeat, Source};
use audrey_store::Store;
use common::{assert_xsd_valid, get, request, without_as_of, Response};

/// The API in this process, over its own store.
struct Api {
    port: u16,
    store: Arc<Store>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start(settings: ApiSettings) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("data")).unwrap());
        let state = Arc::new(ApiState::new(
            Arc::clone(&store),
            Arc::new(Metrics::new()),
            settings,
        ));
        state.set_amqp_connected(true);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(audrey_api::bind("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(audrey_api::serve(listener, state, std::future::pending()));
        Api {
            port,
            store,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn apply(&self, events: &[Event]) {
        self.store.apply_batch(events).unwrap();
    }

    /// GET, asserting the status and that the body is valid XML of the schema.
    /// The XML body, valid against the XSD, without its freshness
    /// watermark (the `as-of` attribute of a report's root element, which
    /// moves with every event and is checked on its own).
    fn xml(&self, path: &str, status: u16) -> String {
        let r = get(self.port, path, &[]).expect("the API answers");
        assert_eq!(r.status, status, "GET {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/xml; charset=utf-8")
        );
        assert_xsd_valid(&r.body);
        without_as_of(&r.text())
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.port, method, path, headers).expect("the API answers")
    }
}

#[test]
fn the_wordpress_and_mysql_lifecycle_reads_as_the_original_reports_would() {
    let api = Api::start(ApiSettings::default());
    let mut cs = DeploymentScript::new(BLOG);
    let deployment = format!("/reports/deployment/{BLOG}");
    let mysql = format!("/reports/instance/{MYSQL}");
    let wordpress = format!("/reports/instance/{WORDPRESS}");

    // 1. Conductor posted both configs and the deployment.
    api.apply(&blog_registered(&mut cs));
    let d = api.xml(&deployment, 200);
    assert!(
        d.contains(&format!(
            "<deployment uuid=\"{BLOG}\" name=\"blog\" status=\"incomplete\""
        )),
        "{d}"
    );
    assert!(
        d.contains("<registered>2026-11-25T14:00:02Z</registered>"),
        "{d}"
    );
    assert!(
        !d.contains("<completed>"),
        "no completed before every instance completed"
    );
    assert!(d.contains(&format!("<dependency instance=\"{WORDPRESS}\" service=\"wordpress\" parameter=\"mysql_ip\"><source-assembly uuid=\"{MYSQL}\"/><return-param-name name=\"ipaddress\"/></dependency>")), "{d}");
    assert!(d.contains("<service-name name=\"mysql\"/>"), "{d}");
    let m = api.xml(&mysql, 200);
    assert!(!m.contains("first-contacted"), "no contact yet");
    assert!(m.contains("<pending-return-parameters><return-parameter name=\"ipaddress\"/><return-parameter name=\"hostname\"/></pending-return-parameters>"), "{m}");
    let w = api.xml(&wordpress, 200);
    assert!(
        w.contains("<unresolved-service-parameters><service-parameter name=\"mysql_ip\">"),
        "{w}"
    );

    // 2. mysql's agent calls in and reports its ipaddress: wordpress's wait on it ends.
    api.apply(&[
        cs.contacted(30, MYSQL),
        cs.provided(31, MYSQL, &["ipaddress", "hostname"]),
    ]);
    let m = api.xml(&mysql, 200);
    assert!(m.contains("<first-contacted>2026-11-25T14:00:30Z</first-contacted><last-contacted>2026-11-25T14:00:31Z</last-contacted>"), "{m}");
    assert!(!m.contains("pending-return-parameters"));
    let w = api.xml(&wordpress, 200);
    assert!(
        !w.contains("name=\"mysql_ip\""),
        "resolved before wordpress even called: {w}"
    );
    assert!(
        w.contains("name=\"mysql_done\""),
        "still waits for mysql's service"
    );

    // 3. mysql's service fails: error, and the failure still resolves the service-reference.
    api.apply(&[
        cs.started(32, MYSQL, "mysql"),
        cs.ended(40, MYSQL, "mysql", 1),
    ]);
    let m = api.xml(&mysql, 200);
    assert!(m.contains("status=\"error\""));
    assert!(m.contains("<service name=\"mysql\" status=\"error\"><configuration-started>2026-11-25T14:00:32Z</configuration-started><configuration-ended>2026-11-25T14:00:40Z</configuration-ended><completion-status>1</completion-status><duration-seconds>8</duration-seconds></service>"), "{m}");
    assert!(
        m.contains("<duration-seconds>40</duration-seconds>"),
        "registration to completion: {m}"
    );
    assert!(m.contains("<completed>2026-11-25T14:00:40Z</completed>"));
    let d = api.xml(&deployment, 200);
    assert!(d.contains("status=\"error\""));
    assert!(!d.contains("unresolved-dependencies"), "{d}");

    // 4. wordpress configures; the deployment completes, in error because of mysql.
    api.apply(&[
        cs.contacted(41, WORDPRESS),
        cs.started(42, WORDPRESS, "http"),
        cs.ended(43, WORDPRESS, "http", 0),
        cs.started(44, WORDPRESS, "wordpress"),
    ]);
    let s = api.xml(
        &format!("/reports/instance/{WORDPRESS}/service/wordpress"),
        200,
    );
    assert!(s.contains(&format!("<service name=\"wordpress\" instance=\"{WORDPRESS}\" status=\"incomplete\"><configuration-started>")), "{s}");
    assert!(!s.contains("configuration-ended"));
    api.apply(&[cs.ended(50, WORDPRESS, "wordpress", 0)]);
    let d = api.xml(&deployment, 200);
    assert!(
        d.contains("<completed>2026-11-25T14:00:50Z</completed>"),
        "{d}"
    );
    assert!(d.contains(&format!(
        "<instance uuid=\"{WORDPRESS}\" assembly=\"wordpress\" status=\"success\"/>"
    )));
    assert!(d.contains(&format!(
        "<instance uuid=\"{MYSQL}\" assembly=\"mysql\" status=\"error\"/>"
    )));
    // The versioned paths of the original say the same.
    assert_eq!(api.xml(&format!("/reports/1/deployment/{BLOG}"), 200), d);
    assert_eq!(
        api.xml(&format!("/reports/2/instance/{MYSQL}"), 200),
        api.xml(&mysql, 200)
    );

    // 5. Conductor deletes it: gone.
    api.apply(&[cs.deleted(60)]);
    let e = api.xml(&deployment, 404);
    assert!(
        e.contains("<error><code>404</code><message>no deployment"),
        "{e}"
    );
    api.xml(&mysql, 404);
}

#[test]
fn lists_config_servers_health_json_etag_and_head() {
    let api = Api::start(ApiSettings::default());
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.push(Event::Heartbeat(Heartbeat {
        id: EventId::parse("hb-1").unwrap(),
        source: Source::parse("/configserver/cs-01").unwrap(),
        time: audrey_core::Timestamp::now(),
        version: "0.4.2".into(),
        interval_seconds: 30,
    }));
    api.apply(&events);

    let list = api.xml("/reports/deployments?status=incomplete", 200);
    assert!(
        list.contains("<deployments total=\"1\" offset=\"0\" limit=\"100\" status=\"incomplete\">"),
        "{list}"
    );
    assert!(list.contains("<instance-counts total=\"2\" success=\"0\" incomplete=\"2\" error=\"0\"/><unresolved-dependencies count=\"2\"/>"), "{list}");
    let stalled = api.xml("/reports/deployments?status=stalled", 200);
    assert!(
        stalled.contains("total=\"1\""),
        "events from 2026-11-25T14:00 are long past 15 minutes: {stalled}"
    );
    let none = api.xml("/reports/deployments?status=success&offset=0&limit=5", 200);
    assert!(none.contains("total=\"0\""));

    let servers = api.xml("/reports/configserver", 200);
    assert!(servers.contains("<config-server source=\"/configserver/cs-01\" status=\"running\" version=\"0.4.2\" interval-seconds=\"30\"><last-heartbeat>"), "{servers}");
    let d = api.xml(&format!("/reports/deployment/{BLOG}"), 200);
    assert!(
        d.contains(
            "<config-servers><config-server source=\"/configserver/cs-01\" status=\"running\""
        ),
        "{d}"
    );
    assert!(d.contains("stalled=\"true\""));

    let health = api.xml("/health", 200);
    assert!(health.contains("<health status=\"ready\""), "{health}");
    assert!(
        health.contains("><rocksdb status=\"open\"/><amqp status=\"connected\"/></health>"),
        "{health}"
    );
    // Every report carries the freshness watermark: the latest event applied.
    let latest = events.iter().map(|e| e.time()).max().unwrap().to_rfc3339();
    for path in [
        format!("/reports/deployment/{BLOG}"),
        "/reports/configserver".into(),
    ] {
        let raw = get(api.port, &path, &[]).unwrap().text();
        assert!(raw.contains(&format!(" as-of=\"{latest}\"")), "{raw}");
        let json = get(api.port, &path, &[("Accept", "application/json")]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(v["as_of"], latest.as_str());
    }

    // JSON, same content.
    let json = get(
        api.port,
        &format!("/reports/instance/{MYSQL}"),
        &[("Accept", "application/json")],
    )
    .unwrap();
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["uuid"], MYSQL);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["pending_return_parameters"],
        serde_json::json!(["ipaddress", "hostname"])
    );
    assert_eq!(v["services"][0]["name"], "mysql");

    // ETag / If-None-Match / Cache-Control.
    let path = format!("/reports/deployment/{BLOG}");
    let first = get(api.port, &path, &[]).unwrap();
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let again = get(api.port, &path, &[("If-None-Match", &etag)]).unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    api.apply(&[cs.contacted(70, MYSQL)]);
    let changed = get(api.port, &path, &[("If-None-Match", &etag)]).unwrap();
    assert_eq!(
        changed.status, 200,
        "the report changed, so the ETag no longer matches"
    );
    assert_ne!(changed.header("etag"), Some(etag.as_str()));

    let head = api.send("HEAD", &path, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

/// Method, path, headers, and the status it must get.
type BadRequest<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16);

#[test]
fn bad_input_gets_the_right_status_and_a_valid_error_body() {
    let api = Api::start(ApiSettings {
        api_token: Some("s3cret-token".into()),
        ..ApiSettings::default()
    });
    api.apply(&blog_registered(&mut DeploymentScript::new(BLOG)));
    let auth = ("Authorization", "Bearer s3cret-token");
    let long_name = "x".repeat(300);
    let cases: Vec<BadRequest> = vec![
        (
            "GET",
            "/reports/deployment/not-a-uuid".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            "/reports/instance/0b6a4d1e7c2f4a8b9e3d5f1a2b3c4d5e".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            format!("/reports/instance/{MYSQL}/service/{long_name}"),
            vec![auth],
            400,
        ),
        (
            "GET",
            format!("/reports/instance/{MYSQL}/service/..%2F..%2Fetc%2Fpasswd"),
            vec![auth],
            400,
        ),
        (
            "GET",
            format!("/reports/instance/{MYSQL}/service/%00"),
            vec![auth],
            400,
        ),
        (
            "GET",
            format!("/reports/instance/{MYSQL}/service/my%20sql"),
            vec![auth],
            404,
        ),
        (
            "GET",
            format!("/reports/instance/{MYSQL}/service/../../../etc/passwd"),
            vec![auth],
            404,
        ),
        ("GET", "/reports/../../etc/passwd".into(), vec![auth], 404),
        (
            "GET",
            "/reports/deployment/3c9e8f2a-5b1d-4c7e-9f10-000000000000".into(),
            vec![auth],
            404,
        ),
        (
            "GET",
            "/reports/3/deployment/3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53".into(),
            vec![auth],
            404,
        ),
        ("GET", "/nothing/here".into(), vec![auth], 404),
        (
            "POST",
            format!("/reports/deployment/{BLOG}"),
            vec![auth],
            405,
        ),
        (
            "DELETE",
            format!("/reports/instance/{MYSQL}"),
            vec![auth],
            405,
        ),
        ("PUT", "/health".into(), vec![], 405),
        (
            "GET",
            format!("/reports/deployment/{BLOG}"),
            vec![auth, ("Accept", "text/html")],
            406,
        ),
        ("GET", format!("/reports/deployment/{BLOG}"), vec![], 401),
        (
            "GET",
            format!("/reports/deployment/{BLOG}"),
            vec![("Authorization", "Bearer wrong-token!")],
            401,
        ),
        (
            "GET",
            format!("/reports/deployment/{BLOG}"),
            vec![("Authorization", "Basic czNjcmV0LXRva2Vu")],
            401,
        ),
        (
            "GET",
            "/reports/deployments?status=done".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            "/reports/deployments?limit=0".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            "/reports/deployments?limit=abc".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            "/reports/deployments?color=red".into(),
            vec![auth],
            400,
        ),
        (
            "GET",
            format!("/reports/deployment/{}", "a".repeat(3000)),
            vec![auth],
            414,
        ),
    ];
    for (method, path, headers, status) in cases {
        let r = api.send(method, &path, &headers);
        assert_eq!(
            r.status,
            status,
            "{method} {}: {}",
            &path[..path.len().min(100)],
            r.text()
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/xml; charset=utf-8"),
            "{method} {path}"
        );
        assert_xsd_valid(&r.body);
        assert!(r.text().contains(&format!("<code>{status}</code>")));
        if status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
        if status == 401 {
            assert!(r
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
    }
    let big = "x".repeat(20_000);
    let r = api.send("GET", "/health", &[("X-Padding", &big)]);
    assert_eq!(r.status, 431, "headers over 16 KiB");
    assert_xsd_valid(&r.body);
    // Beyond what the HTTP parser buffers at all: still 431, not a reset.
    let huge = "x".repeat(600_000);
    let r = api.send("GET", "/health", &[("X-Padding", &huge)]);
    assert_eq!(r.status, 431, "headers over the parser's buffer");
    // /health and /metrics stay open without the token.
    assert_eq!(api.send("GET", "/health", &[]).status, 200);
    let metrics = api.send("GET", "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains(
            "audrey_http_requests_total{route=\"/reports/deployment/{uuid}\",code=\"401\"}"
        ),
        "{}",
        metrics.text()
    );
}

#[test]
fn a_large_deployment_is_reported_whole() {
    // Over the size answered on the request's task: the blocking pool
    // answers, with the same document.
    let api = Api::start(ApiSettings::default());
    let mut cs = audrey_core::scenario::ConfigServerScript::new("/configserver/cs-big", 3);
    let shape = audrey_core::scenario::Shape {
        instances: 150,
        services_per_instance: 1,
        ..Default::default()
    };
    let start = audrey_core::Timestamp::from_unix_seconds(1_795_615_200);
    let events = cs.deployment(start, &shape);
    api.apply(&events);
    let deployment = events[0].deployment().unwrap();
    let report = api.xml(&format!("/reports/deployment/{deployment}"), 200);
    assert_eq!(report.matches("<instance ").count(), 150, "{report}");
    let small = api.xml(&format!("/reports/deployment/{BLOG}"), 404);
    assert!(small.contains("no deployment"), "{small}");
}

#[test]
fn history_lists_an_entitys_accepted_events_in_time_order() {
    let api = Api::start(ApiSettings::default());
    let mut cs = DeploymentScript::new(BLOG);
    let mut events = blog_registered(&mut cs);
    events.push(cs.contacted(30, MYSQL));
    events.push(cs.ended(40, MYSQL, "mysql", 3));
    events.reverse();
    api.apply(&events);
    let all = api.xml(&format!("/reports/deployment/{BLOG}/events"), 200);
    assert!(
        all.contains(&format!(
            "<events total=\"5\" offset=\"0\" limit=\"100\" deployment=\"{BLOG}\">"
        )),
        "{all}"
    );
    let order: Vec<usize> = [
        "instance.registered",
        "deployment.registered",
        "instance.contacted",
        "configuration_ended",
    ]
    .iter()
    .map(|t| all.find(t).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "time order: {all}");
    let mysql = api.xml(
        &format!("/reports/instance/{MYSQL}/events?offset=1&limit=1"),
        200,
    );
    assert!(mysql.contains(&format!("<events total=\"3\" offset=\"1\" limit=\"1\" deployment=\"{BLOG}\" instance=\"{MYSQL}\">")), "{mysql}");
    assert!(
        mysql.contains(
            "type=\"org.aeolusproject.audrey.instance.contacted\" time=\"2026-11-25T14:00:30Z\""
        ),
        "{mysql}"
    );
    let json = get(
        api.port,
        &format!("/reports/instance/{MYSQL}/events"),
        &[("Accept", "application/json")],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["events"][2]["data"]["return_code"], 3);
    assert_eq!(v["events"][2]["service"], "mysql");
    api.xml(
        "/reports/deployment/3c9e8f2a-5b1d-4c7e-9f10-000000000000/events",
        404,
    );
    api.xml(
        &format!("/reports/deployment/{BLOG}/events?status=error"),
        400,
    );
}
