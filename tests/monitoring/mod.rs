//! What the monitoring tests share: a real Prometheus (Debian package
//! `prometheus`) and a real Alertmanager (`prometheus-alertmanager`) in
//! child processes killed when dropped, and a webhook receiver that
//! records every notification Alertmanager delivers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audrey_testkit::http::get;
use audrey_testkit::wait::free_port;
use serde_json::Value;

/// The job the shipped rules select on (`up{job="audrey-reporting"}`).
pub const JOB: &str = "audrey-reporting";

/// The labels of one series.
pub type Labels = BTreeMap<String, String>;

/// The shipped alert rules.
pub fn shipped_rules() -> PathBuf {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    assert!(rules.is_file(), "{} exists", rules.display());
    rules
}

/// A string as a YAML scalar: JSON strings are valid YAML, so paths and
/// URLs need no quoting rules of their own.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A server in a child process, its stderr in a log file, killed when
/// dropped (also when the test fails).
struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn spawn(name: &'static str, dir: tempfile::TempDir, port: u16, command: &mut Command) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} runs (./dev installs its Debian package): {e}"));
        Server {
            name,
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /-/ready` answers 200 (both servers have it).
    fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if get(self.port, "/-/ready", &[]).is_some_and(|r| r.status == 200) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{} not ready after {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus server.
pub struct Prometheus {
    server: Server,
}

impl Prometheus {
    /// Scrapes each `127.0.0.1:<port>` of `targets` every second as a
    /// target of job `audrey-reporting` (so `instance` tells them apart,
    /// as it tells replicas apart), evaluates `rules` every second, and
    /// sends alerts to the Alertmanager on `alertmanager` when given.
    pub fn start(targets: &[u16], rules: &Path, alertmanager: Option<u16>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets
            .iter()
            .map(|port| quoted(&format!("127.0.0.1:{port}")))
            .collect();
        let alerting = alertmanager.map_or(String::new(), |port| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{}]\n",
                quoted(&format!("127.0.0.1:{port}"))
            )
        });
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 {alerting}\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [{targets}]\n",
                rules = quoted(rules.to_str().unwrap()),
                targets = targets.join(", "),
            ),
        )
        .unwrap();
        let port = free_port();
        let tsdb = dir.path().join("tsdb");
        let mut command = Command::new("/usr/bin/prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        Prometheus {
            server: Server::spawn("prometheus", dir, port, &mut command),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        self.server.wait_ready(timeout)
    }

    /// `data` of a successful API call; `Err` says why not.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let response =
            get(self.port(), path, &[]).ok_or_else(|| format!("GET {path}: no answer"))?;
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("GET {path}: {e}: {}", response.text()))?;
        if response.status != 200 || body["status"] != "success" {
            return Err(format!("GET {path}: {} {body}", response.status));
        }
        Ok(body["data"].clone())
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, promql: &str) -> Result<Vec<(Labels, f64)>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        let mut out = Vec::new();
        for series in data["result"].as_array().ok_or("no result")? {
            out.push((labels(&series["metric"])?, sample_value(&series["value"])?));
        }
        Ok(out)
    }

    /// The value of a query that selects exactly one series.
    pub fn one(&self, promql: &str) -> Result<f64, String> {
        match self.query(promql)?.as_slice() {
            [(_, v)] => Ok(*v),
            other => Err(format!("{promql}: {} series: {other:?}", other.len())),
        }
    }

    /// Every stored sample (timestamp, value) of the one series `selector`
    /// selects, over the last `range`.
    pub fn samples(&self, selector: &str, range: &str) -> Result<Vec<(f64, f64)>, String> {
        let promql = format!("{selector}[{range}]");
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(&promql)))?;
        let result = data["result"].as_array().ok_or("no result")?;
        let [series] = result.as_slice() else {
            return Err(format!("{promql}: {} series", result.len()));
        };
        series["values"]
            .as_array()
            .ok_or("no values")?
            .iter()
            .map(|pair| Ok((pair[0].as_f64().ok_or("no timestamp")?, sample_value(pair)?)))
            .collect()
    }

    /// `Ok` once every loaded rule has evaluated without error and the
    /// rules named in `needed` are among them.
    pub fn rules_healthy(&self, needed: &[&str]) -> Result<(), String> {
        let rules = self.api("/api/v1/rules")?;
        let mut names = std::collections::BTreeSet::new();
        for group in rules["groups"].as_array().ok_or("no groups")? {
            for rule in group["rules"].as_array().ok_or("no rules")? {
                let name = rule["name"].as_str().unwrap_or_default();
                match rule["health"].as_str() {
                    Some("ok") => {}
                    Some("err") => panic!("rule {name} fails: {}", rule["lastError"]),
                    other => return Err(format!("rule {name}: health {other:?}")),
                }
                names.insert(name.to_owned());
            }
        }
        match needed.iter().find(|n| !names.contains(**n)) {
            Some(missing) => Err(format!("{missing} not loaded: {names:?}")),
            None => Ok(()),
        }
    }
}

/// A real Alertmanager with one route: every alert a group of its own
/// (`group_by: ['...']`), notified a second after it arrives, never
/// repeated within the hour, delivered to `webhook` without resolutions.
/// One alert that fires once is thus exactly one notification; a second
/// one means the alert resolved and fired again, or fired twice.
pub struct Alertmanager {
    server: Server,
}

impl Alertmanager {
    pub fn start(webhook: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: webhook\n  group_by: ['...']\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: webhook\n    webhook_configs:\n      - url: {}\n        \
                 send_resolved: false\n",
                quoted(webhook)
            ),
        )
        .unwrap();
        let port = free_port();
        let storage = dir.path().join("data");
        let mut command = Command::new("/usr/bin/prometheus-alertmanager");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip with peers: a single instance of the test's own.
            .arg("--cluster.listen-address=");
        Alertmanager {
            server: Server::spawn("alertmanager", dir, port, &mut command),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        self.server.wait_ready(timeout)
    }

    /// The alerts it holds, as its API lists them (for failure messages).
    pub fn alerts(&self) -> String {
        get(self.port(), "/api/v2/alerts", &[]).map_or_else(|| "no answer".into(), |r| r.text())
    }
}

/// An HTTP server of the test's own that answers every request 200 and
/// keeps the JSON body of each: the notifications Alertmanager delivers.
pub struct Webhook {
    pub port: u16,
    received: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = Arc::clone(&received);
                    std::thread::spawn(move || {
                        if let Some(body) = read_request(stream) {
                            let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                                // Kept, so that the test's assertions show it.
                                serde_json::json!({
                                    "unparsable": String::from_utf8_lossy(&body),
                                    "error": e.to_string(),
                                })
                            });
                            received.lock().unwrap().push(value);
                        }
                    });
                }
            })
        };
        Webhook {
            port,
            received,
            stop,
            accepting: Some(accepting),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/alerts", self.port)
    }

    /// Every notification received so far, in order.
    pub fn notifications(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread up so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP request with a `Content-Length` body, answers 200 and
/// closes; the body, or `None` when the request was cut short.
fn read_request(mut stream: TcpStream) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(data[header_end..header_end + length].to_vec())
}

/// The labels of a series as the API writes them.
fn labels(metric: &Value) -> Result<Labels, String> {
    Ok(metric
        .as_object()
        .ok_or("no labels")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect())
}

/// `[timestamp, "value"]` as the API writes a sample.
pub fn sample_value(pair: &Value) -> Result<f64, String> {
    pair[1]
        .as_str()
        .ok_or_else(|| format!("no value in {pair}"))?
        .parse()
        .map_err(|e| format!("{pair}: {e}"))
}

pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` until it gives a value; panics with its last complaint
/// (and `context`) after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if started.elapsed() > timeout => {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: {why}\n{}",
                    context()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `Ok` when `actual` is `expected`, else why not.
pub fn expect(what: &str, actual: Result<f64, String>, expected: f64) -> Result<(), String> {
    match actual {
        Ok(v) if v == expected => Ok(()),
        Ok(v) => Err(format!("{what} = {v}, want {expected}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
