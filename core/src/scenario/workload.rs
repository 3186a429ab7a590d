//! The workload `simulate` publishes, planned without any I/O: every
//! deployment's life written by [`ConfigServerScript`] (Conductor
//! registering, agents contacting, polling while they wait on other
//! instances, services starting and ending, failures, retries,
//! re-registrations, agents that give up), deployments starting a few
//! simulated seconds apart, each handled by one of several config servers,
//! which all send heartbeats; Conductor deletes some deployments at the
//! end. The same settings (seed included) give the same plan.
//!
//! [`FreshIds`] gives a plan new identities (so that a second run adds
//! deployments rather than duplicates), and [`Summary`] says what the
//! reports should show once a service has consumed what was published.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::realistic::{ConfigServerScript, Shape};
use super::rng::Rng;
use crate::contract::Event;
use crate::domain::{ConfigServerStatus, DeploymentId, HumanDuration, Timestamp};
use crate::memory::MemoryViews;
use crate::query::{self, ConfigServerState, ReportContext, DEFAULT_HEARTBEAT_TOLERANCE};
use crate::rows::Counts;

/// What to simulate (the flags that shape the stream, not how it is sent).
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub deployments: usize,
    pub instances: usize,
    pub services: usize,
    pub failure_rate: f64,
    pub give_up_rate: f64,
    pub delete_rate: f64,
    pub config_servers: usize,
    pub heartbeat_interval_seconds: u32,
    pub seed: u64,
}

/// One event of the plan and when, in simulated seconds after the start,
/// its config server observes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at_seconds: f64,
    pub event: Event,
}

/// The name of config server `i` (from 0).
pub fn config_server_source(i: usize) -> String {
    format!("/configserver/cs-{:02}", i + 1)
}

/// The whole stream, in the order config servers observe it. Deterministic
/// for the settings (seed included).
pub fn plan(settings: &PlanSettings) -> Vec<Planned> {
    // Any fixed origin: only offsets from it are kept.
    let origin = Timestamp::from_unix_seconds(1_800_000_000);
    let mut timeline = Rng::new(settings.seed);
    let mut servers: Vec<ConfigServerScript> = (0..settings.config_servers.max(1))
        .map(|i| ConfigServerScript::new(&config_server_source(i), timeline.next_u64()))
        .collect();
    let shape = Shape {
        instances: settings.instances.max(1),
        services_per_instance: settings.services,
        failure_rate: settings.failure_rate,
        give_up_rate: settings.give_up_rate,
        ..Shape::default()
    };

    let mut events: Vec<Event> = Vec::new();
    let mut deployments: Vec<(usize, DeploymentId)> = Vec::new();
    let mut start = 0.0;
    for d in 0..settings.deployments {
        let server = d % servers.len();
        let stream = servers[server].deployment(origin.plus_seconds(start), &shape);
        if let Some(id) = stream.first().and_then(Event::deployment) {
            deployments.push((server, id));
        }
        events.extend(stream);
        // The next deployment is requested 2 to 6 seconds later.
        start += 2.0 + timeline.below(5) as f64;
    }

    // Conductor deletes some deployments once everything has settled.
    let settled = events.iter().map(Event::time).max().unwrap_or(origin);
    let to_delete =
        ((deployments.len() as f64 * settings.delete_rate).round() as usize).min(deployments.len());
    let mut order: Vec<usize> = (0..deployments.len()).collect();
    timeline.shuffle(&mut order);
    for (k, d) in order[..to_delete].iter().enumerate() {
        let (server, id) = deployments[*d];
        events.push(servers[server].delete(settled.plus_seconds(5.0 + k as f64), id));
    }

    // Every config server beats from the start to the end of the stream,
    // their phases spread over one interval.
    let end = events.iter().map(Event::time).max().unwrap_or(origin);
    let interval = settings.heartbeat_interval_seconds.max(1);
    let count = servers.len();
    for (i, server) in servers.iter_mut().enumerate() {
        let phase = f64::from(interval) * i as f64 / count as f64;
        let last = end.plus_seconds(f64::from(interval));
        events.extend(server.heartbeats(origin.plus_seconds(phase), last, interval));
    }

    // Stable: events of one instant keep the order they were written in.
    events.sort_by_key(Event::time);
    events
        .into_iter()
        .map(|event| Planned {
            at_seconds: (event.time().nanos() - origin.nanos()) as f64 / 1e9,
            event,
        })
        .collect()
}

/// Gives every UUID (deployments, instances, references) and every event id
/// a fresh value, the same value wherever the old one appears.
pub struct FreshIds {
    rng: Rng,
    map: HashMap<String, String>,
}

