//! `audrey-reporting simulate` against the real broker and the real service:
//! what it publishes decodes and follows the transport contract, what it
//! prints is what the service's views then say, and a seed fixes the
//! stream's shape (fresh ids each run unless `--reuse-ids`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use audrey_consumer::publisher::CONTENT_TYPE;
use audrey_consumer::topology::ALL_AUDREY_EVENTS;
use audrey_consumer::Topology;
use audrey_core::contract::DEFAULT_MAX_EVENT_BYTES;
use audrey_core::memory::MemoryViews;
use audrey_core::rows::{Counts, StatusCounts};
use audrey_core::{Event, Timestamp};
use audrey_store::Store;
use common::*;
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The flags of every run in this test (the brief's command line).
const SHAPE: [&str; 10] = [
    "--deployments",
    "6",
    "--instances",
    "3",
    "--services",
    "2",
    "--seed",
    "5",
    "--stall-after",
    "1s",
];

/// Runs the real binary's `simulate` to the end.
fn simulate(topology: &Topology, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
        .arg("simulate")
        .args(["--amqp-url", AMQP_URL])
        .args(["--exchange", &topology.exchange])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("AUDREY_STALL_AFTER")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn succeeded(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "simulate failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        !stderr.contains("ETA"),
        "no progress bar when stderr is not a terminal:\n{stderr}"
    );
    stdout
}

/// What simulate printed, read back from its `key=value` lines.
#[derive(Debug, Clone, PartialEq)]
struct Printed {
    events: usize,
    simulated_seconds: f64,
    counts: Counts,
    deleted: i64,
    stalled_now: i64,
    stalled_later: i64,
    servers_running: i64,
}

fn value(stdout: &str, line_label: &str, key: &str) -> i64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(line_label))
        .unwrap_or_else(|| panic!("no `{line_label}` line in:\n{stdout}"));
    let needle = format!("{key}=");
    let at = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no `{key}=` in `{line}`"))
        + needle.len();
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("`{key}=` is not a number in `{line}`"))
}

fn by_status(stdout: &str, label: &str) -> StatusCounts {
    StatusCounts {
        success: value(stdout, label, "success"),
        incomplete: value(stdout, label, "incomplete"),
        error: value(stdout, label, "error"),
    }
}

fn parse(stdout: &str) -> Printed {
    let first = stdout.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"published"), "{stdout}");
    let simulated = first
        .split_once(" s of simulated time")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no simulated time in `{first}`"));
    let deleted_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("deployments "))
        .unwrap();
    Printed {
        events: words[1].parse().unwrap(),
        simulated_seconds: simulated.parse().unwrap(),
        counts: Counts {
            deployments: by_status(stdout, "deployments "),
            instances: by_status(stdout, "instances "),
            services: by_status(stdout, "services "),
            unresolved_dependencies: value(stdout, "unresolved dependencies", "count"),
        },
        deleted: deleted_line
            .split('(')
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no deleted count in `{deleted_line}`")),
        stalled_now: value(stdout, "stalled deployments", "now"),
        stalled_later: value(stdout, "stalled deployments", "later"),
        servers_running: value(stdout, "config servers", "running"),
    }
}

/// A queue of the test's own that receives a copy of every Audrey event.
async fn declare_copy(topology: &Topology, copy: &str) {
    let connection = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            copy.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            copy.into(),
            topology.exchange.as_str().into(),
            ALL_AUDREY_EVENTS.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

/// Takes every message of the copy queue, checks the transport contract of
/// each, and decodes it.
async fn take_copies(copy: &str) -> Vec<Event> {
    let connection = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut events = Vec::new();
    while let Some(message) = channel
        .basic_get(copy.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let delivery = &message.delivery;
        let event = Event::decode(&delivery.data, DEFAULT_MAX_EVENT_BYTES).unwrap_or_else(|e| {
            panic!(
                "an invalid event was published ({e}): {}",
                String::from_utf8_lossy(&delivery.data)
            )
        });
        let properties = &delivery.properties;
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some(CONTENT_TYPE)
        );
        assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
        assert_eq!(delivery.routing_key.as_str(), event.event_type().name());
        assert_eq!(
            properties.message_id().as_ref().map(|m| m.as_str()),
            Some(event.id().as_str())
        );
        events.push(event);
    }
    let _ = connection.close(200, "done".into()).await;
    events
}

/// The stream with identities and times taken out: every UUID (and event
/// id) replaced by its order of first appearance.
fn shape(events: &[Event]) -> Vec<Value> {
    fn rename(value: &mut Value, seen: &mut HashMap<String, usize>) {
        match value {
            Value::String(s) if uuid::Uuid::try_parse(s).is_ok() => {
                let next = seen.len();
                *s = format!("#{}", seen.entry(s.clone()).or_insert(next));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| rename(v, seen)),
            Value::Object(map) => map.values_mut().for_each(|v| rename(v, seen)),
            _ => {}
        }
    }
    let mut seen = HashMap::new();
    events
        .iter()
        .map(|e| {
            let mut json = e.to_json();
            let object = json.as_object_mut().unwrap();
            object.remove("time");
            rename(&mut json, &mut seen);
            json
        })
        .collect()
}

