//! The reports, as plain data: the API renders them as the Audrey XML or
//! as JSON.

use std::hash::{Hash, Hasher};

use serde::{Serialize, Serializer};

pub use super::blocker::{BlockReason, BlockedOn, Blocker, WaitStep};

use crate::contract::Awaited;
use crate::domain::{
    ConfigServerStatus, DeploymentId, InstanceId, Name, Source, Status, Timestamp,
};
use crate::rows::{ConfigServer, Deployment};

/// What "now" means for a report, and the thresholds that depend on it.
#[derive(Debug, Clone, Copy)]
pub struct ReportContext {
    pub now: Timestamp,
    /// An incomplete deployment with no event for this long is stalled.
    pub stall_after_seconds: f64,
    /// A config server is down after this many announced intervals without
    /// a heartbeat.
    pub heartbeat_tolerance: f64,
    /// A config server not heard from for this long is forgotten: it
    /// leaves the reports and the metrics (sources come from the network,
    /// so their number must not grow forever).
    pub forget_config_server_after_seconds: f64,
}

/// The default of `--stall-after`: an incomplete deployment without
/// progress for 15 minutes is stalled.
pub const DEFAULT_STALL_AFTER_SECONDS: f64 = 15.0 * 60.0;
/// The default of `--heartbeat-tolerance`: a config server is down after
/// three missed heartbeats.
pub const DEFAULT_HEARTBEAT_TOLERANCE: f64 = 3.0;
/// The default of `--forget-config-server-after`: a week of silence.
pub const DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS: f64 = 7.0 * 86_400.0;

impl ReportContext {
    /// At `now`, with the default thresholds.
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            stall_after_seconds: DEFAULT_STALL_AFTER_SECONDS,
            heartbeat_tolerance: DEFAULT_HEARTBEAT_TOLERANCE,
            forget_config_server_after_seconds: DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS,
        }
    }

    /// Whether a config server last heard at `last_heartbeat` is forgotten.
    pub fn forgets(&self, last_heartbeat: Timestamp) -> bool {
        last_heartbeat
            < self
                .now
                .plus_seconds(-self.forget_config_server_after_seconds)
    }
}

pub(crate) fn rfc3339<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.rfc3339().as_str()),
        None => s.serialize_none(),
    }
}

/// A duration in seconds, to the millisecond. For what is still running
/// it depends on when the report is asked for, so it is left out of the
/// report's [`fingerprint`] (the state an ETag names): the timestamps it
/// derives from are in it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    pub fn between(from: Timestamp, to: Timestamp) -> Self {
        Seconds(crate::projection::seconds_between(from, to))
    }

    /// Rounded to the millisecond, as written in the reports.
    pub fn rounded(self) -> f64 {
        (self.0 * 1000.0).round() / 1000.0
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.rounded())
    }
}

impl Hash for Seconds {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// A stable digest of the state a report shows: equal for equal states on
/// every replica running the same build, and unchanged while only the
/// clock moves (a running service's duration so far). What the ETag names.
pub fn fingerprint(report: &impl Hash) -> u64 {
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    report.hash(&mut hasher);
    hasher.finish()
}

/// FNV-1a as a [`Hasher`]: no random keys, so replicas agree.
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A deployment, with its instances and what they wait for.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct DeploymentReport {
    pub uuid: DeploymentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    pub status: Status,
    pub stalled: bool,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub registered: Option<Timestamp>,
    /// Expected instances (from `deployment.registered`) not yet registered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_instances: Vec<InstanceId>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<Timestamp>,
    /// From its first event to its completion, or until now while it is
    /// not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<Seconds>,
    pub instances: Vec<InstanceSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_dependencies: Vec<UnresolvedDependency>,
    /// What it waits for at the root, unless it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_on: Option<BlockedOn>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_servers: Vec<ConfigServerState>,
}

/// A deployment's report as its rows give it, before the clock is read:
/// what [`crate::query::deployment_report_parts`] found, from which
/// [`DeploymentReportParts::at`] makes the report of any moment without
/// reading the rows again. A reader may keep it while the rows stay the
/// same (an unfinished deployment's report changes every moment, its
/// parts do not).
#[derive(Debug, Clone)]
pub struct DeploymentReportParts {
    /// The report with what moves with the clock left out: not stalled,
    /// no duration, no blocker and no config servers.
    pub(crate) report: DeploymentReport,
    /// Its first event: where its duration starts.
    pub(crate) first_event: Option<Timestamp>,
    /// What it waits for, unless it succeeded.
    pub(crate) blocker: Option<Blocker>,
    /// Its config servers, each with its row when one was heard: whether
    /// it is running, down or forgotten depends on the time.
    pub(crate) config_servers: Vec<(Source, Option<ConfigServer>)>,
    /// Whether they were computed from rows of instances that are not its
    /// own (the sources of references to other deployments).
    pub(crate) reads_elsewhere: bool,
}

impl DeploymentReportParts {
    /// The report at `ctx.now`: the same as computing it from the rows then.
    pub fn at(&self, ctx: &ReportContext) -> DeploymentReport {
        let mut report = self.report.clone();
        // The report has no deleted deployment.
        report.stalled = crate::rows::deployment::is_stalled(
            report.status,
            report.last_progress,
            ctx.now,
            ctx.stall_after_seconds,
        );
        report.duration_seconds = self
            .first_event
            .map(|first| Seconds::between(first, report.completed.unwrap_or(ctx.now)));
        report.blocked_on = self.blocker.as_ref().map(|b| b.at(ctx.now));
        report.config_servers = self
            .config_servers
            .iter()
            .map(|(source, row)| {
                match row
                    .as_ref()
                    .filter(|row| !ctx.forgets(row.last_heartbeat.time))
                {
                    Some(row) => ConfigServerState::of(row, ctx),
                    None => ConfigServerState {
                        source: source.clone(),
                        status: ConfigServerStatus::Unknown,
                        version: None,
                        interval_seconds: None,
                        last_heartbeat: None,
                    },
                }
            })
            .collect();
        report
    }