impl FreshIds {
    pub fn new(salt: u64) -> Self {
        Self {
            rng: Rng::new(salt),
            map: HashMap::new(),
        }
    }

    pub fn apply(&mut self, event: &Event) -> Event {
        let mut json = event.to_json();
        self.rename(&mut json);
        Event::from_value(&json).expect("renaming UUIDs keeps an event valid")
    }

    fn rename(&mut self, value: &mut Value) {
        match value {
            Value::String(s) if s.len() == 36 && uuid::Uuid::try_parse(s).is_ok() => {
                let rng = &mut self.rng;
                *s = self
                    .map
                    .entry(s.clone())
                    .or_insert_with(|| rng.uuid().to_string())
                    .clone();
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rename(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.rename(v)),
            _ => {}
        }
    }
}

/// What the reports should say once a service has consumed the stream.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counts: Counts,
    /// Deployments Conductor deleted (gone from reports and counts).
    pub deleted: usize,
    /// Stalled at the end of the run.
    pub stalled_now: u64,
    /// Stalled once `--stall-after` has passed with no further event, and
    /// the instant the last of them is.
    pub stalled_later: u64,
    pub stalled_by: Option<Timestamp>,
    pub config_servers: Vec<ConfigServerState>,
}

impl Summary {
    pub fn of(views: &MemoryViews, now: Timestamp, stall_after: Duration) -> Self {
        let ctx = ReportContext {
            now,
            stall_after_seconds: stall_after.as_secs_f64(),
            ..ReportContext::at(now)
        };
        let Ok(now_incomplete) = query::incomplete_deployments(views, &ctx);
        let (incomplete, stalled_now) = (now_incomplete.last_progress, now_incomplete.stalled);
        let stalled_by = incomplete
            .iter()
            .map(|(_, progress)| *progress)
            .max()
            .map(|last| {
                last.plus_seconds(ctx.stall_after_seconds)
                    .plus_seconds(1e-3)
            });
        let stalled_later = match stalled_by {
            Some(later) => {
                let Ok(later) =
                    query::incomplete_deployments(views, &ReportContext { now: later, ..ctx });
                later.stalled
            }
            None => 0,
        };
        let Ok(counts) = query::counts(views);
        let Ok(config_servers) = query::config_servers(views, &ctx);
        Self {
            counts,
            deleted: views
                .deployments
                .values()
                .filter(|d| d.deleted.is_some())
                .count(),
            stalled_now,
            stalled_later,
            stalled_by,
            config_servers,
        }
    }

    /// The lines printed at the end of a run. `key=value` pairs stay
    /// stable: scripts (and the tests) read them.
    pub fn render(&self, stall_after: Duration) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "what the reports should now say about these deployments (a service that held others adds these to its counts):"
        );
        let _ = writeln!(
            out,
            "  deployments              success={} incomplete={} error={}  ({} deleted by Conductor: no longer reported)",
            c.deployments.success, c.deployments.incomplete, c.deployments.error, self.deleted
        );
        let _ = writeln!(
            out,
            "  instances                success={} incomplete={} error={}",
            c.instances.success, c.instances.incomplete, c.instances.error
        );
        let _ = writeln!(
            out,
            "  services                 success={} incomplete={} error={}",
            c.services.success, c.services.incomplete, c.services.error
        );
        let _ = writeln!(
            out,
            "  unresolved dependencies  count={}",
            c.unresolved_dependencies
        );
        let stall = HumanDuration(stall_after);
        match self.stalled_by {
            Some(by) => {
                let _ = writeln!(
                    out,
                    "  stalled deployments      now={} later={}  (incomplete with no event for --stall-after {stall}: all {} by {} unless their agents come back)",
                    self.stalled_now,
                    self.stalled_later,
                    self.stalled_later,
                    shown(by)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  stalled deployments      now={} later={}  (none is incomplete)",
                    self.stalled_now, self.stalled_later
                );
            }
        }
        let running = self
            .config_servers
            .iter()
            .filter(|s| s.status == ConfigServerStatus::Running)
            .count();
        let _ = writeln!(
            out,
            "  config servers           running={running} down={}",
            self.config_servers.len() - running
        );
        for server in &self.config_servers {
            let (Some(last), Some(interval)) = (server.last_heartbeat, server.interval_seconds)
            else {
                continue;
            };
            let down_at = last.plus_seconds(f64::from(interval) * DEFAULT_HEARTBEAT_TOLERANCE);
            let _ = writeln!(
                out,
                "    {:<24} {}, last heartbeat {} (every {interval} s): down from {} unless it beats again",
                server.source,
                server.status,
                shown(last),
                shown(down_at)
            );
        }
        out
    }
}

