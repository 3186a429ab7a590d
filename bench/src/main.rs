//! The benchmark suite of audrey-reporting (issue 7).
//!
//! ```text
//! cargo run --release -p audrey-bench -- all     # the whole suite, ~6 minutes
//! cargo run --release -p audrey-bench -- smoke   # a few seconds: works, loses nothing
//! ```
//!
//! Every figure is measured against a baseline taken in the same run on the
//! same machine and broker, and printed in one Markdown table:
//!
//! 1. ingest: drain of a pre-filled queue by `audrey-reporting serve` (the
//!    real binary, a child process) vs. a consumer that only acks;
//! 2. freshness: publish to report at a steady rate, p50/p99;
//! 3. query: `wrk` on the report endpoints vs. `GET /health`, idle and while
//!    new deployments are published at 6,000 events/s;
//! 4. scale: per-event apply cost for deployments of 10, 100, 1,000
//!    instances;
//! 5. memory and disk of benchmark 1;
//! 6. scrape: `GET /metrics` with 10,000 deployments stored.
//!
//! Failures of the suite itself (an event lost, a report missing, an error
//! answer) make it exit non-zero; goals not met do not.

mod amqp;
mod freshness;
mod ingest;
mod query;
mod scale;
mod service;
mod streams;
mod table;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use audrey_consumer::Topology;
use clap::{Parser, ValueEnum};

use query::ms;
use table::{mib, micros, millis, thousands, Spread, Table, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// Every benchmark at full size (run with --release).
    All,
    /// Every benchmark, tiny: checks the suite works and nothing is lost.
    Smoke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    Ingest,
    Freshness,
    Query,
    Scale,
}

#[derive(Debug, Parser)]
#[command(
    name = "audrey-bench",
    about = "The benchmark suite of audrey-reporting"
)]
struct Args {
    suite: Suite,
    /// Run only these benchmarks (ingest also gives memory and disk, query
    /// also gives the scrape cost).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Bench>,
    #[arg(long, default_value = audrey_consumer::connect::DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// The `audrey-reporting` binary to run (default: build it with cargo,
    /// in the release profile, the one every command of this repository
    /// builds).
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// Record CPU profiles (`perf record`) of the service during the ingest
    /// drain and the idle query runs, and of this process during each
    /// scale step, into this directory. Figures of such a run are
    /// perturbed by perf.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Where the data directories go (default: a temporary directory,
    /// removed afterwards). Must be on the disk being measured.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// How many times the query and freshness measurements are repeated,
    /// each figure next to its baseline of the same round (default: 5 for
    /// `all`, 1 for `smoke`); the table gives the median and the spread.
    #[arg(long)]
    runs: Option<usize>,
}

/// The sizes of one suite.
pub struct Plan {
    pub ingest_events: usize,
    pub freshness_rate: f64,
    pub freshness_seconds: f64,
    pub freshness_samples_per_second: f64,
    /// The rate search: first rate, highest rate, most steps, seconds each.
    pub freshness_search_start: f64,
    pub freshness_search_max: f64,
    pub freshness_search_steps: usize,
    pub freshness_search_seconds: f64,
    /// Rounds of the query and freshness measurements.
    pub runs: usize,
    pub query_deployments: usize,
    pub query_instances: usize,
    pub query_services: usize,
    pub wrk_duration: Duration,
    pub wrk_threads: usize,
    pub wrk_connections: usize,
    /// How long the ingest runs before the loaded query runs start.
    pub flood_lead: Duration,
    /// Events/s published during the loaded query runs.
    pub query_ingest_rate: f64,
    pub scrape_requests: usize,
    pub scale_sizes: Vec<usize>,
    pub scale_batches: usize,
    pub scale_batch_size: usize,
}

