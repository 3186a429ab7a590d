//! What the end-to-end tests share beyond `audrey-testkit`: the real binary
//! in a child process, XSD checks, a realistic stream.
#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audrey_consumer::Topology;
use audrey_core::Timestamp;
pub use audrey_testkit::broker::{
    remove_topology, runtime, unique_topology, RemoveOnDrop, AMQP_URL,
};
pub use audrey_testkit::compare::assert_store_matches;
pub use audrey_testkit::http::{get, request, Response};
pub use audrey_testkit::metrics::{metric_sum, metric_value};
pub use audrey_testkit::wait::{free_port, wait_until};

/// Every message of a queue, taken (acknowledged) one by one.
pub async fn take_all(url: &str, queue: &str) -> Vec<lapin::message::Delivery> {
    let connection = lapin::Connection::connect(url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut messages = Vec::new();
    while let Some(message) = channel
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        messages.push(message.delivery);
    }
    let _ = connection.close(200, "done".into()).await;
    messages
}

/// Messages ready in a queue (not counting those delivered and unacked).
pub async fn ready_messages(queue: &str) -> u32 {
    audrey_testkit::broker::ready_messages(queue)
        .await
        .expect("the queue exists")
}

/// The service binary, running.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub topology: Topology,
    pub log: PathBuf,
}

impl Service {
    pub fn start(data_dir: &Path, topology: &Topology, extra: &[&str]) -> Service {
        Self::start_with_url(data_dir, topology, AMQP_URL, extra)
    }

