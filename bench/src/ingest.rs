//! Benchmarks 1 and 5: how fast the service drains a pre-filled queue
//! (durably: WAL synced before each ack), against a consumer that only acks
//! an identically pre-filled queue; its peak RSS meanwhile; its bytes on
//! disk afterwards.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use audrey_consumer::Topology;
use audrey_core::memory::MemoryViews;
use audrey_core::{query, Timestamp};
use audrey_store::Store;

use crate::amqp;
use crate::service::{dir_bytes, CpuUse, CpuWatch, Perf, Service};
use crate::streams;
use crate::Ctx;
use audrey_consumer::ingest::{DEFAULT_BATCH_SIZE, DEFAULT_PREFETCH};
use audrey_testkit::http::Client;
use audrey_testkit::metrics::metric_sum;

pub struct IngestResult {
    pub events: usize,
    pub deployments: usize,
    pub instances: usize,
    pub publish_rate: f64,
    pub baseline_rate: f64,
    pub service_rate: f64,
    /// From spawning the process to /health ready.
    pub service_startup: Duration,
    /// CPU seconds the service used per second of the drain.
    pub service_cpu_share: f64,
    /// The machine and the broker while the service drained, and while
    /// the baseline did.
    pub service_drain_cpu: CpuUse,
    pub baseline_drain_cpu: CpuUse,
    pub peak_rss: u64,
    pub disk_bytes: u64,
    /// Where the views are (benchmark 2 goes on with them).
    pub data_dir: PathBuf,
    pub topology: Topology,
}

impl IngestResult {
    /// Seconds of the service's CPU per event drained (start-up included):
    /// what the drain costs apart from how busy the broker keeps the
    /// machine, so it moves less between runs than the rate does.
    pub fn service_cpu_per_event(&self) -> f64 {
        self.service_cpu_share / self.service_rate
    }
}

pub fn run(ctx: &Ctx) -> anyhow::Result<IngestResult> {
    let count = ctx.plan.ingest_events;
    let start = Timestamp::now().plus_seconds(-7_200.0);
    let events = streams::realistic(1, count, start, true);
    let deployments = streams::deployments(&events).len();
    let instances = streams::instances(&events).len();
    eprintln!(
        "[ingest] {count} events: {deployments} deployments, {instances} instances, 4 config servers"
    );

    let topology = ctx.topology("ingest");
    let baseline = amqp::twin_queue(&topology, "baseline");
    ctx.remember(&baseline);
    ctx.rt.block_on(async {
        amqp::declare(&ctx.url, &topology).await?;
        amqp::declare(&ctx.url, &baseline).await
    })?;
    let publish = ctx
        .rt
        .block_on(amqp::publish(&ctx.url, &topology, &events, 1000))?;
    let publish_rate = count as f64 / publish.as_secs_f64();
    eprintln!(
        "[ingest] published to both queues in {:.1} s ({publish_rate:.0} events/s)",
        publish.as_secs_f64()
    );
    for queue in [&topology.queue, &baseline.queue] {
        wait_for_ready_messages(ctx, queue, count as u32)?;
    }

    // The baseline first: the broker holds both queues full while it runs.
    let watch = CpuWatch::start();
    let drained = ctx.rt.block_on(amqp::baseline_drain(
        &ctx.url,
        &baseline.queue,
        // The service's defaults: the baseline batches as the service does.
        DEFAULT_PREFETCH,
        DEFAULT_BATCH_SIZE as usize,
        count as u64,
    ))?;
    let baseline_drain_cpu = watch.stop();
    ensure!(
        drained.received == count as u64,
        "the baseline received {} of {count} events",
        drained.received
    );
    let baseline_rate = count as f64 / drained.elapsed.as_secs_f64();
    eprintln!(
        "[ingest] baseline (ack only) drained in {:.2} s: {baseline_rate:.0} events/s; {}",
        drained.elapsed.as_secs_f64(),
        baseline_drain_cpu.describe()
    );
    ctx.rt
        .block_on(amqp::remove_queue(&ctx.url, &baseline.queue));

    let data_dir = ctx.work.join("ingest-data");
    let watch = CpuWatch::start();
    let started = Instant::now();
    let mut service = Service::start(&ctx.binary, &data_dir, &ctx.url, &topology)?;
    service.wait_ready(Duration::from_secs(60))?;
    // Once ready, when the writer and the AMQP threads exist: `perf record
    // -p` samples only the threads there when it attaches (attached
    // earlier, it missed the writer, more than half of the drain's CPU).
    let perf = Perf::attach(ctx.perf_dir.as_deref(), service.pid(), "ingest-drain");
    let service_startup = started.elapsed();
    let mut client = Client::new(service.port);
    let timeout = Duration::from_secs(120).max(Duration::from_millis(count as u64));
    loop {
        let settled = service.events_settled(&mut client)?;
        if settled >= count as f64 {
            break;
        }
        if started.elapsed() > timeout {
            bail!("the service applied only {settled} of {count} events in {timeout:?}");
        }
        std::thread::sleep(next_look(started.elapsed(), settled, count as f64));
    }
    let elapsed = started.elapsed();
    let service_drain_cpu = watch.stop();
    perf.stop();
    let service_rate = count as f64 / elapsed.as_secs_f64();
    let peak_rss = service.peak_rss()?;
    let service_cpu_share = service.cpu_time()?.as_secs_f64() / elapsed.as_secs_f64();
    eprintln!(
        "[ingest] service drained in {:.2} s (ready after {:.2} s): {service_rate:.0} events/s, \
         service {:.2} cores ({:.1} us of CPU per event), {}; peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        service_startup.as_secs_f64(),
        service_cpu_share,
        service_cpu_share / service_rate * 1e6,
        service_drain_cpu.describe(),
        peak_rss as f64 / 1048576.0
    );

    // Nothing lost, nothing counted twice, nothing dead-lettered.
    let metrics = client.get("/metrics", None)?.text();
    let consumed = metric_sum(&metrics, "audrey_events_consumed_total");
    let duplicates = metric_sum(&metrics, "audrey_events_duplicate_total");
    let dead = metric_sum(&metrics, "audrey_events_dead_lettered_total");
    ensure!(
        consumed == count as f64 && duplicates == 0.0 && dead == 0.0,
        "the service consumed {consumed}, found {duplicates} duplicates and dead-lettered \
         {dead} of {count} events"
    );
    service.stop()?;
    let disk_bytes = dir_bytes(&data_dir)?;
    let (ready, _) = ctx
        .rt
        .block_on(amqp::queue_state(&ctx.url, &topology.queue))?;
    let (dead_letters, _) = ctx
        .rt
        .block_on(amqp::queue_state(&ctx.url, &topology.dead_letter_queue))?;
    ensure!(
        ready == 0 && dead_letters == 0,
        "after the drain the queue holds {ready} and the dead-letter queue {dead_letters}"
    );
    assert_views_match(&data_dir, &events)?;
    eprintln!(
        "[ingest] stored views equal the projection of the {count} events; {:.1} MiB on disk",
        disk_bytes as f64 / 1048576.0
    );
    Ok(IngestResult {
        events: count,
        deployments,
        instances,
        publish_rate,
        baseline_rate,
        service_rate,
        service_startup,
        service_cpu_share,
        service_drain_cpu,
        baseline_drain_cpu,
        peak_rss,
        disk_bytes,
        data_dir,
        topology,
    })
}

