//! The reports readers ask for, built from view rows through [`ViewRead`]
//! (one consistent snapshot in the store). These are plain data: the API
//! renders them as the Audrey XML or as JSON.
//!
//! Cheap aggregates (status, counts) come straight from the rows; the few
//! timestamps that are maxima over a deployment's instances (registered,
//! completed) are computed here, since the deployment report reads every
//! instance anyway to list them.

use std::collections::HashMap;

use serde::{Serialize, Serializer};

use crate::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use crate::event::Awaited;
use crate::model::{ConfigServer, Counts, Deployment, Instance, Service};
use crate::projection::ViewRead;
use crate::store::StoreError;

/// What "now" means for a report, and the thresholds that depend on it.
#[derive(Debug, Clone, Copy)]
pub struct ReportContext {
    pub now: Timestamp,
    /// An incomplete deployment with no event for this long is stalled.
    pub stall_after_seconds: f64,
    /// A config server is down after this many announced intervals without
    /// a heartbeat.
    pub heartbeat_tolerance: f64,
}

impl ReportContext {
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            stall_after_seconds: 15.0 * 60.0,
            heartbeat_tolerance: 3.0,
        }
    }
}

fn rfc3339<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// A deployment, with its instances and what they wait for.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub instances: Vec<InstanceSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_dependencies: Vec<UnresolvedDependency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_servers: Vec<ConfigServerState>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSummary {
    pub uuid: InstanceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Name>,
    pub status: Status,
}

/// One reference parameter whose source has not been provided yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub services: Vec<ServiceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_return_parameters: Vec<Name>,
}

/// One service of one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_service_parameters: Vec<UnresolvedParameter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnresolvedParameter {
    pub name: Name,
    pub source_instance: InstanceId,
    #[serde(flatten)]
    pub awaited: AwaitedSource,
}

/// Whether a config server is running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigServerState {
    pub source: String,
    /// `running`, `down`, or `unknown` when it never sent a heartbeat.
    pub status: &'static str,
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
                "running"
            } else {
                "down"
            },
            version: Some(row.version.clone()),
            interval_seconds: Some(row.interval_seconds),
            last_heartbeat: Some(row.last_heartbeat.time),
        }
    }
}

/// One line of the deployments list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentSummary {
    pub uuid: DeploymentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    pub status: Status,
    pub stalled: bool,
    #[serde(serialize_with = "rfc3339", skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<Timestamp>,
    #[serde(rename = "instance_counts")]
    pub instances: InstanceCounts,
    pub unresolved_dependencies: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// A page of the deployments list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentPage {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub deployments: Vec<DeploymentSummary>,
}

