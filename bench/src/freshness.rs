//! Benchmark 2: at a steady publish rate, the time from just before an
//! event is published to the moment a reader of its instance report (GET
//! /reports/instance/{uuid}, as JSON) sees it; then the highest publish
//! rate at which that stays within the goal.
//!
//! The stream is a realistic one, retimed so that event `i` is observed at
//! `t0 + i / rate` (its order kept): every event is later than any event
//! published before it, so a sampled `instance.contacted` at time T is
//! visible once the report's `last_contacted` is at least T, and a sampled
//! `service.configuration_ended` once that service's `configuration_ended`
//! is at least T (or a later run has already started).
//!
//! Each sample has one reader, which watches the report the way a client
//! of the service would: one plain GET for the current report and its
//! ETag, then long-polls (`?wait=10s` with `If-None-Match`) that the
//! service answers as soon as the report differs. So the readers add about
//! one request per change of the reports they watch, not a poll every
//! millisecond: on a slow machine, polling pollers loaded the service far
//! beyond what readers would (7,139 requests/s on 2 cores) and measured
//! that load more than freshness. While an instance is not known yet (its
//! registration is still on the way) the reader asks again every 2 ms.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use audrey_consumer::{Publisher, Topology};
use audrey_core::contract::EventData;
use audrey_core::{Event, InstanceId, Name, Timestamp};
use serde_json::Value;

use crate::query::ms;
use crate::service::{CpuUse, CpuWatch, Service};
use crate::streams;
use crate::Ctx;
use audrey_testkit::http::Client;
use audrey_testkit::metrics::metric_sum;

/// The freshness goal: publish-to-report p99.
pub const GOAL: Duration = Duration::from_millis(50);

/// A rate counts as kept when the publisher achieved at least this share
/// of it (else the broker or the publisher, not the service, set the pace).
const ACHIEVED_SHARE: f64 = 0.95;

/// How long a sample's reader waits for its event before giving up.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(15);

/// One measurement at one publish rate.
#[derive(Debug, Clone)]
pub struct Step {
    /// The rate asked for, events/s.
    pub rate: f64,
    pub published: usize,
    pub achieved_rate: f64,
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// From just before publishing to the broker's confirm, same samples.
    pub confirm_p50: Duration,
    pub confirm_p99: Duration,
    /// Report requests the readers made per second (load they added).
    pub reads_per_second: f64,
    /// Batches the service applied meanwhile, their mean size and mean
    /// synced-write time (from its `/metrics`).
    pub batches: f64,
    pub mean_batch: f64,
    pub mean_apply: Duration,
    /// Cores' worth of CPU the service used meanwhile.
    pub service_cores: f64,
    /// The machine and the broker meanwhile.
    pub cpu: CpuUse,
}

impl Step {
    /// Whether this rate is kept: p99 within the goal, the rate achieved.
    pub fn kept(&self) -> bool {
        self.p99 <= GOAL && self.achieved_rate >= ACHIEVED_SHARE * self.rate
    }

    /// What bounds this step, read from its figures.
    pub fn bound(&self) -> String {
        let mut why = Vec::new();
        if self.achieved_rate < ACHIEVED_SHARE * self.rate {
            why.push(format!(
                "the publisher got only {:.0} of {:.0} events/s confirmed",
                self.achieved_rate, self.rate
            ));
        }
        if self.confirm_p99 > GOAL {
            why.push(format!(
                "the broker's confirm p99 alone is {:.1} ms",
                ms(self.confirm_p99)
            ));
        }
        if self.p99 > GOAL {
            why.push(format!(
                "report p99 {:.1} ms against confirm p99 {:.1} ms; batches of {:.0} events, \
                 {:.1} ms each to write",
                ms(self.p99),
                ms(self.confirm_p99),
                self.mean_batch,
                ms(self.mean_apply)
            ));
        }
        if why.is_empty() {
            "kept".into()
        } else {
            why.join("; ")
        }
    }
}

pub struct FreshnessResult {
    /// The runs at the plan's rate, in order.
    pub runs: Vec<Step>,
    /// The rate search, in the order tried.
    pub search: Vec<Step>,
}

impl FreshnessResult {
    /// The highest rate tried that was kept, and the lowest that was not.
    pub fn highest_kept(&self) -> (Option<&Step>, Option<&Step>) {
        let kept = self
            .search
            .iter()
            .filter(|s| s.kept())
            .max_by(|a, b| a.rate.total_cmp(&b.rate));
        let above = self
            .search
            .iter()
            .filter(|s| !s.kept() && kept.is_none_or(|k| s.rate > k.rate))
            .min_by(|a, b| a.rate.total_cmp(&b.rate));
        (kept, above)
    }
}

/// What a sampled event changes in its instance report.
#[derive(Clone)]
enum Expect {
    Contacted(Timestamp),
    Ended(Name, Timestamp),
}