    /// Where its report's duration starts, if it shows one, when the
    /// deployment is not complete (`None` when it is): the one figure of
    /// its report that changes every moment. A reader that keeps the rest
    /// of a report puts in the seconds from then to the moment it answers
    /// (see [`InstanceReport::durations`]).
    pub fn durations(&self) -> Option<Option<Timestamp>> {
        self.first_event
            .map(|first| Some(first).filter(|_| self.report.completed.is_none()))
    }

    /// What the figures of its report that move with the clock are
    /// computed from and the report's [`fingerprint`] leaves out: its
    /// first event (where its duration starts) and the longest ended run
    /// of its peers that a running blocker is compared with. They belong
    /// in the state an ETag names all the same: a late event older than
    /// the first moves even a completed deployment's duration, and a
    /// peer's run that ends changes when its blocker reads as slower.
    pub fn clock_inputs(&self) -> (Option<Timestamp>, Option<u64>) {
        let longest = self.blocker.as_ref().and_then(Blocker::peers_longest_run);
        (self.first_event, longest.map(f64::to_bits))
    }

    /// When its blocker, a service still running, will have run longer
    /// than every run of the deployment's other services that ended: from
    /// then on its report says it is slower than its peers.
    pub fn slower_than_peers_from(&self) -> Option<Timestamp> {
        self.blocker.as_ref()?.slower_than_peers_from()
    }

    /// Whether they were computed only from its own rows: the
    /// deployment's, its instances' and its config servers'. Such parts
    /// hold while none of those rows changes; others, only while nothing
    /// in the views does.
    pub fn read_only_its_own_rows(&self) -> bool {
        !self.reads_elsewhere
    }

    /// How many instances its report lists.
    pub fn instances(&self) -> usize {
        self.report.instances.len()
    }

    /// Bytes it holds, roughly: what a cache of them counts against its
    /// budget.
    pub fn bytes(&self) -> usize {
        let r = &self.report;
        let name = |n: &Option<Name>| n.as_ref().map_or(0, |n| n.as_str().len());
        std::mem::size_of::<Self>()
            + name(&r.name)
            + r.missing_instances.len() * 16
            + r.instances
                .iter()
                .map(|i| std::mem::size_of::<InstanceSummary>() + name(&i.assembly))
                .sum::<usize>()
            + r.unresolved_dependencies
                .iter()
                .map(|u| {
                    std::mem::size_of::<UnresolvedDependency>()
                        + u.service.as_str().len()
                        + u.parameter.as_str().len()
                        + 24
                })
                .sum::<usize>()
            + self.blocker.as_ref().map_or(0, Blocker::bytes)
            + self
                .config_servers
                .iter()
                .map(|(s, row)| {
                    let row = row.as_ref().map_or(0, |r| {
                        std::mem::size_of::<ConfigServer>()
                            + r.version.len()
                            + r.source.as_str().len()
                    });
                    std::mem::size_of::<(Source, Option<ConfigServer>)>() + s.as_str().len() + row
                })
                .sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct InstanceSummary {
    pub uuid: InstanceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Name>,
    pub status: Status,
}

/// One reference parameter whose source has not been provided yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UnresolvedDependency {
    /// The waiting instance, service and parameter.
    pub instance: InstanceId,
    pub service: Name,
    pub parameter: Name,
    /// Where the value must come from.
    pub source_instance: InstanceId,
    #[serde(flatten)]
    pub awaited: AwaitedSource,
}

/// What a reference waits for on its source instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AwaitedSource {
    /// A provided parameter (`<return-param-name>`).
    #[serde(rename = "source_parameter")]
    Parameter(Name),
    /// A service's return code (`<service-name>`).
    #[serde(rename = "source_service")]
    Service(Name),
}

impl From<&Awaited> for AwaitedSource {
    fn from(a: &Awaited) -> Self {
        match a {
            Awaited::Parameter(p) => AwaitedSource::Parameter(p.clone()),
            Awaited::ServiceReturnCode(s) => AwaitedSource::Service(s.clone()),
        }
    }
}

/// An instance with all its services.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct InstanceReport {
    pub uuid: InstanceId,
    pub deployment: DeploymentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Name>,
    pub status: Status,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub registered: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub first_contacted: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub last_contacted: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// From its registration to its completion, or until now while it is
    /// registered and not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<Seconds>,
    pub services: Vec<ServiceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_return_parameters: Vec<Name>,
}

