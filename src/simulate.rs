//! `simulate`: publishes what real config servers would publish for N
//! deployments, through the reference publisher with confirms, and says at
//! the end what the reports should now say about them.
//!
//! How a run goes:
//!
//! 1. [`plan`]: every deployment's life is written by
//!    [`ConfigServerScript`] (Conductor registering, agents contacting,
//!    polling while they wait on other instances, services starting and
//!    ending, failures, retries, re-registrations, agents that give up),
//!    deployments starting a few simulated seconds apart, each handled by one
//!    of `--config-servers`, which all send heartbeats. Conductor deletes
//!    `--delete-rate` of the deployments at the end. Everything is merged
//!    and sorted by simulated time. The same seed gives the same plan.
//! 2. Unless `--reuse-ids`, every UUID and event id is replaced by a fresh
//!    one (the same shape, new identities), so that running `simulate` twice
//!    against one service adds new deployments rather than duplicates the
//!    service would ignore.
//! 3. [`publish`]: each event is published once its simulated offset divided
//!    by `--speed` has elapsed in real time, never faster than `--rate`, in
//!    small confirmed chunks, with `time` rewritten to the wall clock at
//!    publication (strictly increasing, so events keep the order they were
//!    planned in): reports, stall detection and heartbeat freshness behave
//!    as with live config servers.
//! 4. The events exactly as published go through the projection in memory
//!    ([`MemoryViews`]); [`Summary`] is what a fresh service's reports and
//!    metrics say once it has consumed them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::Value;
use tracing::info;

use audrey_consumer::{redact_url, Publisher};
use audrey_views::memory::MemoryViews;
use audrey_views::model::Counts;
use audrey_views::query::{self, ConfigServerState, ReportContext};
use audrey_views::scenario::{ConfigServerScript, Rng, Shape};
use audrey_views::{DeploymentId, Event, Timestamp};

use crate::cli::SimulateArgs;

/// A config server counts as down after this many missed heartbeats (the
/// service's default `--heartbeat-tolerance`).
const HEARTBEAT_TOLERANCE: f64 = 3.0;

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