fn ids(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.source().to_string(), e.id().to_string()))
        .collect()
}

/// Times are the wall clock at publication, strictly increasing in the
/// order published, and no earlier than the run's pace allows.
fn assert_live_times(events: &[Event], run_started: Timestamp, at_least_seconds: f64) {
    let now = Timestamp::now();
    assert!(events.first().unwrap().time() >= run_started);
    assert!(events.last().unwrap().time() <= now);
    assert!(
        events.windows(2).all(|w| w[0].time() < w[1].time()),
        "times keep the planned order"
    );
    let span = (events.last().unwrap().time().nanos() - events[0].time().nanos()) as f64 / 1e9;
    assert!(
        span >= at_least_seconds,
        "published over {span:.3} s, the pace needs at least {at_least_seconds:.3} s"
    );
}

fn metric(text: &str, series: &str) -> i64 {
    metric_value(text, series).unwrap_or_else(|| panic!("no {series} in /metrics")) as i64
}

/// The state gauges of the service's /metrics, as counts.
fn metric_counts(text: &str) -> Counts {
    let family = |name: &str| StatusCounts {
        success: metric(text, &format!("{name}{{status=\"success\"}}")),
        incomplete: metric(text, &format!("{name}{{status=\"incomplete\"}}")),
        error: metric(text, &format!("{name}{{status=\"error\"}}")),
    };
    Counts {
        deployments: family("audrey_deployments"),
        instances: family("audrey_instances"),
        services: family("audrey_services"),
        unresolved_dependencies: metric(text, "audrey_unresolved_dependencies"),
    }
}

fn wait_consumed(service: &Service, applied: usize, duplicates: usize) {
    wait_until(Duration::from_secs(60), "the service to consume", || {
        let m = service.get("/metrics").text();
        metric_sum(&m, "audrey_events_consumed_total") as usize >= applied
            && metric_sum(&m, "audrey_events_duplicate_total") as usize >= duplicates
    });
    let m = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&m, "audrey_events_consumed_total") as usize,
        applied
    );
    assert_eq!(
        metric_sum(&m, "audrey_events_duplicate_total") as usize,
        duplicates
    );
}

fn double(c: &Counts) -> Counts {
    let twice = |s: StatusCounts| StatusCounts {
        success: 2 * s.success,
        incomplete: 2 * s.incomplete,
        error: 2 * s.error,
    };
    Counts {
        deployments: twice(c.deployments),
        instances: twice(c.instances),
        services: twice(c.services),
        unresolved_dependencies: 2 * c.unresolved_dependencies,
    }
}

/// Removes the test's queues and exchanges, even when an assertion failed.
struct Cleanup {
    topology: Topology,
    copy: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(connection) = lapin::Connection::connect(AMQP_URL, Default::default()).await {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .queue_delete(self.copy.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "done".into()).await;
            }
            remove_topology(&self.topology).await;
        });
    }
}

