//! The reports readers ask for, built from view rows through
//! [`ViewRead`] (one consistent snapshot in the store).
//!
//! Cheap aggregates (status, counts) come straight from the rows; the few
//! timestamps that are maxima over a deployment's instances (registered,
//! completed) are computed here, since the deployment report reads every
//! instance anyway to list them.

mod blocker;
mod report;

use std::collections::HashMap;

pub use blocker::{ago_reads_the_same_for, span};
pub use report::*;

use crate::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use crate::rows::{Counts, Deployment, Instance, InstanceState, Service};
use crate::views::{ListDeployments, ViewRead};

/// One page of the deployments list, in uuid order. Counting a status comes
/// from the global counts; counting stalled ones visits the incomplete ones.
pub fn deployment_page<V: ListDeployments>(
    views: &V,
    filter: DeploymentFilter,
    offset: u64,
    limit: u64,
    ctx: &ReportContext,
) -> Result<DeploymentPage, V::Error> {
    deployment_page_in(views, filter, DeploymentOrder::Uuid, offset, limit, ctx)
}

/// One page of the deployments list in `order`. Uuid order follows the
/// index and stops at the page; the other orders visit every deployment
/// the filter keeps (and, by age, read each one's row).
pub fn deployment_page_in<V: ListDeployments>(
    views: &V,
    filter: DeploymentFilter,
    order: DeploymentOrder,
    offset: u64,
    limit: u64,
    ctx: &ReportContext,
) -> Result<DeploymentPage, V::Error> {
    if order != DeploymentOrder::Uuid {
        return sorted_page(views, filter, order, offset, limit, ctx);
    }
    let (status, stalled_only) = filter.status_and_stalled();
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
    summaries(views, page, total, offset, limit, ctx)
}

fn sorted_page<V: ListDeployments>(
    views: &V,
    filter: DeploymentFilter,
    order: DeploymentOrder,
    offset: u64,
    limit: u64,
    ctx: &ReportContext,
) -> Result<DeploymentPage, V::Error> {
    let (status, stalled_only) = filter.status_and_stalled();
    let stall_before = ctx.now.plus_seconds(-ctx.stall_after_seconds);
    let mut keys: Vec<(Option<Timestamp>, DeploymentId)> = Vec::new();
    let mut ids = Vec::new();
    views.deployments_with_status(status, &mut |id, progress| {
        if stalled_only && progress.is_none_or(|p| p >= stall_before) {
            return Ok(true);
        }
        match order {
            DeploymentOrder::Progress => keys.push((progress, id)),
            _ => ids.push(id),
        }
        Ok(true)
    })?;
    if order == DeploymentOrder::Age {
        for id in ids {
            let started = views.deployment(id)?.and_then(|d| d.first_event);
            keys.push((started, id));
        }
    }
    // Oldest first; a deployment without a time yet (none of its events
    // carried one that counts) goes last.
    keys.sort_by_key(|(t, id)| (t.is_none(), *t, *id));
    let total = keys.len() as u64;
    let page = keys
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(_, id)| id);
    summaries(views, page, total, offset, limit, ctx)
}

impl DeploymentFilter {
    /// The status index to walk, and whether only the stalled among them
    /// count.
    fn status_and_stalled(self) -> (Option<Status>, bool) {
        match self {
            DeploymentFilter::All => (None, false),
            DeploymentFilter::Status(s) => (Some(s), false),
            DeploymentFilter::Stalled => (Some(Status::Incomplete), true),
        }
    }
}

