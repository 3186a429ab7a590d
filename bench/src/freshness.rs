//! Benchmark 2: at a steady publish rate, the time from just before an
//! event is published to the moment its instance report (GET
//! /reports/instance/{uuid}, as JSON) shows it.
//!
//! The stream is a realistic one, retimed so that event `i` is observed at
//! `t0 + i / rate` (its order kept): every event is later than any event
//! published before it, so a sampled `instance.contacted` at time T is
//! visible once the report's `last_contacted` is at least T, and a sampled
//! `service.configuration_ended` once that service's `configuration_ended`
//! is at least T (or a later run has already started). One poller thread
//! per sample asks every millisecond.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use audrey_consumer::{Publisher, Topology};
use audrey_core::contract::EventData;
use audrey_core::{Event, InstanceId, Name, Timestamp};
use serde_json::Value;

use crate::query::ms;
use crate::service::Service;
use crate::streams;
use crate::Ctx;
use audrey_testkit::http::Client;

pub struct FreshnessResult {
    pub published: usize,
    pub achieved_rate: f64,
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// From just before publishing to the broker's confirm, same samples.
    pub confirm_p50: Duration,
    pub confirm_p99: Duration,
    /// Report requests the pollers made per second (load they added).
    pub polls_per_second: f64,
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
/// that already holds many deployments, as in production.
pub fn run(ctx: &Ctx, data_dir: &Path, topology: &Topology) -> anyhow::Result<FreshnessResult> {
    let rate = ctx.plan.freshness_rate;
    let seconds = ctx.plan.freshness_seconds;
    let count = (rate * seconds) as usize;
    let t0 = Timestamp::now();
    let mut events = streams::realistic(2, count, t0.plus_seconds(-600.0), false);
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

    let mut service = Service::start(&ctx.binary, data_dir, &ctx.url, topology)?;
    service.wait_ready(Duration::from_secs(60))?;
    let port = service.port;
    eprintln!(
        "[freshness] publishing {count} events at {rate:.0}/s for {seconds:.0} s, sampling {} of them",
        sampled.iter().filter(|s| **s).count()
    );

    let (pollers, mut confirms, elapsed) = ctx.rt.block_on(async {
        let publisher = Publisher::connect(&ctx.url, topology).await?;
        let mut pollers: Vec<JoinHandle<Option<(Duration, u64)>>> = Vec::new();
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
                    pollers.push(std::thread::spawn(move || poll(port, instance, expect, t)));
                }
            }
            publisher.publish_all(chunk).await?;
            confirms.extend(starts.iter().map(Instant::elapsed));
            sent = due;
        }
        let elapsed = started.elapsed();
        publisher.close().await?;
        anyhow::Ok((pollers, confirms, elapsed))
    })?;
    let mut latencies: Vec<Duration> = Vec::new();
    let mut missed = 0;
    let mut polls = 0;
    for poller in pollers {
        match poller.join().ok().flatten() {
            Some((latency, n)) => {
                latencies.push(latency);
                polls += n;
            }
            None => missed += 1,
        }
    }
    ensure!(
        missed == 0,
        "{missed} sampled events never showed in their instance report (10 s)"
    );
    ensure!(!latencies.is_empty(), "no event was sampled");
    latencies.sort();
    confirms.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let pick_confirm = |q: f64| confirms[((confirms.len() - 1) as f64 * q).round() as usize];

    // Nothing lost: everything published is applied, once (the metrics
    // count what this process applied).
    let mut client = Client::new(port);
    let total = count as f64;
    let started = Instant::now();
    while service.events_settled(&mut client)? < total {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the service settled {} of {total} events",
            service.events_settled(&mut client)?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service.stop().context("stopping after the freshness run")?;
    eprintln!(
        "[freshness] p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; broker confirm p50 {:.2} ms, p99 {:.2} ms; {:.0} polls/s",
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(*latencies.last().expect("not empty")),
        ms(pick_confirm(0.5)),
        ms(pick_confirm(0.99)),
        polls as f64 / elapsed.as_secs_f64()
    );
    Ok(FreshnessResult {
        published: count,
        achieved_rate: count as f64 / elapsed.as_secs_f64(),
        samples: latencies.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: *latencies.last().expect("not empty"),
        confirm_p50: pick_confirm(0.5),
        confirm_p99: pick_confirm(0.99),
        polls_per_second: polls as f64 / elapsed.as_secs_f64(),
    })
}

/// Asks for the instance report every millisecond until it shows the
/// event; the time since `published` (taken just before publishing), and
/// how many requests that took.
fn poll(
    port: u16,
    instance: InstanceId,
    expect: Expect,
    published: Instant,
) -> Option<(Duration, u64)> {
    let mut client = Client::new(port);
    let path = format!("/reports/instance/{instance}");
    let mut polls = 0;
    while published.elapsed() < Duration::from_secs(10) {
        polls += 1;
        if let Ok(response) = client.get(&path, Some("application/json")) {
            if response.status == 200 {
                let seen = serde_json::from_slice::<Value>(&response.body)
                    .is_ok_and(|report| expect.seen_in(&report));
                if seen {
                    return Some((published.elapsed(), polls));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}
