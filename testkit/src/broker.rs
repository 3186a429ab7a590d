//! The real broker (RabbitMQ at 127.0.0.1:5672), with exchange and queue
//! names of a test's own, removed when the test ends.

use audrey_consumer::Topology;

/// The shared broker every test uses (each with names of its own).
pub const AMQP_URL: &str = audrey_consumer::connect::DEFAULT_AMQP_URL;

/// A runtime for the async parts (publishing, reading queues).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A name no other run uses: `kind.what.pid.nanos`.
pub fn unique_name(kind: &str, what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{kind}.{what}.{}.{nanos}", std::process::id())
}

/// A topology no other test uses.
pub fn unique_topology(test: &str) -> Topology {
    Topology::with_prefix(&unique_name("test", test))
}

/// Deletes a test's queues and exchanges when dropped, so that a failing
/// test leaves nothing behind either.
pub struct RemoveOnDrop(pub Topology);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let topology = self.0.clone();
        // A thread of its own: the drop may happen inside a runtime.
        let _ = std::thread::spawn(move || runtime().block_on(remove_topology(&topology))).join();
    }
}

/// Deletes the test's queues and exchanges on the shared broker.
pub async fn remove_topology(topology: &Topology) {
    remove_topologies(AMQP_URL, std::slice::from_ref(topology)).await
}

/// Deletes queues and exchanges (whatever of them exists): a replica's
/// (`Topology::replica`) also has the shared screening queue. A channel for
/// each: a failed delete closes its channel.
pub async fn remove_topologies(url: &str, topologies: &[Topology]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) = lapin::Connection::connect(url, Default::default()).await else {
        return;
    };
    for topology in topologies {
        let screen = topology.replica.as_ref().map(|r| &r.screen_queue);
        for queue in [&topology.queue, &topology.dead_letter_queue]
            .into_iter()
            .chain(screen)
        {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in [&topology.exchange, &topology.dead_letter_exchange] {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Messages in a queue: (ready, consumers).
pub async fn queue_state(url: &str, queue: &str) -> anyhow::Result<(u32, u32)> {
    use anyhow::Context;
    use lapin::options::QueueDeclareOptions;
    let connection = lapin::Connection::connect(url, Default::default()).await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .with_context(|| format!("looking at queue {queue}"))?;
    let _ = connection.close(200, "done".into()).await;
    Ok((declared.message_count(), declared.consumer_count()))
}

/// Messages ready in a queue of the shared broker (not counting those
/// delivered and unacknowledged).
pub async fn ready_messages(queue: &str) -> anyhow::Result<u32> {
    Ok(queue_state(AMQP_URL, queue).await?.0)
}

/// Messages in a queue of the shared broker, ready and delivered but not
/// yet acknowledged together, as `rabbitmqctl list_queues` counts them
/// (AMQP's passive declare tells only the ready ones): 0 means every
/// message put in the queue has been settled by its consumers.
pub fn messages_held(queue: &str) -> anyhow::Result<u64> {
    use anyhow::{anyhow, Context};
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages",
            "--formatter",
            "json",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running rabbitmqctl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(anyhow!(
            "rabbitmqctl list_queues: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    queue_messages_in(&text, queue)
}

/// The `messages` of `queue` in the JSON of `rabbitmqctl list_queues name
/// messages --formatter json`.
fn queue_messages_in(list_queues_json: &str, queue: &str) -> anyhow::Result<u64> {
    let row = queue_row_in(list_queues_json, queue)?;
    row["messages"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no message count for {queue}: {row}"))
}

/// The row of `queue` in the JSON of `rabbitmqctl list_queues name ...
/// --formatter json`.
pub fn queue_row_in(list_queues_json: &str, queue: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::{anyhow, Context};
    let rows: serde_json::Value = serde_json::from_str(list_queues_json)
        .with_context(|| format!("list_queues said {list_queues_json:?}"))?;
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|row| row["name"] == queue)
        .cloned()
        .ok_or_else(|| anyhow!("no queue {queue} in {list_queues_json}"))
}
