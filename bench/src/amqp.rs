//! The broker side of the benchmarks: names of their own for each run,
//! pre-filling queues with the reference publisher, the ack-only baseline
//! consumer, and a publisher that floods in the background.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_lite::future::poll_once;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use audrey_consumer::{Publisher, Topology};
use audrey_core::Event;

use crate::streams::DeploymentMaker;

/// Names no other run uses.
pub fn unique_topology(what: &str) -> Topology {
    Topology::with_prefix(&audrey_testkit::broker::unique_name("bench", what))
}

/// A queue with the same arguments and bindings as the service's, on the
/// same exchange: every event published fills both identically.
pub fn twin_queue(topology: &Topology, suffix: &str) -> Topology {
    Topology {
        queue: format!("{}.{suffix}", topology.queue),
        ..topology.clone()
    }
}

pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("audrey-bench".into()),
    )
    .await
    .context("connecting to RabbitMQ")
}

/// Declares everything the service would (before it runs, so a queue can
/// be filled first).
pub async fn declare(url: &str, topology: &Topology) -> anyhow::Result<()> {
    let connection = connect(url).await?;
    let channel = connection.create_channel().await?;
    topology
        .declare(&channel)
        .await
        .context("declaring the topology")?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

pub use audrey_testkit::broker::{queue_state, remove_topologies as remove};

/// Publishes every event with the reference publisher (persistent,
/// confirmed), `chunk` at a time pipelined. Returns the time it took.
pub async fn publish(
    url: &str,
    topology: &Topology,
    events: &[Event],
    chunk: usize,
) -> anyhow::Result<Duration> {
    let publisher = Publisher::connect(url, topology).await?;
    let started = Instant::now();
    for part in events.chunks(chunk) {
        publisher.publish_all(part).await?;
    }
    let took = started.elapsed();
    publisher.close().await?;
    Ok(took)
}

/// What the baseline consumer did.
pub struct BaselineDrain {
    pub received: u64,
    pub elapsed: Duration,
}

/// Drains `expected` messages from `queue` the way the service's consume
/// loop does (same prefetch; the first delivery, then whatever is already
/// buffered up to `batch_size`; one multiple-ack per batch), but without
/// decoding or storing anything. Timed from before connecting to the last
/// ack, as the service is timed from its start.
pub async fn baseline_drain(
    url: &str,
    queue: &str,
    prefetch: u16,
    batch_size: usize,
    expected: u64,
) -> anyhow::Result<BaselineDrain> {
    let started = Instant::now();
    let connection = connect(url).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "audrey-bench-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut received = 0u64;
    while received < expected {
        let first = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("the baseline consumer waited 30 s for a delivery")?;
        let Some(first) = first else {
            bail!("the broker cancelled the baseline consumer")
        };
        let mut last = first?.delivery_tag;
        let mut batch = 1;
        while batch < batch_size {
            match poll_once(consumer.next()).await {
                Some(Some(delivery)) => {
                    last = delivery?.delivery_tag;
                    batch += 1;
                }
                Some(None) | None => break,
            }
        }
        channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await?;
        received += batch as u64;
    }
    let elapsed = started.elapsed();
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(BaselineDrain { received, elapsed })
}

/// New deployments published at a steady `rate` (events/s, paced every
/// 10 ms, confirmed) until stopped: the ingest the loaded query runs
/// share the machine with.
pub struct Flood {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Flood {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        url: &str,
        topology: &Topology,
        seed: u64,
        rate: f64,
    ) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let (url, topology) = (url.to_owned(), topology.clone());
        let (stop2, published2) = (Arc::clone(&stop), Arc::clone(&published));
        let task = rt.spawn(async move {
            let publisher = Publisher::connect(&url, &topology).await?;
            let start = audrey_core::Timestamp::now().plus_seconds(-3_600.0);
            let mut maker = DeploymentMaker::new(seed, start, 0.25, None);
            let mut pending: Vec<Event> = Vec::new();
            let started = Instant::now();
            let mut sent = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate) as usize;
                if due <= sent {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                while pending.len() < due - sent {
                    pending.extend(maker.next_deployment());
                }
                let part: Vec<Event> = pending.drain(..due - sent).collect();
                publisher.publish_all(&part).await?;
                sent += part.len();
                published2.fetch_add(part.len() as u64, Ordering::Relaxed);
            }
            publisher.close().await?;
            Ok(())
        });
        Flood {
            stop,
            published,
            task,
        }
    }

    pub async fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the flood task panicked")??;
        Ok(self.published.load(Ordering::Relaxed))
    }
}

/// Deletes one queue.
pub async fn remove_queue(url: &str, queue: &str) {
    let Ok(connection) = connect(url).await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}