impl Plan {
    fn of(suite: Suite) -> Plan {
        match suite {
            Suite::All => Plan {
                ingest_events: 200_000,
                freshness_rate: 2_000.0,
                freshness_seconds: 20.0,
                freshness_samples_per_second: 25.0,
                freshness_search_start: 4_000.0,
                freshness_search_max: 64_000.0,
                freshness_search_steps: 7,
                freshness_search_seconds: 8.0,
                runs: 5,
                query_deployments: 10_000,
                query_instances: 10,
                query_services: 5,
                wrk_duration: Duration::from_secs(10),
                wrk_threads: 2,
                wrk_connections: 64,
                flood_lead: Duration::from_secs(3),
                query_ingest_rate: 6_000.0,
                scrape_requests: 50,
                scale_sizes: vec![10, 100, 1_000],
                scale_batches: 60,
                scale_batch_size: 100,
            },
            Suite::Smoke => Plan {
                ingest_events: 2_000,
                freshness_rate: 200.0,
                freshness_seconds: 3.0,
                freshness_samples_per_second: 10.0,
                freshness_search_start: 400.0,
                freshness_search_max: 800.0,
                freshness_search_steps: 2,
                freshness_search_seconds: 2.0,
                runs: 1,
                query_deployments: 30,
                query_instances: 4,
                query_services: 3,
                wrk_duration: Duration::from_secs(1),
                wrk_threads: 2,
                wrk_connections: 8,
                flood_lead: Duration::from_millis(500),
                query_ingest_rate: 500.0,
                scrape_requests: 5,
                scale_sizes: vec![10, 100],
                scale_batches: 5,
                scale_batch_size: 100,
            },
        }
    }
}

/// What every benchmark shares.
pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub url: String,
    pub binary: PathBuf,
    pub work: PathBuf,
    pub wrk: Option<PathBuf>,
    pub plan: Plan,
    pub perf_dir: Option<PathBuf>,
    topologies: Mutex<Vec<Topology>>,
}

impl Ctx {
    /// Fresh broker names for one benchmark, deleted at the end of the run.
    pub fn topology(&self, what: &str) -> Topology {
        let topology = amqp::unique_topology(what);
        self.remember(&topology);
        topology
    }

    pub fn remember(&self, topology: &Topology) {
        self.topologies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(topology.clone());
    }
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("audrey-bench: {error:#}");
            std::process::exit(2);
        }
    }
}

/// Ok(false) when a benchmark failed (lost something, errored).
fn run(args: Args) -> anyhow::Result<bool> {
    let suite_started = Instant::now();
    // Before the build: the tree the service binary is built from.
    let source = source_version();
    if args.suite == Suite::All && cfg!(debug_assertions) {
        eprintln!(
            "[bench] warning: this is a debug build of the bench; the in-process figures \
             (scale) need `cargo run --release -p audrey-bench -- all`"
        );
    }
    let mut plan = Plan::of(args.suite);
    if let Some(runs) = args.runs {
        plan.runs = runs.max(1);
    }
    let wrk = find_in_path("wrk");
    if wrk.is_none() {
        if args.suite == Suite::All {
            anyhow::bail!("wrk is not installed: apt-get install wrk");
        }
        eprintln!("[bench] wrk is not installed: the smoke run loads the API with its own client");
    }
    let binary = match &args.service_bin {
        Some(path) => path.clone(),
        None => service::build()?,
    };
    let temp;
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("audrey-bench.")
                .tempdir_in(std::env::temp_dir())?;
            temp.path().to_owned()
        }
    };
    let ctx = Ctx {
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        url: args.amqp_url.clone(),
        binary,
        work,
        wrk,
        plan,
        perf_dir: args.perf_dir.clone(),
        topologies: Mutex::new(Vec::new()),
    };
    if let Some(dir) = &ctx.perf_dir {
        std::fs::create_dir_all(dir)?;
    }
    let wanted = |b: Bench| args.only.is_empty() || args.only.contains(&b);

    let mut table = Table::default();
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |what: &str, e: anyhow::Error| {
        eprintln!("[bench] {what} FAILED: {e:#}");
        failures.push(format!("{what}: {e:#}"));
    };

    let mut ingested = None;
    if wanted(Bench::Ingest) {
        match ingest::run(&ctx) {
            Ok(r) => {
                ingest_rows(&mut table, &r);
                ingested = Some(r);
            }
            Err(e) => fail("ingest", e),
        }
    }
    if wanted(Bench::Freshness) {
        let result = match &ingested {
            Some(r) => freshness::run(&ctx, &r.data_dir, &r.topology, ctx.plan.runs),
            None if wanted(Bench::Ingest) => Err(anyhow::anyhow!("skipped: ingest failed")),
            None => {
                let topology = ctx.topology("freshness");
                freshness::run(
                    &ctx,
                    &ctx.work.join("freshness-data"),
                    &topology,
                    ctx.plan.runs,
                )
            }
        };
        match result {
            Ok(r) => freshness_rows(&mut table, &ctx.plan, &r),
            Err(e) => fail("freshness", e),
        }
    }
    if wanted(Bench::Query) {
        match query::run(&ctx) {
            Ok(r) => query_rows(&mut table, &ctx.plan, &r),
            Err(e) => fail("query", e),
        }
    }
    if wanted(Bench::Scale) {
        match scale::run(&ctx) {
            Ok(points) => scale_rows(&mut table, &points),
            Err(e) => fail("scale", e),
        }
    }

    let topologies = std::mem::take(&mut *ctx.topologies.lock().unwrap_or_else(|e| e.into_inner()));
    ctx.rt.block_on(amqp::remove(&ctx.url, &topologies));

    println!();
    println!(
        "audrey-bench {:?}: {} cores, source {}, service binary {}, suite took {:.0} s",
        args.suite,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        source,
        ctx.binary.display(),
        suite_started.elapsed().as_secs_f64()
    );
    println!();
    table.rows.sort_by_key(|r| r.number);
    print!("{}", table.render());
    if failures.is_empty() {
        println!("\nnothing lost; every benchmark ran");
        Ok(true)
    } else {
        println!("\nFAILED:");
        for f in &failures {
            println!("- {f}");
        }
        Ok(false)
    }
}

