//! The publishers in the config servers' own languages, end to end: one
//! realistic workload published to five services through the official
//! CloudEvents Python SDK (binary mode; structured mode; half in each,
//! alternating), the Ruby
//! library (`examples/replay.rb`) and the Rust reference publisher gives
//! byte-identical reports, valid against the schema and equal to what the
//! pure projection says; the Ruby wordpress + mysql driver completes a
//! deployment.
//!
//! Needs `python3` with the packages of `publishers/python/requirements.txt`
//! and `ruby` with bunny (`./dev test` installs them): without them the
//! tests fail, saying what is missing.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use audrey_api::xml;
use audrey_consumer::{Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, DeploymentFilter, ReportContext};
use audrey_core::{Event, Name, Status, Timestamp};
use common::*;
use serde_json::Value;

const SDK_PUBLISH: &str = "publishers/python/sdk_publish.py";
const RUBY_REPLAY: &str = "publishers/ruby/examples/replay.rb";
const RUBY_WORDPRESS_MYSQL: &str = "publishers/ruby/examples/wordpress_mysql.rb";

/// Every service runs with this `--heartbeat-tolerance`, so that the config
/// servers of the workload stay `running` for the whole test: reports taken
/// a few seconds apart (and the projection's) must not straddle a change.
const HEARTBEAT_TOLERANCE: &str = "1000";

const WAIT: Duration = Duration::from_secs(60);

/// Fails (does not skip) when a publisher's language or library is missing:
/// CI installs them, so their absence is a broken set-up.
fn require(program: &str, args: &[&str], what: &str, install: &str) {
    match Command::new(program).args(args).output() {
        Err(e) => panic!("{what}: cannot run `{program}` ({e}); install it with: {install}"),
        Ok(out) if !out.status.success() => panic!(
            "{what}: `{program} {}` failed: {}; install it with: {install}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => {}
    }
}

fn require_python_sdk() {
    require(
        "python3",
        &["-c", "import cloudevents.core.bindings.rabbitmq, pika"],
        "the CloudEvents Python SDK publisher needs python3 with cloudevents>=2.1 and pika",
        "`python3 -m pip install -r publishers/python/requirements.txt` (./dev test does)",
    );
}

fn require_ruby() {
    require(
        "ruby",
        &["-e", "require 'bunny'"],
        "the Ruby publisher needs ruby with bunny",
        "`apt-get install ruby ruby-bunny` (./dev test does)",
    );
}

/// Waits for a publisher's process and insists it succeeded; returns its
/// standard output.
fn succeeded(what: &str, child: Child) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{what} failed ({status}):\n{}\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}

