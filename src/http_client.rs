//! The HTTP client of `wait` and of a replica's bootstrap: plain HTTP, or
//! HTTPS verified against the public web's roots or, with `--ca-file`, the
//! operator's own CA (a service started with `--tls-cert` signed by it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// What a non-2xx status is to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statuses {
    /// An error of the call (the bootstrap: anything but 2xx is a failure).
    AreErrors,
    /// An answer to read (`wait`: 304, 404 and 401 mean different things).
    AreAnswers,
}

/// An agent for one command. `timeout`: for the whole of each request.
pub fn agent(
    ca_file: Option<&Path>,
    statuses: Statuses,
    timeout: Option<Duration>,
) -> anyhow::Result<ureq::Agent> {
    let roots = match ca_file {
        None => RootCerts::WebPki,
        Some(path) => RootCerts::Specific(Arc::new(read_certificates(path)?)),
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(statuses == Statuses::AreErrors)
        .timeout_global(timeout)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into())
}

/// Every `CERTIFICATE` block of a PEM file; none is an error (a wrong file
/// would otherwise fail later as "unknown issuer").
fn read_certificates(path: &Path) -> anyhow::Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certificates: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the certificates of {}", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{} holds no certificate (PEM `CERTIFICATE` blocks expected)",
        path.display()
    );
    Ok(certificates)
}
