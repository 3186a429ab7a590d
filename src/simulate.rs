//! `simulate`: publishes what real config servers would publish for N
//! deployments, through the reference publisher with confirms, and says at
//! the end what the reports should now say about them.
//!
//! How a run goes:
//!
//! 1. [`plan`] (in the core, `scenario::workload`): every deployment's life
//!    as config servers see it, merged and sorted by simulated time. The
//!    same seed gives the same plan.
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

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tracing::info;

use audrey_consumer::{Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::workload::{plan, FreshIds, PlanSettings, Planned, Summary};
use audrey_core::{Event, Timestamp};

use crate::cli::SimulateArgs;

/// What to simulate: the flags that shape the stream (not how it is sent).
fn plan_settings(args: &SimulateArgs) -> PlanSettings {
    PlanSettings {
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
            event.set_time(time);
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
    let settings = plan_settings(&args);
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

    let url = args.broker.broker().redacted();
    // A publisher needs the exchange alone.
    let topology = Topology {
        exchange: args.broker.exchange.clone(),
        ..Topology::default()
    };
    let publisher = Publisher::connect_to(&args.broker.broker(), &topology)
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
    let summary = Summary::of(&published.views, Timestamp::now(), args.stall_after.0);
    print!("{}", summary.render(args.stall_after.0));
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

    #[test]
    fn chunks_hold_about_fifty_milliseconds() {
        let pace = |rate| Pace { speed: 60.0, rate };
        assert_eq!(pace(500.0).chunk(), 25);
        assert_eq!(pace(2000.0).chunk(), 100);
        assert_eq!(pace(1.0).chunk(), 1);
        assert_eq!(pace(1e9).chunk(), 500);
    }
}
