//! Benchmarks 3 and 6 on a store of many deployments: report requests per
//! second and latency under `wrk` (idle, then while new deployments are
//! published at a steady rate), next
//! to `GET /health` on the same server as the baseline; and the time of a
//! `GET /metrics` scrape.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use audrey_core::scenario::Shape;
use audrey_core::{Event, Timestamp};
use audrey_store::Store;

use crate::amqp::{self, Flood};
use crate::service::{dir_bytes, Perf, Service};
use crate::streams::{self, DeploymentMaker};
use crate::Ctx;
use audrey_testkit::http::Client;

/// The wrk script: GET `$BENCH_PREFIX` + a random line of `$BENCH_IDS`.
const WRK_SCRIPT: &str = include_str!("../wrk/random_path.lua");

pub struct Dataset {
    pub deployments: Vec<String>,
    pub instances: Vec<String>,
    pub events: usize,
    pub build_time: Duration,
    pub disk_bytes: u64,
}

/// Builds a store of `deployments` deployments of `instances` instances
/// of `services` services each (their whole realistic life: registrations,
/// contacts, provided parameters, runs, failures, retries) directly with
/// `Store::apply_batch` in big batches: the views are the same as through
/// AMQP, in a fraction of the time.
pub fn build_dataset(
    dir: &Path,
    deployments: usize,
    instances: usize,
    services: usize,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let shape = Shape {
        instances,
        services_per_instance: services,
        failure_rate: 0.1,
        ..Shape::default()
    };
    // A day ago, one deployment a second.
    let start = Timestamp::now().plus_seconds(-86_400.0 - deployments as f64);
    let (sender, receiver) = mpsc::sync_channel::<Vec<Event>>(4);
    let producer = std::thread::spawn(move || {
        let mut maker = DeploymentMaker::new(4, start, 1.0, Some(shape));
        let mut batch = Vec::with_capacity(6_000);
        for _ in 0..deployments {
            batch.extend(maker.next_deployment());
            if batch.len() >= 5_000 && sender.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
        let end = Timestamp::now();
        batch.extend(maker.heartbeats(end.plus_seconds(-300.0), end));
        let _ = sender.send(batch);
    });
    let store = Store::open(dir)?;
    let mut dataset = Dataset {
        deployments: Vec::new(),
        instances: Vec::new(),
        events: 0,
        build_time: Duration::ZERO,
        disk_bytes: 0,
    };
    for batch in receiver {
        dataset
            .deployments
            .extend(streams::deployments(&batch).iter().map(|d| d.to_string()));
        dataset
            .instances
            .extend(streams::instances(&batch).iter().map(|i| i.to_string()));
        let outcome = store.apply_batch(&batch)?;
        ensure!(
            outcome.applied() == batch.len(),
            "only {} of a batch of {} applied",
            outcome.applied(),
            batch.len()
        );
        dataset.events += batch.len();
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))?;
    store.flush()?;
    drop(store);
    dataset.deployments.sort();
    dataset.deployments.dedup();
    dataset.instances.sort();
    dataset.instances.dedup();
    ensure!(
        dataset.deployments.len() == deployments
            && dataset.instances.len() == deployments * instances,
        "the dataset has {} deployments and {} instances",
        dataset.deployments.len(),
        dataset.instances.len()
    );
    dataset.build_time = started.elapsed();
    dataset.disk_bytes = dir_bytes(dir)?;
    Ok(dataset)
}

/// What `wrk` measured.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests_per_second: f64,
    pub requests: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub non_2xx: u64,
    pub socket_errors: u64,
    /// Cores' worth of CPU the service used meanwhile.
    pub service_cores: f64,
}

pub struct ScrapeResult {
    pub median: Duration,
    pub p99: Duration,
    pub bytes: usize,
    pub series: usize,
}

pub struct QueryResult {
    pub dataset_deployments: usize,
    pub dataset_instances: usize,
    pub dataset_events: usize,
    pub dataset_build_time: Duration,
    pub dataset_disk_bytes: u64,
    pub scrape: ScrapeResult,
    /// One round per run: baseline, instance, deployment, one after
    /// another (so each figure has a baseline taken next to it).
    pub idle: Vec<[WrkResult; 3]>,
    pub loaded: Vec<[WrkResult; 3]>,
    /// Events/s the service applied while `loaded` ran.
    pub loaded_ingest_rate: f64,
    /// Peak RSS of the service through the query runs (VmHWM), report
    /// cache included.
    pub peak_rss: u64,
}

/// The three targets, in this order: baseline, instance, deployment.
pub const TARGETS: [&str; 3] = [
    "GET /health",
    "GET /reports/instance/{uuid}",
    "GET /reports/deployment/{uuid}",
];

