//! The service on a RabbitMQ cluster: three nodes of the test's own
//! (testkit's `cluster`, on loopback ports of their own; the shared broker
//! on 5672 is not touched). While a realistic stream is published, the
//! node the service is connected to is SIGKILLed, then the leader of its
//! quorum queue: every event is applied exactly once, and reports are
//! served throughout. How long ingestion and reports paused after each kill
//! is printed (`cargo test --release --test cluster -- --nocapture`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audrey_consumer::{Broker, Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::{Event, Timestamp};
use audrey_store::Store;
use audrey_testkit::cluster::Cluster;
use common::*;

/// Values sampled over time: (when, value).
type Samples = Arc<Mutex<Vec<(Instant, f64)>>>;

/// Sets a flag when dropped: background threads stop even when the test
/// fails halfway.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `/metrics` every 50 ms: the events the service has applied, and
/// whether it is connected to the broker.
fn sample_consumed(
    port: u16,
    stop: Arc<AtomicBool>,
) -> (Samples, Samples, std::thread::JoinHandle<()>) {
    let (consumed, connected) = (Samples::default(), Samples::default());
    let (into, into_connected) = (Arc::clone(&consumed), Arc::clone(&connected));
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(r) = get(port, "/metrics", &[]).filter(|r| r.status == 200) {
                let text = r.text();
                let now = Instant::now();
                let applied = metric_sum(&text, "audrey_events_consumed_total");
                into.lock().unwrap().push((now, applied));
                let up = metric_sum(&text, "audrey_amqp_connected");
                into_connected.lock().unwrap().push((now, up));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (consumed, connected, thread)
}

/// One report request: when it was sent, its status (0: no answer) and
/// how long the answer took.
#[derive(Debug, Clone, Copy)]
struct ReportAnswer {
    at: Instant,
    status: u16,
    took: Duration,
}

/// Asks for `/reports/deployments` every 50 ms.
fn poll_reports(
    port: u16,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<ReportAnswer>>>, std::thread::JoinHandle<()>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&answers);
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let at = Instant::now();
            let status = get(port, "/reports/deployments", &[]).map_or(0, |r| r.status);
            into.lock().unwrap().push(ReportAnswer {
                at,
                status,
                took: at.elapsed(),
            });
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (answers, thread)
}

