//! The service is killed, the broker restarts: nothing acknowledged is
//! lost, nothing is counted twice, and nobody has to step in.
//!
//! These tests disturb the broker or kill processes, so they live in their
//! own test binary (cargo runs test binaries one after another) and take a
//! lock so they never overlap each other.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use audrey_consumer::Publisher;
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::Rng;
use audrey_core::Timestamp;
use audrey_store::Store;
use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn three_sigkills_mid_stream_lose_nothing_and_count_nothing_twice() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("crash");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(31, 450, 5);
    assert!(
        events.len() >= 20_000,
        "tens of thousands of events: {}",
        events.len()
    );

    // The first start declares the queue the publisher routes to.
    let mut service = Service::start(&data, &topology, &["--batch-size", "200"]);
    service.wait_ready(Duration::from_secs(60));
    // Publish the whole stream from another thread while we kill the service.
    let publishing = {
        let events = events.clone();
        let topology = topology.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
                for chunk in events.chunks(250) {
                    publisher.publish_all(chunk).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                publisher.close().await.unwrap();
            })
        })
    };
    let mut rng = Rng::new(7);
    for kill in 1..=3 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
        let consumed = metric_sum(
            &service.get("/metrics").text(),
            "audrey_events_consumed_total",
        );
        service.kill();
        eprintln!("SIGKILL {kill} after {consumed} events applied by that process");
        service = Service::start(&data, &topology, &["--batch-size", "200"]);
        service.wait_ready(Duration::from_secs(60));
    }
    service.kill();
    publishing.join().unwrap();
    drain_and_stop(&rt, &data, &topology);

    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

#[test]
fn a_broker_restart_mid_stream_is_survived_without_anyone_stepping_in() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("restart");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(41, 60, 4);
    let (first, second) = events.split_at(events.len() * 2 / 3);

    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(first).await.unwrap();
        publisher.close().await.unwrap();
    });

    rabbitmqctl(&["stop_app"]);
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            Duration::from_secs(30),
            "/health to report AMQP down",
            || {
                let health = service.get("/health");
                health.status == 503 && health.text().contains("disconnected")
            },
        );
        // Reports are still served from RocksDB.
        let deployment = first.iter().find_map(|e| e.deployment()).unwrap();
        let report = service.get(&format!("/reports/deployment/{deployment}"));
        assert!(
            report.status == 200 || report.status == 404,
            "{}",
            report.status
        );
        let metrics = service.get("/metrics").text();
        assert_eq!(metric_sum(&metrics, "audrey_amqp_connected"), 0.0);
    }));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    if let Err(panic) = restarted {
        std::panic::resume_unwind(panic);
    }

    service.wait_ready(Duration::from_secs(90));
    assert!(service
        .log_text()
        .contains("AMQP disconnected; reconnecting"));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(second).await.unwrap();
        publisher.close().await.unwrap();
    });
    let port = service.port;
    let mut empty_polls = 0;
    wait_until(Duration::from_secs(120), "the queue to drain", || {
        empty_polls = if rt.block_on(ready_messages(&topology.queue)) == 0 {
            empty_polls + 1
        } else {
            0
        };
        empty_polls >= 10 && get(port, "/health", &[]).is_some_and(|r| r.status == 200)
    });
    assert_eq!(service.stop(), Some(0));
    if rt.block_on(ready_messages(&topology.queue)) > 0 {
        drain_and_stop(&rt, &data, &topology);
    }
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}