pub fn run(ctx: &Ctx) -> anyhow::Result<QueryResult> {
    let plan = &ctx.plan;
    let dir = ctx.work.join("query-data");
    eprintln!(
        "[query] building {} deployments x {} instances x {} services with Store::apply_batch",
        plan.query_deployments, plan.query_instances, plan.query_services
    );
    let dataset = build_dataset(
        &dir,
        plan.query_deployments,
        plan.query_instances,
        plan.query_services,
    )?;
    eprintln!(
        "[query] {} events applied in {:.1} s; {:.1} MiB on disk",
        dataset.events,
        dataset.build_time.as_secs_f64(),
        dataset.disk_bytes as f64 / 1048576.0
    );
    let files = ctx.work.join("wrk");
    std::fs::create_dir_all(&files)?;
    let script = files.join("random_path.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let write_ids = |name: &str, ids: &[String]| -> anyhow::Result<PathBuf> {
        let path = files.join(name);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for id in ids {
            writeln!(file, "{id}")?;
        }
        file.flush()?;
        Ok(path)
    };
    let targets = [
        ("/", write_ids("health.txt", &["health".to_owned()])?),
        (
            "/reports/instance/",
            write_ids("instances.txt", &dataset.instances)?,
        ),
        (
            "/reports/deployment/",
            write_ids("deployments.txt", &dataset.deployments)?,
        ),
    ];

    let topology = ctx.topology("query");
    let mut service = Service::start(&ctx.binary, &dir, &ctx.url, &topology)?;
    service.wait_ready(Duration::from_secs(120))?;
    let (waited, quiet) = service.wait_quiet(Duration::from_secs(120))?;
    eprintln!(
        "[query] the service {} after {:.1} s",
        if quiet {
            "was quiet (under 5 % of a core for 1 s)"
        } else {
            "was still busy"
        },
        waited.as_secs_f64()
    );
    eprintln!("[query] service memory, started: {}", service.memory()?);
    let scrape = scrape(service.port, plan.scrape_requests)?;
    eprintln!(
        "[scrape] GET /metrics: median {:.2} ms, p99 {:.2} ms, {} series, {} bytes",
        ms(scrape.median),
        ms(scrape.p99),
        scrape.series,
        scrape.bytes
    );
    eprintln!(
        "[query] service memory after the scrapes: {}",
        service.memory()?
    );

    let mut idle = Vec::new();
    for round in 0..plan.runs {
        let mut results: [WrkResult; 3] = Default::default();
        for (i, (prefix, ids)) in targets.iter().enumerate() {
            let name = ["query-health", "query-instance", "query-deployment"][i];
            // Profiles of the first round only.
            let perf_dir = ctx.perf_dir.as_deref().filter(|_| round == 0);
            let perf = Perf::attach(perf_dir, service.pid(), name);
            results[i] = wrk(ctx, &service, &script, prefix, ids)?;
            perf.stop();
            report(
                TARGETS[i],
                &format!("idle, round {}", round + 1),
                &results[i],
            );
        }
        idle.push(results);
        eprintln!(
            "[query] service memory after idle round {}: {}",
            round + 1,
            service.memory()?
        );
    }

    let mut client = Client::new(service.port);
    let flood = Flood::start(&ctx.rt, &ctx.url, &topology, 3, plan.query_ingest_rate);
    std::thread::sleep(plan.flood_lead);
    let settled_before = service.events_settled(&mut client)?;
    let loaded_started = Instant::now();
    let mut loaded = Vec::new();
    for round in 0..plan.runs {
        let mut results: [WrkResult; 3] = Default::default();
        for (i, (prefix, ids)) in targets.iter().enumerate() {
            results[i] = wrk(ctx, &service, &script, prefix, ids)?;
            let when = format!("during ingest, round {}", round + 1);
            report(TARGETS[i], &when, &results[i]);
        }
        loaded.push(results);
        eprintln!(
            "[query] service memory after loaded round {}: {}",
            round + 1,
            service.memory()?
        );
    }
    let settled_after = service.events_settled(&mut client)?;
    let loaded_ingest_rate =
        (settled_after - settled_before) / loaded_started.elapsed().as_secs_f64();
    let published = ctx.rt.block_on(flood.stop())?;
    eprintln!(
        "[query] during the loaded runs the service applied {loaded_ingest_rate:.0} events/s \
         ({published} published in all)"
    );
    ensure!(
        loaded_ingest_rate > 0.0,
        "the service applied nothing while flooded"
    );
    // Everything flooded in is applied once (nothing lost) before stopping.
    // (The metrics count what this process applied: the flood alone.)
    let settle_started = Instant::now();
    loop {
        let settled = service.events_settled(&mut client)?;
        if settled >= published as f64 {
            break;
        }
        if settle_started.elapsed() > Duration::from_secs(120) {
            bail!(
                "the service settled {} of the {published} events flooded",
                settled
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("[query] service memory, all settled: {}", service.memory()?);
    let peak_rss = service.peak_rss()?;
    service.stop()?;
    let (ready, _) = ctx
        .rt
        .block_on(amqp::queue_state(&ctx.url, &topology.queue))?;
    ensure!(ready == 0, "{ready} flooded events are left in the queue");

    Ok(QueryResult {
        dataset_deployments: dataset.deployments.len(),
        dataset_instances: dataset.instances.len(),
        dataset_events: dataset.events,
        dataset_build_time: dataset.build_time,
        dataset_disk_bytes: dataset.disk_bytes,
        scrape,
        idle,
        loaded,
        loaded_ingest_rate,
        peak_rss,
    })
}

fn report(target: &str, when: &str, r: &WrkResult) {
    eprintln!(
        "[query] {target} ({when}): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; \
         the service used {:.2} cores",
        r.requests_per_second,
        ms(r.p50),
        ms(r.p99),
        r.service_cores
    );
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n` scrapes, one after another on one kept-alive connection.
fn scrape(port: u16, n: usize) -> anyhow::Result<ScrapeResult> {
    let mut client = Client::new(port);
    let mut times = Vec::with_capacity(n);
    let mut last = String::new();
    for _ in 0..n {
        let started = Instant::now();
        let response = client.get("/metrics", None)?;
        times.push(started.elapsed());
        ensure!(
            response.status == 200,
            "/metrics answered {}",
            response.status
        );
        last = response.text();
    }
    times.sort();
    Ok(ScrapeResult {
        median: times[times.len() / 2],
        p99: times[((times.len() - 1) as f64 * 0.99).round() as usize],
        bytes: last.len(),
        series: last
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
    })
}

/// Runs wrk against 127.0.0.1:`port`, each request for `prefix` + a random
/// line of `ids`.
fn wrk(
    ctx: &Ctx,
    service: &Service,
    script: &Path,
    prefix: &str,
    ids: &Path,
) -> anyhow::Result<WrkResult> {
    let cpu_before = service.cpu_time()?;
    let started = Instant::now();
    let mut result = run_wrk(ctx, service.port, script, prefix, ids)?;
    result.service_cores =
        (service.cpu_time()? - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    Ok(result)
}

fn run_wrk(
    ctx: &Ctx,
    port: u16,
    script: &Path,
    prefix: &str,
    ids: &Path,
) -> anyhow::Result<WrkResult> {
    let plan = &ctx.plan;
    let Some(wrk) = &ctx.wrk else {
        return builtin_load(port, prefix, ids, plan.wrk_duration);
    };
    let output = Command::new(wrk)
        .args(["-t", &plan.wrk_threads.to_string()])
        .args(["-c", &plan.wrk_connections.to_string()])
        .args(["-d", &format!("{}s", plan.wrk_duration.as_secs())])
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .env("BENCH_PREFIX", prefix)
        .env("BENCH_IDS", ids)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let mut result = WrkResult::default();
    let mut seen = 0;
    for line in text.lines() {
        if let Some(rps) = line.trim().strip_prefix("Requests/sec:") {
            result.requests_per_second = rps.trim().parse()?;
            seen += 1;
        }
        if line.starts_with("BENCH-RESULT ") {
            let get = |k| field(line, k).with_context(|| format!("no {k} in {line}"));
            result.requests = get("requests")?;
            result.p50 = Duration::from_micros(get("p50_us")?);
            result.p99 = Duration::from_micros(get("p99_us")?);
            result.non_2xx = get("status_errors")?;
            result.socket_errors = get("connect_errors")?
                + get("read_errors")?
                + get("write_errors")?
                + get("timeouts")?;
            seen += 1;
        }
    }
    ensure!(seen == 2, "no Requests/sec or BENCH-RESULT line");
    ensure!(
        result.requests > 0 && result.non_2xx == 0,
        "{} requests, {} answered other than 2xx/3xx",
        result.requests,
        result.non_2xx
    );
    Ok(result)
}

/// Without wrk (a smoke run on a machine that lacks it): one connection,
/// our own client, for `duration`. Checks the same things.
fn builtin_load(
    port: u16,
    prefix: &str,
    ids: &Path,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let ids: Vec<String> = std::fs::read_to_string(ids)?
        .lines()
        .map(str::to_owned)
        .collect();
    let mut client = Client::new(port);
    let mut times = Vec::new();
    let started = Instant::now();
    let mut i = 0usize;
    while started.elapsed() < duration {
        let path = format!("{prefix}{}", ids[i % ids.len()]);
        i = i.wrapping_add(7919);
        let t = Instant::now();
        let response = client.get(&path, None)?;
        times.push(t.elapsed());
        ensure!(
            response.status == 200,
            "GET {path} answered {}",
            response.status
        );
    }
    times.sort();
    Ok(WrkResult {
        requests_per_second: times.len() as f64 / started.elapsed().as_secs_f64(),
        requests: times.len() as u64,
        p50: times[times.len() / 2],
        p99: times[((times.len() - 1) as f64 * 0.99).round() as usize],
        non_2xx: 0,
        socket_errors: 0,
        service_cores: 0.0,
    })
}
