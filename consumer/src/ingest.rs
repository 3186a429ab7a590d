//! The consume loop: deliveries in, durable views out, then acks.
//!
//! Each round takes the first delivery, then every delivery already
//! buffered (up to `batch_size`): while one batch is being synced to disk
//! the next one accumulates, so the fsync cost is shared by many events
//! (group commit). A reader stage decodes the next batch while a writer
//! thread applies the current one and an acknowledger settles the previous
//! one. Per round:
//!
//! 1. decode every delivery and encode it for the log; an invalid one is
//!    published to the dead-letter exchange with the reason in headers
//!    (confirmed), or, if that fails, rejected without requeue so the
//!    broker dead-letters it;
//! 2. apply the valid ones to the store in one synced batch, on the writer
//!    thread (RocksDB calls block);
//! 3. acknowledge everything up to the last delivery with one multiple-ack.
//!
//! Nothing is acknowledged before its batch is durable, so a crash at any
//! point only leads to redelivery, which the store's dedup absorbs.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use futures_lite::future::poll_once;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::watch;
use tracing::{info, warn};

use audrey_core::contract::TrustedSources;
use audrey_core::Timestamp;
use audrey_store::{BatchOutcome, Encoded, EventOutcome, Store};

use crate::connect::Broker;
use crate::dead_letter::{DeadLetters, Settled};
use crate::delivery::Checks;
use crate::observer::{AppliedBatch, Observer};
use crate::stall::Progress;
use crate::topology::{Topology, BARRIER_PREFIX};

pub use crate::dead_letter::{ERROR_HEADER, REASON_HEADER};

/// How often the events waiting in the queue are counted (for `/health`'s
/// lag and the metrics).
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(1);

/// The default AMQP prefetch: twice a batch, so the next batch is buffered
/// while this one is synced.
pub const DEFAULT_PREFETCH: u16 = 2000;
/// The default most events per synced batch. 3,000 / 9,000 drained a
/// backlog faster, but the query benchmark's service then peaked over the
/// 200 MiB goal in three runs of four (BENCHMARKS.md, "Eighteenth round").
pub const DEFAULT_BATCH_SIZE: u32 = 1000;

/// How the loop connects and batches.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The broker (URL and TLS trust).
    pub broker: Broker,
    pub topology: Topology,
    /// Unacknowledged deliveries the broker may send ahead: large enough
    /// that the next batch is buffered while this one is synced.
    pub prefetch: u16,
    /// The most deliveries applied in one synced batch.
    pub batch_size: usize,
    /// What each delivery must pass: size, trusted sources.
    pub checks: Checks,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            broker: Broker::new(crate::connect::DEFAULT_AMQP_URL),
            topology: Topology::default(),
            prefetch: DEFAULT_PREFETCH,
            batch_size: DEFAULT_BATCH_SIZE as usize,
            checks: Checks {
                max_bytes: audrey_core::contract::DEFAULT_MAX_EVENT_BYTES,
                trusted: TrustedSources::default(),
            },
            max_backoff: Duration::from_secs(15),
        }
    }
}

