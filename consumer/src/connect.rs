//! Connecting to the broker, over TCP or TLS (`amqps://`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lapin::tcp::OwnedTLSConfig;
use lapin::{Connection, ConnectionProperties};

use crate::redact_url;

/// The broker on this machine, with RabbitMQ's default user: what a fresh
/// install answers to.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where the broker is and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `amqp://` or `amqps://` URL, credentials included; logged only
    /// through [`redact_url`].
    pub url: String,
    /// PEM file of the CA that signed an `amqps://` broker's certificate,
    /// when it is not in the system's trust store.
    pub ca_file: Option<PathBuf>,
}

impl Broker {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
        }
    }

    pub fn with_ca_file(mut self, ca_file: Option<&Path>) -> Self {
        self.ca_file = ca_file.map(Path::to_path_buf);
        self
    }

    /// Opens a connection named `name` (shown in the broker's UI).
    pub async fn connect(&self, name: &str) -> anyhow::Result<Connection> {
        let cert_chain = match &self.ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?,
            ),
            None => None,
        };
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let runtime = lapin::runtime::default_runtime()?;
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain,
        };
        Connection::connect_with_config(&self.url, properties, tls, runtime)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&self.url)))
    }
}
