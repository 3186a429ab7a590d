//! The reference publisher: what a config server written in Rust embeds to
//! publish its observations, and what `simulate`, the benchmarks and the
//! tests use.
//!
//! Messages are persistent, `content-type: application/cloudevents+json`,
//! routing key = the event type, published `mandatory` with publisher
//! confirms: `publish` returns once the broker has taken responsibility for
//! the event (or says why it could not).

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use thiserror::Error;

use audrey_core::Event;

use crate::connect::Broker;
use crate::topology::Topology;

/// The content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The content type of a binary-mode CloudEvent's body: its data.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// How an event travels: the service accepts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// The body is the whole event (`application/cloudevents+json`).
    Structured,
    /// The attributes are `ce-` headers and the body is the event's data
    /// (the RabbitMQ binding of CloudEvents).
    Binary,
}

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{0:#}")]
    Connect(anyhow::Error),
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error(
        "no queue is bound for routing key `{0}`: start audrey-reporting (it declares its queue) first"
    )]
    Unroutable(String),
}

/// A confirmed publisher on one channel.
pub struct Publisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
}

impl Publisher {
    /// Connects, makes sure the exchange exists and enables confirms.
    ///
    /// The exchange is declared passively first, which needs no permission:
    /// a config server's broker user may be allowed to publish to the
    /// exchange and nothing else (README, "Broker users with least
    /// privilege"). Only a missing exchange is declared (durable topic, as
    /// the service declares it), which needs the configure permission.
    pub async fn connect(url: &str, topology: &Topology) -> Result<Self, PublishError> {
        Self::connect_to(&Broker::new(url), topology).await
    }

    /// [`Publisher::connect`] to a broker that may need its own CA (TLS).
    pub async fn connect_to(broker: &Broker, topology: &Topology) -> Result<Self, PublishError> {
        let connection = broker
            .connect("audrey-publisher")
            .await
            .map_err(PublishError::Connect)?;
        let mut channel = connection.create_channel().await?;
        if let Err(error) = exchange_exists(&channel, topology).await {
            if !is_not_found(&error) {
                return Err(error.into());
            }
            // A failed passive declare closed its channel.
            channel = connection.create_channel().await?;
            topology.declare_exchange(&channel).await?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
            exchange: topology.exchange.clone(),
        })
    }

    /// Publishes one event and waits for the broker's confirm.
    pub async fn publish(&self, event: &Event) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    /// Publishes events in order, then waits for all their confirms
    /// (pipelined: one round trip for the lot).
    pub async fn publish_all(&self, events: &[Event]) -> Result<(), PublishError> {
        self.publish_all_as(events, ContentMode::Structured).await
    }

    /// [`Publisher::publish_all`] in the given content mode.
    pub async fn publish_all_as(
        &self,
        events: &[Event],
        mode: ContentMode,
    ) -> Result<(), PublishError> {
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            let properties = BasicProperties::default()
                .with_message_id(event.id().as_str().into())
                .with_type(ShortString::from(event.event_type().name()));
            let routing_key = event.event_type().name();
            let confirm = match mode {
                ContentMode::Structured => {
                    let properties = properties.with_content_type(CONTENT_TYPE.into());
                    self.send(routing_key, &event.to_bytes(), properties)
                        .await?
                }
                ContentMode::Binary => {
                    let properties = properties
                        .with_content_type(DATA_CONTENT_TYPE.into())
                        .with_headers(binary_headers(event));
                    let data = serde_json::to_vec(&event.data_json())
                        .expect("a JSON value always serialises");
                    self.send(routing_key, &data, properties).await?
                }
            };
            confirms.push((routing_key, confirm));
        }
        for (routing_key, confirm) in confirms {
            check(confirm.await?, routing_key)?;
        }
        Ok(())
    }

    /// Publishes arbitrary bytes (anything, valid or not) with the given
    /// routing key and extra headers, confirmed. Tools use it to replay
    /// raw messages; tests use it to send garbage.
    pub async fn publish_raw(
        &self,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), PublishError> {
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type(CONTENT_TYPE.into());
        self.publish_message(routing_key, body, properties).await
    }

    /// Publishes arbitrary bytes with the given properties (persistent),
    /// confirmed: a message exactly as another publisher would send it.
    pub async fn publish_message(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let confirm = self.send(routing_key, body, properties).await?;
        check(confirm.await?, routing_key)
    }

    async fn send(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<lapin::PublisherConfirm, PublishError> {
        let properties = properties.with_delivery_mode(2);
        Ok(self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?)
    }

    /// Publishes replication barrier `id`, confirmed, to every replica's
    /// queue: a replica that has applied it has applied everything
    /// published before.
    pub async fn publish_barrier(&self, id: &str) -> Result<(), PublishError> {
        let routing_key = format!("{}{id}", crate::topology::BARRIER_PREFIX);
        let properties = BasicProperties::default().with_message_id(id.into());
        let confirm = self.send(&routing_key, id.as_bytes(), properties).await?;
        check(confirm.await?, &routing_key)
    }

    /// Closes the channel and connection cleanly.
    pub async fn close(self) -> Result<(), PublishError> {
        self.channel.close(200, "done".into()).await?;
        self.connection.close(200, "done".into()).await?;
        Ok(())
    }
}

/// A passive declare: fails with NOT_FOUND when the exchange is missing,
/// and needs no permission on the broker.
async fn exchange_exists(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            topology.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await
}

/// Whether the broker answered 404 NOT_FOUND.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404)
}

fn check(confirmation: Confirmation, routing_key: &str) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable(routing_key.into())),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

/// The `ce-` headers of an event in binary mode: every attribute of its
/// canonical form but its data and the data's content type.
fn binary_headers(event: &Event) -> FieldTable {
    let mut headers = FieldTable::default();
    if let serde_json::Value::Object(attributes) = event.to_json() {
        for (name, value) in attributes {
            if let (serde_json::Value::String(value), false) =
                (value, matches!(name.as_str(), "data" | "datacontenttype"))
            {
                headers.insert(ShortString::from(format!("ce-{name}")), header(&value));
            }
        }
    }
    headers
}

/// A header value for [`Publisher::publish_raw`].
pub fn header(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}
