//! Where events flow on the broker, declared idempotently on each
//! connection so that a fresh broker (or a restarted one) needs no setup.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// The routing-key pattern that matches every Audrey event type.
pub const ALL_AUDREY_EVENTS: &str = "org.aeolusproject.audrey.#";

/// A message redelivered this many times (the consumer crashing on it, say)
/// is dead-lettered by the broker instead of looping forever.
pub const DELIVERY_LIMIT: i64 = 20;

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
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: DEFAULT_EXCHANGE.into(),
            queue: DEFAULT_QUEUE.into(),
            dead_letter_exchange: DEFAULT_DEAD_LETTER_EXCHANGE.into(),
            dead_letter_queue: DEFAULT_DEAD_LETTER_QUEUE.into(),
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
        }
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
        channel
            .queue_declare(self.queue.as_str().into(), durable_queue(), args)
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                ALL_AUDREY_EVENTS.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
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