impl PlanSettings {
    fn of(args: &SimulateArgs) -> Self {
        Self {
            deployments: args.deployments as usize,
            instances: args.instances as usize,
            services: args.services as usize,
            failure_rate: args.failure_rate,
            give_up_rate: args.give_up_rate,
            delete_rate: args.delete_rate,
            config_servers: args.config_servers as usize,
            heartbeat_interval_seconds: args.heartbeat_interval,
            seed: args.seed,
        }
    }
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
        .map(|i| ConfigServerScript::new(config_server_source(i), timeline.next_u64()))
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
        if let Some(id) = stream.first().and_then(|e| e.deployment) {
            deployments.push((server, id));
        }
        events.extend(stream);
        // The next deployment is requested 2 to 6 seconds later.
        start += 2.0 + timeline.below(5) as f64;
    }

    // Conductor deletes some deployments once everything has settled.
    let settled = events.iter().map(|e| e.time).max().unwrap_or(origin);
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
    let end = events.iter().map(|e| e.time).max().unwrap_or(origin);
    let interval = settings.heartbeat_interval_seconds.max(1);
    let count = servers.len();
    for (i, server) in servers.iter_mut().enumerate() {
        let phase = f64::from(interval) * i as f64 / count as f64;
        let last = end.plus_seconds(f64::from(interval));
        events.extend(server.heartbeats(origin.plus_seconds(phase), last, interval));
    }

    // Stable: events of one instant keep the order they were written in.
    events.sort_by_key(|e| e.time);
    events
        .into_iter()
        .map(|event| Planned {
            at_seconds: (event.time.nanos() - origin.nanos()) as f64 / 1e9,
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

/// How the stream is sent.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Most events published per second.
    pub rate: f64,
}

impl Pace {
    /// Events published in one confirmed chunk at most: about 50 ms worth.
    pub fn chunk(&self) -> usize {
        ((self.rate * 0.05) as usize).clamp(1, 500)
    }
}

/// What publishing did.
pub struct Published {
    /// The projection of exactly the events published, times as published.
    pub views: MemoryViews,
    pub events: usize,
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// Publishes the plan in real time (see the module's documentation).
pub async fn publish(
    publisher: &Publisher,
    plan: &[Planned],
    pace: Pace,
    progress: &ProgressBar,
) -> anyhow::Result<Published> {
    let due: Vec<Duration> = plan
        .iter()
        .map(|p| Duration::from_secs_f64(p.at_seconds.max(0.0) / pace.speed))
        .collect();
    let burst = pace.chunk() as f64;
    let started = Instant::now();
    let mut tokens = burst;
    let mut refilled = started;
    let mut last_time = Timestamp::from_nanos(i64::MIN);
    let mut views = MemoryViews::new();
    let mut chunk: Vec<Event> = Vec::with_capacity(pace.chunk());
    let mut next = 0;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    while next < plan.len() {
        // Wait until the next event is due, and the rate allows one more.
        let now = Instant::now();
        tokens = (tokens + now.duration_since(refilled).as_secs_f64() * pace.rate).min(burst);
        refilled = now;
        let wait_for_schedule = (started + due[next]).saturating_duration_since(now);
        let wait_for_rate = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / pace.rate)
        };
        let wait = wait_for_schedule.max(wait_for_rate);
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => continue,
                _ = &mut interrupt => {
                    interrupted = true;
                    break;
                }
            }
        }
        // Everything due, within what the rate allows, observed now.
        let elapsed = now.duration_since(started);
        let mut time = Timestamp::now();
        while next < plan.len() && chunk.len() < tokens as usize && due[next] <= elapsed {
            time = time.max(last_time.plus_seconds(1e-6));
            last_time = time;
            let mut event = plan[next].event.clone();
            event.time = time;
            chunk.push(event);
            next += 1;
        }
        publisher.publish_all(&chunk).await.with_context(|| {
            format!(
                "events {}..{} of {} not confirmed ({} were)",
                next - chunk.len() + 1,
                next,
                plan.len(),
                next - chunk.len()
            )
        })?;
        tokens -= chunk.len() as f64;
        for event in chunk.drain(..) {
            views.apply(&event);
        }
        progress.set_position(next as u64);
    }
    Ok(Published {
        views,
        events: next,
        elapsed: started.elapsed(),
        interrupted,
    })
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
            heartbeat_tolerance: HEARTBEAT_TOLERANCE,
        };
        let (incomplete, stalled_now) =
            query::incomplete_deployments(views, &ctx).expect("in-memory views never fail");
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
                query::incomplete_deployments(views, &ReportContext { now: later, ..ctx })
                    .expect("in-memory views never fail")
                    .1
            }
            None => 0,
        };
        Self {
            counts: query::counts(views).expect("in-memory views never fail"),
            deleted: views
                .deployments
                .values()
                .filter(|d| d.deleted.is_some())
                .count(),
            stalled_now,
            stalled_later,
            stalled_by,
            config_servers: query::config_servers(views, &ctx).expect("in-memory views never fail"),
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
        let stall = human_duration(stall_after);
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
            .filter(|s| s.status == "running")
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
            let down_at = last.plus_seconds(f64::from(interval) * HEARTBEAT_TOLERANCE);
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

/// `15m`, `90s`, `1h30m`, `250ms`.
fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} events  {rate} events/s  ETA {eta}",
    ) {
        bar.set_style(
            style
                .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                })
                .progress_chars("=> "),
        );
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number of simulated seconds per second");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of events per second");
    }
    let settings = PlanSettings::of(&args);
    let mut planned = plan(&settings);
    if !args.reuse_ids {
        let mut fresh = FreshIds::new(rand::random());
        for p in &mut planned {
            p.event = fresh.apply(&p.event);
        }
    }
    let simulated = planned.last().map_or(0.0, |p| p.at_seconds);
    let pace = Pace {
        speed: args.speed,
        rate: args.rate,
    };

    let url = redact_url(&args.amqp.amqp_url);
    let topology = args.amqp.topology();
    let publisher = Publisher::connect_to(&args.amqp.broker(), &topology)
        .await
        .with_context(|| format!("cannot connect to the broker at {url}"))?;
    info!(
        broker = %url,
        exchange = %topology.exchange,
        events = planned.len(),
        simulated_seconds = simulated,
        expected_seconds = (simulated / pace.speed).max(planned.len() as f64 / pace.rate),
        "publishing simulated deployments"
    );

    let progress = progress_bar(planned.len() as u64);
    let outcome = publish(&publisher, &planned, pace, &progress).await;
    progress.finish_and_clear();
    let _ = publisher.close().await;
    let published = outcome
        .with_context(|| format!("publishing to exchange `{}` on {url}", topology.exchange))?;

    let seconds = published.elapsed.as_secs_f64();
    let simulated = published
        .events
        .checked_sub(1)
        .map_or(0.0, |last| planned[last].at_seconds);
    println!(
        "published {} events in {seconds:.1} s ({:.0} events/s, {simulated:.0} s of simulated time): {} deployments of {} instances x {} services from {} config servers, seed {}{}",
        published.events,
        published.events as f64 / seconds.max(1e-9),
        settings.deployments,
        settings.instances.max(1),
        settings.services,
        settings.config_servers.max(1),
        settings.seed,
        if args.reuse_ids { " (the seed's own ids)" } else { " (fresh ids)" },
    );
    let summary = Summary::of(&published.views, Timestamp::now(), args.stall_after);
    print!("{}", summary.render(args.stall_after));
    if published.interrupted {
        bail!(
            "interrupted after {} of {} events (the summary covers those published)",
            published.events,
            planned.len()
        );
    }
    info!(events = published.events, seconds, "simulation published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use audrey_views::Status;

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
        plan.iter().map(|p| p.event.data.short_type()).collect()
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
            a.iter().map(|p| p.event.source.as_str()).collect();
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
            assert_eq!(old.event.data.short_type(), new.data.short_type());
            assert_ne!(old.event.id, new.id);
            assert_eq!(old.event.time, new.time);
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
        let last = plan.last().unwrap().event.time;
        let summary = Summary::of(&views, last, Duration::from_secs(900));
        assert_eq!(summary.counts.deployments.get(Status::Incomplete), 8);
        assert_eq!(summary.stalled_now, 0);
        assert_eq!(summary.stalled_later, 8);
        assert!(summary.stalled_by.unwrap() > last.plus_seconds(890.0));
        assert_eq!(summary.config_servers.len(), 2);
        assert!(summary.config_servers.iter().all(|s| s.status == "running"));
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

    #[test]
    fn durations_print_as_they_are_written() {
        assert_eq!(human_duration(Duration::from_secs(900)), "15m");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_secs(1)), "1s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn chunks_hold_about_fifty_milliseconds() {
        let pace = |rate| Pace { speed: 60.0, rate };
        assert_eq!(pace(500.0).chunk(), 25);
        assert_eq!(pace(2000.0).chunk(), 100);
        assert_eq!(pace(1.0).chunk(), 1);
        assert_eq!(pace(1e9).chunk(), 500);
    }
}