/// How long to wait before counting the events settled again: a quarter
/// of the time the rest should take at the pace so far, but at least
/// 100 ms, so the end is seen within 100 ms. Every look is a scrape of
/// `/metrics`, which walks the incomplete deployments: at a look every
/// 100 ms the scrapes took ~5 % of the service's CPU during the drain
/// (`perf record` of the service), work an ack-only consumer never does.
fn next_look(elapsed: Duration, settled: f64, count: f64) -> Duration {
    let floor = Duration::from_millis(100);
    if settled <= 0.0 {
        return floor;
    }
    let rest = elapsed.as_secs_f64() * (count - settled) / settled;
    Duration::from_secs_f64(rest / 4.0).clamp(floor, Duration::from_secs(2))
}

fn wait_for_ready_messages(ctx: &Ctx, queue: &str, count: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (ready, _) = ctx.rt.block_on(amqp::queue_state(&ctx.url, queue))?;
        if ready >= count {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("queue {queue} holds {ready} of the {count} events published");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The counts the store keeps equal those of the pure projection of
/// `events` (every event made it, once).
pub fn assert_views_match(
    data_dir: &std::path::Path,
    events: &[audrey_core::Event],
) -> anyhow::Result<()> {
    let expected = MemoryViews::from_events(events);
    let store = Store::open(data_dir).context("opening the store after the run")?;
    let counts = query::counts(&store.reader())?;
    ensure!(
        counts == expected.counts,
        "the stored counts differ from the projection of the events published:\n  stored   {counts:?}\n  expected {:?}",
        expected.counts
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_are_sparse_early_and_every_100_ms_near_the_end() {
        let ms = |d: Duration| d.as_millis();
        // Nothing settled yet: no pace to go by.
        assert_eq!(ms(next_look(Duration::from_secs(1), 0.0, 1000.0)), 100);
        // Half done after 3 s: 3 s to go, looked at again in 750 ms.
        assert_eq!(ms(next_look(Duration::from_secs(3), 500.0, 1000.0)), 750);
        // A tenth done after 3 s: 27 s to go, but never more than 2 s.
        assert_eq!(ms(next_look(Duration::from_secs(3), 100.0, 1000.0)), 2000);
        // Nearly done: every 100 ms, so the end is seen within 100 ms.
        assert_eq!(ms(next_look(Duration::from_secs(6), 990.0, 1000.0)), 100);
    }
}
