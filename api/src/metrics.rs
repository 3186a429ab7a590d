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

use audrey_core::contract::{DecodeError, EventType};
use audrey_core::domain::ConfigServerStatus;
use audrey_core::projection::Completion;
use audrey_core::query::{self, ReportContext};
use audrey_core::Status;
use audrey_store::{Store, StoreError};

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
pub struct ServiceStatusLabel {
    pub service: String,
    pub status: String,
}

/// What a stalled deployment waits for at the root, as labels: the text
/// an alert's description quotes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockedOnLabel {
    pub deployment: String,
    pub reason: String,
    /// The root instance. Not `instance`: Prometheus gives that name to the
    /// scrape target (the replica).
    pub root_instance: String,
    pub assembly: String,
    pub service: String,
    /// The one-line explanation, with timestamps (so the series does not
    /// change as time passes).
    pub summary: String,
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

/// Most stalled deployments whose root blocker is exported: each costs a
/// deployment report at every scrape. The stall alert still fires for the
/// others (from their progress series), without the blocker in its text.
pub const MAX_BLOCKED_ON_SERIES: usize = 100;
/// Most service names with their own `service` label value; later ones
/// are counted under [`OTHER_SERVICES`].
pub const MAX_SERVICE_LABELS: usize = 64;
pub const OTHER_SERVICES: &str = "_other";

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
    /// `--stall-after`, so that alert rules follow the flag instead of a
    /// number kept equal to it by hand.
    stall_after: FloatGauge,
    /// Invalid messages a replica's own queue delivered (the screening
    /// replica dead-letters them, once), by reason.
    events_refused: Family<ReasonLabel, Counter>,
    /// Messages waiting in the queue (-1: not counted yet).
    waiting: Gauge,
    /// The freshness watermark (latest event applied), and how far behind.
    as_of: FloatGauge,
    lag: FloatGauge,
    deployment_last_progress: Family<DeploymentLabel, FloatGauge>,
    config_server_up: Family<SourceLabel, Gauge>,
    config_server_last_heartbeat: Family<SourceLabel, FloatGauge>,
    /// The root blocker of the stalled deployments (at most
    /// [`MAX_BLOCKED_ON_SERIES`], longest stalled first).
    deployment_blocked_on: Family<BlockedOnLabel, Gauge>,
    // Durations of what completed, counted as batches are applied.
    deployment_duration: Family<StatusLabel, Histogram>,
    instance_duration: Family<StatusLabel, Histogram>,
    service_duration: Family<ServiceStatusLabel, Histogram>,
    /// The service names with their own label value (the first
    /// [`MAX_SERVICE_LABELS`] seen): names come from the network, the
    /// number of series must not grow with them.
    service_names: Mutex<std::collections::HashSet<String>>,
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
            stall_after: FloatGauge::default(),
            events_refused: Family::default(),
            waiting: {
                let unknown = Gauge::default();
                unknown.set(-1);
                unknown
            },
            as_of: FloatGauge::default(),
            lag: FloatGauge::default(),
            deployment_last_progress: Family::default(),
            config_server_up: Family::default(),
            config_server_last_heartbeat: Family::default(),
            deployment_blocked_on: Family::default(),
            // 10 s to about a day.
            deployment_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(10.0, 2.0, 14))
            }),
            instance_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(10.0, 2.0, 14))
            }),
            // Half a second to four and a half hours.
            service_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.5, 2.0, 16))
            }),
            service_names: Mutex::default(),
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
            "events_refused",
            "Invalid messages on this replica's own queue, by reason (the screening replica dead-letters them)",
            m.events_refused.clone(),
        );
        registry.register(
            "queue_waiting_messages",
            "Messages waiting for this service in its queue (-1 until counted)",
            m.waiting.clone(),
        );
        registry.register(
            "as_of_timestamp_seconds",
            "Time of the latest event this service applied: the freshness watermark of its reports",
            m.as_of.clone(),
        );
        registry.register(
            "lag_seconds",
            "How far behind this service is: 0 when nothing waits in its queue, else the time since its watermark",
            m.lag.clone(),
        );
        registry.register(
            "stall_after_seconds",
            "The service's --stall-after: an incomplete deployment without progress for this long is stalled",
            m.stall_after.clone(),
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
        registry.register(
            "deployment_blocked_on",
            "What each stalled deployment waits for at the root (1 per deployment; the labels say it)",
            m.deployment_blocked_on.clone(),
        );
        registry.register(
            "deployment_duration_seconds",
            "Deployments completed: from their first event to completion, by outcome",
            m.deployment_duration.clone(),
        );
        registry.register(
            "instance_duration_seconds",
            "Instances completed: from registration to completion, by outcome",
            m.instance_duration.clone(),
        );
        registry.register(
            "service_configuration_duration_seconds",
            "Service configuration runs ended: from start to end, by service name and outcome",
            m.service_duration.clone(),
        );
        // Every known label value exists from the start, so rate() and
        // increase() see the first event of each.
        for t in EventType::ALL {
            drop(m.events_consumed.get_or_create(&TypeLabel {
                r#type: t.short_name().into(),
            }));
        }
        for reason in DecodeError::REASONS {
            drop(m.events_dead_lettered.get_or_create(&ReasonLabel {
                reason: reason.into(),
            }));
        }
        m
    }

    pub fn refused(&self, reason: &str) {
        self.events_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn set_waiting(&self, messages: u32) {
        self.waiting.set(i64::from(messages));
    }

    pub fn event_consumed(&self, event_type: EventType) {
        self.events_consumed
            .get_or_create(&TypeLabel {
                r#type: event_type.short_name().into(),
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

    /// Counts what a batch completed in the duration histograms.
    pub fn completed(&self, completion: &Completion) {
        match completion {
            Completion::Deployment { status, seconds } => self
                .deployment_duration
                .get_or_create(&StatusLabel {
                    status: status.as_str().into(),
                })
                .observe(*seconds),
            Completion::Instance { status, seconds } => self
                .instance_duration
                .get_or_create(&StatusLabel {
                    status: status.as_str().into(),
                })
                .observe(*seconds),
            Completion::Service {
                name,
                status,
                seconds,
            } => {
                let service = {
                    let mut names = self.service_names.lock().unwrap_or_else(|e| e.into_inner());
                    if names.contains(name.as_str()) || names.len() < MAX_SERVICE_LABELS {
                        names.insert(name.to_string());
                        name.to_string()
                    } else {
                        OTHER_SERVICES.to_owned()
                    }
                };
                self.service_duration
                    .get_or_create(&ServiceStatusLabel {
                        service,
                        status: status.as_str().into(),
                    })
                    .observe(*seconds)
            }
        }
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
        let query::IncompleteDeployments {
            last_progress: incomplete,
            stalled,
        } = query::incomplete_deployments(&reader, ctx)?;
        self.deployments_stalled.set(stalled as i64);
        self.stall_after.set(ctx.stall_after_seconds);
        let as_of = reader.as_of()?;
        self.as_of
            .set(as_of.map_or(0.0, audrey_core::Timestamp::unix_seconds_f64));
        let waiting = u32::try_from(self.waiting.get()).ok();
        self.lag
            .set(crate::replication::lag_seconds(waiting, as_of, ctx.now));
        self.deployment_blocked_on.clear();
        let stall_before = ctx.now.plus_seconds(-ctx.stall_after_seconds);
        let mut stalled_ones: Vec<_> = incomplete
            .iter()
            .filter(|(_, progress)| *progress < stall_before)
            .collect();
        stalled_ones.sort_by_key(|(id, progress)| (*progress, *id));
        for (id, _) in stalled_ones.into_iter().take(MAX_BLOCKED_ON_SERIES) {
            let Some(blocked) =
                query::deployment_report(&reader, *id, ctx)?.and_then(|report| report.blocked_on)
            else {
                continue;
            };
            let text = |n: Option<&audrey_core::Name>| n.map_or(String::new(), |n| n.to_string());
            self.deployment_blocked_on
                .get_or_create(&BlockedOnLabel {
                    deployment: id.to_string(),
                    reason: blocked.reason.as_str().into(),
                    root_instance: blocked.instance.to_string(),
                    assembly: text(blocked.assembly.as_ref()),
                    service: text(blocked.service.as_ref()),
                    summary: blocked.summary(),
                })
                .set(1);
        }
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
                source: server.source.to_string(),
            };
            self.config_server_up
                .get_or_create(&label)
                .set(i64::from(server.status == ConfigServerStatus::Running));
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use audrey_core::memory::MemoryViews;
    use audrey_core::query::ReportContext;
    use audrey_core::scenario::{ConfigServerScript, Shape};
    use audrey_core::{DeploymentId, Event, EventType, Timestamp};
    use audrey_store::Store;

    use super::Metrics;

    const SOURCE: &str = "/configserver/cs-unit";

    fn start() -> Timestamp {
        Timestamp::from_unix_seconds(1_800_000_000)
    }

    fn deployment_of(events: &[Event]) -> DeploymentId {
        events[0].deployment().expect("deployment events")
    }

    fn last_time(events: &[Event]) -> Timestamp {
        events.iter().map(|e| e.time()).max().expect("events")
    }

    fn ctx(now: Timestamp, stall_after_seconds: f64) -> ReportContext {
        ReportContext {
            stall_after_seconds,
            ..ReportContext::at(now)
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("views")).unwrap();
        (dir, store)
    }

    /// The samples of an exposition: series (name and labels, as written)
    /// to value.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("a number in {line}"));
            assert!(
                out.insert(series.to_owned(), value).is_none(),
                "series written twice: {series}"
            );
        }
        out
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        samples(text).get(series).copied()
    }

    fn progress_series(text: &str) -> BTreeMap<String, f64> {
        samples(text)
            .into_iter()
            .filter(|(s, _)| s.starts_with("audrey_deployment_last_progress_timestamp_seconds{"))
            .collect()
    }

    fn progress_of(deployment: DeploymentId) -> String {
        format!("audrey_deployment_last_progress_timestamp_seconds{{deployment=\"{deployment}\"}}")
    }

    #[test]
    fn state_series_say_what_the_views_say() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 1);
        let done = cs.deployment(start(), &Shape::succeeding());
        let stuck = cs.deployment(start().plus_seconds(1.0), &Shape::stalling());
        let beats = cs.heartbeats(start(), start().plus_seconds(100.0), 10);
        let mut all: Vec<Event> = [done.clone(), stuck.clone(), beats.clone()].concat();
        all.sort_by_key(|e| e.time());
        store.apply_batch(&all).unwrap();
        let expected = MemoryViews::from_events(&all).counts;
        // The scenario did what the test relies on.
        assert_eq!(expected.deployments.success, 1);
        assert_eq!(expected.deployments.incomplete, 1);
        assert_eq!(expected.deployments.error, 0);

        let now = last_time(&all).plus_seconds(1.0);
        let text = Metrics::new().scrape(&store, &ctx(now, 900.0)).unwrap();
        for (family, counts) in [
            ("audrey_deployments", expected.deployments),
            ("audrey_instances", expected.instances),
            ("audrey_services", expected.services),
        ] {
            for (status, n) in [
                ("success", counts.success),
                ("incomplete", counts.incomplete),
                ("error", counts.error),
            ] {
                let series = format!("{family}{{status=\"{status}\"}}");
                assert_eq!(value(&text, &series), Some(n as f64), "{series}\n{text}");
            }
        }
        assert_eq!(
            value(&text, "audrey_unresolved_dependencies"),
            Some(expected.unresolved_dependencies as f64)
        );
        assert_eq!(value(&text, "audrey_deployments_stalled"), Some(0.0));
        // Only the incomplete deployment has a progress series.
        let progress = progress_series(&text);
        assert_eq!(
            progress,
            BTreeMap::from([(
                progress_of(deployment_of(&stuck)),
                last_time(&stuck).unix_seconds_f64()
            )]),
            "{text}"
        );
        assert!(!text.contains(&deployment_of(&done).to_string()));
        let up = format!("audrey_config_server_up{{source=\"{SOURCE}\"}}");
        let heartbeat =
            format!("audrey_config_server_last_heartbeat_timestamp_seconds{{source=\"{SOURCE}\"}}");
        assert_eq!(value(&text, &up), Some(1.0));
        assert_eq!(
            value(&text, &heartbeat),
            Some(last_time(&beats).unix_seconds_f64())
        );
    }

    #[test]
    fn a_config_server_is_down_once_three_intervals_pass_without_a_heartbeat() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 2);
        let beats = cs.heartbeats(start(), start().plus_seconds(60.0), 10);
        store.apply_batch(&beats).unwrap();
        let last = last_time(&beats);
        let metrics = Metrics::new();
        let up = format!("audrey_config_server_up{{source=\"{SOURCE}\"}}");
        let heartbeat =
            format!("audrey_config_server_last_heartbeat_timestamp_seconds{{source=\"{SOURCE}\"}}");
        for (after, expected) in [
            (0.0, 1.0),
            (29.0, 1.0),
            (30.0, 1.0),
            (30.001, 0.0),
            (3600.0, 0.0),
        ] {
            let text = metrics
                .scrape(&store, &ctx(last.plus_seconds(after), 900.0))
                .unwrap();
            assert_eq!(
                value(&text, &up),
                Some(expected),
                "{after} s after the last heartbeat"
            );
            // The heartbeat time stays, up or down, for PromQL to compute how long.
            assert_eq!(value(&text, &heartbeat), Some(last.unix_seconds_f64()));
        }
        // And back up with the next heartbeat.
        let late = cs.heartbeats(last.plus_seconds(100.0), last.plus_seconds(100.0), 10);
        store.apply_batch(&late).unwrap();
        let text = metrics
            .scrape(&store, &ctx(last.plus_seconds(101.0), 900.0))
            .unwrap();
        assert_eq!(value(&text, &up), Some(1.0));
    }

    #[test]
    fn stalled_counts_incomplete_deployments_past_the_threshold() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 3);
        let early = cs.deployment(start(), &Shape::stalling());
        let late = cs.deployment(start().plus_seconds(600.0), &Shape::stalling());
        store
            .apply_batch(&[early.clone(), late.clone()].concat())
            .unwrap();
        let metrics = Metrics::new();
        let stalled = |now: Timestamp| {
            let text = metrics.scrape(&store, &ctx(now, 60.0)).unwrap();
            value(&text, "audrey_deployments_stalled").unwrap()
        };
        let (early_end, late_end) = (last_time(&early), last_time(&late));
        assert!(early_end.plus_seconds(120.0) < late_end);
        assert_eq!(stalled(early_end.plus_seconds(59.0)), 0.0);
        assert_eq!(stalled(early_end.plus_seconds(61.0)), 1.0);
        assert_eq!(stalled(late_end.plus_seconds(59.0)), 1.0);
        assert_eq!(stalled(late_end.plus_seconds(61.0)), 2.0);
        // Progress series stay as they are: staleness is computed in PromQL.
        let text = metrics
            .scrape(&store, &ctx(late_end.plus_seconds(61.0), 60.0))
            .unwrap();
        assert_eq!(
            progress_series(&text),
            BTreeMap::from([
                (
                    progress_of(deployment_of(&early)),
                    early_end.unix_seconds_f64()
                ),
                (
                    progress_of(deployment_of(&late)),
                    late_end.unix_seconds_f64()
                ),
            ])
        );
    }

    #[test]
    fn a_stalled_deployment_exports_its_root_blocker_and_only_while_stalled() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 3);
        // Every agent gives up: the deployment stays incomplete.
        let events = cs.deployment(start(), &Shape::stalling());
        store.apply_batch(&events).unwrap();
        let metrics = Metrics::new();
        let blocked = |now: Timestamp| {
            let text = metrics.scrape(&store, &ctx(now, 60.0)).unwrap();
            text.lines()
                .filter(|l| l.starts_with("audrey_deployment_blocked_on{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let end = last_time(&events);
        assert_eq!(blocked(end.plus_seconds(59.0)), Vec::<String>::new());
        let series = blocked(end.plus_seconds(61.0));
        assert_eq!(series.len(), 1, "{series:?}");
        let line = &series[0];
        assert!(
            line.contains(&format!("deployment=\"{}\"", deployment_of(&events))),
            "{line}"
        );
        assert!(line.contains("reason=\""), "{line}");
        assert!(line.contains("summary=\"waiting for instance "), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
        // The same later: the series does not change as time passes.
        assert_eq!(blocked(end.plus_seconds(600.0)), series);
    }

    #[test]
    fn completions_fill_the_duration_histograms_with_bounded_service_labels() {
        use audrey_core::projection::Completion;
        use audrey_core::{Name, Status};
        let metrics = Metrics::new();
        metrics.completed(&Completion::Deployment {
            status: Status::Success,
            seconds: 300.0,
        });
        metrics.completed(&Completion::Instance {
            status: Status::Error,
            seconds: 30.0,
        });
        for i in 0..super::MAX_SERVICE_LABELS + 10 {
            metrics.completed(&Completion::Service {
                name: Name::parse(&format!("service-{i}")).unwrap(),
                status: Status::Success,
                seconds: 2.0,
            });
        }
        let (_dir, store) = open();
        let text = metrics.scrape(&store, &ctx(start(), 60.0)).unwrap();
        assert_eq!(
            value(
                &text,
                "audrey_deployment_duration_seconds_count{status=\"success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "audrey_deployment_duration_seconds_sum{status=\"success\"}"
            ),
            Some(300.0)
        );
        assert_eq!(
            value(
                &text,
                "audrey_instance_duration_seconds_count{status=\"error\"}"
            ),
            Some(1.0)
        );
        let services: BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("audrey_service_configuration_duration_seconds_count{"))
            .collect();
        assert_eq!(services.len(), super::MAX_SERVICE_LABELS + 1);
        assert_eq!(
            value(
                &text,
                "audrey_service_configuration_duration_seconds_count{service=\"_other\",status=\"success\"}"
            ),
            Some(10.0)
        );
    }

    #[test]
    fn the_progress_series_goes_once_a_deployment_completes_or_is_deleted() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 4);
        let completing = cs.deployment(start(), &Shape::succeeding());
        let deleted = cs.deployment(start(), &Shape::stalling());
        let (finale, before) = completing.split_last().unwrap();
        assert_eq!(finale.event_type(), EventType::ConfigurationEnded);
        store.apply_batch(&[before, &deleted[..]].concat()).unwrap();
        let metrics = Metrics::new();
        let now = last_time(&completing).plus_seconds(10.0);
        let scrape = || metrics.scrape(&store, &ctx(now, 900.0)).unwrap();

        let text = scrape();
        assert_eq!(
            progress_series(&text),
            BTreeMap::from([
                (
                    progress_of(deployment_of(&completing)),
                    last_time(before).unix_seconds_f64()
                ),
                (
                    progress_of(deployment_of(&deleted)),
                    last_time(&deleted).unix_seconds_f64()
                ),
            ])
        );
        assert_eq!(
            value(&text, "audrey_deployments{status=\"incomplete\"}"),
            Some(2.0)
        );

        store.apply_batch(std::slice::from_ref(finale)).unwrap();
        let text = scrape();
        assert_eq!(
            progress_series(&text).into_keys().collect::<Vec<_>>(),
            vec![progress_of(deployment_of(&deleted))]
        );
        assert_eq!(
            value(&text, "audrey_deployments{status=\"success\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "audrey_deployments{status=\"incomplete\"}"),
            Some(1.0)
        );

        let delete = cs.delete(now, deployment_of(&deleted));
        store.apply_batch(&[delete]).unwrap();
        let text = scrape();
        assert_eq!(progress_series(&text), BTreeMap::new(), "{text}");
        assert_eq!(
            value(&text, "audrey_deployments{status=\"incomplete\"}"),
            Some(0.0)
        );
        assert_eq!(value(&text, "audrey_deployments_stalled"), Some(0.0));
        // Much later, nothing deleted or completed counts as stalled.
        let text = metrics
            .scrape(&store, &ctx(now.plus_seconds(86_400.0), 900.0))
            .unwrap();
        assert_eq!(value(&text, "audrey_deployments_stalled"), Some(0.0));
    }

    #[test]
    fn pipeline_series_exist_from_the_start_and_count() {
        let (_dir, store) = open();
        let metrics = Metrics::new();
        let text = metrics.scrape(&store, &ctx(start(), 900.0)).unwrap();
        for t in audrey_core::contract::EventType::ALL {
            let series = format!(
                "audrey_events_consumed_total{{type=\"{}\"}}",
                t.short_name()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for reason in audrey_core::DecodeError::REASONS {
            let series = format!("audrey_events_dead_lettered_total{{reason=\"{reason}\"}}");
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(value(&text, "audrey_amqp_connected"), Some(0.0));
        // No config server, no deployment: no series with their labels.
        assert!(!text.contains("audrey_config_server_up{"), "{text}");
        assert!(progress_series(&text).is_empty());

        metrics.event_consumed(EventType::ConfigServerHeartbeat);
        metrics.event_consumed(EventType::ConfigServerHeartbeat);
        metrics.event_consumed(EventType::InstanceContacted);
        metrics.duplicates(3);
        metrics.dead_lettered("not_json");
        metrics.set_amqp_connected(true);
        metrics.batch_applied(0.002);
        metrics.lag(-1.0);
        metrics.http_request("/metrics", 200, 0.001);
        let text = metrics.scrape(&store, &ctx(start(), 900.0)).unwrap();
        let v = |s: &str| value(&text, s);
        assert_eq!(
            v("audrey_events_consumed_total{type=\"configserver.heartbeat\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("audrey_events_consumed_total{type=\"instance.contacted\"}"),
            Some(1.0)
        );
        assert_eq!(v("audrey_events_duplicate_total"), Some(3.0));
        assert_eq!(
            v("audrey_events_dead_lettered_total{reason=\"not_json\"}"),
            Some(1.0)
        );
        assert_eq!(v("audrey_amqp_connected"), Some(1.0));
        assert_eq!(v("audrey_event_apply_duration_seconds_count"), Some(1.0));
        assert_eq!(v("audrey_event_lag_seconds_count"), Some(1.0));
        assert_eq!(
            v("audrey_event_lag_seconds_sum"),
            Some(0.0),
            "negative lags count as 0"
        );
        assert_eq!(
            v("audrey_http_requests_total{route=\"/metrics\",code=\"200\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("audrey_http_request_duration_seconds_count{route=\"/metrics\"}"),
            Some(1.0)
        );
        metrics.set_amqp_connected(false);
        let text = metrics.scrape(&store, &ctx(start(), 900.0)).unwrap();
        assert_eq!(value(&text, "audrey_amqp_connected"), Some(0.0));
    }

    /// OpenMetrics and Prometheus conventions: every family announced by
    /// `# TYPE` and `# HELP`, every sample in an announced family, counters
    /// sampled as `_total`, the `audrey_` prefix, base units, `# EOF`.
    #[test]
    fn the_exposition_follows_the_naming_conventions() {
        let (_dir, store) = open();
        let mut cs = ConfigServerScript::new(SOURCE, 5);
        let mut all = cs.deployment(start(), &Shape::stalling());
        all.extend(cs.heartbeats(start(), start().plus_seconds(30.0), 10));
        store.apply_batch(&all).unwrap();
        let metrics = Metrics::new();
        metrics.http_request("/health", 503, 0.01);
        metrics.batch_applied(0.01);
        let text = metrics
            .scrape(&store, &ctx(last_time(&all), 900.0))
            .unwrap();

        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helps: BTreeSet<String> = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "{name} typed twice"
                );
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.trim().is_empty(), "{name} has an empty help");
                helps.insert(name.into());
            }
        }
        assert_eq!(
            types.keys().cloned().collect::<BTreeSet<_>>(),
            helps,
            "every family has both # TYPE and # HELP"
        );
        for (name, kind) in &types {
            assert!(name.starts_with("audrey_"), "{name} lacks the prefix");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind.as_str()),
                "{name}: unexpected type {kind}"
            );
            assert!(
                !name.ends_with("_total"),
                "{name}: the family name of a counter has no _total, its samples do"
            );
            assert!(
                !["_milliseconds", "_ms", "_bytes_kb", "_minutes", "_hours"]
                    .iter()
                    .any(|unit| name.ends_with(unit)),
                "{name}: base units only"
            );
            if kind == "histogram" || name.contains("timestamp") {
                assert!(name.ends_with("_seconds"), "{name}: times are in seconds");
            }
        }
        let family_of = |sample: &str| -> (String, String) {
            let name = sample.split('{').next().unwrap();
            for suffix in ["", "_total", "_bucket", "_count", "_sum", "_created"] {
                if let Some(family) = name.strip_suffix(suffix) {
                    if let Some(kind) = types.get(family) {
                        let expected_suffixes: &[&str] = match kind.as_str() {
                            "counter" => &["_total", "_created"],
                            "histogram" => &["_bucket", "_count", "_sum", "_created"],
                            _ => &[""],
                        };
                        if expected_suffixes.contains(&suffix) {
                            return (family.to_owned(), suffix.to_owned());
                        }
                    }
                }
            }
            panic!("sample {sample} belongs to no announced family");
        };
        let mut sampled = BTreeSet::new();
        for series in samples(&text).keys() {
            let (family, suffix) = family_of(series);
            if types[&family] == "counter" {
                assert_eq!(suffix, "_total", "{series}");
            }
            sampled.insert(family);
        }
        // Each metric name of the README's "Metrics and alerts" is there.
        for name in [
            "audrey_config_server_up",
            "audrey_config_server_last_heartbeat_timestamp_seconds",
            "audrey_deployments",
            "audrey_instances",
            "audrey_services",
            "audrey_unresolved_dependencies",
            "audrey_deployments_stalled",
            "audrey_deployment_last_progress_timestamp_seconds",
            "audrey_events_consumed",
            "audrey_events_duplicate",
            "audrey_events_dead_lettered",
            "audrey_event_apply_duration_seconds",
            "audrey_event_lag_seconds",
            "audrey_amqp_connected",
        ] {
            assert!(sampled.contains(name), "{name} missing:\n{text}");
        }
    }
}
