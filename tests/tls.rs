//! TLS both ways. `amqps://` works: the service consumes through a TLS
//! endpoint (socat terminating TLS in front of the local broker, with a CA
//! of the test's own), refuses a certificate it cannot trust, and never
//! logs credentials. HTTPS works: with `--tls-cert`/`--tls-key` the API
//! answers clients that verify its certificate (curl, `wait --ca-file`),
//! refuses plain HTTP, and a long-poll does not hold up a shutdown.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audrey_consumer::{Broker, Publisher};
use common::*;

/// A TLS endpoint on `port` forwarding to the plain broker.
struct TlsProxy(Child);

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=audrey test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn tls_proxy(dir: &Path, port: u16) -> TlsProxy {
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let child = Command::new("socat")
        .args([listen.as_str(), "TCP:127.0.0.1:5672"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat is installed");
    wait_until(Duration::from_secs(10), "the TLS proxy to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    TlsProxy(child)
}

#[test]
fn the_service_consumes_over_amqps_and_keeps_credentials_out_of_its_logs() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = free_port();
    let _proxy = tls_proxy(dir.path(), port);
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    let ca = dir.path().join("ca.pem");
    let topology = unique_topology("tls");
    let _cleanup = RemoveOnDrop(topology.clone());

    // Without our CA, the certificate is not trusted: never ready.
    let untrusting = Service::start_with_url(&dir.path().join("untrusting"), &topology, &url, &[]);
    wait_until(
        Duration::from_secs(20),
        "a TLS failure to be logged",
        || untrusting.log_text().contains("AMQP disconnected"),
    );
    assert_eq!(untrusting.get("/health").status, 503);
    assert_eq!(untrusting.stop(), Some(0));

    let data = dir.path().join("data");
    let service = Service::start_with_url(
        &data,
        &topology,
        &url,
        &["--amqp-ca-file", ca.to_str().unwrap()],
    );
    service.wait_ready(Duration::from_secs(60));
    let events = realistic_stream(8, 3, 2);
    rt.block_on(async {
        let broker = Broker::new(&url).with_ca_file(Some(&ca));
        let publisher = Publisher::connect_to(&broker, &topology).await.unwrap();
        publisher.publish_all(&events).await.unwrap();
        publisher.close().await.unwrap();
    });
    wait_until(
        Duration::from_secs(60),
        "the events to arrive over TLS",
        || {
            metric_sum(
                &service.get("/metrics").text(),
                "audrey_events_consumed_total",
            ) >= events.len() as f64
        },
    );
    let log = service.log_text();
    assert!(log.contains("amqps://guest:***@localhost"), "{log}");
    assert!(
        !log.contains("guest:guest"),
        "credentials in the log: {log}"
    );
    assert_eq!(service.stop(), Some(0));
}

/// `curl` against the HTTPS API, verifying the certificate against `ca`
/// (none: the system's roots). Returns curl's exit code, the HTTP status
/// and the body.
fn curl(ca: Option<&Path>, url: &str, headers: &[&str]) -> (i32, u16, Vec<u8>) {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(ca) = ca {
        command.args(["--cacert", ca.to_str().unwrap()]);
    }
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command.arg(url).output().expect("curl runs");
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (out.status.code().unwrap_or(-1), status, body)
}

#[test]
fn the_api_serves_https_to_clients_that_verify_its_certificate() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let ca = dir.path().join("ca.pem");
    let topology = unique_topology("https");
    let _cleanup = RemoveOnDrop(topology.clone());
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let service = Service::start(
        &dir.path().join("data"),
        &topology,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--api-token",
            "s3cret",
        ],
    );
    let base = format!("https://localhost:{}", service.port);
    wait_until(
        Duration::from_secs(60),
        "the service to be ready over HTTPS",
        || curl(Some(&ca), &format!("{base}/health"), &[]).1 == 200,
    );

    let events = realistic_stream(21, 2, 2);
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(&events).await.unwrap();
        publisher.close().await.unwrap();
    });
    let auth = "Authorization: Bearer s3cret";
    // Every event applied first: the stream ends by deleting its first
    // deployment, which a listing taken earlier would still show.
    let metrics_url = format!("{base}/metrics");
    wait_until(Duration::from_secs(60), "every event to be applied", || {
        let (_, status, body) = curl(Some(&ca), &metrics_url, &[auth]);
        let text = String::from_utf8_lossy(&body);
        let settled = metric_sum(&text, "audrey_events_consumed_total")
            + metric_sum(&text, "audrey_events_duplicate_total");
        status == 200 && settled >= events.len() as f64
    });
    // The first deployment listed (over HTTPS too): with every event
    // applied, the listing and the report are final, so one look each.
    let list_url = format!("{base}/reports/deployments");
    let (_, status, body) = curl(Some(&ca), &list_url, &[auth, "Accept: application/json"]);
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert!(
        status == 200 && listed["total"].as_u64() > Some(0),
        "no deployment listed over HTTPS: HTTP {status} {listed}"
    );
    let deployment = listed["deployments"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let report_url = format!("{base}/reports/deployment/{deployment}");
    let (code, status, body) = curl(Some(&ca), &report_url, &[auth]);
    assert_eq!(
        status,
        200,
        "the deployment's report over HTTPS: curl {code} HTTP {status} {}",
        String::from_utf8_lossy(&body)
    );
    assert_xsd_valid(&body);
    // The token still guards the reports over HTTPS.
    assert_eq!(curl(Some(&ca), &report_url, &[]).1, 401);
    // A client that does not trust the CA refuses the connection (curl's
    // 60: the peer's certificate cannot be verified) ...
    let (code, _, _) = curl(None, &format!("{base}/health"), &[]);
    assert_eq!(code, 60, "curl without the CA must refuse the certificate");
    // ... and plain HTTP on the TLS port gets no answer.
    assert!(get(service.port, "/health", &[]).is_none_or(|r| r.status != 200));

    // `wait` over HTTPS with the CA: the same verdict as the report's.
    let json: serde_json::Value = {
        let (_, _, body) = curl(Some(&ca), &report_url, &[auth, "Accept: application/json"]);
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    };
    let expected = match (
        json["status"].as_str().unwrap(),
        json["stalled"].as_bool().unwrap(),
    ) {
        ("success", _) => 0,
        ("error", _) => 1,
        (_, true) => 3,
        _ => 2,
    };
    let wait = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
            .args(["wait", &deployment, "--url", &base, "--timeout", "5s"])
            .args(["--api-token", "s3cret"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs")
    };
    let trusted = wait(&["--ca-file", ca.to_str().unwrap()]);
    assert_eq!(
        trusted.status.code(),
        Some(expected),
        "{}",
        String::from_utf8_lossy(&trusted.stdout)
    );
    // Without the CA, `wait` never gets an answer: a timeout that says why.
    let untrusted = wait(&[]);
    let said = String::from_utf8_lossy(&untrusted.stdout).to_lowercase();
    assert_eq!(untrusted.status.code(), Some(2), "{said}");
    assert!(
        said.contains("certificate") || said.contains("issuer"),
        "{said}"
    );

    // A long-poll in flight ends with the shutdown, not 300 s later.
    let etag = {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "--cacert",
                ca.to_str().unwrap(),
            ])
            .args(["-H", auth, &report_url])
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&out.stdout).to_string();
        headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("etag: ")
                    .or_else(|| l.strip_prefix("ETag: "))
            })
            .unwrap_or_else(|| panic!("no ETag: {headers}"))
            .trim()
            .to_owned()
    };
    let poll = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["-H", auth, "-H", &format!("If-None-Match: {etag}")])
        .arg(format!("{report_url}?wait=300s"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    assert_eq!(service.stop(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the shutdown waited {:?} for a long-poll",
        stopping.elapsed()
    );
    let polled = poll.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&polled.stdout), "304");
}

#[test]
fn a_certificate_or_key_that_cannot_be_used_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let topology = unique_topology("https-bad");
    let _cleanup = RemoveOnDrop(topology.clone());
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    // The CA's key is not the server certificate's.
    let mismatched = dir.path().join("ca.key");
    for (cert, key) in [(&cert, &mismatched), (&key, &key)] {
        let mut service = Service::start(
            &dir.path().join("data"),
            &topology,
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let status = service.child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{}", service.log_text());
        assert!(
            service.log_text().contains("--tls-cert"),
            "{}",
            service.log_text()
        );
    }
    // One without the other is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_audrey-reporting"))
        .args(["serve", "--tls-cert", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