    pub fn start_with_url(
        data_dir: &Path,
        topology: &Topology,
        amqp_url: &str,
        extra: &[&str],
    ) -> Service {
        let port = free_port();
        let log = data_dir.with_extension(format!("log.{port}"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
            .arg("serve")
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--amqp-url", amqp_url])
            .args(["--exchange", &topology.exchange, "--queue", &topology.queue])
            .args(["--dead-letter-exchange", &topology.dead_letter_exchange])
            .args(["--dead-letter-queue", &topology.dead_letter_queue])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the binary starts");
        Service {
            child,
            port,
            data_dir: data_dir.to_owned(),
            topology: topology.clone(),
            log,
        }
    }

    /// Waits until /health says ready (store open, AMQP connected).
    pub fn wait_ready(&self, timeout: Duration) {
        let port = self.port;
        wait_until(timeout, "the service to be ready", || {
            get(port, "/health", &[]).is_some_and(|r| r.status == 200)
        });
    }

    /// Waits until the service has handled at least `n` messages, counted
    /// as the sum of these counter families: the ones the test's messages
    /// can end as (consumed, a duplicate, dead-lettered).
    pub fn wait_handled(&self, timeout: Duration, what: &str, families: &[&str], n: usize) {
        wait_until(timeout, what, || {
            let m = self.get("/metrics").text();
            families.iter().map(|f| metric_sum(&m, f)).sum::<f64>() >= n as f64
        });
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.port, path, &[])
            .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!(
                    "the service did not stop on SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Validates an XML document against `schemas/reports.xsd` with xmllint.
pub fn assert_xsd_valid(body: &[u8]) {
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/reports.xsd");
    let mut child = Command::new("xmllint")
        .args(["--noout", "--schema", schema.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint is installed (libxml2-utils)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid against reports.xsd: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(body)
    );
}

/// Realistic deployments from two config servers, plus heartbeats, in the
/// order they happened.
pub fn realistic_stream(
    seed: u64,
    deployments: usize,
    instances: usize,
) -> Vec<audrey_core::Event> {
    realistic_stream_from(
        Timestamp::now().plus_seconds(-600.0),
        seed,
        deployments,
        instances,
    )
}

/// [`realistic_stream`] starting at `start` (its last heartbeats are 590 s
/// later): from an hour ago, every report stays the same while a test
/// runs (config servers down, incomplete deployments stalled).
pub fn realistic_stream_from(
    start: Timestamp,
    seed: u64,
    deployments: usize,
    instances: usize,
) -> Vec<audrey_core::Event> {
    use audrey_core::scenario::{ConfigServerScript, Shape};
    let shape = Shape {
        instances,
        services_per_instance: 3,
        failure_rate: 0.15,
        ..Shape::default()
    };
    let mut servers = [
        ConfigServerScript::new("/configserver/cs-01", seed),
        ConfigServerScript::new("/configserver/cs-02", seed + 1),
    ];
    let mut events = Vec::new();
    for d in 0..deployments {
        events.extend(servers[d % 2].deployment(start.plus_seconds(d as f64), &shape));
    }
    let deleted = events[0].deployment().unwrap();
    events.push(servers[0].delete(start.plus_seconds(400.0), deleted));
    for cs in &mut servers {
        events.extend(cs.heartbeats(start, start.plus_seconds(590.0), 30));
    }
    events.sort_by_key(|e| e.time());
    events
}

/// Runs the service until its queue is drained and stops it cleanly; if
/// stopping handed prefetched messages back, runs it again.
pub fn drain_and_stop(rt: &tokio::runtime::Runtime, data: &Path, topology: &Topology) {
    for _ in 0..5 {
        let service = Service::start(data, topology, &[]);
        service.wait_ready(Duration::from_secs(60));
        let mut empty_polls = 0;
        wait_until(Duration::from_secs(120), "the queue to drain", || {
            empty_polls = if rt.block_on(ready_messages(&topology.queue)) == 0 {
                empty_polls + 1
            } else {
                0
            };
            empty_polls >= 10
        });
        assert_eq!(service.stop(), Some(0));
        if rt.block_on(ready_messages(&topology.queue)) == 0 {
            return;
        }
    }
    panic!("the queue never drained");
}

/// `text` without the first ` as-of="..."` attribute: the freshness
/// watermark, which the pure projection's reports do not have.
pub fn without_as_of(text: &str) -> String {
    match text.find(" as-of=\"") {
        Some(at) => {
            let end = text[at + 8..]
                .find('"')
                .map_or(text.len(), |e| at + 8 + e + 1);
            format!("{}{}", &text[..at], &text[end..])
        }
        None => text.to_owned(),
    }
}

/// A report's body split into what depends on the moment it was computed
/// (durations of what is still running, up to "now"; "14 min ago" in a
/// blocker's explanation) and the rest, which must be byte for byte the
/// same on every replica.
pub fn split_time_relative(body: &str) -> (String, Vec<f64>) {
    const MARKERS: [&str; 2] = ["<duration-seconds>", "\"duration_seconds\":"];
    let mut skeleton = String::with_capacity(body.len());
    let mut durations = Vec::new();
    let mut rest = body;
    while let Some((at, marker)) = MARKERS
        .iter()
        .filter_map(|m| rest.find(m).map(|at| (at, *m)))
        .min()
    {
        let value_at = at + marker.len();
        skeleton.push_str(&rest[..value_at]);
        let value_len = rest[value_at..]
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
            .unwrap_or(rest.len() - value_at);
        durations.push(
            rest[value_at..value_at + value_len]
                .parse()
                .unwrap_or(f64::NAN),
        );
        skeleton.push('#');
        rest = &rest[value_at + value_len..];
    }
    skeleton.push_str(rest);
    // "56 min ago", "42 s ago", "just now": said relative to now.
    let mut said = String::with_capacity(skeleton.len());
    let mut rest = skeleton.replace("just now", "~ ago");
    while let Some(at) = rest.find(" ago") {
        let before = rest[..at].trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let before = before.strip_suffix(' ').unwrap_or(before);
        let number = before.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        if number.len() < before.len() {
            said.push_str(number);
            said.push('~');
        } else {
            said.push_str(&rest[..at]);
        }
        said.push_str(" ago");
        rest = rest[at + 4..].to_owned();
    }
    said.push_str(&rest);
    (said, durations)
}

/// Two bodies of the same report that may differ only in what depends on
/// the moment each was computed: durations of what still runs (within
/// `seconds` of each other) and "... ago" in explanations.
pub fn same_but_for_the_clock(a: &str, b: &str, seconds: f64) -> bool {
    let (a, a_durations) = split_time_relative(a);
    let (b, b_durations) = split_time_relative(b);
    a == b
        && a_durations.len() == b_durations.len()
        && a_durations
            .iter()
            .zip(&b_durations)
            .all(|(x, y)| (x - y).abs() <= seconds)
}
