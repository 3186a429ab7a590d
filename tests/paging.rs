//! Paging end to end: two replicas of the service on the real broker, a
//! real Prometheus scraping both and evaluating the shipped alert rules,
//! a real Alertmanager delivering to a webhook of the test's own. What a
//! person on call receives: a deployment that stalls is one notification
//! naming it and quoting its root blocker, whether both replicas are up
//! or one of them was killed; a config server that stops its heartbeats
//! is one notification; no replica left is one "reporting down". The
//! test's copy of the rules shortens `for:`; everything else in them
//! (expressions, `keep_firing_for`, labels, annotations) is shipped.
//! The shipped Grafana dashboard's queries run against the same
//! Prometheus and show the two replicas side by side.

mod common;
mod monitoring;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use audrey_consumer::{Publisher, Topology};
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::{DeploymentId, Event, Timestamp};
use common::*;
use monitoring::*;
use serde_json::Value;

/// Beats throughout (announcing 5 s, so that a loaded machine does not
/// make it look down) and publishes the deployments.
const DEPLOYING: &str = "/configserver/cs-deploying";
/// Beats every 500 ms announcing 1 s, then stops: down 3 s later.
const SILENCED: &str = "/configserver/cs-silenced";
/// The replicas' `--stall-after`.
const STALL_AFTER: &str = "3s";
/// Every rule's `for:` in the test's copy: longer than a scrape interval,
/// so that the scrape that shows a stall (and its blocker) comes before
/// the alert fires, as with the shipped minutes.
const FOR: &str = "5s";
/// How long any one state may take to show up: generous, for a loaded CI
/// machine; a healthy run takes seconds.
const WAIT: Duration = Duration::from_secs(120);
/// How long the test listens after a notification for a duplicate: many
/// rule evaluations, scrapes and Alertmanager group intervals (1 s each).
const QUIET: Duration = Duration::from_secs(15);
/// A replica's queue outlives it this long should the test die without
/// removing it.
const QUEUE_EXPIRES: &str = "10m";

/// The shipped rules with every `for:` set to [`FOR`], written in `dir`.
fn rules_for_the_test(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(shipped_rules()).unwrap();
    let mut shortened = 0;
    let mut text = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("for: ") {
            shortened += 1;
            text.push_str(&line[..line.len() - trimmed.len()]);
            text.push_str(&format!("for: {FOR}\n"));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let rules = shipped
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert: "))
        .count();
    assert!(rules > 0 && shortened == rules, "one `for:` per rule");
    let path = dir.join("alerts.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Replica `name` with its store in `dir/name` and a queue of its own.
fn start_replica(dir: &Path, base: &Topology, name: &str) -> Service {
    Service::start(
        &dir.join(name),
        base,
        &[
            "--replica",
            name,
            "--replica-queue-expires",
            QUEUE_EXPIRES,
            "--stall-after",
            STALL_AFTER,
        ],
    )
}

/// The events moved in time so that the last one happens at `end`.
fn ending_at(mut events: Vec<Event>, end: Timestamp) -> Vec<Event> {
    let last = events.iter().map(|e| e.time()).max().unwrap();
    let shift = end.nanos() - last.nanos();
    for e in &mut events {
        e.set_time(Timestamp::from_nanos(e.time().nanos() + shift));
    }
    events
}

fn publish(rt: &tokio::runtime::Runtime, topology: &Topology, events: &[Event]) {
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, topology).await.unwrap();
        publisher.publish_all(events).await.unwrap();
        publisher.close().await.unwrap();
    });
}

/// A deployment whose agents give up (it never completes, its last event
/// a quarter of a second ago).
fn stuck_deployment(script: &mut ConfigServerScript) -> (DeploymentId, Vec<Event>) {
    let now = Timestamp::now();
    let events = ending_at(
        script.deployment(now, &Shape::stalling()),
        now.plus_seconds(-0.25),
    );
    (events[0].deployment().unwrap(), events)
}

