//! Retention in the running service: under a long simulate run with a short
//! `--retain-completed`, the event log (and so the disk) stays bounded while
//! the views keep every deployment.

mod common;

use std::process::Command;
use std::time::Duration;

use audrey_core::query;
use audrey_store::Store;
use common::*;

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_long_simulated_run_with_short_retention_keeps_the_log_bounded() {
    let topology = unique_topology("retention");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(
        &data,
        &topology,
        &["--retain-completed", "1s", "--prune-every", "1s"],
    );
    service.wait_ready(Duration::from_secs(60));

    let mut published = 0usize;
    let rounds = 6;
    for round in 0..rounds {
        let out = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
            .args([
                "simulate",
                "--deployments",
                "40",
                "--instances",
                "3",
                "--services",
                "2",
            ])
            .args([
                "--give-up-rate",
                "0",
                "--delete-rate",
                "0.2",
                "--speed",
                "5000",
                "--rate",
                "20000",
            ])
            .args(["--seed", &round.to_string()])
            .args(["--exchange", &topology.exchange])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout).into_owned();
        published += summary
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("simulate says how many it published: {summary}"));
    }
    wait_until(Duration::from_secs(60), "every event to be applied", || {
        metric_sum(
            &service.get("/metrics").text(),
            "audrey_events_consumed_total",
        ) >= published as f64
    });
    wait_until(Duration::from_secs(30), "retention to prune", || {
        service.log_text().contains("pruned the event log")
    });
    // Passes run every second and take deployments completed over a second
    // ago: a few more seconds let them reach the last ones.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(service.stop(), Some(0));

    let store = Store::open(&data).unwrap();
    let logged = store.logged_events().unwrap();
    // What may stay: the deletions (0.2 x 40 per round) and one heartbeat per config server.
    assert!(
        logged <= (rounds * 8 + 2) as u64,
        "{logged} of {published} events still logged"
    );
    let counts = query::counts(&store.reader()).unwrap();
    assert_eq!(
        counts.deployments.total(),
        (rounds * 32) as i64,
        "the views keep every deployment not deleted"
    );
    store.flush().unwrap();
    drop(store);
    let bytes = dir_bytes(&data);
    eprintln!("{published} events published; {logged} logged; {bytes} bytes on disk");
}
