//! End to end with a real Prometheus: the service consumes events from the
//! real broker, a real Prometheus scrapes `/metrics` every second with the
//! shipped alert rules loaded, and what Prometheus stores is what the
//! service says and what the events imply: a stalled deployment, a
//! successful one, a config server up while it beats and down three
//! intervals after it stops.

mod common;
mod monitoring;

use std::time::Duration;

use audrey_consumer::{Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::{DeploymentId, Event, Timestamp};
use common::*;
use monitoring::*;
use serde_json::Value;

const SOURCE: &str = "/configserver/cs-test";
/// The service's `--stall-after`, and the heartbeats' announced interval
/// times the default tolerance (3 x 1 s).
const STALL_AFTER: f64 = 3.0;
const HEARTBEAT_DEADLINE: f64 = 3.0;
/// How long any one state may take to show up in Prometheus: generous,
/// for a loaded CI machine; a healthy run takes a few seconds.
const WAIT: Duration = Duration::from_secs(120);
/// A sample's timestamp is when Prometheus started the scrape; the service
/// reads its clock a little later. Samples this close to a threshold are
/// not judged on the early side.
const SCRAPE_LATENCY: f64 = 1.0;
/// Prometheus keeps milliseconds (and may align timestamps by a few).
const TIMESTAMP_SLACK: f64 = 0.05;

fn now_seconds() -> f64 {
    Timestamp::now().unix_seconds_f64()
}

/// Removes the topology at the end, also when the test fails.
struct TopologyGuard(Topology);

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(remove_topology(&self.0));
        }
    }
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

fn progress_series(deployment: DeploymentId) -> String {
    format!("audrey_deployment_last_progress_timestamp_seconds{{deployment=\"{deployment}\"}}")
}