/// A time as the summary shows it: RFC 3339 UTC, to the millisecond.
fn shown(t: Timestamp) -> String {
    t.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    fn settings(seed: u64) -> PlanSettings {
        PlanSettings {
            deployments: 8,
            instances: 3,
            services: 2,
            failure_rate: 0.1,
            give_up_rate: 0.1,
            delete_rate: 0.25,
            config_servers: 2,
            heartbeat_interval_seconds: 10,
            seed,
        }
    }

    fn types(plan: &[Planned]) -> Vec<&'static str> {
        plan.iter()
            .map(|p| p.event.event_type().short_name())
            .collect()
    }

    #[test]
    fn a_seed_gives_one_plan_in_time_order() {
        let a = plan(&settings(3));
        assert_eq!(a, plan(&settings(3)));
        assert_ne!(a, plan(&settings(4)));
        assert!(a.windows(2).all(|w| w[0].at_seconds <= w[1].at_seconds));
        assert_eq!(a[0].at_seconds, 0.0);
        let count = |t: &str| types(&a).iter().filter(|x| **x == t).count();
        assert_eq!(count("deployment.registered"), 8);
        assert_eq!(count("deployment.deleted"), 2, "a quarter of 8");
        assert!(count("configserver.heartbeat") > 2);
        let sources: std::collections::BTreeSet<_> =
            a.iter().map(|p| p.event.source().as_str()).collect();
        assert_eq!(
            sources.into_iter().collect::<Vec<_>>(),
            ["/configserver/cs-01", "/configserver/cs-02"]
        );
    }

    #[test]
    fn fresh_ids_change_identities_not_the_shape() {
        let original = plan(&settings(9));
        let mut fresh = FreshIds::new(42);
        let renamed: Vec<Event> = original.iter().map(|p| fresh.apply(&p.event)).collect();
        let before = MemoryViews::from_events(original.iter().map(|p| &p.event));
        let after = MemoryViews::from_events(&renamed);
        assert_eq!(before.counts, after.counts);
        assert_eq!(before.deployments.len(), after.deployments.len());
        for (old, new) in original.iter().zip(&renamed) {
            assert_eq!(old.event.event_type(), new.event_type());
            assert_ne!(old.event.id(), new.id());
            assert_eq!(old.event.time(), new.time());
        }
        let old_ids: std::collections::HashSet<_> = before.deployments.keys().copied().collect();
        assert!(after.deployments.keys().all(|id| !old_ids.contains(id)));
    }

    #[test]
    fn agents_that_give_up_leave_deployments_that_will_stall() {
        let plan = plan(&PlanSettings {
            give_up_rate: 1.0,
            failure_rate: 0.0,
            delete_rate: 0.0,
            ..settings(1)
        });
        let views = MemoryViews::from_events(plan.iter().map(|p| &p.event));
        let last = plan.last().unwrap().event.time();
        let summary = Summary::of(&views, last, Duration::from_secs(900));
        assert_eq!(summary.counts.deployments.get(Status::Incomplete), 8);
        assert_eq!(summary.stalled_now, 0);
        assert_eq!(summary.stalled_later, 8);
        assert!(summary.stalled_by.unwrap() > last.plus_seconds(890.0));
        assert_eq!(summary.config_servers.len(), 2);
        assert!(summary
            .config_servers
            .iter()
            .all(|s| s.status == ConfigServerStatus::Running));
    }

    #[test]
    fn without_failures_or_give_ups_everything_succeeds() {
        let plan = plan(&PlanSettings {
            give_up_rate: 0.0,
            failure_rate: 0.0,
            delete_rate: 0.5,
            ..settings(2)
        });
        let views = MemoryViews::from_events(plan.iter().map(|p| &p.event));
        let summary = Summary::of(&views, Timestamp::now(), Duration::from_secs(900));
        assert_eq!(summary.counts.deployments.success, 4);
        assert_eq!(summary.counts.deployments.total(), 4);
        assert_eq!(summary.deleted, 4);
        assert_eq!(summary.counts.instances.success, 12);
        assert_eq!(summary.counts.services.success, 24);
        assert_eq!(summary.counts.unresolved_dependencies, 0);
        let text = summary.render(Duration::from_secs(900));
        assert!(text.contains("success=4 incomplete=0 error=0"), "{text}");
        assert!(text.contains("now=0 later=0"), "{text}");
    }
}