/// The alert of every notification delivered so far that carries alert
/// `alertname` with `label` = `value`: one per notification.
fn notified(webhook: &Webhook, alertname: &str, label: &str, value: &str) -> Vec<Value> {
    webhook
        .notifications()
        .iter()
        .filter_map(|n| {
            n["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == alertname && a["labels"][label] == value)
                .cloned()
        })
        .collect()
}

/// Waits for the first notification of `alertname` with `label` =
/// `value`; returns its alert.
fn first_notification(
    webhook: &Webhook,
    alertname: &str,
    label: &str,
    value: &str,
    context: &dyn Fn() -> String,
) -> Value {
    wait_for(
        WAIT,
        &format!("a notification of {alertname} {label}={value}"),
        context,
        || {
            notified(webhook, alertname, label, value)
                .into_iter()
                .next()
                .ok_or_else(|| "none yet".to_owned())
        },
    )
}

/// One line per notification delivered (for failure messages).
fn delivered(webhook: &Webhook) -> String {
    webhook
        .notifications()
        .iter()
        .map(|n| {
            let alerts: Vec<String> = n["alerts"]
                .as_array()
                .map(|alerts| alerts.iter().map(|a| a["labels"].to_string()).collect())
                .unwrap_or_else(|| vec![n.to_string()]);
            format!("  {} {}", n["status"], alerts.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The counts the test expects of each page, and what was delivered.
fn assert_counts(webhook: &Webhook, expected: &[(&str, &str, &str, usize)], context: &str) {
    for (alertname, label, value, n) in expected {
        let got = notified(webhook, alertname, label, value);
        assert_eq!(
            got.len(),
            *n,
            "{alertname} {label}={value}: {} notification(s), want {n}: {got:#?}\n{context}",
            got.len()
        );
    }
    for n in webhook.notifications() {
        assert_eq!(
            n["status"], "firing",
            "resolutions are not sent: {n}\n{context}"
        );
    }
}

/// The shared-state alerts carry no `instance`: replicas do not multiply
/// them.
fn assert_once_for_all_replicas(alert: &Value) {
    let labels = alert["labels"].as_object().unwrap();
    assert!(
        !labels.contains_key("instance"),
        "no replica named in {alert:#}"
    );
    assert_eq!(alert["labels"]["job"], JOB, "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "page", "{alert:#}");
    assert_eq!(alert["status"], "firing", "{alert:#}");
}

/// The root blocker of `deployment` as the service exports it, once every
/// replica in `replicas` does (all saying the same): its labels.
fn exported_blocker(
    prometheus: &Prometheus,
    deployment: DeploymentId,
    replicas: usize,
    context: &dyn Fn() -> String,
) -> Labels {
    wait_for(
        WAIT,
        &format!("{deployment}'s blocker from {replicas} replica(s)"),
        context,
        || {
            let series = prometheus.query(&format!(
                "audrey_deployment_blocked_on{{deployment=\"{deployment}\"}}"
            ))?;
            let instances: BTreeSet<&str> = series
                .iter()
                .map(|(l, _)| l.get("instance").map_or("", String::as_str))
                .collect();
            if instances.len() != replicas {
                return Err(format!("from {instances:?}"));
            }
            let without_instance = |l: &Labels| {
                let mut l = l.clone();
                l.remove("instance");
                l
            };
            let first = without_instance(&series[0].0);
            if series.iter().any(|(l, _)| without_instance(l) != first) {
                return Err(format!("the replicas disagree: {series:?}"));
            }
            Ok(first)
        },
    )
}

/// The stall notification names the deployment and quotes the root
/// blocker the service reports for it (its report and its metric agree).
fn assert_stall_notification(
    alert: &Value,
    deployment: DeploymentId,
    blocker: &Labels,
    report: &Value,
) {
    assert_once_for_all_replicas(alert);
    assert_eq!(alert["labels"]["deployment"], deployment.to_string());
    assert_eq!(
        alert["annotations"]["summary"],
        format!("Audrey deployment {deployment} is stalled")
    );
    let description = alert["annotations"]["description"].as_str().unwrap();
    let reported = &report["blocked_on"];
    assert_eq!(report["stalled"], true, "{report}");
    assert_eq!(reported["reason"], blocker["reason"], "{report}");
    assert_eq!(reported["instance"], blocker["root_instance"], "{report}");
    for needed in [
        format!("Deployment {deployment} is incomplete"),
        format!(
            "Root blocker ({}): {}.",
            blocker["reason"], blocker["summary"]
        ),
        blocker["root_instance"].clone(),
        format!("/reports/deployment/{deployment}"),
    ] {
        assert!(
            description.contains(&needed),
            "the description quotes {needed:?}: {description}"
        );
    }
}

/// A deployment's report in JSON from a running replica.
fn report(replica: &Service, deployment: DeploymentId) -> Value {
    let path = format!("/reports/deployment/{deployment}");
    let r = get(replica.port, &path, &[("Accept", "application/json")]).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// Every query of the shipped Grafana dashboard runs against this
/// Prometheus; the per-replica panels show each replica of `instances`
/// (side by side: one repeated panel each, one series each).
fn check_dashboard(prometheus: &Prometheus, instances: &BTreeSet<String>) -> Result<(), String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/audrey-reporting.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut per_replica_panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default();
        let repeated = panel["repeat"] == "instance";
        let by_replica = title.ends_with(", by replica");
        per_replica_panels += usize::from(repeated || by_replica);
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if repeated {
                for instance in instances {
                    let series = prometheus.query(&expr.replace("$instance", instance))?;
                    if series.len() != 1 || series[0].0.get("instance") != Some(instance) {
                        return Err(format!("{title} for {instance}: {expr}: {series:?}"));
                    }
                }
                continue;
            }
            let series = prometheus.query(&expr.replace("$instance", ".*"))?;
            let shown: BTreeSet<String> = series
                .iter()
                .filter_map(|(l, _)| l.get("instance").cloned())
                .collect();
            if by_replica && &shown != instances {
                return Err(format!(
                    "{title}: {expr} shows {shown:?}, want {instances:?}"
                ));
            }
        }
    }
    if per_replica_panels < 5 {
        return Err(format!("{per_replica_panels} per-replica panels"));
    }
    Ok(())
}

#[test]
fn one_page_per_stall_config_server_and_outage_whatever_the_replicas() {
    let rt = runtime();
    let base = unique_topology("paging");
    let _cleanup: Vec<RemoveOnDrop> = [base.clone().replica("r1"), base.clone().replica("r2")]
        .into_iter()
        .chain([base.clone()])
        .map(RemoveOnDrop)
        .collect();
    let dir = tempfile::tempdir().unwrap();

    let mut r1 = Some(start_replica(dir.path(), &base, "r1"));
    let mut r2 = Some(start_replica(dir.path(), &base, "r2"));
    for replica in [&r1, &r2].into_iter().flatten() {
        replica.wait_ready(Duration::from_secs(60));
    }
    let instance = |r: &Option<Service>| format!("127.0.0.1:{}", r.as_ref().unwrap().port);
    let (i1, i2) = (instance(&r1), instance(&r2));
    let instances = BTreeSet::from([i1.clone(), i2.clone()]);
    let replica_logs: Vec<PathBuf> = [&r1, &r2]
        .into_iter()
        .flatten()
        .map(|r| r.log.clone())
        .collect();

    let webhook = Webhook::start();
    let mut alertmanager = Alertmanager::start(&webhook.url());
    alertmanager.wait_ready(Duration::from_secs(60));
    let rules = rules_for_the_test(dir.path());
    let ports: Vec<u16> = [&r1, &r2].into_iter().flatten().map(|r| r.port).collect();
    let mut prometheus = Prometheus::start(&ports, &rules, Some(alertmanager.port()));
    prometheus.wait_ready(Duration::from_secs(60));
    let context = || {
        let tail = |text: String| {
            let mut from = text.len().saturating_sub(4000);
            while !text.is_char_boundary(from) {
                from += 1;
            }
            text[from..].to_owned()
        };
        let logs: String = replica_logs
            .iter()
            .map(|log| {
                format!(
                    "{}:\n{}\n",
                    log.display(),
                    tail(std::fs::read_to_string(log).unwrap_or_default())
                )
            })
            .collect();
        format!(
            "delivered:\n{}\nprometheus alerts: {:?}\nalertmanager alerts: {}\n\
             prometheus log:\n{}\nalertmanager log:\n{}\n{logs}",
            delivered(&webhook),
            prometheus.api("/api/v1/alerts"),
            alertmanager.alerts(),
            tail(prometheus.log_text()),
            tail(alertmanager.log_text()),
        )
    };

    // Both config servers beat; SILENCED stops when told.
    let (silence, silenced) = tokio::sync::watch::channel(false);
    let (stop_beating, mut stopped) = tokio::sync::watch::channel(false);
    let beating = {
        let topology = base.clone();
        rt.spawn(async move {
            let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
            let mut deploying = ConfigServerScript::new(DEPLOYING, 11);
            let mut silent = ConfigServerScript::new(SILENCED, 12);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let now = Timestamp::now();
                publisher
                    .publish(&deploying.heartbeat(now, 5))
                    .await
                    .unwrap();
                let beating_too = !*silenced.borrow();
                if beating_too {
                    publisher.publish(&silent.heartbeat(now, 1)).await.unwrap();
                }
            }
            publisher.close().await.unwrap();
        })
    };

    // Prometheus scrapes both replicas, both hear both config servers,
    // the rules evaluate, alerts go to the Alertmanager.
    wait_for(WAIT, "both replicas scraped and caught up", context, || {
        expect(
            "replicas up",
            prometheus.one(&format!("sum(up{{job=\"{JOB}\"}})")),
            2.0,
        )?;
        for source in [DEPLOYING, SILENCED] {
            expect(
                source,
                prometheus.one(&format!(
                    "sum(audrey_config_server_up{{source=\"{source}\"}})"
                )),
                2.0,
            )?;
        }
        expect(
            "caught-up replicas",
            prometheus.one("count(audrey_lag_seconds < 60 and audrey_amqp_connected == 1)"),
            2.0,
        )?;
        expect(
            "stall threshold",
            prometheus.one("max(audrey_stall_after_seconds)"),
            3.0,
        )?;
        prometheus.rules_healthy(&["AudreyDeploymentStalled", "AudreyReportingDown"])?;
        let managers = prometheus.api("/api/v1/alertmanagers")?;
        match managers["activeAlertmanagers"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            _ => Err(format!("alertmanagers: {managers}")),
        }
    });

    // Both replicas up: a deployment stalls, another succeeds, and
    // SILENCED stops beating.
    let mut script = ConfigServerScript::new(DEPLOYING, 5);
    let (stalled_1, stuck) = stuck_deployment(&mut script);
    let now = Timestamp::now();
    let done = ending_at(
        script.deployment(now, &Shape::succeeding()),
        now.plus_seconds(-5.0),
    );
    let done_id = done[0].deployment().unwrap();
    publish(&rt, &base, &[stuck, done].concat());
    silence.send(true).unwrap();

    let blocker_1 = exported_blocker(&prometheus, stalled_1, 2, &context);
    let alert = first_notification(
        &webhook,
        "AudreyDeploymentStalled",
        "deployment",
        &stalled_1.to_string(),
        &context,
    );
    assert_stall_notification(
        &alert,
        stalled_1,
        &blocker_1,
        &report(r1.as_ref().unwrap(), stalled_1),
    );
    let alert = first_notification(
        &webhook,
        "AudreyConfigServerDown",
        "source",
        SILENCED,
        &context,
    );
    assert_once_for_all_replicas(&alert);
    assert_eq!(
        alert["annotations"]["summary"],
        format!("Audrey config server {SILENCED} is down")
    );
    // The dashboard shows the replicas side by side.
    wait_for(WAIT, "the dashboard's queries", context, || {
        check_dashboard(&prometheus, &instances)
    });
    std::thread::sleep(QUIET);
    let stall_1 = (
        "AudreyDeploymentStalled",
        "deployment",
        stalled_1.to_string(),
    );
    let never: [(&str, &str, String); 2] = [
        ("AudreyDeploymentStalled", "deployment", done_id.to_string()),
        ("AudreyConfigServerDown", "source", DEPLOYING.to_owned()),
    ];
    let counts = |expected: &[(&str, &str, String, usize)]| {
        let expected: Vec<(&str, &str, &str, usize)> = expected
            .iter()
            .map(|(a, l, v, n)| (*a, *l, v.as_str(), *n))
            .collect();
        assert_counts(&webhook, &expected, &context());
    };
    let mut expected = vec![
        (stall_1.0, stall_1.1, stall_1.2.clone(), 1),
        ("AudreyConfigServerDown", "source", SILENCED.to_owned(), 1),
    ];
    expected.extend(never.iter().map(|(a, l, v)| (*a, *l, v.clone(), 0)));
    counts(&expected);
    // Both replicas were up and judged both throughout.
    expect(
        "replicas up",
        prometheus.one(&format!("sum(up{{job=\"{JOB}\"}})")),
        2.0,
    )
    .unwrap();

    // r2 is killed: the stall already paged stays one page; a new stall
    // is one page too, from r1 alone; r2 down is a ticket of its own.
    r2.take().unwrap().kill();
    wait_for(WAIT, "r2 down in Prometheus", context, || {
        expect(
            "r2 up",
            prometheus.one(&format!("up{{instance=\"{i2}\"}}")),
            0.0,
        )
    });
    let (stalled_2, stuck) = stuck_deployment(&mut script);
    publish(&rt, &base, &stuck);
    let blocker_2 = exported_blocker(&prometheus, stalled_2, 1, &context);
    let alert = first_notification(
        &webhook,
        "AudreyDeploymentStalled",
        "deployment",
        &stalled_2.to_string(),
        &context,
    );
    assert_stall_notification(
        &alert,
        stalled_2,
        &blocker_2,
        &report(r1.as_ref().unwrap(), stalled_2),
    );
    let ticket = first_notification(&webhook, "AudreyReplicaDown", "instance", &i2, &context);
    assert_eq!(ticket["labels"]["severity"], "ticket", "{ticket:#}");
    std::thread::sleep(QUIET);
    expected.push((
        "AudreyDeploymentStalled",
        "deployment",
        stalled_2.to_string(),
        1,
    ));
    expected.push(("AudreyReplicaDown", "instance", i2.clone(), 1));
    counts(&expected);

    // r1 is killed too: no replica left, one "reporting down" page; no
    // replica-down ticket for r1 (the page says it all).
    r1.take().unwrap().kill();
    let alert = first_notification(&webhook, "AudreyReportingDown", "job", JOB, &context);
    assert_once_for_all_replicas(&alert);
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("every one of the 2 audrey-reporting target(s)"),
        "{description}"
    );
    std::thread::sleep(QUIET);
    expected.push(("AudreyReportingDown", "job", JOB.to_owned(), 1));
    expected.push(("AudreyReplicaDown", "instance", i1.clone(), 0));
    counts(&expected);

    stop_beating.send(true).unwrap();
    rt.block_on(beating).unwrap();
}
