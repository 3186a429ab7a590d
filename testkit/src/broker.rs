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
///
/// A clean-up must never hang a test run: over AMQP it gets 30 s in all
/// (a lapin connection the broker dropped halfway was once seen to wait
/// forever, holding a whole CI run). If that is not enough, what remains on
/// the shared broker is deleted with `rabbitmqctl`.
pub async fn remove_topologies(url: &str, topologies: &[Topology]) {
    let over_amqp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        remove_over_amqp(url, topologies),
    )
    .await;
    if over_amqp.is_err() && url == AMQP_URL {
        eprintln!("removing the test's queues over AMQP timed out; using rabbitmqctl");
        for topology in topologies {
            remove_with_rabbitmqctl(topology);
        }
    }
}

async fn remove_over_amqp(url: &str, topologies: &[Topology]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) = lapin::Connection::connect(url, Default::default()).await else {
        return;
    };
    for topology in topologies {
        for queue in queues_of(topology) {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
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

/// The queues a topology declares.
fn queues_of(topology: &Topology) -> impl Iterator<Item = &str> {
    let screen = topology.replica.as_ref().map(|r| r.screen_queue.as_str());
    [topology.queue.as_str(), topology.dead_letter_queue.as_str()]
        .into_iter()
        .chain(screen)
}

/// [`remove_over_amqp`] through `rabbitmqctl` on the shared broker (each
/// call at most 30 s); what does not exist is skipped.
fn remove_with_rabbitmqctl(topology: &Topology) {
    let run = |args: &[&str]| {
        let _ = std::process::Command::new("timeout")
            .arg("30")
            .arg("rabbitmqctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
    };
    for queue in queues_of(topology) {
        run(&["-q", "delete_queue", queue]);
    }
    for exchange in [&topology.exchange, &topology.dead_letter_exchange] {
        run(&[
            "-q",
            "eval",
            &format!(
                "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"{exchange}\">>), \
                 false, <<\"cleanup\">>)."
            ),
        ]);
    }
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
    let listed = rabbitmqctl(&[
        "-q",
        "list_queues",
        "name",
        "messages",
        "--formatter",
        "json",
    ])?;
    queue_messages_in(&listed, queue)
}

/// `rabbitmqctl ARGS` on the shared broker, without standard input: its
/// standard output, or an error with both outputs when it fails.
pub fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    use anyhow::{anyhow, Context};
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running rabbitmqctl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(anyhow!(
            "rabbitmqctl {args:?}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rabbitmqctl list_<what> name` lists on the shared broker.
    fn listed(what: &str) -> String {
        rabbitmqctl(&["-q", what, "name"]).unwrap()
    }

    #[test]
    fn the_rabbitmqctl_fallback_removes_queues_and_exchanges() {
        let topology = unique_topology("fallback");
        runtime().block_on(async {
            let connection = lapin::Connection::connect(AMQP_URL, Default::default())
                .await
                .unwrap();
            let channel = connection.create_channel().await.unwrap();
            topology.declare(&channel).await.unwrap();
            let _ = connection.close(200, "declared".into()).await;
        });
        let prefix = topology.queue.rsplit_once('.').unwrap().0.to_owned();
        assert!(listed("list_queues").contains(&prefix));
        remove_with_rabbitmqctl(&topology);
        assert!(!listed("list_queues").contains(&prefix), "queues left");
        assert!(
            !listed("list_exchanges").contains(&prefix),
            "exchanges left"
        );
    }
}