impl InstanceReport {
    /// Where each duration it shows starts, in the order it shows them
    /// (its own, then its services'), for one still running; `None` for
    /// one that ended. A running duration is the one thing in an instance
    /// report that changes with the clock.
    pub fn durations(&self) -> Vec<Option<Timestamp>> {
        let own = self
            .duration_seconds
            .map(|_| self.registered.filter(|_| self.completed.is_none()));
        own.into_iter()
            .chain(self.services.iter().flat_map(ServiceReport::durations))
            .collect()
    }
}

/// One service of one instance.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct ServiceReport {
    pub name: Name,
    pub instance: InstanceId,
    pub status: Status,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub configuration_started: Option<Timestamp>,
    /// Present once the current run has ended.
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub configuration_ended: Option<Timestamp>,
    /// The return code of the current run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_status: Option<i32>,
    /// How long the current run took, or has been running so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<Seconds>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_service_parameters: Vec<UnresolvedParameter>,
}

impl ServiceReport {
    /// Its duration, if it shows one: since when it runs when its current
    /// run has not ended, `None` when it has (see
    /// [`InstanceReport::durations`]).
    pub fn durations(&self) -> Option<Option<Timestamp>> {
        self.duration_seconds.map(|_| {
            self.configuration_started
                .filter(|_| self.configuration_ended.is_none())
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UnresolvedParameter {
    pub name: Name,
    pub source_instance: InstanceId,
    #[serde(flatten)]
    pub awaited: AwaitedSource,
}

/// Whether a config server is running.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct ConfigServerState {
    pub source: Source,
    /// `running`, `down`, or `unknown` when it never sent a heartbeat.
    pub status: ConfigServerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Timestamp>,
}

impl ConfigServerState {
    pub fn of(row: &ConfigServer, ctx: &ReportContext) -> Self {
        Self {
            source: row.source.clone(),
            status: if row.is_running(ctx.now, ctx.heartbeat_tolerance) {
                ConfigServerStatus::Running
            } else {
                ConfigServerStatus::Down
            },
            version: Some(row.version.clone()),
            interval_seconds: Some(row.interval_seconds),
            last_heartbeat: Some(row.last_heartbeat.time),
        }
    }
}

/// One line of the deployments list.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct DeploymentSummary {
    pub uuid: DeploymentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    pub status: Status,
    pub stalled: bool,
    /// The time of its first event: how old it is.
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<Timestamp>,
    #[serde(rename = "instance_counts")]
    pub instances: InstanceCounts,
    pub unresolved_dependencies: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct InstanceCounts {
    pub total: i64,
    pub success: i64,
    pub incomplete: i64,
    pub error: i64,
}

impl DeploymentSummary {
    pub fn of(d: &Deployment, ctx: &ReportContext) -> Self {
        let counts = d.tally.instances;
        Self {
            uuid: d.uuid,
            name: d.name().cloned(),
            status: d.status(),
            stalled: d.is_stalled(ctx.now, ctx.stall_after_seconds),
            started: d.first_event,
            last_progress: d.last_progress,
            instances: InstanceCounts {
                total: counts.total(),
                success: counts.success,
                incomplete: counts.incomplete,
                error: counts.error,
            },
            unresolved_dependencies: d.tally.unresolved_dependencies,
        }
    }
}

/// Which deployments to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentFilter {
    All,
    Status(Status),
    /// Incomplete with no progress for longer than the stall threshold.
    Stalled,
}

/// The order of the deployments list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeploymentOrder {
    /// By uuid: stable pages, and the cheapest (the index's order).
    #[default]
    Uuid,
    /// Oldest first (by first event), ties by uuid.
    Age,
    /// Longest without progress first (by last progress), ties by uuid.
    Progress,
}

/// A page of the deployments list.
#[derive(Debug, Clone, PartialEq, Hash, Serialize)]
pub struct DeploymentPage {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub deployments: Vec<DeploymentSummary>,
}
