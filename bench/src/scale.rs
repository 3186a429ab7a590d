//! Benchmark 4: what one event costs `Store::apply_batch` as a deployment
//! grows. For each size, one realistic deployment of that many instances
//! (3 services each, with dependencies) is stored whole, then batches of
//! `instance.contacted`, `service.configuration_started` and
//! `service.configuration_ended` are applied, each batch synced as in
//! service. The figure is the median batch time divided by the batch size.
//!
//! Two mixes: events on instances drawn uniformly from the whole deployment
//! (the goal's figure), and events on 10 instances drawn afresh for each
//! batch. In the first, a batch of 100 events on a deployment of 10
//! instances reads each instance from RocksDB once and then finds it in the
//! batch, while on 1,000 instances almost every event reads its instance:
//! the second mix holds that locality constant, so that what is left is the
//! cost of the deployment's size itself.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use audrey_core::contract::EventData;
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::{Event, InstanceId, Name, Timestamp};
use audrey_store::Store;

use crate::service::Perf;
use crate::Ctx;

pub struct ScalePoint {
    pub instances: usize,
    /// Events on instances drawn from the whole deployment.
    pub per_event: Duration,
    /// The same batches' CPU time on the applying thread: the cost that
    /// grows with the deployment, apart from the wait for the disk's sync,
    /// which is the same for every size but moves with the disk from one
    /// run to the next (0.3 to 0.7 ms a sync on this machine kind).
    pub cpu_per_event: Duration,
    /// Each batch's events on `LOCAL_INSTANCES` instances.
    pub per_event_local: Duration,
    pub setup_events: usize,
}

/// How many instances one batch of the second mix touches.
pub const LOCAL_INSTANCES: usize = 10;

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<ScalePoint>> {
    let plan = &ctx.plan;
    let mut points = Vec::new();
    for &size in &plan.scale_sizes {
        let dir = ctx.work.join(format!("scale-{size}"));
        // Every step is profiled (`scale-<size>.perf.data`): what the
        // largest step spends more of shows only beside the smallest's.
        let point = measure(
            &dir,
            size,
            plan.scale_batches,
            plan.scale_batch_size,
            ctx.perf_dir.as_deref(),
        )?;
        eprintln!(
            "[scale] {size} instances: {:.1} us per event ({:.1} us of CPU); {:.1} us with \
             {LOCAL_INSTANCES} instances per batch ({} events to set up)",
            point.per_event.as_secs_f64() * 1e6,
            point.cpu_per_event.as_secs_f64() * 1e6,
            point.per_event_local.as_secs_f64() * 1e6,
            point.setup_events
        );
        points.push(point);
    }
    Ok(points)
}

fn measure(
    dir: &Path,
    size: usize,
    batches: usize,
    batch_size: usize,
    profile: Option<&Path>,
) -> anyhow::Result<ScalePoint> {
    let store = Store::open(dir)?;
    let start = Timestamp::now().plus_seconds(-86_400.0);
    let mut script = ConfigServerScript::new("/configserver/bench-scale", size as u64);
    let shape = Shape {
        instances: size,
        services_per_instance: 3,
        ..Shape::default()
    };
    let setup = script.deployment(start, &shape);
    for chunk in setup.chunks(2_000) {
        store.apply_batch(chunk)?;
    }
    let deployment = setup[0].deployment().expect("a deployment event");
    let mut instances: Vec<(InstanceId, Vec<Name>)> = Vec::new();
    for event in &setup {
        if let Some(EventData::InstanceRegistered(r)) = event.as_deployment_event().map(|e| &e.data)
        {
            if !instances.iter().any(|(i, _)| *i == r.instance) {
                instances.push((
                    r.instance,
                    r.services.iter().map(|s| s.name.clone()).collect(),
                ));
            }
        }
    }
    ensure!(
        instances.len() == size,
        "the deployment has {} instances",
        instances.len()
    );

    let mut rng = Rng::new(size as u64 ^ 0xa11ce);
    let mut time = setup.last().map_or(start, |e| e.time()).plus_seconds(1.0);
    // One batch: events on `pool` instances drawn afresh (all when `None`).
    let mut next_batch = |pool: Option<usize>| -> Vec<Event> {
        let chosen: Vec<usize> = match pool {
            Some(k) => (0..k).map(|_| rng.below(size as u64) as usize).collect(),
            None => (0..size).collect(),
        };
        (0..batch_size)
            .map(|_| {
                time = time.plus_seconds(0.001);
                let pick = chosen[rng.below(chosen.len() as u64) as usize];
                let (instance, services) = &instances[pick];
                let instance = *instance;
                let service = services[rng.below(services.len() as u64) as usize].clone();
                let data = match rng.below(3) {
                    0 => EventData::InstanceContacted {
                        instance,
                        request: Some("GET /params".into()),
                    },
                    1 => EventData::ConfigurationStarted { instance, service },
                    _ => EventData::ConfigurationEnded {
                        instance,
                        service,
                        return_code: if rng.chance(0.1) { 1 } else { 0 },
                    },
                };
                script.event(time, deployment, data)
            })
            .collect()
    };
    // Warm up (caches, memtable), then measure.
    for _ in 0..batches.div_ceil(10) {
        store.apply_batch(&next_batch(None))?;
    }
    // The median batch's time and the median batch's CPU time, per event.
    let mut median_per_event =
        |pool: Option<usize>, batches: usize| -> anyhow::Result<(Duration, Duration)> {
            let mut times = Vec::with_capacity(batches);
            let mut cpu_times = Vec::with_capacity(batches);
            for _ in 0..batches {
                let batch = next_batch(pool);
                let started = Instant::now();
                let cpu_started = thread_cpu_time();
                let outcome = store.apply_batch(&batch)?;
                cpu_times.push(thread_cpu_time().saturating_sub(cpu_started));
                times.push(started.elapsed());
                ensure!(
                    outcome.applied() == batch.len(),
                    "a batch was not applied whole"
                );
            }
            let median = |mut all: Vec<Duration>| {
                all.sort();
                all[all.len() / 2] / batch_size as u32
            };
            Ok((median(times), median(cpu_times)))
        };
    // Profiled, the uniform mix runs 10 times as long, for samples.
    let perf = Perf::attach(profile, std::process::id(), &format!("scale-{size}"));
    let (per_event, cpu_per_event) = median_per_event(
        None,
        if profile.is_some() {
            batches * 10
        } else {
            batches
        },
    )?;
    perf.stop();
    let (per_event_local, _) = median_per_event(Some(LOCAL_INSTANCES), batches)?;
    Ok(ScalePoint {
        instances: size,
        per_event,
        cpu_per_event,
        per_event_local,
        setup_events: setup.len(),
    })
}

/// The CPU time the calling thread has used. RocksDB writes the WAL and
/// the memtables on the thread that writes the batch, so this is the
/// batch's work without the time spent waiting for the sync.
#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "this thread's CPU clock is always readable");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
