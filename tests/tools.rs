//! The operator's tools, run as the real binary: export/import round trip
//! (byte-identical reports), invalid lines reported by number, and a store
//! of an older views version refused by `serve` until `rebuild`.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use audrey_api::xml;
use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, ReportContext};
use audrey_core::Timestamp;
use audrey_store::Store;
use common::*;

/// Runs the binary with these arguments.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs it and insists it succeeds; returns its standard output.
fn succeed(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every report of a store, rendered as XML.
fn all_reports(store: &Store, expected: &MemoryViews, ctx: &ReportContext) -> Vec<Vec<u8>> {
    let reader = store.reader();
    let mut out = Vec::new();
    for id in expected.deployments.keys() {
        if let Some(r) = query::deployment_report(&reader, *id, ctx).unwrap() {
            out.push(xml::deployment(&r));
        }
    }
    for id in expected.instances.keys() {
        out.push(xml::instance(
            &query::instance_report(&reader, *id).unwrap().unwrap(),
        ));
    }
    out.push(xml::config_servers(
        &query::config_servers(&reader, ctx).unwrap(),
    ));
    out
}

#[test]
fn export_then_import_gives_byte_identical_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target, file) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("events.jsonl"),
    );
    let events = realistic_stream(3, 12, 4);
    let expected = MemoryViews::from_events(&events);
    {
        let store = Store::open(&source).unwrap();
        for chunk in events.chunks(100) {
            store.apply_batch(chunk).unwrap();
        }
    }
    succeed(&[
        "export",
        "--data-dir",
        source.to_str().unwrap(),
        "--output",
        file.to_str().unwrap(),
    ]);
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert_eq!(lines, events.len(), "one line per accepted event");

    let stdout = succeed(&[
        "import",
        "--data-dir",
        target.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(stdout.contains(&format!(
        "imported {} events (0 already known, 0 invalid",
        events.len()
    )));

    let ctx = ReportContext::at(Timestamp::now());
    let a = all_reports(&Store::open(&source).unwrap(), &expected, &ctx);
    let b = all_reports(&Store::open(&target).unwrap(), &expected, &ctx);
    assert_eq!(a.len(), b.len());
    assert!(a == b, "reports differ after the round trip");

    // Importing the same file again: all duplicates, nothing changes.
    let stdout = succeed(&[
        "import",
        "--data-dir",
        target.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(stdout.contains(&format!(
        "imported 0 events ({} already known",
        events.len()
    )));
    assert!(all_reports(&Store::open(&target).unwrap(), &expected, &ctx) == a);
}

#[test]
fn invalid_lines_are_reported_by_number_and_refused_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let events = realistic_stream(4, 2, 2);
    let mut text: Vec<String> = events.iter().map(|e| e.to_json().to_string()).collect();
    text.insert(3, "{\"specversion\":\"1.0\"}".into());
    text.insert(7, "not json at all".into());
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, text.join("\n")).unwrap();

    let refused = dir.path().join("refused");
    let out = run(&[
        "import",
        "--data-dir",
        refused.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 4: missing field `type`"), "{stderr}");
    assert!(stderr.contains("line 8: not JSON"), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert!(!refused.exists(), "refusing writes nothing");

    let skipped = dir.path().join("skipped");
    let out = run(&[
        "import",
        "--on-invalid",
        "skip",
        "--data-dir",
        skipped.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 8: not JSON"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!(
        "imported {} events (0 already known, 2 invalid",
        events.len()
    )));
}

#[test]
fn serve_refuses_views_of_another_version_until_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(5, 5, 3);
    {
        let store = Store::open(&data).unwrap();
        store.apply_batch(&events).unwrap();
        store.set_views_version_for_tests(0).unwrap();
    }
    let out = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run `audrey-reporting rebuild"), "{stderr}");

    let stdout = succeed(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert!(stdout.contains(&format!("from {} logged events", events.len())));
    assert_store_matches(
        &Store::open(&data).unwrap(),
        &MemoryViews::from_events(&events),
        Timestamp::now(),
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_say_each_state_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology("logs");
    // Nothing listens on port 1: the consumer keeps reconnecting.
    let service = Service::start_with_url(
        &dir.path().join("data"),
        &topology,
        "amqp://audrey:s3cret@127.0.0.1:1/%2f",
        &["--log-format", "json"],
    );
    wait_until(Duration::from_secs(20), "two reconnection attempts", || {
        service
            .log_text()
            .matches("AMQP disconnected; reconnecting")
            .count()
            >= 2
    });
    assert_eq!(service.get("/health").status, 503);
    let log_file = service.log.clone();
    assert_eq!(service.stop(), Some(0));
    let log = std::fs::read_to_string(log_file).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"serving reports"), "{messages:?}");
    assert!(messages.contains(&"stopped cleanly"), "{messages:?}");
    assert!(
        !log.contains("s3cret"),
        "the password is never logged: {log}"
    );
    assert!(log.contains("amqp://audrey:***@127.0.0.1:1"), "{log}");
}