impl Expect {
    fn of(event: &Event) -> Option<(InstanceId, Expect)> {
        let event = event.as_deployment_event()?;
        match &event.data {
            EventData::InstanceContacted { instance, .. } => {
                Some((*instance, Expect::Contacted(event.time)))
            }
            EventData::ConfigurationEnded {
                instance, service, ..
            } => Some((*instance, Expect::Ended(service.clone(), event.time))),
            _ => None,
        }
    }

    fn seen_in(&self, report: &Value) -> bool {
        let at_least = |v: Option<&Value>, t: Timestamp, strictly: bool| {
            v.and_then(Value::as_str)
                .and_then(|s| Timestamp::parse_rfc3339(s).ok())
                .is_some_and(|seen| if strictly { seen > t } else { seen >= t })
        };
        match self {
            Expect::Contacted(t) => at_least(report.get("last_contacted"), *t, false),
            Expect::Ended(name, t) => report
                .get("services")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .any(|s| {
                    at_least(s.get("configuration_ended"), *t, false)
                        || at_least(s.get("configuration_started"), *t, true)
                }),
        }
    }
}

/// Runs on the views of benchmark 1 (`data_dir`, its topology): a store
/// that already holds many deployments, as in production. First the
/// plan's rate `runs` times, then the search for the highest rate kept.
pub fn run(
    ctx: &Ctx,
    data_dir: &Path,
    topology: &Topology,
    runs: usize,
) -> anyhow::Result<FreshnessResult> {
    let plan = &ctx.plan;
    let mut service = Service::start(&ctx.binary, data_dir, &ctx.url, topology)?;
    service.wait_ready(Duration::from_secs(60))?;
    let mut client = Client::new(service.port);
    let mut published = 0usize;
    let mut seed = 100;
    let mut measure = |rate: f64, seconds: f64| -> anyhow::Result<Step> {
        seed += 1;
        let step = step(ctx, &service, topology, rate, seconds, seed)?;
        published += step.published;
        eprintln!(
            "[freshness] {:.0} events/s asked, {:.0} achieved: p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms; confirm p50 {:.2} ms, p99 {:.2} ms; {:.0} reads/s; \
             {:.0} batches of {:.0} events, {:.2} ms each; service {:.2} cores, {}",
            step.rate,
            step.achieved_rate,
            ms(step.p50),
            ms(step.p99),
            ms(step.max),
            ms(step.confirm_p50),
            ms(step.confirm_p99),
            step.reads_per_second,
            step.batches,
            step.mean_batch,
            ms(step.mean_apply),
            step.service_cores,
            step.cpu.describe()
        );
        Ok(step)
    };
    let mut result = FreshnessResult {
        runs: Vec::new(),
        search: Vec::new(),
    };
    for _ in 0..runs.max(1) {
        result
            .runs
            .push(measure(plan.freshness_rate, plan.freshness_seconds)?);
    }
    // Double while kept, then halve the gap between the highest rate kept
    // and the lowest not kept, a few times.
    let mut rate = plan.freshness_search_start;
    let (mut low, mut high): (Option<f64>, Option<f64>) = (None, None);
    for _ in 0..plan.freshness_search_steps {
        let step = measure(rate, plan.freshness_search_seconds)?;
        let kept = step.kept();
        result.search.push(step);
        if kept {
            low = Some(rate);
        } else {
            high = Some(rate);
        }
        rate = match (low, high) {
            (Some(l), None) if l * 2.0 <= plan.freshness_search_max => l * 2.0,
            (Some(_), None) => break,
            (None, Some(h)) => h / 2.0,
            (Some(l), Some(h)) if h - l > 0.1 * l => (l + h) / 2.0,
            _ => break,
        };
        rate = (rate / 100.0).round() * 100.0;
    }

    // Nothing lost: everything published is applied, once (the metrics
    // count what this process applied).
    let total = published as f64;
    let started = Instant::now();
    while service.events_settled(&mut client)? < total {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the service settled {} of {total} events",
            service.events_settled(&mut client)?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service.stop().context("stopping after the freshness run")?;
    Ok(result)
}

/// Publishes `rate` events/s for `seconds` against the running service
/// and measures when readers see the sampled ones.
fn step(
    ctx: &Ctx,
    service: &Service,
    topology: &Topology,
    rate: f64,
    seconds: f64,
    seed: u64,
) -> anyhow::Result<Step> {
    let count = (rate * seconds) as usize;
    let t0 = Timestamp::now();
    let mut events = streams::realistic(seed, count, t0.plus_seconds(-600.0), false);
    for (i, event) in events.iter_mut().enumerate() {
        event.set_time(t0.plus_seconds(i as f64 / rate));
    }
    let candidates: Vec<usize> = (0..events.len())
        .filter(|i| streams::observable(&events[*i]))
        .collect();
    let wanted = (ctx.plan.freshness_samples_per_second * seconds).max(1.0) as usize;
    let step = (candidates.len() / wanted).max(1);
    let mut sampled = vec![false; events.len()];
    for i in candidates.iter().step_by(step) {
        sampled[*i] = true;
    }
    let port = service.port;
    let mut client = Client::new(port);
    let metrics_before = client.get("/metrics", None)?.text();
    let cpu_before = service.cpu_time()?;
    let watch = CpuWatch::start();
    let step_started = Instant::now();

    let (readers, mut confirms, elapsed) = ctx.rt.block_on(async {
        let publisher = Publisher::connect(&ctx.url, topology).await?;
        let mut readers: Vec<JoinHandle<Option<(Duration, u64)>>> = Vec::new();
        let mut confirms: Vec<Duration> = Vec::new();
        let started = Instant::now();
        let mut sent = 0;
        while sent < events.len() {
            let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(events.len());
            if due <= sent {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            let chunk = &events[sent..due];
            let mut starts = Vec::new();
            for (offset, event) in chunk.iter().enumerate() {
                if sampled[sent + offset] {
                    let (instance, expect) = Expect::of(event).expect("sampled: observable");
                    let t = Instant::now();
                    starts.push(t);
                    readers.push(std::thread::spawn(move || read(port, instance, expect, t)));
                }
            }
            publisher.publish_all(chunk).await?;
            confirms.extend(starts.iter().map(Instant::elapsed));
            sent = due;
        }
        let elapsed = started.elapsed();
        publisher.close().await?;
        anyhow::Ok((readers, confirms, elapsed))
    })?;
    let mut latencies: Vec<Duration> = Vec::new();
    let mut missed = 0;
    let mut reads = 0;
    for reader in readers {
        match reader.join().ok().flatten() {
            Some((latency, n)) => {
                latencies.push(latency);
                reads += n;
            }
            None => missed += 1,
        }
    }
    let cpu = watch.stop();
    let service_cores = (service.cpu_time()? - cpu_before).as_secs_f64()
        / step_started.elapsed().as_secs_f64().max(1e-3);
    let metrics_after = client.get("/metrics", None)?.text();
    let delta = |name: &str| metric_sum(&metrics_after, name) - metric_sum(&metrics_before, name);
    let batches = delta("audrey_event_apply_duration_seconds_count");
    let applied = delta("audrey_events_consumed_total");
    let apply_seconds = delta("audrey_event_apply_duration_seconds_sum");
    ensure!(
        missed == 0,
        "{missed} sampled events never showed in their instance report ({} s)",
        SAMPLE_TIMEOUT.as_secs()
    );
    ensure!(!latencies.is_empty(), "no event was sampled");
    latencies.sort();
    confirms.sort();
    let pick = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Ok(Step {
        rate,
        published: count,
        achieved_rate: count as f64 / elapsed.as_secs_f64(),
        samples: latencies.len(),
        p50: pick(&latencies, 0.5),
        p99: pick(&latencies, 0.99),
        max: *latencies.last().expect("not empty"),
        confirm_p50: pick(&confirms, 0.5),
        confirm_p99: pick(&confirms, 0.99),
        reads_per_second: reads as f64 / elapsed.as_secs_f64(),
        batches,
        mean_batch: if batches > 0.0 {
            applied / batches
        } else {
            0.0
        },
        mean_apply: Duration::from_secs_f64(if batches > 0.0 {
            apply_seconds / batches
        } else {
            0.0
        }),
        service_cores,
        cpu,
    })
}

/// Watches the instance report as a client would until it shows the
/// event: the time since `published` (taken just before publishing), and
/// how many requests that took.
fn read(
    port: u16,
    instance: InstanceId,
    expect: Expect,
    published: Instant,
) -> Option<(Duration, u64)> {
    let mut client = Client::new(port);
    let path = format!("/reports/instance/{instance}");
    let long_poll = format!("{path}?wait=10s");
    let mut requests = 0;
    let mut etag: Option<String> = None;
    while published.elapsed() < SAMPLE_TIMEOUT {
        requests += 1;
        let response = match &etag {
            None => client.get(&path, Some("application/json")),
            Some(etag) => client.request(
                "GET",
                &long_poll,
                &[
                    ("Accept", "application/json"),
                    ("If-None-Match", etag.as_str()),
                ],
            ),
        };
        match response {
            Ok(r) if r.status == 200 => {
                let seen = serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|report| expect.seen_in(&report));
                if seen {
                    return Some((published.elapsed(), requests));
                }
                etag = r.header("etag").map(str::to_owned);
                if etag.is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // Still the report we have: ask again.
            Ok(r) if r.status == 304 => {}
            // Not known yet (its registration is on the way), or an error.
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}