#[test]
fn prometheus_scrapes_what_the_events_imply() {
    let rt = runtime();
    let topology = unique_topology("prometheus");
    let _remove_topology = TopologyGuard(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &["--stall-after", "3s"]);
    service.wait_ready(Duration::from_secs(60));
    let mut prometheus = Prometheus::start(&[service.port], &shipped_rules(), None);
    prometheus.wait_ready(Duration::from_secs(60));
    let context = || {
        format!(
            "service log:\n{}\nprometheus log:\n{}",
            service.log_text(),
            prometheus.log_text()
        )
    };

    // Heartbeats with the current time every 500 ms, announcing 1 s.
    let (stop_beating, mut stopped) = tokio::sync::watch::channel(false);
    let beat_topology = topology.clone();
    let beating = rt.spawn(async move {
        let publisher = Publisher::connect(AMQP_URL, &beat_topology).await.unwrap();
        let mut script = ConfigServerScript::new(SOURCE, 99);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut sent = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
            }
            let beat = script.heartbeat(Timestamp::now(), 1);
            publisher.publish(&beat).await.unwrap();
            sent.push(beat);
        }
        publisher.close().await.unwrap();
        sent
    });

    // Prometheus scrapes the service and sees the config server up before
    // any deployment exists (its first scrape comes a few seconds after it
    // starts: target discovery is throttled to 5 s).
    let up_series = format!("audrey_config_server_up{{source=\"{SOURCE}\"}}");
    let heartbeat_series =
        format!("audrey_config_server_last_heartbeat_timestamp_seconds{{source=\"{SOURCE}\"}}");
    let target_up = format!("up{{job=\"{JOB}\"}}");
    wait_for(WAIT, "the first scrapes", context, || {
        expect(&target_up, prometheus.one(&target_up), 1.0)?;
        expect(&up_series, prometheus.one(&up_series), 1.0)?;
        expect("stalled", prometheus.one("audrey_deployments_stalled"), 0.0)
    });

    // A deployment whose agents give up (it never completes; its last
    // event a quarter of a second ago) and one that succeeds, from the
    // same server.
    let mut script = ConfigServerScript::new(SOURCE, 5);
    let published_at = Timestamp::now();
    let stuck = ending_at(
        script.deployment(published_at, &Shape::stalling()),
        published_at.plus_seconds(-0.25),
    );
    let done = ending_at(
        script.deployment(published_at, &Shape::succeeding()),
        published_at.plus_seconds(-5.0),
    );
    let (stuck_id, done_id) = (
        stuck[0].deployment().unwrap(),
        done[0].deployment().unwrap(),
    );
    let last_progress = stuck.iter().map(|e| e.time()).max().unwrap();
    let lp = last_progress.unix_seconds_f64();
    let deployment_events: Vec<Event> = [done.clone(), stuck.clone()].concat();
    let expected = MemoryViews::from_events(&deployment_events).counts;
    assert_eq!(
        (
            expected.deployments.success,
            expected.deployments.incomplete
        ),
        (1, 1),
        "the scenario gives one successful and one incomplete deployment"
    );
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(&deployment_events).await.unwrap();
        publisher.close().await.unwrap();
    });

    // Not stalled before its 3 s have passed: judged once the service has
    // applied every event, if it answered quickly enough for that to hold.
    let (early, asked_at, answered_at) =
        wait_for(WAIT, "the stuck deployment in /metrics", context, || {
            let asked_at = now_seconds();
            let text = service.get("/metrics").text();
            let progress = metric_value(&text, &progress_series(stuck_id));
            let success = metric_value(&text, "audrey_deployments{status=\"success\"}");
            match (progress, success) {
                (Some(v), Some(1.0)) if v == lp => Ok((text, asked_at, now_seconds())),
                other => Err(format!("(progress, success) = {other:?}, want ({lp}, 1)")),
            }
        });
    if answered_at < lp + STALL_AFTER {
        assert_eq!(
            metric_value(&early, "audrey_deployments_stalled"),
            Some(0.0),
            "stalled {} s after its last event:\n{early}",
            answered_at - lp
        );
    } else {
        eprintln!(
            "slow machine: the stuck deployment showed up only {} s after its last event",
            asked_at - lp
        );
    }

    // Prometheus stores the stall (after 3 s), the success, the one
    // progress series, the config server up, the consumer connected.
    wait_for(
        WAIT,
        "the stall and the deployments in Prometheus",
        context,
        || {
            expect(&target_up, prometheus.one(&target_up), 1.0)?;
            expect("amqp", prometheus.one("audrey_amqp_connected"), 1.0)?;
            expect(&up_series, prometheus.one(&up_series), 1.0)?;
            for (status, n) in [("success", 1.0), ("incomplete", 1.0), ("error", 0.0)] {
                let series = format!("audrey_deployments{{status=\"{status}\"}}");
                expect(&series, prometheus.one(&series), n)?;
            }
            expect("stalled", prometheus.one("audrey_deployments_stalled"), 1.0)?;
            let progress = prometheus.query("audrey_deployment_last_progress_timestamp_seconds")?;
            match progress.as_slice() {
                [(labels, v)]
                    if labels.get("deployment") == Some(&stuck_id.to_string()) && *v == lp =>
                {
                    Ok(())
                }
                other => Err(format!(
                    "last progress series: {other:?}, want only {stuck_id} at {lp}"
                )),
            }
        },
    );

    // The target is the service, scraped without error.
    let targets = prometheus.api("/api/v1/targets").unwrap();
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["labels"]["job"], JOB);
    assert_eq!(
        active[0]["labels"]["instance"],
        format!("127.0.0.1:{}", service.port)
    );
    assert_eq!(active[0]["health"], "up", "{targets}");
    assert_eq!(active[0]["lastError"], "", "{targets}");

    // The service says the same over HTTP, in /metrics and in its reports.
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_value(&metrics, "audrey_deployments_stalled"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "audrey_deployments{status=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, &progress_series(stuck_id)),
        Some(lp),
        "{metrics}"
    );
    assert!(!metrics.contains(&done_id.to_string()), "{metrics}");
    assert_eq!(metric_value(&metrics, "audrey_amqp_connected"), Some(1.0));
    assert_eq!(metric_value(&metrics, &up_series), Some(1.0));
    for (family, counts) in [
        ("audrey_deployments", expected.deployments),
        ("audrey_instances", expected.instances),
        ("audrey_services", expected.services),
    ] {
        for (status, n) in [
            ("success", counts.success),
            ("incomplete", counts.incomplete),
            ("error", counts.error),
        ] {
            let series = format!("{family}{{status=\"{status}\"}}");
            assert_eq!(metric_value(&metrics, &series), Some(n as f64), "{series}");
            assert_eq!(prometheus.one(&series), Ok(n as f64), "{series}");
        }
    }
    assert_eq!(
        prometheus.one("audrey_unresolved_dependencies"),
        Ok(expected.unresolved_dependencies as f64)
    );
    assert_eq!(
        metric_value(&metrics, "audrey_unresolved_dependencies"),
        Some(expected.unresolved_dependencies as f64)
    );
    let json = |path: &str| -> Value {
        let r = get(service.port, path, &[("Accept", "application/json")]).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let report = json(&format!("/reports/deployment/{stuck_id}"));
    assert_eq!(report["status"], "incomplete", "{report}");
    assert_eq!(report["stalled"], true, "{report}");
    assert_eq!(
        report["last_progress"],
        last_progress.to_rfc3339(),
        "{report}"
    );
    let report = json(&format!("/reports/deployment/{done_id}"));
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(report["stalled"], false, "{report}");

    // Staleness computed in PromQL, as the shipped rules do.
    let age = prometheus
        .one("time() - audrey_deployment_last_progress_timestamp_seconds")
        .unwrap();
    assert!(age > STALL_AFTER, "last progress {age} s ago");
    assert!(prometheus
        .query(&format!(
            "audrey_deployment_last_progress_timestamp_seconds{{deployment=\"{done_id}\"}}"
        ))
        .unwrap()
        .is_empty());

    // The stall threshold, sample by sample. Before anything was published
    // nothing is stalled. From the first scrape that saw every event
    // applied (the consumer may apply them in several batches, and a
    // half-applied deployment is judged by its events so far), every
    // sample before last progress + 3 s says 0 and every one after says 1.
    let progress_samples = prometheus
        .samples(&progress_series(stuck_id), "10m")
        .unwrap();
    let success_samples = prometheus
        .samples("audrey_deployments{status=\"success\"}", "10m")
        .unwrap();
    let applied_from = progress_samples
        .iter()
        .filter(|(t, v)| *v == lp && success_samples.contains(&(*t, 1.0)))
        .map(|(t, _)| *t)
        .next()
        .expect("a scrape saw every deployment event applied");
    let stalled_samples = prometheus
        .samples("audrey_deployments_stalled", "10m")
        .unwrap();
    let published_at = published_at.unix_seconds_f64();
    assert!(
        stalled_samples.iter().any(|(t, _)| *t < published_at),
        "samples from before publishing: {stalled_samples:?}"
    );
    for (t, v) in &stalled_samples {
        if *t < published_at || (*t >= applied_from && *t < lp + STALL_AFTER - SCRAPE_LATENCY) {
            assert_eq!(
                *v, 0.0,
                "stalled at {t}, before {lp} + 3 s: {stalled_samples:?}"
            );
        }
        if *t >= applied_from && *t > lp + STALL_AFTER + TIMESTAMP_SLACK {
            assert_eq!(
                *v, 1.0,
                "not stalled at {t}, after {lp} + 3 s: {stalled_samples:?}"
            );
        }
    }

    // Every shipped rule loads and evaluates against these series.
    wait_for(WAIT, "every rule to evaluate", context, || {
        prometheus.rules_healthy(&["AudreyConfigServerDown", "AudreyDeploymentStalled"])
    });

    // The config server stops beating.
    stop_beating.send(true).unwrap();
    let beats = rt.block_on(beating).unwrap();
    let last_beat = beats
        .iter()
        .map(|e| e.time())
        .max()
        .unwrap()
        .unix_seconds_f64();
    let total = (deployment_events.len() + beats.len()) as f64;
    assert!(beats.len() >= 2, "{} heartbeats", beats.len());
    wait_for(
        WAIT,
        "the config server down in Prometheus",
        context,
        || {
            expect(&up_series, prometheus.one(&up_series), 0.0)?;
            expect(
                &heartbeat_series,
                prometheus.one(&heartbeat_series),
                last_beat,
            )?;
            expect(
                "events consumed",
                prometheus.one("sum(audrey_events_consumed_total)"),
                total,
            )
        },
    );
    assert!(
        now_seconds() > last_beat + HEARTBEAT_DEADLINE,
        "down before 3 x 1 s passed"
    );
    // Up while it beat, down from 3 x 1 s after its last heartbeat.
    let up_samples = prometheus.samples(&up_series, "10m").unwrap();
    let first_up = up_samples
        .iter()
        .position(|(_, v)| *v == 1.0)
        .expect("up at some point");
    for (t, v) in &up_samples[first_up..] {
        if *t < last_beat + HEARTBEAT_DEADLINE - SCRAPE_LATENCY {
            assert_eq!(
                *v, 1.0,
                "down at {t} while beating (last beat {last_beat}): {up_samples:?}"
            );
        }
        if *t > last_beat + HEARTBEAT_DEADLINE + TIMESTAMP_SLACK {
            assert_eq!(
                *v, 0.0,
                "up at {t}, 3 s after the last beat {last_beat}: {up_samples:?}"
            );
        }
    }

    // Every event published was consumed once; the service agrees.
    let metrics = service.get("/metrics").text();
    assert_eq!(metric_sum(&metrics, "audrey_events_consumed_total"), total);
    assert_eq!(
        metric_value(
            &metrics,
            "audrey_events_consumed_total{type=\"configserver.heartbeat\"}"
        ),
        Some(beats.len() as f64)
    );
    assert_eq!(
        prometheus.one("audrey_events_consumed_total{type=\"configserver.heartbeat\"}"),
        Ok(beats.len() as f64)
    );
    assert_eq!(metric_sum(&metrics, "audrey_events_duplicate_total"), 0.0);
    assert_eq!(
        metric_sum(&metrics, "audrey_events_dead_lettered_total"),
        0.0
    );
    assert_eq!(metric_value(&metrics, &up_series), Some(0.0));
    assert_eq!(metric_value(&metrics, &heartbeat_series), Some(last_beat));
    assert_eq!(metric_value(&metrics, "audrey_amqp_connected"), Some(1.0));
    assert_eq!(prometheus.one("audrey_amqp_connected"), Ok(1.0));
    assert_eq!(prometheus.one(&target_up), Ok(1.0));
    let scrapes = prometheus
        .one("audrey_http_requests_total{route=\"/metrics\",code=\"200\"}")
        .unwrap();
    assert!(scrapes >= 2.0, "{scrapes} scrapes counted");
    let servers = json("/reports/configserver");
    let text = servers.to_string();
    assert!(text.contains(SOURCE) && text.contains("\"down\""), "{text}");

    drop(prometheus);
    assert_eq!(service.stop(), Some(0), "SIGTERM ends the service with 0");
}
