//! Connecting to the broker, over TCP or TLS (`amqps://`), to whichever
//! node of a RabbitMQ cluster answers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use lapin::tcp::OwnedTLSConfig;
use lapin::{Connection, ConnectionProperties};
use tracing::warn;

use crate::redact_url;

/// The broker on this machine, with RabbitMQ's default user: what a fresh
/// install answers to.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The AMQP heartbeat asked for when a URL does not set one: a node that
/// hangs (rather than dies) is noticed after two missed heartbeats, 20 s,
/// instead of the two minutes RabbitMQ's default of 60 s would take.
pub const DEFAULT_HEARTBEAT_SECONDS: u16 = 10;

/// The largest AMQP frame asked for when a URL does not set one. lapin
/// keeps a receive and a send buffer of 32 frames each per connection,
/// zero-filled when the connection opens: with RabbitMQ's 128 KiB default
/// that is 8 MiB resident per connection, for deliveries of about half a
/// kilobyte. At 32 KiB the buffers take 2 MiB; an event larger than a
/// frame (up to `--max-event-bytes`) arrives in several frames
/// (BENCHMARKS.md, "Twenty-second round").
pub const DEFAULT_FRAME_MAX: u32 = 32 * 1024;

/// How long one node may take to accept a connection before the next is
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is and how to trust it: one URL per node of a cluster
/// (any of them will do).
#[derive(Debug, Clone)]
pub struct Broker {
    /// `amqp://` or `amqps://` URLs, credentials included; logged only
    /// through [`redact_url`].
    pub urls: Vec<String>,
    /// PEM file of the CA that signed an `amqps://` broker's certificate,
    /// when it is not in the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// The URL that answered last: tried first next time, so a client
    /// stays on a node that works and moves on from one that died.
    preferred: Arc<AtomicUsize>,
}

impl PartialEq for Broker {
    fn eq(&self, other: &Self) -> bool {
        self.urls == other.urls && self.ca_file == other.ca_file
    }
}

impl Eq for Broker {}

impl Broker {
    pub fn new(url: impl Into<String>) -> Self {
        Self::cluster(vec![url.into()])
    }

    /// A broker of several nodes (at least one URL).
    pub fn cluster(urls: Vec<String>) -> Self {
        Self {
            urls,
            ca_file: None,
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn with_ca_file(mut self, ca_file: Option<&Path>) -> Self {
        self.ca_file = ca_file.map(Path::to_path_buf);
        self
    }

    /// The URLs, passwords hidden, for logs.
    pub fn redacted(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Opens a connection named `name` (shown in the broker's UI) to the
    /// first node that answers, starting with the one that answered last.
    pub async fn connect(&self, name: &str) -> anyhow::Result<Connection> {
        if self.urls.is_empty() {
            return Err(anyhow!("no broker URL"));
        }
        let cert_chain = match &self.ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?,
            ),
            None => None,
        };
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for offset in 0..self.urls.len() {
            let index = (first + offset) % self.urls.len();
            let url = with_defaults(&self.urls[index]);
            let properties = ConnectionProperties::default().with_connection_name(name.into());
            let runtime = lapin::runtime::default_runtime()?;
            let tls = OwnedTLSConfig {
                identity: None,
                cert_chain: cert_chain.clone(),
            };
            let attempt = tokio::time::timeout(
                CONNECT_TIMEOUT,
                Connection::connect_with_config(&url, properties, tls, runtime),
            )
            .await;
            match attempt {
                Ok(Ok(connection)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Ok(Err(error)) => failures.push(format!("{}: {error}", redact_url(&url))),
                Err(_) => failures.push(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}",
                    redact_url(&url)
                )),
            }
            if self.urls.len() > 1 {
                warn!(url = %redact_url(&url), "broker node did not answer; trying the next");
            }
        }
        Err(anyhow!("connecting to the broker: {}", failures.join("; ")))
    }

    /// The URL a connection would try first (for messages).
    pub fn current_url(&self) -> &str {
        &self.urls[self.preferred.load(Ordering::Relaxed) % self.urls.len()]
    }
}

/// `url` with `heartbeat=` and `frame_max=` set, unless it sets them
/// already.
fn with_defaults(url: &str) -> String {
    let mut url = url.to_owned();
    for (name, value) in [
        ("heartbeat", u32::from(DEFAULT_HEARTBEAT_SECONDS)),
        ("frame_max", DEFAULT_FRAME_MAX),
    ] {
        if url.contains(&format!("{name}=")) {
            continue;
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        url = format!("{url}{separator}{name}={value}");
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_heartbeat_and_a_frame_max_unless_they_set_them() {
        assert_eq!(
            with_defaults("amqp://h:5672/%2f"),
            "amqp://h:5672/%2f?heartbeat=10&frame_max=32768"
        );
        assert_eq!(
            with_defaults("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_defaults("amqp://h/v?heartbeat=5"),
            "amqp://h/v?heartbeat=5&frame_max=32768"
        );
        assert_eq!(
            with_defaults("amqp://h/v?heartbeat=5&frame_max=131072"),
            "amqp://h/v?heartbeat=5&frame_max=131072"
        );
    }

    #[tokio::test]
    async fn the_broker_agrees_to_the_smaller_frames() {
        let connection = Broker::new(DEFAULT_AMQP_URL).connect("test").await.unwrap();
        // RabbitMQ offers 128 KiB; the connection settles on what was asked.
        assert_eq!(connection.configuration().frame_max(), DEFAULT_FRAME_MAX);
        assert_eq!(
            connection.configuration().heartbeat(),
            DEFAULT_HEARTBEAT_SECONDS
        );
        let _ = connection.close(200, "done".into()).await;
    }

    #[tokio::test]
    async fn the_first_node_that_answers_is_used_and_preferred_next_time() {
        let dead = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned();
        let live = DEFAULT_AMQP_URL.to_owned();
        let broker = Broker::cluster(vec![dead.clone(), live.clone()]);
        let connection = broker.connect("test").await.unwrap();
        assert_eq!(broker.current_url(), live);
        let _ = connection.close(200, "done".into()).await;
        let none = Broker::cluster(vec![dead]);
        let error = none.connect("test").await.unwrap_err().to_string();
        assert!(error.contains("127.0.0.1:1"), "{error}");
        assert!(
            !error.contains("guest:guest"),
            "no password in errors: {error}"
        );
    }
}
