//! Dead-lettering an invalid message: published to the dead-letter
//! exchange with the reason in its headers and confirmed, or, if that
//! fails, rejected without requeue so that the broker dead-letters it (the
//! queue's `x-dead-letter-exchange`), without our headers.

use anyhow::Context;
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tracing::warn;

use audrey_core::contract::DecodeError;
use audrey_core::Timestamp;

use crate::observer::Observer;

/// Header carrying the stable reason label of a dead letter.
pub const REASON_HEADER: &str = "x-audrey-reason";
/// Header carrying the full, human-readable error of a dead letter.
pub const ERROR_HEADER: &str = "x-audrey-error";

/// A confirmed channel to the dead-letter exchange.
pub(crate) struct DeadLetters {
    /// In confirm mode: a dead letter counts as sent once confirmed.
    channel: Channel,
    /// The dead-letter exchange.
    exchange: String,
}

/// What became of an invalid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// In the dead-letter queue with our headers: acknowledge it.
    Published,
    /// Rejected already (the broker dead-letters it): do not acknowledge.
    Rejected,
}

impl DeadLetters {
    pub(crate) async fn open(connection: &Connection, exchange: &str) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: exchange.to_owned(),
        })
    }

    /// Closes the channel, waiting for the broker's answer. Called before
    /// the connection is closed: a channel left to close itself when
    /// dropped can still be closing when the connection's close is
    /// answered, and lapin then logs an ERROR for what was a clean stop.
    pub(crate) async fn close(&self, reason: &str) {
        let _ = self.channel.close(200, reason.into()).await;
    }

    /// Dead-letters `delivery` (received on `from`) for `error`, counted
    /// and logged once.
    pub(crate) async fn send(
        &self,
        from: &Channel,
        delivery: &Delivery,
        error: &DecodeError,
        observer: &dyn Observer,
    ) -> anyhow::Result<Settled> {
        let reason = error.reason();
        observer.dead_lettered(reason);
        let message = error.to_string();
        warn!(
            reason,
            error = %message,
            routing_key = %delivery.routing_key,
            bytes = delivery.data.len(),
            "dead-lettered an invalid message"
        );
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        headers.insert(ShortString::from(REASON_HEADER), text(reason));
        headers.insert(ShortString::from(ERROR_HEADER), text(&message));
        headers.insert(
            ShortString::from("x-audrey-original-exchange"),
            text(delivery.exchange.as_str()),
        );
        headers.insert(
            ShortString::from("x-audrey-original-routing-key"),
            text(delivery.routing_key.as_str()),
        );
        headers.insert(
            ShortString::from("x-audrey-dead-lettered-at"),
            text(&Timestamp::now().to_rfc3339()),
        );
        let properties: BasicProperties = delivery.properties.clone().with_headers(headers);
        let published = async {
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    delivery.routing_key.clone(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await?
                .await?;
            Ok::<bool, lapin::Error>(matches!(confirm, Confirmation::Ack(_)))
        }
        .await;
        match published {
            Ok(true) => Ok(Settled::Published),
            other => {
                warn!(
                    ?other,
                    "could not publish the dead letter; rejecting it instead"
                );
                from.basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
                    .await
                    .context("rejecting an invalid message")?;
                Ok(Settled::Rejected)
            }
        }
    }
}