/// The page of deployments `ids` (in the order given), summarised.
fn summaries<V: ListDeployments>(
    views: &V,
    ids: impl IntoIterator<Item = DeploymentId>,
    total: u64,
    offset: u64,
    limit: u64,
    ctx: &ReportContext,
) -> Result<DeploymentPage, V::Error> {
    let mut deployments = Vec::new();
    for id in ids {
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

/// The incomplete deployments, as the metrics need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteDeployments {
    /// Each incomplete deployment with its last progress.
    pub last_progress: Vec<(DeploymentId, Timestamp)>,
    /// How many of them are stalled.
    pub stalled: u64,
}

/// Incomplete deployments with their last progress, and how many are
/// stalled: what the metrics need, in one walk of the incomplete ones.
pub fn incomplete_deployments<V: ListDeployments>(
    views: &V,
    ctx: &ReportContext,
) -> Result<IncompleteDeployments, V::Error> {
    let stall_before = ctx.now.plus_seconds(-ctx.stall_after_seconds);
    let mut last_progress = Vec::new();
    let mut stalled = 0;
    views.deployments_with_status(Some(Status::Incomplete), &mut |id, progress| {
        if let Some(progress) = progress {
            last_progress.push((id, progress));
            stalled += u64::from(progress < stall_before);
        }
        Ok(true)
    })?;
    Ok(IncompleteDeployments {
        last_progress,
        stalled,
    })
}

/// The deployment report; `None` when unknown or deleted.
pub fn deployment_report<V: ViewRead>(
    views: &V,
    id: DeploymentId,
    ctx: &ReportContext,
) -> Result<Option<DeploymentReport>, V::Error> {
    match views.deployment(id)? {
        Some(d) => deployment_report_of(views, d, ctx),
        None => Ok(None),
    }
}

/// [`deployment_report`] of a deployment row its caller has read from
/// `views` already (to see how large the report is), so that it is not
/// read again; `None` when deleted.
pub fn deployment_report_of<V: ViewRead>(
    views: &V,
    d: Deployment,
    ctx: &ReportContext,
) -> Result<Option<DeploymentReport>, V::Error> {
    Ok(deployment_report_parts(views, d)?.map(|parts| parts.at(ctx)))
}

/// What [`deployment_report_of`] reads from the views, before the clock is
/// read: the same parts serve every moment until the rows change
/// ([`DeploymentReportParts::at`]); `None` when deleted.
pub fn deployment_report_parts<V: ViewRead>(
    views: &V,
    d: Deployment,
) -> Result<Option<DeploymentReportParts>, V::Error> {
    if d.deleted.is_some() {
        return Ok(None);
    }
    let id = d.uuid;
    let mut members = views.instances(&views.deployment_instances(id)?)?;
    // Instances another deployment owns are that deployment's.
    members.retain(|s| s.instance.deployment == id);
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

    // Most references point inside the deployment: its instances are in hand.
    let mut sources = SourceCache::with_members(views, &members);
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
    let missing_instances: Vec<InstanceId> = members
        .iter()
        .filter(|s| s.instance.expected && s.instance.registration.is_none())
        .map(|s| s.instance.uuid)
        .collect();
    let blocker = if d.status() == Status::Success {
        None
    } else {
        blocker::blocker(&members, &unresolved, &sources.seen, &missing_instances)
    };
    let mut config_servers = Vec::with_capacity(d.sources.len());
    for source in &d.sources {
        config_servers.push((source.clone(), views.config_server(source.as_str())?));
    }
    Ok(Some(DeploymentReportParts {
        report: DeploymentReport {
            uuid: d.uuid,
            name: d.name().cloned(),
            status: d.status(),
            stalled: false,
            registered: registered.flatten(),
            missing_instances,
            completed: completed.flatten(),
            last_progress: d.last_progress,
            duration_seconds: None,
            instances: members
                .iter()
                .map(|s| InstanceSummary {
                    uuid: s.instance.uuid,
                    assembly: s.instance.registration.as_ref().map(|r| r.assembly.clone()),
                    status: s.instance.status,
                })
                .collect(),
            unresolved_dependencies: unresolved,
            blocked_on: None,
            config_servers: Vec::new(),
        },
        first_event: d.first_event,
        blocker,
        config_servers,
        reads_elsewhere: sources.looked_elsewhere,
    }))
}

/// The instance report; `None` when unknown (or its deployment deleted).
pub fn instance_report<V: ViewRead>(
    views: &V,
    id: InstanceId,
    ctx: &ReportContext,
) -> Result<Option<InstanceReport>, V::Error> {
    let Some(state) = views.instance(id)? else {
        return Ok(None);
    };
    let mut sources = SourceCache::new(views);
    let mut services = Vec::new();
    for service in state.visible_services() {
        services.push(service_of(service, &mut sources, ctx)?);
    }
    let i = &state.instance;
    let registered = i.registration.as_ref().map(|r| r.stamp.time);
    Ok(Some(InstanceReport {
        uuid: i.uuid,
        deployment: i.deployment,
        assembly: i.registration.as_ref().map(|r| r.assembly.clone()),
        status: i.status,
        registered,
        first_contacted: i.first_contacted,
        last_contacted: i.last_contacted,
        completed: i.completed,
        duration_seconds: registered
            .map(|from| Seconds::between(from, i.completed.unwrap_or(ctx.now))),
        services,
        pending_return_parameters: i.pending_return_parameters().into_iter().cloned().collect(),
    }))
}

/// One service of an instance; `None` when either is unknown.
pub fn service_report<V: ViewRead>(
    views: &V,
    instance: InstanceId,
    name: &Name,
    ctx: &ReportContext,
) -> Result<Option<ServiceReport>, V::Error> {
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
    service_of(service, &mut SourceCache::new(views), ctx).map(Some)
}

/// Every config server heard from lately, and whether it is running.
pub fn config_servers<V: ViewRead>(
    views: &V,
    ctx: &ReportContext,
) -> Result<Vec<ConfigServerState>, V::Error> {
    Ok(views
        .config_servers()?
        .iter()
        .filter(|row| !ctx.forgets(row.last_heartbeat.time))
        .map(|row| ConfigServerState::of(row, ctx))
        .collect())
}

/// The global counts (kept incrementally: no scan).
pub fn counts<V: ViewRead>(views: &V) -> Result<Counts, V::Error> {
    views.counts()
}

fn service_of<V: ViewRead>(
    service: &Service,
    sources: &mut SourceCache<'_, '_, V>,
    ctx: &ReportContext,
) -> Result<ServiceReport, V::Error> {
    let end = service.current_end();
    let started = service.started.map(|s| s.time);
    Ok(ServiceReport {
        name: service.name.clone(),
        instance: service.instance,
        status: service.status(),
        configuration_started: started,
        configuration_ended: end.map(|(s, _)| s.time),
        completion_status: end.map(|(_, code)| code),
        duration_seconds: started
            .map(|from| Seconds::between(from, end.map_or(ctx.now, |(stamp, _)| stamp.time))),
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
struct SourceCache<'v, 'm, V> {
    views: &'v V,
    /// The instances the report has in hand (a deployment report's), by
    /// uuid: looked up where they are rather than copied into `seen`
    /// (copying them was a clone of every member's maps per report).
    members: &'m [InstanceState],
    /// Sources read for this report, apart from `members` (`None`: not
    /// known).
    seen: HashMap<InstanceId, Option<Instance>>,
    /// Whether a source was looked up outside `members` (in `seen`, or
    /// in what the views remember was provided).
    looked_elsewhere: bool,
}

impl<'v, V: ViewRead> SourceCache<'v, 'static, V> {
    fn new(views: &'v V) -> Self {
        SourceCache::with_members(views, &[])
    }
}

impl<'v, 'm, V: ViewRead> SourceCache<'v, 'm, V> {
    /// `members` sorted by uuid.
    fn with_members(views: &'v V, members: &'m [InstanceState]) -> Self {
        Self {
            views,
            members,
            seen: HashMap::new(),
            looked_elsewhere: false,
        }
    }

    fn member(&self, id: InstanceId) -> Option<&'m Instance> {
        let members = self.members;
        let at = members
            .binary_search_by_key(&id, |s| s.instance.uuid)
            .ok()?;
        Some(&members[at].instance)
    }

    /// The reference parameters of a configured service whose source has
    /// not been provided: (parameter, source instance, what it awaits).
    fn unresolved(
        &mut self,
        service: &Service,
    ) -> Result<Vec<(Name, InstanceId, AwaitedSource)>, V::Error> {
        let mut out = Vec::new();
        for parameter in service.parameters.iter().flatten() {
            let Some((source, awaited)) = parameter.source.reference() else {
                continue;
            };
            let known = self.member(source).map(Some);
            self.looked_elsewhere |= known.is_none();
            let provided = match known.or_else(|| self.seen.get(&source).map(Option::as_ref)) {
                Some(row) => row.is_some_and(|i| i.has_provided(&awaited)),
                // Reading a source's row was a third of an instance
                // report's time (BENCHMARKS.md, "Reports: what a
                // parameter's source costs").
                None if self.views.remembered_provided(source, &awaited) => true,
                None => {
                    let row = self.views.instance_row(source)?;
                    let provided = row.as_ref().is_some_and(|i| i.has_provided(&awaited));
                    self.seen.insert(source, row);
                    provided
                }
            };
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
