//! Where events flow on the broker, declared idempotently on each
//! connection so that a fresh broker (or a restarted one) needs no setup.
//!
//! One service: its queue gets every event, and it dead-letters the
//! invalid ones itself. Several replicas (each started with `--replica`):
//! each has a queue of its own that gets every event, so that each builds
//! the same views; invalid messages are dead-lettered once, by whichever
//! replica is the single active consumer of the shared screening queue,
//! which also gets every event. Replica queues also get the barriers a new
//! replica publishes to know when a peer's checkpoint holds everything
//! published before its own queue existed.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// The routing-key pattern that matches every Audrey event type.
pub const ALL_AUDREY_EVENTS: &str = "org.aeolusproject.audrey.#";

/// A message redelivered this many times (the consumer crashing on it, say)
/// is dead-lettered by the broker instead of looping forever.
pub const DELIVERY_LIMIT: i64 = 20;

/// Routing key prefix of replication barriers (never an Audrey event type).
pub const BARRIER_PREFIX: &str = "audrey.replication.barrier.";

/// How long a replica's queue outlives its replica: a replica away longer
/// lost events and must start again from a peer's checkpoint.
pub const DEFAULT_REPLICA_QUEUE_EXPIRES: std::time::Duration =
    std::time::Duration::from_secs(7 * 86_400);

/// What a replica adds to the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The replica's name (its queue is `<queue>.<name>`).
    pub name: String,
    /// The queue every replica consumes as single active consumer: the
    /// active one dead-letters each invalid message, once for all.
    pub screen_queue: String,
    /// A replica queue unused for this long is deleted by the broker.
    pub queue_expires: std::time::Duration,
}

impl Replica {
    /// Replica `name` of a service whose queue is `queue`.
    pub fn new(name: &str, queue: &str) -> Self {
        Self {
            name: name.to_owned(),
            screen_queue: format!("{queue}.screen"),
            queue_expires: DEFAULT_REPLICA_QUEUE_EXPIRES,
        }
    }
}

/// The exchange config servers publish to, unless told otherwise.
pub const DEFAULT_EXCHANGE: &str = "audrey.events";
/// This service's queue, unless told otherwise.
pub const DEFAULT_QUEUE: &str = "audrey.reporting";
/// Where invalid messages go, unless told otherwise.
pub const DEFAULT_DEAD_LETTER_EXCHANGE: &str = "audrey.events.dlx";
/// Where an operator reads dead letters, unless told otherwise.
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "audrey.reporting.dead";

/// Names of the exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Durable topic exchange config servers publish to (routing key = type).
    pub exchange: String,
    /// This service's durable queue, bound to every Audrey event type.
    pub queue: String,
    /// Where invalid messages go, with the reason in a header.
    pub dead_letter_exchange: String,
    /// The queue an operator reads dead letters from.
    pub dead_letter_queue: String,
    /// Set when this service is one of several replicas: `queue` is then
    /// the replica's own.
    pub replica: Option<Replica>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: DEFAULT_EXCHANGE.into(),
            queue: DEFAULT_QUEUE.into(),
            dead_letter_exchange: DEFAULT_DEAD_LETTER_EXCHANGE.into(),
            dead_letter_queue: DEFAULT_DEAD_LETTER_QUEUE.into(),
            replica: None,
        }
    }
}

impl Topology {
    /// A topology whose names all start with `prefix` (tests use one each).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            queue: format!("{prefix}.reporting"),
            dead_letter_exchange: format!("{prefix}.events.dlx"),
            dead_letter_queue: format!("{prefix}.reporting.dead"),
            replica: None,
        }
    }

    /// The topology of replica `name` of a service whose queue would be
    /// `self.queue`: its own queue `<queue>.<name>` and the shared screening
    /// queue.
    pub fn replica(mut self, name: &str) -> Self {
        let replica = Replica::new(name, &self.queue);
        self.queue = format!("{}.{name}", self.queue);
        self.replica = Some(replica);
        self
    }

    /// Declares the exchange a publisher needs (and nothing else).
    pub async fn declare_exchange(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange(),
                FieldTable::default(),
            )
            .await
    }

    /// Declares everything: both exchanges, both queues, their bindings.
    ///
    /// The main queue is a quorum queue: replicated when the broker is a
    /// cluster, always persisted, and with a delivery limit, so a message
    /// that keeps coming back is dead-lettered rather than blocking.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_exchange(channel).await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange(),
                FieldTable::default(),
            )
            .await?;
        let mut dead_args = FieldTable::default();
        dead_args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                durable_queue(),
                dead_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue.as_str().into(),
                self.dead_letter_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let events_queue_args = || {
            let mut args = FieldTable::default();
            args.insert(
                ShortString::from("x-queue-type"),
                AMQPValue::LongString(LongString::from("quorum")),
            );
            args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(LongString::from(self.dead_letter_exchange.as_str())),
            );
            args.insert(
                ShortString::from("x-delivery-limit"),
                AMQPValue::LongLongInt(DELIVERY_LIMIT),
            );
            args
        };
        let mut args = events_queue_args();
        if let Some(replica) = &self.replica {
            args.insert(
                ShortString::from("x-expires"),
                AMQPValue::LongLongInt(replica.queue_expires.as_millis() as i64),
            );
        }
        channel
            .queue_declare(self.queue.as_str().into(), durable_queue(), args)
            .await?;
        self.bind(channel, &self.queue, ALL_AUDREY_EVENTS).await?;
        if let Some(replica) = &self.replica {
            self.bind(channel, &self.queue, &format!("{BARRIER_PREFIX}#"))
                .await?;
            let mut args = events_queue_args();
            args.insert(
                ShortString::from("x-single-active-consumer"),
                AMQPValue::Boolean(true),
            );
            channel
                .queue_declare(replica.screen_queue.as_str().into(), durable_queue(), args)
                .await?;
            self.bind(channel, &replica.screen_queue, ALL_AUDREY_EVENTS)
                .await?;
        }
        Ok(())
    }

    /// Whether this service's queue exists (a replica whose queue is gone
    /// missed the events published meanwhile). Uses a channel of its own:
    /// a passive declare of a missing queue closes its channel.
    pub async fn queue_exists(&self, connection: &lapin::Connection) -> lapin::Result<bool> {
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let found = channel
            .queue_declare(self.queue.as_str().into(), passive, FieldTable::default())
            .await
            .is_ok();
        if found {
            let _ = channel.close(200, "done".into()).await;
        }
        Ok(found)
    }

    async fn bind(&self, channel: &Channel, queue: &str, pattern: &str) -> lapin::Result<()> {
        channel
            .queue_bind(
                queue.into(),
                self.exchange.as_str().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}
