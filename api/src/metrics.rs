//! `/metrics`: Prometheus exposition of the pipeline (counted as it runs)
//! and of the views' state (read at scrape time from the counts the store
//! keeps in step with the views, so a scrape is O(series), never a scan).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use audrey_views::event::{DecodeError, EVENT_TYPES};
use audrey_views::query::{self, ReportContext};
use audrey_views::{Status, Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabel {
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteCodeLabel {
    pub route: String,
    pub code: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the service exposes.
pub struct Metrics {
    registry: Registry,
    // Pipeline, counted as events flow.
    events_consumed: Family<TypeLabel, Counter>,
    events_duplicate: Counter,
    events_dead_lettered: Family<ReasonLabel, Counter>,
    apply_duration: Histogram,
    event_lag: Histogram,
    amqp_connected: Gauge,
    http_requests: Family<RouteCodeLabel, Counter>,
    http_duration: Family<RouteLabel, Histogram>,
    // State, refreshed from the store at each scrape.
    deployments: Family<StatusLabel, Gauge>,
    instances: Family<StatusLabel, Gauge>,
    services: Family<StatusLabel, Gauge>,
    unresolved_dependencies: Gauge,
    deployments_stalled: Gauge,
    deployment_last_progress: Family<DeploymentLabel, FloatGauge>,
    config_server_up: Family<SourceLabel, Gauge>,
    config_server_last_heartbeat: Family<SourceLabel, FloatGauge>,
    /// One scrape at a time: state families are cleared and refilled.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            events_consumed: Family::default(),
            events_duplicate: Counter::default(),
            events_dead_lettered: Family::default(),
            apply_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            event_lag: Histogram::new(exponential_buckets(0.005, 2.5, 14)),
            amqp_connected: Gauge::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 3.0, 12))
            }),
            deployments: Family::default(),
            instances: Family::default(),
            services: Family::default(),
            unresolved_dependencies: Gauge::default(),
            deployments_stalled: Gauge::default(),
            deployment_last_progress: Family::default(),
            config_server_up: Family::default(),
            config_server_last_heartbeat: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::with_prefix("audrey"),
        };
        let registry = &mut m.registry;
        registry.register(
            "events_consumed",
            "Events applied to the views, by type",
            m.events_consumed.clone(),
        );
        registry.register(
            "events_duplicate",
            "Redelivered or re-published events that changed nothing",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Invalid messages sent to the dead-letter queue, by reason",
            m.events_dead_lettered.clone(),
        );
        registry.register(
            "event_apply_duration_seconds",
            "Time to apply and sync one batch of events",
            m.apply_duration.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "From an event's time to its being applied",
            m.event_lag.clone(),
        );
        registry.register(
            "amqp_connected",
            "1 while the consumer is connected to the broker",
            m.amqp_connected.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request durations, by route",
            m.http_duration.clone(),
        );
        registry.register(
            "deployments",
            "Deployments by status",
            m.deployments.clone(),
        );
        registry.register("instances", "Instances by status", m.instances.clone());
        registry.register(
            "services",
            "Configured services by status",
            m.services.clone(),
        );
        registry.register(
            "unresolved_dependencies",
            "Reference parameters whose source is not provided yet",
            m.unresolved_dependencies.clone(),
        );
        registry.register(
            "deployments_stalled",
            "Incomplete deployments without progress for longer than --stall-after",
            m.deployments_stalled.clone(),
        );
        registry.register(
            "deployment_last_progress_timestamp_seconds",
            "Time of the latest event of each incomplete deployment",
            m.deployment_last_progress.clone(),
        );
        registry.register(
            "config_server_up",
            "1 while the config server's heartbeat is fresh",
            m.config_server_up.clone(),
        );
        registry.register(
            "config_server_last_heartbeat_timestamp_seconds",
            "Time of the config server's latest heartbeat",
            m.config_server_last_heartbeat.clone(),
        );
        // Every known label value exists from the start, so rate() and
        // increase() see the first event of each.
        for t in EVENT_TYPES {
            drop(
                m.events_consumed
                    .get_or_create(&TypeLabel { r#type: t.into() }),
            );
        }
        for reason in DecodeError::REASONS {
            drop(m.events_dead_lettered.get_or_create(&ReasonLabel {
                reason: reason.into(),
            }));
        }
        m
    }

    pub fn event_consumed(&self, short_type: &str) {
        self.events_consumed
            .get_or_create(&TypeLabel {
                r#type: short_type.into(),
            })
            .inc();
    }

    pub fn duplicates(&self, n: u64) {
        self.events_duplicate.inc_by(n);
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.events_dead_lettered
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn batch_applied(&self, seconds: f64) {
        self.apply_duration.observe(seconds);
    }

    pub fn lag(&self, seconds: f64) {
        self.event_lag.observe(seconds.max(0.0));
    }

    pub fn set_amqp_connected(&self, connected: bool) {
        self.amqp_connected.set(i64::from(connected));
    }

    pub fn http_request(&self, route: &str, code: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&RouteCodeLabel {
                route: route.into(),
                code: code.to_string(),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabel {
                route: route.into(),
            })
            .observe(seconds);
    }

    /// Reads the views' state from a snapshot and encodes every metric.
    pub fn scrape(&self, store: &Store, ctx: &ReportContext) -> Result<String, StoreError> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let reader = store.reader();
        let counts = query::counts(&reader)?;
        for status in Status::ALL {
            let label = StatusLabel {
                status: status.as_str().into(),
            };
            self.deployments
                .get_or_create(&label)
                .set(counts.deployments.get(status));
            self.instances
                .get_or_create(&label)
                .set(counts.instances.get(status));
            self.services
                .get_or_create(&label)
                .set(counts.services.get(status));
        }
        self.unresolved_dependencies
            .set(counts.unresolved_dependencies);
        let (incomplete, stalled) = query::incomplete_deployments(&reader, ctx)?;
        self.deployments_stalled.set(stalled as i64);
        self.deployment_last_progress.clear();
        for (id, progress) in incomplete {
            self.deployment_last_progress
                .get_or_create(&DeploymentLabel {
                    deployment: id.to_string(),
                })
                .set(progress.unix_seconds_f64());
        }
        self.config_server_up.clear();
        self.config_server_last_heartbeat.clear();
        for server in query::config_servers(&reader, ctx)? {
            let label = SourceLabel {
                source: server.source.clone(),
            };
            self.config_server_up
                .get_or_create(&label)
                .set(i64::from(server.status == "running"));
            if let Some(t) = server.last_heartbeat {
                self.config_server_last_heartbeat
                    .get_or_create(&label)
                    .set(t.unix_seconds_f64());
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding to a String");
        Ok(out)
    }
}