/// Consumes until `shutdown` turns true, reconnecting with exponential
/// backoff whenever the broker or the connection fails. Returns once the
/// batch in flight is acknowledged and the connection closed.
pub async fn run(
    config: IngestConfig,
    store: Arc<Store>,
    observer: Arc<dyn Observer>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let initial = Duration::from_millis(200);
    let mut backoff = initial;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut session = Session {
            config: &config,
            store: &store,
            observer: &observer,
        };
        match session.run(&mut shutdown, &mut backoff, initial).await {
            Ok(()) => {
                observer.connected(false);
                info!("AMQP consumer stopped");
                return Ok(());
            }
            Err(error) => {
                observer.connected(false);
                warn!(error = %format!("{error:#}"), retry_in = ?backoff, "AMQP disconnected; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// A batch decoded by the reader stage, for the writer stage.
struct Prepared {
    /// The valid events, in delivery order, encoded for the log.
    events: Vec<Encoded>,
    /// Replication barriers among the deliveries: passed once the batch is
    /// applied (everything before them in the queue is then in the store).
    barriers: Vec<String>,
    /// The last delivery the batch's multiple-ack settles (rejected ones
    /// are settled already).
    last_settled_by_ack: Option<u64>,
}

/// One connection's life.
struct Session<'a> {
    /// How to connect and batch.
    config: &'a IngestConfig,
    /// Where batches are applied (on blocking threads).
    store: &'a Arc<Store>,
    /// Told of connections, batches and dead letters (and, by the writer
    /// thread, of what each batch applied).
    observer: &'a Arc<dyn Observer>,
}

impl Session<'_> {
    async fn run(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Duration,
        initial_backoff: Duration,
    ) -> anyhow::Result<()> {
        let config = self.config;
        let connection = config.broker.connect("audrey-reporting").await?;
        let channel = connection.create_channel().await?;
        config
            .topology
            .declare(&channel)
            .await
            .context("declaring the topology")?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let dead_letters =
            DeadLetters::open(&connection, &config.topology.dead_letter_exchange).await?;
        // The watch's and the screening's channels are opened here, not in
        // their futures, so that each is closed below, before the
        // connection, whichever way the session ends.
        let depth_channel = connection.create_channel().await?;
        // A replica screens what the queue would refuse: its replica
        // settings and the channel it screens on, together.
        let screening_on = match &config.topology.replica {
            Some(replica) => Some((replica, connection.create_channel().await?)),
            None => None,
        };
        let mut consumer = channel
            .basic_consume(
                config.topology.queue.as_str().into(),
                "audrey-reporting".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("starting to consume")?;
        *backoff = initial_backoff;
        self.observer.connected(true);
        info!(
            broker = %config.broker.redacted(),
            queue = %config.topology.queue,
            "AMQP connected; consuming"
        );

        // Three stages: while the writer thread syncs batch N, the reader
        // decodes batch N+1 and the acknowledger settles batch N-1. The
        // writer is a thread of its own that takes its next batch as soon as
        // one is synced, never waiting on an acknowledgement or a tokio
        // worker. Batches and their acks stay in order; the first error
        // ends all three.
        let (to_writer, from_reader) = tokio::sync::mpsc::channel::<Prepared>(1);
        let (to_acker, mut from_writer) = tokio::sync::mpsc::channel::<Applied>(2);
        spawn_writer(
            Arc::clone(self.store),
            Arc::clone(self.observer),
            from_reader,
            to_acker,
        )?;
        let this = &*self;
        // What the stall watchdog (`stall`) reads: the reader's waits, the
        // batches in flight, the queue's ready count.
        let progress = Progress::default();
        let progress = &progress;
        let mut screen_stop = shutdown.clone();
        let mut depth_stop = shutdown.clone();
        let reader = async {
            loop {
                progress.waiting();
                let first = tokio::select! {
                    biased;
                    _ = shutdown.changed() => None,
                    next = consumer.next() => Some(next),
                };
                let Some(first) = first else { break };
                let first = first.ok_or_else(|| anyhow!("the broker cancelled the consumer"))??;
                progress.delivered();
                let mut deliveries = vec![first];
                while deliveries.len() < config.batch_size {
                    match poll_once(consumer.next()).await {
                        Some(Some(delivery)) => deliveries.push(delivery?),
                        Some(None) | None => break,
                    }
                }
                let prepared = this.prepare(&channel, &dead_letters, deliveries).await?;
                progress.batch_sent();
                if to_writer.send(prepared).await.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            drop(to_writer);
            Ok::<(), anyhow::Error>(())
        };
        let acker = async {
            while let Some(applied) = from_writer.recv().await {
                this.settle(&channel, applied).await?;
                progress.batch_settled();
            }
            Ok::<(), anyhow::Error>(())
        };
        // Beside them: the screening of invalid messages (replicas) and how
        // many events wait in the queue.
        let screening = async {
            let Some((replica, screen_channel)) = &screening_on else {
                return Ok(());
            };
            crate::screen::screen(
                screen_channel,
                replica,
                &config.checks,
                &dead_letters,
                self.observer.as_ref(),
                &mut screen_stop,
            )
            .await
        };
        let depth = watch_queue_depth(
            &depth_channel,
            &config.topology.queue,
            self.observer.as_ref(),
            progress,
            &mut depth_stop,
        );
        let ended = tokio::try_join!(reader, acker, screening, depth);
        // Deliveries prefetched but not processed go back to the queue (and,
        // after a stall, whatever the broker held for this channel). A dead
        // connection cannot say goodbye: at most a second is spent trying.
        // Every channel is closed, and its close answered, before the
        // connection: one left to close itself when dropped may still be
        // closing when the connection's close is answered, and lapin then
        // logs an ERROR for a clean stop (operators page on those).
        let reason = if ended.is_ok() {
            "shutting down"
        } else {
            "restarting"
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = depth_channel.close(200, reason.into()).await;
            if let Some((_, screen_channel)) = &screening_on {
                let _ = screen_channel.close(200, reason.into()).await;
            }
            dead_letters.close(reason).await;
            let _ = channel.close(200, reason.into()).await;
            let _ = connection.close(200, reason.into()).await;
        })
        .await;
        ended.map(|_| ())
    }

    /// Decodes a batch of deliveries. An invalid one is dead-lettered, or,
    /// on a replica, only counted (the replica that screens dead-letters
    /// it, once for all). A barrier is noted, to be reported once the
    /// events before it are applied.
    async fn prepare(
        &self,
        channel: &Channel,
        dead_letters: &DeadLetters,
        deliveries: Vec<Delivery>,
    ) -> anyhow::Result<Prepared> {
        let mut events = Vec::with_capacity(deliveries.len());
        let mut barriers = Vec::new();
        let mut last_settled_by_ack = None;
        let now = Timestamp::now();
        let replica = self.config.topology.replica.is_some();
        for delivery in &deliveries {
            if let Some(barrier) = delivery.routing_key.as_str().strip_prefix(BARRIER_PREFIX) {
                barriers.push(barrier.to_owned());
                last_settled_by_ack = Some(delivery.delivery_tag);
                continue;
            }
            match crate::delivery::decode(delivery, &self.config.checks, now) {
                Ok(event) => {
                    events.push(Encoded::new(event));
                    last_settled_by_ack = Some(delivery.delivery_tag);
                }
                Err(error) if replica => {
                    self.observer.refused(error.reason());
                    last_settled_by_ack = Some(delivery.delivery_tag);
                }
                Err(error) => {
                    let settled = dead_letters
                        .send(channel, delivery, &error, self.observer.as_ref())
                        .await?;
                    if settled == Settled::Published {
                        last_settled_by_ack = Some(delivery.delivery_tag);
                    }
                }
            }
        }
        Ok(Prepared {
            events,
            barriers,
            last_settled_by_ack,
        })
    }

    /// Acknowledges everything up to a batch's last delivery (only once the
    /// writer has made it durable), then passes its barriers.
    async fn settle(&self, channel: &Channel, applied: Applied) -> anyhow::Result<()> {
        let Applied {
            prepared:
                Prepared {
                    events,
                    barriers,
                    last_settled_by_ack,
                },
            failure,
        } = applied;
        if let Some(error) = failure {
            warn!(error = %format!("{error:#}"), events = events.len(), "batch failed; it will be redelivered");
            return Err(error);
        }
        if let Some(tag) = last_settled_by_ack {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging a batch")?;
        }
        for barrier in &barriers {
            self.observer.barrier_passed(barrier);
        }
        Ok(())
    }
}

/// Tells `observer` what a durable batch applied: new events by type with
/// their lag, duplicates, completions. Called by the writer as soon as the
/// batch is synced, whether or not its acknowledgement gets through: the
/// events are in the store either way, and once redelivered they count as
/// duplicates, so a batch reported only at its acknowledgement would be
/// missing from `audrey_events_consumed_total` after a reconnection.
fn report_applied(
    observer: &dyn Observer,
    events: &[Encoded],
    outcome: BatchOutcome,
    apply_duration: Duration,
) {
    let now = Timestamp::now();
    let mut batch = AppliedBatch {
        apply_duration,
        completions: outcome.completions,
        ..AppliedBatch::default()
    };
    for (event, outcome) in events.iter().map(Encoded::event).zip(&outcome.outcomes) {
        match outcome {
            EventOutcome::Applied(_) => {
                batch.applied_types.push(event.event_type());
                // In f64: far apart times must not overflow; a clock running
                // ahead (by at most a day, or the event is refused) is no
                // lag at all.
                let lag = (now.nanos() as f64 - event.time().nanos() as f64) / 1e9;
                batch.lags_seconds.push(lag.max(0.0));
            }
            EventOutcome::Duplicate => batch.duplicates += 1,
        }
    }
    observer.batch_applied(&batch);
}

/// A batch through the writer: what the acknowledger settles.
struct Applied {
    /// The batch as the reader prepared it.
    prepared: Prepared,
    /// Why the batch could not be applied; `None` once it is durable (and
    /// reported), or when it held no valid event (only dead letters or
    /// barriers to settle). A panic while applying is a failure too, so the
    /// session ends (and reconnects) instead of losing its writer.
    failure: Option<anyhow::Error>,
}

/// Starts the writer thread of one connection: applies each prepared batch
/// in one synced write, reports it, and hands it on to be acknowledged,
/// until the reader stops or a batch fails (the acknowledger then ends the
/// session).
fn spawn_writer(
    store: Arc<Store>,
    observer: Arc<dyn Observer>,
    mut from_reader: tokio::sync::mpsc::Receiver<Prepared>,
    to_acker: tokio::sync::mpsc::Sender<Applied>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("audrey-writer".into())
        .spawn(move || {
            while let Some(prepared) = from_reader.blocking_recv() {
                let started = Instant::now();
                let failure = if prepared.events.is_empty() {
                    None
                } else {
                    let apply = AssertUnwindSafe(|| store.apply_batch(&prepared.events));
                    match std::panic::catch_unwind(apply) {
                        Ok(Ok(outcome)) => {
                            report_applied(
                                observer.as_ref(),
                                &prepared.events,
                                outcome,
                                started.elapsed(),
                            );
                            None
                        }
                        Ok(Err(error)) => Some(anyhow::Error::from(error)),
                        Err(_) => Some(anyhow!("the batch writer panicked")),
                    }
                };
                let failed = failure.is_some();
                let applied = Applied { prepared, failure };
                if to_acker.blocking_send(applied).is_err() || failed {
                    break;
                }
            }
            // The store first: once the acknowledger sees this thread gone,
            // nothing here holds the store open.
            drop(store);
            drop(to_acker);
        })
        .context("starting the writer thread")?;
    Ok(())
}

/// Counts the messages waiting in `queue` every [`QUEUE_DEPTH_EVERY`] until
/// `stop`, on `channel` (its own, which the caller closes): how far behind
/// this service is, as the broker sees it. Ends the session with an error
/// when the consumer is stalled (see `stall`): events wait in the queue
/// while the broker sends this idle consumer none.
async fn watch_queue_depth(
    channel: &Channel,
    queue: &str,
    observer: &dyn Observer,
    progress: &Progress,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    loop {
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .context("counting the events waiting in the queue")?;
        observer.waiting(declared.message_count());
        progress.looked(declared.message_count());
        if let Some(starved) = progress.stalled(Instant::now()) {
            return Err(anyhow!(
                "the broker sent no delivery for {starved:?} while {} events waited in the \
                 queue and none was in flight here: a stalled consumer; its channel is closed \
                 so that the broker delivers them again",
                declared.message_count()
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(QUEUE_DEPTH_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
