//! The HTTP side of audrey-reporting: the Audrey reporting XML (and the
//! same reports as JSON), health and Prometheus metrics, over warp.
//!
//! - [`routes`]: which endpoint a path names (and 400/404 for bad ones).
//! - [`handler`]: one request end to end: limits, method, token,
//!   content negotiation, the query on a store snapshot (off the async
//!   threads), ETag/304, metrics.
//! - [`cache`]: rendered reports kept while they are still right.
//! - [`xml`]: the XML documents, element names of the original Audrey.
//! - [`metrics`]: `/metrics`, pipeline counters and view counts.
//! - [`replication`]: what a replica serves its peers (how far behind it
//!   is, barriers, checkpoints of its store).
//! - [`tls`]: HTTPS (`--tls-cert`/`--tls-key`), the same routes behind
//!   rustls.
//! - [`ui`]: the HTML view under `/ui/`, static files compiled in.
//!
//! It reads the views through `audrey_core::query` and knows nothing of
//! AMQP: the binary tells it whether the consumer is connected.
#![forbid(unsafe_code)]

pub mod cache;
pub mod handler;
pub mod metrics;
pub mod replication;
pub mod routes;
pub mod tls;
pub mod ui;
pub mod xml;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use warp::Filter;

use audrey_core::query::{
    ReportContext, DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS, DEFAULT_HEARTBEAT_TOLERANCE,
    DEFAULT_STALL_AFTER_SECONDS,
};
use audrey_core::Timestamp;
use audrey_store::Store;

pub use metrics::Metrics;

/// Where the API listens unless told otherwise: this machine only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// An incomplete deployment without progress for this long is stalled.
    pub stall_after_seconds: f64,
    /// A config server is down after this many missed heartbeat intervals.
    pub heartbeat_tolerance: f64,
    /// A config server silent for this long leaves the reports and metrics.
    pub forget_config_server_after_seconds: f64,
    /// When set, `/reports/*` needs `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            stall_after_seconds: DEFAULT_STALL_AFTER_SECONDS,
            heartbeat_tolerance: DEFAULT_HEARTBEAT_TOLERANCE,
            forget_config_server_after_seconds: DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS,
            api_token: None,
        }
    }
}

/// What the handlers share.
pub struct ApiState {
    /// Every request reads a fresh snapshot of it.
    pub store: Arc<Store>,
    /// Counted by every request; encoded by `/metrics`.
    pub metrics: Arc<Metrics>,
    pub settings: ApiSettings,
    /// Set by whoever runs the consumer; readiness needs it.
    amqp_connected: AtomicBool,
    /// How far behind this replica is, and the barriers it has passed.
    pub replication: replication::Replication,
    /// Bumped after each batch applied: what long-polls (`?wait=`) wait on.
    changes: tokio::sync::watch::Sender<u64>,
    /// Rendered reports still right ([`cache`]).
    pub reports: cache::ReportCache,
    /// Set when the service shuts down: long-polls answer at once instead
    /// of holding the shutdown for up to their `wait`.
    stopping: AtomicBool,
}

impl ApiState {
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, settings: ApiSettings) -> Self {
        Self {
            store,
            metrics,
            settings,
            amqp_connected: AtomicBool::new(false),
            replication: replication::Replication::default(),
            changes: tokio::sync::watch::Sender::new(0),
            reports: cache::ReportCache::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The service is shutting down: every long-poll answers now.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.views_changed();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The views changed (a batch was applied): long-polls look again.
    pub fn views_changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Told of every [`views_changed`](Self::views_changed) from now on.
    pub fn subscribe_to_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn set_amqp_connected(&self, connected: bool) {
        self.amqp_connected.store(connected, Ordering::Relaxed);
        self.metrics.set_amqp_connected(connected);
    }

    pub fn amqp_connected(&self) -> bool {
        self.amqp_connected.load(Ordering::Relaxed)
    }

    /// "Now" for reports, with the configured thresholds.
    pub fn report_context(&self) -> ReportContext {
        ReportContext {
            now: Timestamp::now(),
            stall_after_seconds: self.settings.stall_after_seconds,
            heartbeat_tolerance: self.settings.heartbeat_tolerance,
            forget_config_server_after_seconds: self.settings.forget_config_server_after_seconds,
        }
    }
}

/// Every request goes to [`handler::handle`].
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || Arc::clone(&state)))
        .then(handler::handle)
}

/// Serves on an already bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Binds `addr` (port 0 for an ephemeral one), for callers that want the
/// bound address before serving.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
