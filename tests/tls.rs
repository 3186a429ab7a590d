//! `amqps://` works: the service consumes through a TLS endpoint (socat
//! terminating TLS in front of the local broker, with a CA of the test's
//! own), refuses a certificate it cannot trust, and never logs credentials.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
