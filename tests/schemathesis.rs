//! schemathesis (4.x, `tests/requirements.txt`) against the live service:
//! the real binary, filled by `audrey-reporting simulate` through the real
//! broker, asked what `schemas/openapi.yaml` lets a client ask, with every
//! check schemathesis has (no 5xx, statuses, content types, headers and
//! JSON bodies as documented, invalid input refused, valid input
//! accepted, undeclared methods refused) plus one of ours
//! (`tests/schemathesis/hooks.py`): every XML body is valid against
//! `schemas/reports.xsd`, with the root element its operation calls for.
//!
//! Four runs: with the ids of what simulate published (the reports answer
//! 200; the deployment is an unfinished one, so `blocked_on` is checked
//! too) and with ids schemathesis makes up (malformed ones included), each
//! asking for JSON and for XML; about 850 requests each, a minute or two in
//! all. The hooks keep `If-None-Match: *` out of long-polls (it would hold
//! a request the whole `wait`, as documented). Without python3,
//! schemathesis or xmllint the test fails, saying what to install.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Test cases per operation and phase in each run: enough for the
/// coverage phase's boundary values and some fuzzing, a few minutes in all.
/// `SCHEMATHESIS_EXAMPLES=1000` asks for a longer run.
const MAX_EXAMPLES: &str = "50";
/// The most one schemathesis run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

fn max_examples() -> String {
    std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The version of schemathesis python3 has; panics, saying what to
/// install, when there is none (a missing tool must not pass unnoticed).
fn schemathesis_version() -> String {
    const INSTALL: &str = "`./dev test` installs it, or: \
         PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -r tests/requirements.txt";
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run schemathesis ({e}); {INSTALL}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "schemathesis is not installed for python3; {INSTALL}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = stdout
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        version.starts_with("4."),
        "schemathesis 4.x is needed, python3 has `{}`; {INSTALL}",
        stdout.trim()
    );
    let xmllint = Command::new("xmllint").arg("--version").output();
    assert!(
        xmllint.is_ok_and(|o| o.status.success()),
        "xmllint is needed by the XML check (Debian: libxml2-utils; ./dev installs it)"
    );
    version
}

/// Runs `audrey-reporting simulate` to the end; returns how many events it
/// published.
fn simulate(topology: &audrey_consumer::Topology) -> usize {
    let output = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
        .arg("simulate")
        .args(["--amqp-url", AMQP_URL])
        .args(["--exchange", &topology.exchange])
        .args(["--deployments", "6", "--instances", "3", "--services", "2"])
        .args(["--seed", "5", "--speed", "1000", "--rate", "2000"])
        .args(["--stall-after", "1s"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"published"), "{stdout}");
    words[1].parse().expect("the number of events published")
}

/// GET `path` as JSON.
fn json(service: &Service, path: &str) -> Value {
    let response = get(service.port, path, &[("Accept", "application/json")])
        .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", service.log_text()));
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    serde_json::from_slice(&response.body).expect("a JSON body")
}

fn strings<'a>(value: &'a Value, list: &str, key: &str) -> Vec<&'a str> {
    value[list]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i[key].as_str()).collect())
        .unwrap_or_default()
}

/// Ids the service knows: a deployment, one of its instances, and an
/// instance with a service and that service's name.
struct Known {
    deployment: String,
    instance: String,
    service_instance: String,
    service: String,
}