/// Publishes `events` in order with the reference publisher, 50 at a time
/// every ~50 ms until `hurry` (then as fast as confirms come back; and
/// slower when few are left, so that some remain until then). A
/// publish that fails (its node died) or is not confirmed within 15 s is
/// published again on a new connection to whichever node answers:
/// at least once, as a config server would. Records the events confirmed
/// over time.
fn publish_reconnecting(
    broker: Broker,
    topology: Topology,
    events: Vec<Event>,
    hurry: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (Samples, std::thread::JoinHandle<usize>) {
    let confirmed = Samples::default();
    let into = Arc::clone(&confirmed);
    let thread = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut publisher: Option<Publisher> = None;
            let mut next = 0;
            let mut retries = 0;
            while next < events.len() && !stop.load(Ordering::SeqCst) {
                let publisher_now = match publisher.take() {
                    Some(p) => p,
                    None => match Publisher::connect_to(&broker, &topology).await {
                        Ok(p) => p,
                        Err(error) => {
                            eprintln!("publisher: connecting failed ({error}); retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let hurried = hurry.load(Ordering::SeqCst);
                let size = match (hurried, events.len() - next) {
                    (true, _) => 500,
                    (false, left) if left > 6_000 => 50,
                    (false, _) => 5,
                };
                let chunk = &events[next..(next + size).min(events.len())];
                let sent =
                    tokio::time::timeout(Duration::from_secs(15), publisher_now.publish_all(chunk))
                        .await;
                match sent {
                    Ok(Ok(())) => {
                        next += chunk.len();
                        into.lock().unwrap().push((Instant::now(), next as f64));
                        publisher = Some(publisher_now);
                        if !hurried {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Ok(Err(error)) => {
                        retries += 1;
                        eprintln!("publisher: {error}; publishing the chunk again elsewhere");
                    }
                    Err(_) => {
                        retries += 1;
                        eprintln!("publisher: no confirm within 15 s; publishing the chunk again");
                    }
                }
            }
            if let Some(p) = publisher {
                let _ = p.close().await;
            }
            retries
        })
    });
    (confirmed, thread)
}

/// The longest stretch without progress in `samples` that ends in
/// `(from, to]`: from the last increase before it to the first increase
/// that ends it (at the sampling's resolution, ~50 ms).
fn longest_pause(samples: &[(Instant, f64)], from: Instant, to: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    let mut last_change: Option<(Instant, f64)> = None;
    for &(when, value) in samples {
        match last_change {
            Some((since, before)) if value > before => {
                if when > from && when <= to {
                    longest = longest.max(when - since);
                }
                last_change = Some((when, value));
            }
            Some(_) => {}
            None => last_change = Some((when, value)),
        }
    }
    longest
}

/// The longest stretch in `(from, to]` during which `samples` said 0.
fn longest_zero(samples: &[(Instant, f64)], from: Instant, to: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Instant> = None;
    for &(when, value) in samples.iter().filter(|s| s.0 > from && s.0 <= to) {
        match (value == 0.0, since) {
            (true, None) => since = Some(when),
            (false, Some(start)) => {
                longest = longest.max(when - start);
                since = None;
            }
            _ => {}
        }
    }
    longest
}

/// The longest an event confirmed by the broker waited to be applied,
/// among those applied in `(from, to]`: for each sample of the applied
/// count, the time since the publisher had that many confirmed. Unlike a
/// pause in the applied count, a pause of the publisher does not show.
fn longest_wait_to_apply(
    applied: &[(Instant, f64)],
    confirmed: &[(Instant, f64)],
    from: Instant,
    to: Instant,
) -> Duration {
    applied
        .iter()
        .filter(|s| s.0 > from && s.0 <= to)
        .filter_map(|&(when, count)| {
            let confirmed_at = confirmed.iter().find(|c| c.1 >= count)?.0;
            when.checked_duration_since(confirmed_at)
        })
        .max()
        .unwrap_or_default()
}

/// Report requests sent in `[from, to)`: how many, the slowest answer, and
/// the longest time between two answers.
fn report_figures(
    answers: &[ReportAnswer],
    from: Instant,
    to: Instant,
) -> (usize, Duration, Duration) {
    let within: Vec<_> = answers
        .iter()
        .filter(|a| a.at >= from && a.at < to)
        .collect();
    let slowest = within.iter().map(|a| a.took).max().unwrap_or_default();
    let gap = within
        .windows(2)
        .map(|w| (w[1].at + w[1].took) - (w[0].at + w[0].took))
        .max()
        .unwrap_or_default();
    (within.len(), slowest, gap)
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The latest value sampled.
fn latest(samples: &Samples) -> f64 {
    samples.lock().unwrap().last().map_or(0.0, |s| s.1)
}

/// Waits (up to `timeout`) until exactly one node holds the service's
/// connection, and returns it.
fn service_node(cluster: &Cluster, timeout: Duration) -> usize {
    let mut nodes = Vec::new();
    wait_until(
        timeout,
        "the cluster to list the service's connection",
        || {
            nodes = cluster
                .connection_nodes("audrey-reporting")
                .unwrap_or_default();
            nodes.len() == 1
        },
    );
    nodes[0]
}

/// Waits until every replica of `queue` is online again.
fn wait_all_online(cluster: &Cluster, queue: &str, timeout: Duration) {
    let mut last = None;
    let started = Instant::now();
    while started.elapsed() < timeout {
        match cluster.queue_members(queue) {
            Ok(members) if members.online == cluster.all() && members.leader.is_some() => return,
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the replicas of {queue} did not all come back online within {timeout:?}: {last:?}");
}

#[test]
fn killing_the_services_node_then_the_queue_leader_loses_nothing_and_reports_stay_up() {
    let cluster = Cluster::start(3).expect("a three-node RabbitMQ cluster");
    let topology = unique_topology("cluster");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let urls = cluster.urls();
    // The queues declared through the last node: their leader is there
    // (RabbitMQ places it on the declaring node), while the service
    // connects to the first. The first kill then takes a follower (the
    // service's node), the second the leader: two different failovers.
    runtime().block_on(async {
        let connection = lapin::Connection::connect(&cluster.url(3), Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.declare(&channel).await.unwrap();
        let _ = connection.close(200, "declared".into()).await;
    });
    let service = Service::start_with_url(&data, &topology, &urls.join(","), &[]);
    service.wait_ready(Duration::from_secs(60));

    // The service's quorum queues have a replica on every node.
    for queue in [&topology.queue, &topology.dead_letter_queue] {
        let members = cluster.queue_members(queue).unwrap();
        assert_eq!(
            members.members,
            cluster.all(),
            "{queue} is replicated on every node: {members:?}"
        );
        assert_eq!(members.online, cluster.all(), "{queue}: {members:?}");
    }
    let first_node = service_node(&cluster, Duration::from_secs(30));
    let leader = cluster.queue_members(&topology.queue).unwrap().leader;
    eprintln!("service on t{first_node}; leader of its queue on {leader:?}");

    // The publisher starts on a node that is neither (when there is one).
    let publisher_node = cluster
        .all()
        .into_iter()
        .find(|n| *n != first_node && Some(*n) != leader)
        .unwrap_or(if first_node == 1 { 2 } else { 1 });
    let mut publisher_urls = urls.clone();
    publisher_urls.rotate_left(publisher_node - 1);
    let events = realistic_stream(51, 700, 5);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = SetOnDrop(Arc::clone(&stop));
    let hurry = Arc::new(AtomicBool::new(false));
    let (confirmed, publishing) = publish_reconnecting(
        Broker::cluster(publisher_urls),
        topology.clone(),
        events.clone(),
        Arc::clone(&hurry),
        Arc::clone(&stop),
    );
    let (consumed, connected, consumed_sampler) = sample_consumed(service.port, Arc::clone(&stop));
    let (answers, report_poller) = poll_reports(service.port, Arc::clone(&stop));
    let consumed_past = |target: f64, what: &str| {
        wait_until(Duration::from_secs(60), what, || {
            latest(&consumed) >= target
        });
    };
    consumed_past(1_000.0, "the first thousand events to be applied");

    // 1. The node the service is connected to.
    let at_kill = latest(&consumed);
    let first_kill = Instant::now();
    cluster.kill(first_node);
    eprintln!("SIGKILLed t{first_node} (the service's node) after {at_kill} events");
    consumed_past(
        at_kill + 300.0,
        "ingestion to go on after the service's node was killed",
    );
    let second_node = service_node(&cluster, Duration::from_secs(30));
    assert_ne!(second_node, first_node);
    eprintln!("service reconnected to t{second_node}");
    let restarting = Instant::now();
    cluster
        .start_node(first_node)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log_tail(first_node, 30)));
    wait_all_online(&cluster, &topology.queue, Duration::from_secs(90));
    eprintln!(
        "t{first_node} back in the cluster, every replica online, in {:.1} s",
        restarting.elapsed().as_secs_f64()
    );

    // 2. The leader of the service's queue.
    let leader = cluster
        .queue_members(&topology.queue)
        .unwrap()
        .leader
        .expect("the queue has a leader");
    let at_kill = latest(&consumed);
    let second_kill = Instant::now();
    cluster.kill(leader);
    eprintln!(
        "SIGKILLed t{leader} (the leader of {}) after {at_kill} events",
        topology.queue
    );
    consumed_past(
        at_kill + 300.0,
        "ingestion to go on after the queue's leader was killed",
    );
    let new_leader = cluster.queue_members(&topology.queue).unwrap().leader;
    eprintln!("new leader: {new_leader:?}");
    consumed_past(
        latest(&consumed) + 500.0,
        "ingestion to go on under the new leader",
    );

    // The rest of the stream, then everything applied.
    let hurried = Instant::now();
    hurry.store(true, Ordering::SeqCst);
    let retries = publishing.join().expect("the publisher thread");
    assert_eq!(
        latest(&confirmed) as usize,
        events.len(),
        "every event was confirmed"
    );
    let expected = events.len() as f64;
    let applying = Instant::now();
    while latest(&consumed) < expected {
        if applying.elapsed() > Duration::from_secs(120) {
            // What is missing, and where: the service's count and log,
            // what the broker still holds for it, and what the store holds.
            let broker = cluster.queue_diagnostics(&topology.queue);
            let log = last_lines(&service.log_text(), 60);
            stop.store(true, Ordering::SeqCst);
            let _ = service.stop();
            let logged = Store::open(&data).map(|s| s.logged_events());
            panic!(
                "not every event was applied within 120 s: {} of {expected} distinct events \
                 counted by the service, {logged:?} in its store\n{broker}\n---- service log \
                 (last 60 lines):\n{log}",
                latest(&consumed),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing left to deliver (redeliveries included) before counting.
    wait_until(
        Duration::from_secs(60),
        "the service's queue to hold nothing, acknowledged or not",
        || cluster.queue_messages(&topology.queue).ok() == Some(0),
    );
    stop.store(true, Ordering::SeqCst);
    consumed_sampler.join().unwrap();
    report_poller.join().unwrap();

    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        expected,
        "each distinct event applied once"
    );
    let duplicates = metric_sum(&metrics, "audrey_events_duplicate_total");

    // Reports were served throughout.
    let answers = answers.lock().unwrap().clone();
    let failed: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} report requests did not get a 200: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(10)]
    );

    // The figures.
    let consumed = consumed.lock().unwrap().clone();
    let confirmed = confirmed.lock().unwrap().clone();
    let connected = connected.lock().unwrap().clone();
    eprintln!(
        "---- failover figures: {} events, {duplicates} redelivered duplicates skipped, {retries} chunks published again",
        events.len()
    );
    for (what, from, to) in [
        (
            format!("kill of t{first_node}, the service's node"),
            first_kill,
            restarting,
        ),
        (format!("restart of t{first_node}"), restarting, second_kill),
        (
            format!("kill of t{leader}, the queue's leader"),
            second_kill,
            hurried,
        ),
    ] {
        let (requests, slowest, gap) = report_figures(&answers, from, to);
        eprintln!(
            "{what} ({:.1} s observed): ingestion paused {} ms (longest time without progress \
             in the applied count); the longest a confirmed event waited to be applied {} ms; \
             the service was disconnected for {} ms; the publisher's longest wait for confirms \
             {} ms; reports: {requests} requests, all 200, slowest {} ms, longest time between \
             two answers {} ms",
            (to - from).as_secs_f64(),
            longest_pause(&consumed, from, to).as_millis(),
            longest_wait_to_apply(&consumed, &confirmed, from, to).as_millis(),
            longest_zero(&connected, from, to).as_millis(),
            longest_pause(&confirmed, from, to).as_millis(),
            slowest.as_millis(),
            gap.as_millis(),
        );
    }

    assert_eq!(service.stop(), Some(0), "SIGTERM ends the service with 0");
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}