#[test]
fn simulate_publishes_valid_events_and_says_what_the_views_then_say() {
    let rt = runtime();
    let topology = unique_topology("simulate");
    let copy = format!("{}.copy", topology.queue);
    let _cleanup = Cleanup {
        topology: topology.clone(),
        copy: copy.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &["--stall-after", "1s"]);
    service.wait_ready(Duration::from_secs(60));
    rt.block_on(declare_copy(&topology, &copy));

    // Run 1: the brief's command line.
    let fast = ["--speed", "1000", "--rate", "2000"];
    let started = Timestamp::now();
    let out1 = succeeded(simulate(&topology, &[&SHAPE[..], &fast[..]].concat()));
    println!("{out1}");
    let run1 = parse(&out1);

    // (a) Every published event decodes, with the transport contract.
    let events1 = rt.block_on(take_copies(&copy));
    assert_eq!(events1.len(), run1.events);
    assert_live_times(&events1, started, run1.simulated_seconds / 1000.0 * 0.95);
    let types: BTreeSet<&str> = events1
        .iter()
        .map(|e| e.event_type().short_name())
        .collect();
    for t in [
        "instance.registered",
        "deployment.registered",
        "instance.contacted",
        "instance.parameters_provided",
        "service.configuration_started",
        "service.configuration_ended",
        "configserver.heartbeat",
    ] {
        assert!(types.contains(t), "{t} published");
    }
    let sources: BTreeSet<&str> = events1.iter().map(|e| e.source().as_str()).collect();
    assert_eq!(sources.len(), 2, "two config servers by default");

    // (b) What it printed is the projection of what it published ...
    let expected1 = MemoryViews::from_events(&events1);
    assert_eq!(run1.counts, expected1.counts);
    let deleted = expected1
        .deployments
        .values()
        .filter(|d| d.deleted.is_some())
        .count() as i64;
    assert_eq!(run1.deleted, deleted);
    assert_eq!(deleted, 1, "--delete-rate 0.1 of 6 deployments rounds to 1");
    assert_eq!(run1.counts.deployments.total() + deleted, 6);
    assert!(
        run1.counts.deployments.incomplete > 0,
        "seed 5 has an agent that gives up"
    );
    assert_eq!(run1.stalled_later, run1.counts.deployments.incomplete);
    assert!(run1.stalled_now <= run1.stalled_later);
    assert_eq!(run1.servers_running, 2);

    // ... and what the service's views say once it has consumed it.
    wait_consumed(&service, events1.len(), 0);
    let metrics = service.get("/metrics").text();
    assert_eq!(metric_counts(&metrics), run1.counts);
    assert_eq!(
        metric_sum(&metrics, "audrey_config_server_up") as i64,
        run1.servers_running
    );
    // The deployments whose agents gave up stall once --stall-after (1 s)
    // passes without an event, as it said.
    wait_until(
        Duration::from_secs(20),
        "the predicted deployments to stall",
        || {
            let m = service.get("/metrics").text();
            metric(&m, "audrey_deployments_stalled") == run1.stalled_later
        },
    );

    // (c) The same seed again: the same stream, with fresh ids.
    let out2 = succeeded(simulate(&topology, &[&SHAPE[..], &fast[..]].concat()));
    let run2 = parse(&out2);
    let events2 = rt.block_on(take_copies(&copy));
    assert_eq!(shape(&events2), shape(&events1), "same types, order, shape");
    let ids1: BTreeSet<_> = ids(&events1).into_iter().collect();
    assert!(
        ids(&events2).iter().all(|id| !ids1.contains(id)),
        "fresh ids"
    );
    assert_eq!(run2.counts, run1.counts);
    wait_consumed(&service, events1.len() * 2, 0);
    assert_eq!(
        metric_counts(&service.get("/metrics").text()),
        double(&run1.counts),
        "the second run added its deployments"
    );

    // With --reuse-ids the seed fixes the ids too: a second such run is all
    // duplicates, which the service ignores. These runs are paced by the
    // rate (400 events/s, in chunks of 20) rather than by the clock.
    let by_rate = ["--speed", "100000", "--rate", "400", "--reuse-ids"];
    let started = Timestamp::now();
    let out3 = succeeded(simulate(&topology, &[&SHAPE[..], &by_rate[..]].concat()));
    let events3 = rt.block_on(take_copies(&copy));
    assert_live_times(
        &events3,
        started,
        (events3.len() - 20) as f64 / 400.0 - 0.01,
    );
    let out4 = succeeded(simulate(&topology, &[&SHAPE[..], &by_rate[..]].concat()));
    let events4 = rt.block_on(take_copies(&copy));
    assert_eq!(ids(&events4), ids(&events3), "the seed's own ids");
    assert_eq!(shape(&events3), shape(&events1));
    assert_eq!(parse(&out3).counts, run1.counts);
    assert_eq!(parse(&out4).counts, run1.counts);
    wait_consumed(&service, events1.len() * 3, events4.len());

    // The store holds exactly the projection of every event accepted.
    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    let accepted: Vec<Event> = [events1, events2, events3].concat();
    assert_store_matches(
        &store,
        &MemoryViews::from_events(&accepted),
        Timestamp::now(),
    );
}

#[test]
fn simulate_says_clearly_why_it_cannot_publish() {
    let rt = runtime();

    // No broker there: the URL is named, the password is not.
    let output = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
        .args([
            "simulate",
            "--amqp-url",
            "amqp://guest:s3cret@127.0.0.1:1/%2f",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the broker at amqp://guest:***@127.0.0.1:1/%2f"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");

    // No service has declared its queue: nothing would receive the events.
    let topology = unique_topology("simulate-unroutable");
    let output = simulate(&topology, &["--deployments", "1", "--speed", "1000"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "publishing to exchange `{}` on amqp://guest:***@127.0.0.1:5672/%2f",
            topology.exchange
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("no queue is bound for routing key"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no summary of nothing");
    rt.block_on(remove_topology(&topology));

    // Flags out of range are refused before anything is sent.
    for bad in [
        ["--failure-rate", "1.5"],
        ["--speed", "0"],
        ["--heartbeat-interval", "1.5s"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
            .arg("simulate")
            .args(bad)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{bad:?}: EX_USAGE");
        assert!(String::from_utf8_lossy(&output.stderr).contains(bad[0]));
    }
}