/// `git describe` of the tree the service was built from.
fn source_version() -> String {
    std::process::Command::new("git")
        .current_dir(service::workspace_root())
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn ingest_rows(table: &mut Table, r: &ingest::IngestResult) {
    let ratio = r.service_rate / r.baseline_rate;
    table.add(
        "1",
        format!(
            "ingest: drain {} queued events ({} deployments, {} instances), WAL synced before ack",
            thousands(r.events as f64),
            thousands(r.deployments as f64),
            thousands(r.instances as f64)
        ),
        format!(
            "{} events/s (service {:.2} cores, {:.1} µs of CPU per event; {}; ready {:.2} s \
             after start)",
            thousands(r.service_rate),
            r.service_cpu_share,
            r.service_cpu_per_event() * 1e6,
            r.service_drain_cpu.describe(),
            r.service_startup.as_secs_f64()
        ),
        format!(
            "ack-only consumer: {} events/s ({})",
            thousands(r.baseline_rate),
            r.baseline_drain_cpu.describe()
        ),
        format!("{ratio:.2} (goal ≥ 0.8)"),
        Verdict::of(ratio >= 0.8),
    );
    table.add(
        "1",
        "ingest: events lost, duplicated or dead-lettered; stored views = projection",
        "0; yes",
        format!(
            "published at {} events/s (confirms)",
            thousands(r.publish_rate)
        ),
        "0 lost",
        Verdict::Met,
    );
    table.add(
        "5",
        "memory: peak RSS of the service during benchmark 1 (VmHWM)",
        mib(r.peak_rss),
        "",
        "≤ 200 MiB",
        Verdict::of(r.peak_rss <= 200 * 1024 * 1024),
    );
    table.add(
        "5",
        "disk: data dir after SIGTERM (flushed)",
        format!(
            "{} = {} B per stored event, {} B per instance",
            mib(r.disk_bytes),
            thousands(r.disk_bytes as f64 / r.events as f64),
            thousands(r.disk_bytes as f64 / r.instances as f64)
        ),
        "",
        "",
        Verdict::Info,
    );
}

fn freshness_rows(table: &mut Table, plan: &Plan, r: &freshness::FreshnessResult) {
    let runs = &r.runs;
    let Some(first) = runs.first() else { return };
    let what = format!(
        "freshness: publish → instance report seen by a long-polling reader, {} events/s \
         for {:.0} s ({} events, ~{} samples a run), {} run{}",
        thousands(plan.freshness_rate),
        plan.freshness_seconds,
        thousands(first.published as f64),
        first.samples,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    let of = |f: fn(&freshness::Step) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let p50 = of(|s| ms(s.p50));
    let p99 = of(|s| ms(s.p99));
    table.add(
        "2",
        format!("{what}: p50"),
        p50.describe(" ms"),
        format!(
            "broker confirm p50 {}; achieved {}",
            of(|s| ms(s.confirm_p50)).describe(" ms"),
            of(|s| s.achieved_rate).describe_thousands(" events/s")
        ),
        "",
        Verdict::Info,
    );
    table.add(
        "2",
        format!("{what}: p99"),
        format!(
            "{} (max {})",
            p99.describe(" ms"),
            of(|s| ms(s.max)).describe(" ms")
        ),
        format!(
            "broker confirm p99 {}; readers made {} req/s",
            of(|s| ms(s.confirm_p99)).describe(" ms"),
            of(|s| s.reads_per_second).describe_thousands("")
        ),
        "≤ 50 ms",
        Verdict::of(p99.median <= 50.0),
    );
    let tried: Vec<String> = r
        .search
        .iter()
        .map(|s| {
            format!(
                "{}: p99 {:.1} ms{}",
                thousands(s.rate),
                ms(s.p99),
                if s.kept() { "" } else { " ✗" }
            )
        })
        .collect();
    let (kept, above) = r.highest_kept();
    table.add(
        "2",
        format!(
            "freshness: highest publish rate with p99 ≤ 50 ms (steps of {:.0} s; tried {})",
            plan.freshness_search_seconds,
            tried.join(", ")
        ),
        match kept {
            Some(k) => format!(
                "{} events/s (p99 {:.1} ms, confirm p99 {:.1} ms, batches of {:.0}, service {:.2} cores, {})",
                thousands(k.rate),
                ms(k.p99),
                ms(k.confirm_p99),
                k.mean_batch,
                k.service_cores,
                k.cpu.describe()
            ),
            None => "none of the rates tried".into(),
        },
        match above {
            Some(a) => format!("at {} events/s: {}", thousands(a.rate), a.bound()),
            None => "no rate tried failed".into(),
        },
        "",
        Verdict::Info,
    );
}

fn query_rows(table: &mut Table, plan: &Plan, r: &query::QueryResult) {
    let stored = format!(
        "{} deployments × {} instances × {} services",
        thousands(r.dataset_deployments as f64),
        plan.query_instances,
        plan.query_services
    );
    table.add(
        "3",
        format!(
            "query data: {stored} ({} instances, {} events) via Store::apply_batch",
            thousands(r.dataset_instances as f64),
            thousands(r.dataset_events as f64)
        ),
        format!(
            "built in {:.0} s, {} on disk",
            r.dataset_build_time.as_secs_f64(),
            mib(r.dataset_disk_bytes)
        ),
        "",
        "",
        Verdict::Info,
    );
    let load = format!(
        "wrk -t{} -c{} -d{}s, {} round{} of /health, instance, deployment",
        plan.wrk_threads,
        plan.wrk_connections,
        plan.wrk_duration.as_secs(),
        r.idle.len(),
        if r.idle.len() == 1 { "" } else { "s" }
    );
    for (when, rounds) in [
        ("idle".to_owned(), &r.idle),
        (
            format!(
                "during ingest ({} events/s applied)",
                thousands(r.loaded_ingest_rate)
            ),
            &r.loaded,
        ),
    ] {
        let of = |i: usize, f: fn(&query::WrkResult) -> f64| {
            Spread::of(&rounds.iter().map(|round| f(&round[i])).collect::<Vec<_>>())
        };
        table.add(
            "3",
            format!("query, {when}: GET /health ({load})"),
            format!(
                "{} req/s, p50 {}, p99 {}; service used {} cores",
                of(0, |w| w.requests_per_second).describe_thousands(""),
                of(0, |w| ms(w.p50)).describe(" ms"),
                of(0, |w| ms(w.p99)).describe(" ms"),
                of(0, |w| w.service_cores).describe("")
            ),
            "(the baseline)",
            "",
            Verdict::Info,
        );
        for (i, target) in query::TARGETS.iter().enumerate().skip(1) {
            // Each round's figure against the baseline of the same round.
            let ratio = Spread::of(
                &rounds
                    .iter()
                    .map(|round| round[i].requests_per_second / round[0].requests_per_second)
                    .collect::<Vec<_>>(),
            );
            let p99 = of(i, |w| ms(w.p99));
            let errors: u64 = rounds.iter().map(|round| round[i].socket_errors).sum();
            table.add(
                "3",
                format!("query, {when}: {target} req/s"),
                format!(
                    "{} req/s; service used {} cores",
                    of(i, |w| w.requests_per_second).describe_thousands(""),
                    of(i, |w| w.service_cores).describe("")
                ),
                format!(
                    "/health {} req/s",
                    of(0, |w| w.requests_per_second).describe_thousands("")
                ),
                format!("{} (goal ≥ 0.5)", ratio.describe("")),
                Verdict::of(ratio.median >= 0.5),
            );
            table.add(
                "3",
                format!("query, {when}: {target} latency"),
                format!(
                    "p50 {}, p99 {}{}",
                    of(i, |w| ms(w.p50)).describe(" ms"),
                    p99.describe(" ms"),
                    if errors > 0 {
                        format!(" ({errors} socket errors)")
                    } else {
                        String::new()
                    }
                ),
                format!("/health p99 {}", of(0, |w| ms(w.p99)).describe(" ms")),
                "p99 ≤ 10 ms",
                Verdict::of(p99.median <= 10.0),
            );
        }
    }
    table.add(
        "5",
        "memory: peak RSS of the service through benchmark 3 (report cache included)",
        mib(r.peak_rss),
        "",
        "≤ 200 MiB",
        Verdict::of(r.peak_rss <= 200 * 1024 * 1024),
    );
    table.add(
        "6",
        format!(
            "scrape: GET /metrics with {} deployments stored ({} series, {} bytes), median of {}",
            thousands(r.dataset_deployments as f64),
            thousands(r.scrape.series as f64),
            thousands(r.scrape.bytes as f64),
            plan.scrape_requests
        ),
        millis(r.scrape.median),
        format!("p99 {}", millis(r.scrape.p99)),
        "≤ 20 ms",
        Verdict::of(r.scrape.median <= Duration::from_millis(20)),
    );
}

fn scale_rows(table: &mut Table, points: &[scale::ScalePoint]) {
    let Some(first) = points.first() else { return };
    for p in points {
        let ratio = p.per_event.as_secs_f64() / first.per_event.as_secs_f64();
        let is_first = p.instances == first.instances;
        let is_goal = p.instances >= 1_000;
        table.add(
            "4",
            format!(
                "scale: apply cost per event, deployment of {} instances \
                 (batches of 100 on random instances, synced)",
                thousands(p.instances as f64)
            ),
            micros(p.per_event),
            if is_first {
                String::new()
            } else {
                format!("{} instances: {}", first.instances, micros(first.per_event))
            },
            match (is_first, is_goal) {
                (true, _) => String::new(),
                (false, true) => format!("{ratio:.2} (goal ≤ 1.5)"),
                (false, false) => format!("{ratio:.2}"),
            },
            if is_goal {
                Verdict::of(ratio <= 1.5)
            } else {
                Verdict::Info
            },
        );
        // The rows beside the goal's, for information: this size's figure
        // against the smallest deployment's.
        let beside = |table: &mut Table, what: String, of: fn(&scale::ScalePoint) -> Duration| {
            let (figure, baseline) = (of(p), of(first));
            let (against, ratio) = if is_first {
                (String::new(), String::new())
            } else {
                (
                    format!("{} instances: {}", first.instances, micros(baseline)),
                    format!("{:.2}", figure.as_secs_f64() / baseline.as_secs_f64()),
                )
            };
            table.add("4", what, micros(figure), against, ratio, Verdict::Info);
        };
        beside(
            table,
            format!(
                "scale: the same batches' CPU time per event on the applying thread \
                 (without the wait for the sync), {} instances",
                thousands(p.instances as f64)
            ),
            |p| p.cpu_per_event,
        );
        beside(
            table,
            format!(
                "scale: the same, each batch on {} of the {} instances",
                scale::LOCAL_INSTANCES,
                thousands(p.instances as f64)
            ),
            |p| p.per_event_local,
        );
    }
}
