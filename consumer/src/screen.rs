//! Screening, on replicas: every replica consumes the shared screening
//! queue as single active consumer, so exactly one of them at a time gets
//! each message. It dead-letters the invalid ones (the replicas' own queues
//! only count them) and acknowledges the rest: poison reaches the
//! dead-letter queue once, not once per replica, and whichever replica is
//! up takes the job over.

use anyhow::{anyhow, Context};
use futures_lite::future::poll_once;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::watch;

use audrey_core::Timestamp;

use crate::dead_letter::{DeadLetters, Settled};
use crate::delivery::Checks;
use crate::observer::Observer;
use crate::topology::Replica;

/// Deliveries the screening consumer takes at a time.
const SCREEN_BATCH: u16 = 500;

/// Screens the replica's screening queue on `channel` (its own, which
/// the caller closes) until `stop`.
pub(crate) async fn screen(
    channel: &Channel,
    replica: &Replica,
    checks: &Checks,
    dead_letters: &DeadLetters,
    observer: &dyn Observer,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    channel
        .basic_qos(SCREEN_BATCH * 2, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            replica.screen_queue.as_str().into(),
            format!("audrey-reporting-{}", replica.name).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("starting to screen")?;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            next = consumer.next() => next,
        };
        let first = first.ok_or_else(|| anyhow!("the broker cancelled the screening"))??;
        let mut deliveries = vec![first];
        while deliveries.len() < usize::from(SCREEN_BATCH) {
            match poll_once(consumer.next()).await {
                Some(Some(delivery)) => deliveries.push(delivery?),
                Some(None) | None => break,
            }
        }
        let now = Timestamp::now();
        let mut last_settled_by_ack = None;
        for delivery in &deliveries {
            let settled = match crate::delivery::decode(delivery, checks, now) {
                Ok(_) => Settled::Published,
                Err(error) => {
                    dead_letters
                        .send(channel, delivery, &error, observer)
                        .await?
                }
            };
            if settled == Settled::Published {
                last_settled_by_ack = Some(delivery.delivery_tag);
            }
        }
        if let Some(tag) = last_settled_by_ack {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging screened messages")?;
        }
    }
}