fn spawn(program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// A realistic workload from two config servers, in the recent past, with
/// times to the millisecond: the Python SDK keeps at most microseconds
/// (and Ruby publishers commonly milliseconds), while the generator's
/// times carry nanoseconds.
fn workload() -> Vec<Event> {
    let mut events = realistic_stream(20_261_130, 6, 3);
    for event in &mut events {
        let nanos = event.time().nanos();
        event.set_time(Timestamp::from_nanos(
            (nanos + 500_000).div_euclid(1_000_000) * 1_000_000,
        ));
    }
    events
}

/// The reports' URLs, the JSON or XML a service must answer for each, as
/// the pure projection computes them (None: 404).
struct Expected {
    path: String,
    xml: Option<Vec<u8>>,
    json: Option<Value>,
}

fn expected_reports(views: &MemoryViews, ctx: &ReportContext) -> Vec<Expected> {
    let mut out = Vec::new();
    for id in views.deployments.keys() {
        let report = query::deployment_report(views, *id, ctx).unwrap();
        out.push(Expected {
            path: format!("/reports/deployment/{id}"),
            xml: report.as_ref().map(xml::deployment),
            json: report.as_ref().map(|r| serde_json::to_value(r).unwrap()),
        });
    }
    for (id, state) in &views.instances {
        let report = query::instance_report(views, *id, ctx).unwrap();
        out.push(Expected {
            path: format!("/reports/instance/{id}"),
            xml: report.as_ref().map(xml::instance),
            json: report.as_ref().map(|r| serde_json::to_value(r).unwrap()),
        });
        let names: Vec<Name> = state
            .visible_services()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            let report = query::service_report(views, *id, &name, ctx).unwrap();
            out.push(Expected {
                path: format!("/reports/instance/{id}/service/{name}"),
                xml: report.as_ref().map(xml::service),
                json: report.as_ref().map(|r| serde_json::to_value(r).unwrap()),
            });
        }
    }
    let filters = [
        (None, DeploymentFilter::All),
        (Some("success"), DeploymentFilter::Status(Status::Success)),
        (
            Some("incomplete"),
            DeploymentFilter::Status(Status::Incomplete),
        ),
        (Some("error"), DeploymentFilter::Status(Status::Error)),
        (Some("stalled"), DeploymentFilter::Stalled),
    ];
    for (status, filter) in filters {
        let page = query::deployment_page(views, filter, 0, 100, ctx).unwrap();
        let mut value = serde_json::to_value(&page).unwrap();
        if let Some(status) = status {
            value["status"] = Value::from(status);
        }
        out.push(Expected {
            path: match status {
                Some(s) => format!("/reports/deployments?status={s}"),
                None => "/reports/deployments".into(),
            },
            xml: Some(xml::deployments(&page, status, None)),
            json: Some(value),
        });
    }
    let servers = query::config_servers(views, ctx).unwrap();
    out.push(Expected {
        path: "/reports/configserver".into(),
        xml: Some(xml::config_servers(&servers)),
        json: Some(serde_json::json!({ "config_servers": servers })),
    });
    out
}