/// Listing deployments by status: an index in the store, a filter in memory.
pub trait ListDeployments: ViewRead {
    /// Visits the deployments (never deleted ones) with `status`, or all,
    /// in uuid order, with their last progress; stops when `visit` says so.
    fn deployments_with_status(
        &self,
        status: Option<Status>,
        visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
}

/// One page of the deployments list, in uuid order. Counting a status comes
/// from the global counts; counting stalled ones visits the incomplete ones.
pub fn deployment_page(
    views: &impl ListDeployments,
    filter: DeploymentFilter,
    offset: u64,
    limit: u64,
    ctx: &ReportContext,
) -> Result<DeploymentPage, StoreError> {
    let (status, stalled_only) = match filter {
        DeploymentFilter::All => (None, false),
        DeploymentFilter::Status(s) => (Some(s), false),
        DeploymentFilter::Stalled => (Some(Status::Incomplete), true),
    };
    let stall_before = ctx.now.plus_seconds(-ctx.stall_after_seconds);
    let mut seen = 0u64;
    let mut page = Vec::new();
    views.deployments_with_status(status, &mut |id, progress| {
        if stalled_only && progress.is_none_or(|p| p >= stall_before) {
            return Ok(true);
        }
        if seen >= offset && (page.len() as u64) < limit {
            page.push(id);
        }
        seen += 1;
        // Counting stalled deployments needs the whole walk; the rest stop.
        Ok(stalled_only || (page.len() as u64) < limit)
    })?;
    let counts = views.counts()?;
    let total = match filter {
        DeploymentFilter::All => counts.deployments.total() as u64,
        DeploymentFilter::Status(s) => counts.deployments.get(s) as u64,
        DeploymentFilter::Stalled => seen,
    };
    let mut deployments = Vec::with_capacity(page.len());
    for id in page {
        if let Some(row) = views.deployment(id)? {
            deployments.push(DeploymentSummary::of(&row, ctx));
        }
    }
    Ok(DeploymentPage {
        total,
        offset,
        limit,
        deployments,
    })
}

/// Incomplete deployments with their last progress, and how many are
/// stalled: what the metrics need, in one walk of the incomplete ones.
pub fn incomplete_deployments(
    views: &impl ListDeployments,
    ctx: &ReportContext,
) -> Result<(Vec<(DeploymentId, Timestamp)>, u64), StoreError> {
    let stall_before = ctx.now.plus_seconds(-ctx.stall_after_seconds);
    let mut all = Vec::new();
    let mut stalled = 0;
    views.deployments_with_status(Some(Status::Incomplete), &mut |id, progress| {
        if let Some(progress) = progress {
            all.push((id, progress));
            stalled += u64::from(progress < stall_before);
        }
        Ok(true)
    })?;
    Ok((all, stalled))
}

/// The deployment report; `None` when unknown or deleted.
pub fn deployment_report(
    views: &impl ViewRead,
    id: DeploymentId,
    ctx: &ReportContext,
) -> Result<Option<DeploymentReport>, StoreError> {
    let Some(d) = views.deployment(id)?.filter(|d| d.deleted.is_none()) else {
        return Ok(None);
    };
    let mut members = views.instances(&views.deployment_instances(id)?)?;
    members.sort_by_key(|s| s.instance.uuid);

    let registrations = members
        .iter()
        .filter(|s| d.registration.is_none() || s.instance.expected)
        .filter_map(|s| s.instance.registration.as_ref().map(|r| r.stamp.time));
    let registered = d.is_registered().then(|| {
        registrations
            .chain(d.registration.as_ref().map(|r| r.stamp.time))
            .max()
    });
    let completed = d
        .is_completed()
        .then(|| members.iter().filter_map(|s| s.instance.completed).max());

    let mut sources = SourceCache::new(views);
    // Most references point inside the deployment: its instances are in hand.
    for state in &members {
        sources
            .seen
            .insert(state.instance.uuid, Some(state.instance.clone()));
    }
    let mut unresolved = Vec::new();
    for state in &members {
        for service in state.visible_services() {
            for (parameter, source_instance, awaited) in sources.unresolved(service)? {
                unresolved.push(UnresolvedDependency {
                    instance: state.instance.uuid,
                    service: service.name.clone(),
                    parameter,
                    source_instance,
                    awaited,
                });
            }
        }
    }
    let mut config_servers = Vec::new();
    for source in &d.sources {
        config_servers.push(match views.config_server(source)? {
            Some(row) => ConfigServerState::of(&row, ctx),
            None => ConfigServerState {
                source: source.clone(),
                status: "unknown",
                version: None,
                interval_seconds: None,
                last_heartbeat: None,
            },
        });
    }
    Ok(Some(DeploymentReport {
        uuid: d.uuid,
        name: d.name().cloned(),
        status: d.status(),
        stalled: d.is_stalled(ctx.now, ctx.stall_after_seconds),
        registered: registered.flatten(),
        missing_instances: members
            .iter()
            .filter(|s| s.instance.expected && s.instance.registration.is_none())
            .map(|s| s.instance.uuid)
            .collect(),
        completed: completed.flatten(),
        last_progress: d.last_progress,
        instances: members
            .iter()
            .map(|s| InstanceSummary {
                uuid: s.instance.uuid,
                assembly: s.instance.registration.as_ref().map(|r| r.assembly.clone()),
                status: s.instance.status,
            })
            .collect(),
        unresolved_dependencies: unresolved,
        config_servers,
    }))
}

/// The instance report; `None` when unknown (or its deployment deleted).
pub fn instance_report(
    views: &impl ViewRead,
    id: InstanceId,
) -> Result<Option<InstanceReport>, StoreError> {
    let Some(state) = views.instance(id)? else {
        return Ok(None);
    };
    let mut sources = SourceCache::new(views);
    let mut services = Vec::new();
    for service in state.visible_services() {
        services.push(service_of(service, &mut sources)?);
    }
    let i = &state.instance;
    Ok(Some(InstanceReport {
        uuid: i.uuid,
        deployment: i.deployment,
        assembly: i.registration.as_ref().map(|r| r.assembly.clone()),
        status: i.status,
        registered: i.registration.as_ref().map(|r| r.stamp.time),
        first_contacted: i.first_contacted,
        last_contacted: i.last_contacted,
        completed: i.completed,
        services,
        pending_return_parameters: i.pending_return_parameters().into_iter().cloned().collect(),
    }))
}

/// One service of an instance; `None` when either is unknown.
pub fn service_report(
    views: &impl ViewRead,
    instance: InstanceId,
    name: &Name,
) -> Result<Option<ServiceReport>, StoreError> {
    let Some(state) = views.instance(instance)? else {
        return Ok(None);
    };
    let Some(service) = state
        .visible_services()
        .into_iter()
        .find(|s| &s.name == name)
    else {
        return Ok(None);
    };
    service_of(service, &mut SourceCache::new(views)).map(Some)
}

/// Every known config server and whether it is running.
pub fn config_servers(
    views: &impl ViewRead,
    ctx: &ReportContext,
) -> Result<Vec<ConfigServerState>, StoreError> {
    Ok(views
        .config_servers()?
        .iter()
        .map(|row| ConfigServerState::of(row, ctx))
        .collect())
}

/// The global counts (kept incrementally: no scan).
pub fn counts(views: &impl ViewRead) -> Result<Counts, StoreError> {
    views.counts()
}

fn service_of<V: ViewRead>(
    service: &Service,
    sources: &mut SourceCache<'_, V>,
) -> Result<ServiceReport, StoreError> {
    let end = service.current_end();
    Ok(ServiceReport {
        name: service.name.clone(),
        instance: service.instance,
        status: service.status(),
        configuration_started: service.started.map(|s| s.time),
        configuration_ended: end.map(|(s, _)| s.time),
        completion_status: end.map(|(_, code)| code),
        unresolved_service_parameters: sources
            .unresolved(service)?
            .into_iter()
            .map(|(name, source_instance, awaited)| UnresolvedParameter {
                name,
                source_instance,
                awaited,
            })
            .collect(),
    })
}

/// Looks up source instances (their rows only) once per report.
struct SourceCache<'v, V> {
    views: &'v V,
    seen: HashMap<InstanceId, Option<Instance>>,
}

impl<'v, V: ViewRead> SourceCache<'v, V> {
    fn new(views: &'v V) -> Self {
        Self {
            views,
            seen: HashMap::new(),
        }
    }

    /// The reference parameters of a configured service whose source has
    /// not been provided: (parameter, source instance, what it awaits).
    fn unresolved(
        &mut self,
        service: &Service,
    ) -> Result<Vec<(Name, InstanceId, AwaitedSource)>, StoreError> {
        let mut out = Vec::new();
        for parameter in service.parameters.iter().flatten() {
            let Some((source, awaited)) = parameter.source.reference() else {
                continue;
            };
            if !self.seen.contains_key(&source) {
                let row = self.views.instance_row(source)?;
                self.seen.insert(source, row);
            }
            let provided = self.seen[&source]
                .as_ref()
                .is_some_and(|i| i.has_provided(&awaited));
            if !provided {
                out.push((
                    parameter.name.clone(),
                    source,
                    AwaitedSource::from(&awaited),
                ));
            }
        }
        Ok(out)
    }
}
