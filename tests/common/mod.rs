//! What the end-to-end tests share: a real broker with names of their own,
//! the real binary in a child process, a tiny HTTP client, XSD checks.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audrey_consumer::Topology;
use audrey_views::memory::MemoryViews;
use audrey_views::query::{self, DeploymentFilter, ReportContext};
use audrey_views::{Status, Store, Timestamp};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A runtime for the async parts (publishing, reading queues).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A topology no other test uses.
pub fn unique_topology(test: &str) -> Topology {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Topology::with_prefix(&format!("test.{test}.{}.{nanos}", std::process::id()))
}

/// Deletes a test's queues and exchanges when dropped, so that a failing
/// test leaves nothing behind either.
pub struct RemoveOnDrop(pub Topology);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let topology = self.0.clone();
        // A thread of its own: the drop may happen inside a runtime.
        let _ = std::thread::spawn(move || runtime().block_on(remove_topology(&topology))).join();
    }
}

/// Deletes the test's queues and exchanges.
pub async fn remove_topology(topology: &Topology) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) = lapin::Connection::connect(AMQP_URL, Default::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    for queue in [&topology.queue, &topology.dead_letter_queue] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [&topology.exchange, &topology.dead_letter_exchange] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

pub fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP response, as a client sees it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP/1.1 request (the tests need no client library); `None`
/// when nothing listens.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = unchunk(&body);
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end]).unwrap_or("0").trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    request(port, "GET", path, headers)
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

/// Every report of the store equals the one the pure projection builds
/// from `expected`.
pub fn assert_store_matches(store: &Store, expected: &MemoryViews) {
    let reader = store.reader();
    let ctx = ReportContext::at(Timestamp::now());
    assert_eq!(query::counts(&reader).unwrap(), expected.counts, "counts");
    for id in expected.deployments.keys() {
        assert_eq!(
            query::deployment_report(&reader, *id, &ctx).unwrap(),
            query::deployment_report(expected, *id, &ctx).unwrap()
        );
    }
    for id in expected.instances.keys() {
        assert_eq!(
            query::instance_report(&reader, *id).unwrap(),
            query::instance_report(expected, *id).unwrap()
        );
    }
    for status in Status::ALL {
        let filter = DeploymentFilter::Status(status);
        assert_eq!(
            query::deployment_page(&reader, filter, 0, 1000, &ctx)
                .unwrap()
                .total,
            query::deployment_page(expected, filter, 0, 1000, &ctx)
                .unwrap()
                .total
        );
    }
    assert_eq!(
        query::config_servers(&reader, &ctx).unwrap(),
        query::config_servers(expected, &ctx).unwrap()
    );
}

/// Sums every sample of a metric family in a Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One sample of a metric with exactly these labels (as written), if any.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l.as_bytes().get(series.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Realistic deployments from two config servers, plus heartbeats, in the
/// order they happened.
pub fn realistic_stream(
    seed: u64,
    deployments: usize,
    instances: usize,
) -> Vec<audrey_views::Event> {
    use audrey_views::scenario::{ConfigServerScript, Shape};
    let start = Timestamp::now().plus_seconds(-600.0);
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
    let deleted = events[0].deployment.unwrap();
    events.push(servers[0].delete(start.plus_seconds(400.0), deleted));
    for cs in &mut servers {
        events.extend(cs.heartbeats(start, start.plus_seconds(590.0), 30));
    }
    events.sort_by_key(|e| e.time);
    events
}

/// Messages ready in a queue (not counting those delivered and unacked).
pub async fn ready_messages(queue: &str) -> u32 {
    use lapin::options::QueueDeclareOptions;
    let connection = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    declared.message_count()
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