#[test]
fn python_sdk_ruby_and_rust_publishers_give_byte_identical_reports() {
    require_python_sdk();
    require_ruby();
    let started = Instant::now();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();

    let events = workload();
    let file_path = dir.path().join("workload.jsonl");
    let lines: String = events
        .iter()
        .map(|e| format!("{}\n", e.to_json()))
        .collect();
    std::fs::write(&file_path, lines).unwrap();
    let file = file_path.to_str().unwrap();

    let names = [
        "python-binary",
        "python-structured",
        "python-alternate",
        "ruby",
        "rust",
    ];
    let topologies: Vec<Topology> = names
        .iter()
        .map(|n| unique_topology(&format!("publishers-{n}")))
        .collect();
    let _cleanup: Vec<RemoveOnDrop> = topologies.iter().cloned().map(RemoveOnDrop).collect();
    let services: Vec<Service> = names
        .iter()
        .zip(&topologies)
        .map(|(name, topology)| {
            Service::start(
                &dir.path().join(name),
                topology,
                &["--heartbeat-tolerance", HEARTBEAT_TOLERANCE],
            )
        })
        .collect();
    for service in &services {
        service.wait_ready(WAIT);
    }

    // The three other languages' publishers run side by side while the
    // Rust one publishes.
    let python = |mode: &str, topology: &Topology| {
        spawn(
            "python3",
            &[
                SDK_PUBLISH,
                file,
                "--mode",
                mode,
                "--url",
                AMQP_URL,
                "--exchange",
                topology.exchange.as_str(),
                "-q",
            ],
        )
    };
    let binary = python("binary", &topologies[0]);
    let structured = python("structured", &topologies[1]);
    // Half of the events in each mode, one after the other, into one
    // service: as a config server moving from one SDK setting to the other.
    let alternate = python("alternate", &topologies[2]);
    let ruby = spawn(
        "ruby",
        &[
            RUBY_REPLAY,
            file,
            "--url",
            AMQP_URL,
            "--exchange",
            topologies[3].exchange.as_str(),
        ],
    );
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topologies[4]).await.unwrap();
        publisher.publish_all(&events).await.unwrap();
        publisher.close().await.unwrap();
    });
    for (mode, child) in [("binary", binary), ("structured", structured)] {
        let what = format!("sdk_publish.py --mode {mode}");
        let summary: Value = serde_json::from_str(succeeded(&what, child).trim()).unwrap();
        assert_eq!(summary["published"], events.len(), "{what}: {summary}");
        assert_eq!(summary[mode], events.len(), "{what}: {summary}");
    }
    let summary: Value =
        serde_json::from_str(succeeded("sdk_publish.py --mode alternate", alternate).trim())
            .unwrap();
    assert_eq!(
        (
            summary["published"].as_u64(),
            summary["structured"].as_u64(),
            summary["binary"].as_u64()
        ),
        (
            Some(events.len() as u64),
            Some(events.len().div_ceil(2) as u64),
            Some((events.len() / 2) as u64)
        ),
        "sdk_publish.py --mode alternate: {summary}"
    );
    assert_eq!(
        succeeded("replay.rb", ruby).trim(),
        format!("published={}", events.len())
    );
    let published_at = started.elapsed();

    // Each service consumes every event once: none refused, none a duplicate.
    for (name, service) in names.iter().zip(&services) {
        wait_until(WAIT, &format!("{name}: every event consumed"), || {
            let m = service.get("/metrics").text();
            metric_sum(&m, "audrey_events_consumed_total") >= events.len() as f64
                || metric_sum(&m, "audrey_events_dead_lettered_total") > 0.0
        });
        let m = service.get("/metrics").text();
        assert_eq!(
            (
                metric_sum(&m, "audrey_events_consumed_total"),
                metric_sum(&m, "audrey_events_dead_lettered_total"),
                metric_sum(&m, "audrey_events_duplicate_total"),
            ),
            (events.len() as f64, 0.0, 0.0),
            "{name}: (consumed, dead-lettered, duplicates); log:\n{}",
            service.log_text()
        );
    }

    // What the pure projection says: the workload is a realistic one.
    let views = MemoryViews::from_events(&events);
    // The services' settings: the defaults, but for the tolerance.
    let mut ctx = ReportContext::at(Timestamp::now());
    ctx.heartbeat_tolerance = HEARTBEAT_TOLERANCE.parse().unwrap();
    let counts = views.counts;
    assert!(
        counts.deployments.success > 0
            && counts.deployments.incomplete + counts.deployments.error > 0
            && views.deployments.values().any(|d| d.deleted.is_some())
            && views.config_servers.len() == 2,
        "a workload with successes, failures or waits, a deletion and two config servers: {counts:?}"
    );
    for (name, service) in names.iter().zip(&services) {
        let m = service.get("/metrics").text();
        for (family, tally) in [
            ("audrey_deployments", counts.deployments),
            ("audrey_instances", counts.instances),
            ("audrey_services", counts.services),
        ] {
            for (status, n) in [
                ("success", tally.success),
                ("incomplete", tally.incomplete),
                ("error", tally.error),
            ] {
                let series = format!("{family}{{status=\"{status}\"}}");
                assert_eq!(
                    metric_value(&m, &series),
                    Some(n as f64),
                    "{name}: {series}"
                );
            }
        }
        assert_eq!(
            metric_value(&m, "audrey_unresolved_dependencies"),
            Some(counts.unresolved_dependencies as f64),
            "{name}: unresolved dependencies"
        );
    }

    // Every report of the workload, as XML and as JSON: the same bytes from
    // the five services, valid, and what the projection says.
    let expected = expected_reports(&views, &ctx);
    let mut found = 0;
    for e in &expected {
        for json in [false, true] {
            let headers: &[(&str, &str)] = if json {
                &[("Accept", "application/json")]
            } else {
                &[]
            };
            let answers: Vec<Response> = services
                .iter()
                .map(|s| {
                    get(s.port, &e.path, headers)
                        .unwrap_or_else(|| panic!("GET {} failed on {}", e.path, s.port))
                })
                .collect();
            for (name, answer) in names.iter().zip(&answers).skip(1) {
                // Asked a moment apart: what still runs has run a little longer.
                assert!(
                    answer.status == answers[0].status
                        && same_but_for_the_clock(&answer.text(), &answers[0].text(), 10.0),
                    "GET {} (json: {json}) on {name} differs from {}:\n{}\n{}",
                    e.path,
                    names[0],
                    answer.text(),
                    answers[0].text()
                );
            }
            let answer = &answers[0];
            let want_found = if json {
                e.json.is_some()
            } else {
                e.xml.is_some()
            };
            assert_eq!(
                answer.status,
                if want_found { 200 } else { 404 },
                "GET {}: {}",
                e.path,
                answer.text()
            );
            if json {
                if let Some(want) = &e.json {
                    let mut body: Value = serde_json::from_slice(&answer.body).unwrap();
                    // The freshness watermark is the service's, not the projection's.
                    let as_of = body.as_object_mut().and_then(|o| o.remove("as_of"));
                    assert!(as_of.is_some(), "GET {} (JSON) has no as_of", e.path);
                    // The projection's reports were computed at the start of
                    // the comparison: durations of what runs differ by its length.
                    assert!(
                        same_but_for_the_clock(&body.to_string(), &want.to_string(), 600.0),
                        "GET {} (JSON) is not the projection's:\n{body}\nwant:\n{want}",
                        e.path
                    );
                }
            } else {
                assert_xsd_valid(&answer.body);
                if let Some(want) = &e.xml {
                    let text = answer.text();
                    assert!(text.contains(" as-of=\""), "GET {}: no as-of", e.path);
                    assert!(
                        same_but_for_the_clock(
                            &without_as_of(&text),
                            &String::from_utf8_lossy(want),
                            600.0
                        ),
                        "GET {} is not the projection's:\n{}\nwant:\n{}",
                        e.path,
                        answer.text(),
                        String::from_utf8_lossy(want)
                    );
                    found += 1;
                }
            }
        }
    }
    eprintln!(
        "{} events through five publishers (published in {:.1} s); {} report URLs ({found} found) \
         identical as XML and JSON on the five services; {:.1} s in all",
        events.len(),
        published_at.as_secs_f64(),
        expected.len(),
        started.elapsed().as_secs_f64()
    );
    for service in services {
        assert_eq!(service.stop(), Some(0));
    }
}