/// An unfinished deployment (so that its report has `blocked_on`, checked
/// against the document too) with an instance that has a service.
fn known_ids(service: &Service) -> Known {
    let list = json(service, "/reports/deployments?limit=1000");
    let unfinished = list["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["status"] != "success")
        .filter_map(|d| d["uuid"].as_str());
    for deployment in unfinished {
        let report = json(service, &format!("/reports/deployment/{deployment}"));
        assert!(
            report["blocked_on"]["reason"].is_string(),
            "an unfinished deployment says what it is blocked on: {report}"
        );
        let instances = strings(&report, "instances", "uuid");
        for instance in &instances {
            let report = json(service, &format!("/reports/instance/{instance}"));
            if let Some(name) = strings(&report, "services", "name").first() {
                return Known {
                    deployment: deployment.to_owned(),
                    instance: instances[0].to_owned(),
                    service_instance: (*instance).to_owned(),
                    service: (*name).to_owned(),
                };
            }
        }
    }
    panic!("no unfinished deployment with an instance with a service in {list}");
}

/// The configuration of a run from `tests/schemathesis/schemathesis.toml`:
/// with the known ids filled in, or without its known-ids part.
fn config(dir: &Path, known: Option<&Known>) -> PathBuf {
    let template =
        std::fs::read_to_string(repo().join("tests/schemathesis/schemathesis.toml")).unwrap();
    let (common, with_ids) = template
        .split_once("# --- known ids ---")
        .expect("the template marks its known-ids part");
    let (name, text) = match known {
        None => ("fuzz-ids.toml", common.to_owned()),
        Some(k) => (
            "known-ids.toml",
            format!("{common}{with_ids}")
                .replace("@DEPLOYMENT@", &k.deployment)
                .replace("@INSTANCE@", &k.instance)
                .replace("@SERVICE_INSTANCE@", &k.service_instance)
                // A JSON string is a TOML basic string.
                .replace("@SERVICE@", &Value::from(k.service.as_str()).to_string()),
        ),
    };
    assert!(
        text.lines()
            .all(|l| l.trim_start().starts_with('#') || !l.contains('@')),
        "a placeholder left in:\n{text}"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// One schemathesis run; returns its exit status, its output, and the
/// root element of each XML body the XSD check validated.
fn run(dir: &Path, config: &Path, port: u16, accept: &str) -> (Option<i32>, String, Vec<String>) {
    let name = format!(
        "{}-{}",
        config.file_stem().unwrap().to_string_lossy(),
        accept.replace('/', "-")
    );
    let log = dir.join(format!("{name}.log"));
    let checked = dir.join(format!("{name}.checked"));
    let mut child = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(config)
        .arg("run")
        .arg(repo().join("schemas/openapi.yaml"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--checks", "all", "--max-examples", &max_examples()])
        .args(["--seed", "1", "--workers", "1", "--request-timeout", "20"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--header", &format!("Accept: {accept}")])
        .env(
            "SCHEMATHESIS_HOOKS",
            repo().join("tests/schemathesis/hooks.py"),
        )
        .env("AUDREY_REPORTS_XSD", repo().join("schemas/reports.xsd"))
        .env("AUDREY_XML_CHECK_LOG", &checked)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("NO_COLOR")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("python3 runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let roots = std::fs::read_to_string(&checked)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    (
        status,
        std::fs::read_to_string(&log).unwrap_or_default(),
        roots,
    )
}

#[test]
fn the_live_service_keeps_its_openapi_contract() {
    let version = schemathesis_version();
    println!("schemathesis {version}");
    let topology = unique_topology("schemathesis");
    let _remove = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        &dir.path().join("data"),
        &topology,
        &["--stall-after", "1s"],
    );
    service.wait_ready(Duration::from_secs(60));

    let published = simulate(&topology);
    service.wait_handled(
        Duration::from_secs(60),
        "the service to consume",
        &["audrey_events_consumed_total"],
        published,
    );
    let known = known_ids(&service);

    let mut failed = Vec::new();
    let runs = [
        (config(dir.path(), Some(&known)), true),
        (config(dir.path(), None), false),
    ];
    for (config, known_ids_run) in runs {
        for accept in ["application/json", "application/xml"] {
            let started = Instant::now();
            let (status, output, roots) = run(dir.path(), &config, service.port, accept);
            let name = config.file_name().unwrap().to_string_lossy();
            let summary = output
                .lines()
                .rev()
                .find(|l| l.contains("passed") || l.contains("failed"))
                .unwrap_or("");
            let roots: BTreeSet<String> = roots.into_iter().collect();
            println!(
                "{name}, Accept: {accept}: exit {status:?} in {:.0} s: {}; XML checked: {roots:?}",
                started.elapsed().as_secs_f64(),
                summary.trim(),
            );
            if status != Some(0) {
                failed.push(format!(
                    "schemathesis with {name}, Accept: {accept}, exited {status:?}:\n{output}"
                ));
            }
            // Errors are XML whatever was asked; with XML asked for, every
            // report was checked too (with known ids, each of them).
            let mut expected = vec!["error"];
            if accept == "application/xml" {
                expected.extend(["deployments", "config-servers", "health"]);
                if known_ids_run {
                    expected.extend(["deployment", "instance", "service", "events"]);
                }
            }
            let missing: Vec<&str> = expected
                .into_iter()
                .filter(|r| !roots.contains(*r))
                .collect();
            if !missing.is_empty() {
                failed.push(format!(
                    "schemathesis with {name}, Accept: {accept}: the XML check never saw {missing:?}"
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{}\nservice log:\n{}",
        failed.join("\n"),
        service.log_text()
    );
    // The service lived through it all.
    assert_eq!(service.get("/health").status, 200);
}
