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
            &query::instance_report(&reader, *id, ctx).unwrap().unwrap(),
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

/// A mistyped `--data-dir` is an error for the tools that read a store:
/// nothing is created, the exit code is not 0, and the message says why.
#[test]
fn tools_refuse_a_directory_that_holds_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("dta");
    for tool in ["rebuild", "export"] {
        let out = run(&[tool, "--data-dir", typo.to_str().unwrap()]);
        assert!(!out.status.success(), "{tool} exited 0");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("holds no audrey-reporting store"),
            "{tool}: {stderr}"
        );
        assert!(!typo.exists(), "{tool} created {}", typo.display());
    }
    // An empty directory (say, created by hand) is no store either.
    std::fs::create_dir(&typo).unwrap();
    let out = run(&["rebuild", "--data-dir", typo.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&typo).unwrap().count(), 0);
}

/// A rebuild killed at any point leaves views `serve` refuses (saying to
/// run `rebuild`); run again, it ends with the views the live service had.
#[test]
fn an_interrupted_rebuild_is_refused_until_a_rebuild_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(41, 300, 4);
    {
        let store = Store::open(&data).unwrap();
        for chunk in events.chunks(1_000) {
            store.apply_batch(chunk).unwrap();
        }
    }
    let expected = MemoryViews::from_events(&events);
    let mut rng = audrey_core::scenario::Rng::new(7);
    let mut interrupted = 0;
    for round in 0..4 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
            .args(["rebuild", "--data-dir", data.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from just started to well into the replay.
        std::thread::sleep(Duration::from_millis(20 + rng.below(400 * (round + 1))));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if finished {
            continue;
        }
        interrupted += 1;
        match Store::open(&data) {
            Err(error) => assert!(
                error.to_string().contains("run `audrey-reporting rebuild"),
                "{error}"
            ),
            // Killed before it emptied anything: the views are still whole.
            Ok(store) => assert_store_matches(&store, &expected, Timestamp::now()),
        }
    }
    assert!(interrupted > 0, "no rebuild was interrupted");
    succeed(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert_store_matches(&Store::open(&data).unwrap(), &expected, Timestamp::now());
}

/// An event accepted under a large `--max-event-bytes` stays readable by
/// every tool (the log is read back without a size limit), and `import`
/// honours the same option.
#[test]
fn events_larger_than_the_default_limit_stay_readable_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (data, file) = (dir.path().join("data"), dir.path().join("big.jsonl"));
    // One registration of about 2 MiB: many services, long parameter names.
    let mut cs =
        audrey_core::scenario::script::DeploymentScript::new(audrey_core::scenario::script::BLOG);
    let services: Vec<_> = (0..200)
        .map(|s| {
            let parameters = (0..40)
                .map(|p| {
                    audrey_core::scenario::script::static_param(&format!(
                        "{p:03}-{}",
                        "x".repeat(240)
                    ))
                })
                .collect();
            audrey_core::scenario::script::service(&format!("service-{s}"), parameters)
        })
        .collect();
    let big = cs.register(
        0,
        audrey_core::scenario::script::MYSQL,
        "mysql",
        &[],
        services,
    );
    let line = serde_json::to_string(&big.to_json()).unwrap();
    assert!(line.len() > 2 << 20, "{} bytes", line.len());
    std::fs::write(&file, format!("{line}\n")).unwrap();

    let refused = run(&[
        "import",
        "--data-dir",
        data.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
    ]);
    assert!(!refused.status.success(), "the default limit refuses it");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("over the limit"));
    succeed(&[
        "import",
        "--data-dir",
        data.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
        "--max-event-bytes",
        "4194304",
    ]);
    let export = succeed(&["export", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(export.lines().count(), 1);
    let store = Store::open(&data).unwrap();
    let page = store
        .history(big.deployment().unwrap(), None, 0, 10)
        .unwrap();
    assert_eq!(page.events, vec![big.clone()]);
    drop(store);
    succeed(&["rebuild", "--data-dir", data.to_str().unwrap()]);
    assert_store_matches(
        &Store::open(&data).unwrap(),
        &MemoryViews::from_events(&[big]),
        Timestamp::now(),
    );
}