#[test]
fn the_ruby_wordpress_mysql_driver_completes_a_deployment() {
    require_ruby();
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology("publishers-ruby-lifecycle");
    let _cleanup = RemoveOnDrop(topology.clone());
    let service = Service::start(&dir.path().join("data"), &topology, &[]);
    service.wait_ready(WAIT);

    let out = succeeded(
        "wordpress_mysql.rb",
        spawn(
            "ruby",
            &[
                RUBY_WORDPRESS_MYSQL,
                "--url",
                AMQP_URL,
                "--exchange",
                topology.exchange.as_str(),
                "--timeout",
                "30",
            ],
        ),
    );
    let printed = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the driver printed no `{key}=` line:\n{out}"))
            .to_owned()
    };
    let (deployment, mysql, wordpress) = (
        printed("deployment"),
        printed("mysql"),
        printed("wordpress"),
    );
    let published: f64 = printed("published").parse().unwrap();

    wait_until(WAIT, "the driver's events to be consumed", || {
        metric_sum(
            &service.get("/metrics").text(),
            "audrey_events_consumed_total",
        ) >= published
    });
    let path = format!("/reports/deployment/{deployment}");
    let xml_report = service.get(&path);
    assert_eq!(xml_report.status, 200, "{}", xml_report.text());
    assert_xsd_valid(&xml_report.body);
    let report = get(service.port, &path, &[("Accept", "application/json")]).unwrap();
    let report: Value = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(report["status"], "success", "{report:#}");
    assert_eq!(report["name"], "blog", "{report:#}");
    let mut instances: Vec<(String, String, String)> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let field = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (field("uuid"), field("assembly"), field("status"))
        })
        .collect();
    instances.sort();
    let mut want = vec![
        (mysql, "mysql".to_owned(), "success".to_owned()),
        (wordpress, "wordpress".to_owned(), "success".to_owned()),
    ];
    want.sort();
    assert_eq!(instances, want, "{report:#}");
    assert!(
        report.get("unresolved_dependencies").is_none(),
        "no unresolved dependencies: {report:#}"
    );
    assert!(report.get("completed").is_some(), "{report:#}");
    assert_eq!(service.stop(), Some(0));
}
