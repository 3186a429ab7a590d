//! Several replicas of the service on the shared broker (`serve --replica
//! NAME`, a queue each, one shared screening queue): they serve identical
//! reports once caught up, whatever happened to each of them; invalid
//! messages are dead-lettered once for all; a replica that is behind says
//! so on `/health?max-lag=`; a new replica starts from a peer's checkpoint.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audrey_consumer::ingest::REASON_HEADER;
use audrey_consumer::publisher::header;
use audrey_consumer::{Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::{Event, Timestamp};
use audrey_store::Store;
use audrey_testkit::http::Client;
use common::*;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};

/// Replica queues outlive a replica this long: should a test die without
/// removing them, the broker does.
const QUEUE_EXPIRES: &str = "10m";

/// Each replica's `--prefetch` (with batches of 1,000, half of it).
const PREFETCH: &str = "2000";

/// Starts replica `name` of the service whose queue is `base.queue`, with
/// its store in `dir/name`.
fn start_replica(dir: &Path, base: &Topology, name: &str, extra: &[&str]) -> Service {
    let mut args = vec![
        "--replica",
        name,
        "--replica-queue-expires",
        QUEUE_EXPIRES,
        "--max-event-bytes",
        "4096",
        // A window smaller than the test's burst, so that a frozen replica
        // finds events still waiting in its queue (and says it is behind).
        "--prefetch",
        PREFETCH,
        "--batch-size",
        "1000",
    ];
    args.extend_from_slice(extra);
    Service::start(&dir.join(name), base, &args)
}

/// A bad message of each kind the contract names (as in `tests/ingest.rs`):
/// routing key, body, the reason it must be refused with.
fn poison(n: usize) -> (&'static str, Vec<u8>, &'static str) {
    let envelope = |data: serde_json::Value, t: &str| {
        serde_json::json!({
            "specversion": "1.0", "id": format!("bad-{n}"), "source": "/configserver/evil",
            "type": format!("org.aeolusproject.audrey.{t}"), "time": "2026-11-25T14:00:00Z",
            "deployment": "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53", "data": data
        })
        .to_string()
        .into_bytes()
    };
    let rk = "org.aeolusproject.audrey.instance.contacted";
    match n % 6 {
        0 => (rk, format!("not JSON {n} {{").into_bytes(), "not_json"),
        1 => (
            rk,
            format!("{{\"hello\": {n}}}").into_bytes(),
            "not_cloudevent",
        ),
        2 => (
            rk,
            envelope(serde_json::json!({}), "instance.exploded"),
            "unknown_type",
        ),
        3 => (
            rk,
            envelope(serde_json::json!({}), "instance.contacted"),
            "missing_field",
        ),
        4 => (
            rk,
            envelope(
                serde_json::json!({"instance": "not-a-uuid"}),
                "instance.contacted",
            ),
            "invalid_field",
        ),
        _ => (rk, vec![b'x'; 5000], "too_large"),
    }
}

/// Publishes `valid` in order with poison messages `poisons` spread evenly
/// among them (each with its number in the `x-test-seq` header).
async fn publish_with_poison(
    topology: &Topology,
    valid: &[Event],
    poisons: std::ops::Range<usize>,
) {
    let publisher = Publisher::connect(AMQP_URL, topology).await.unwrap();
    let every = (valid.len() / poisons.len().max(1)).max(1);
    let mut poisons = poisons.peekable();
    for chunk in valid.chunks(every) {
        publisher.publish_all(chunk).await.unwrap();
        if let Some(n) = poisons.next() {
            let (routing_key, body, _) = poison(n);
            let mut headers = FieldTable::default();
            headers.insert("x-test-seq".into(), header(&n.to_string()));
            publisher
                .publish_raw(routing_key, &body, headers)
                .await
                .unwrap();
        }
    }
    for n in poisons {
        let (routing_key, body, _) = poison(n);
        let mut headers = FieldTable::default();
        headers.insert("x-test-seq".into(), header(&n.to_string()));
        publisher
            .publish_raw(routing_key, &body, headers)
            .await
            .unwrap();
    }
    publisher.close().await.unwrap();
}

/// The metrics of a running replica.
fn metrics(replica: &Service) -> String {
    replica.get("/metrics").text()
}

/// The value of attribute `name` in the first element of `xml` that has it.
fn attribute(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = xml[start..].find('"')?;
    Some(xml[start..start + end].to_owned())
}

/// `/health` (with `query`): its status and body.
fn health(replica: &Service, query: &str) -> (u16, String) {
    let r = replica.get(&format!("/health{query}"));
    (r.status, r.text())
}

/// Waits until each replica has applied everything (`as-of` is the latest
/// event's time, nothing waits in its queue, `/health?max-lag=1s` is 200).
fn wait_caught_up(replicas: &[&Service], as_of: &str, timeout: Duration) {
    for replica in replicas {
        let started = Instant::now();
        loop {
            let last = health(replica, "?max-lag=1s");
            let (status, body) = &last;
            if *status == 200
                && attribute(body, "as-of").as_deref() == Some(as_of)
                && attribute(body, "waiting").as_deref() == Some("0")
            {
                break;
            }
            assert!(
                started.elapsed() < timeout,
                "replica on port {} did not catch up (as-of {as_of}) within {timeout:?}: {last:?}\nlog:\n{}",
                replica.port,
                replica.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every report a reader of the workload could ask for.
fn report_paths(expected: &MemoryViews) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/reports/configserver",
        "/reports/deployments",
        "/reports/deployments?status=incomplete",
        "/reports/deployments?status=error",
        "/reports/deployments?status=success",
        "/reports/deployments?status=stalled",
        "/reports/deployments?offset=0&limit=1000",
        "/reports/deployments?offset=17&limit=9",
        "/reports/deployments?status=stalled&offset=3&limit=5",
    ]
    .map(String::from)
    .to_vec();
    for (n, id) in expected.deployments.keys().enumerate() {
        paths.push(format!("/reports/deployment/{id}"));
        paths.push(format!("/reports/deployment/{id}/events"));
        if n == 0 {
            paths.push(format!("/reports/1/deployment/{id}"));
            paths.push(format!("/reports/2/deployment/{id}"));
            paths.push(format!("/reports/deployment/{id}/events?offset=2&limit=3"));
        }
    }
    for (id, state) in &expected.instances {
        paths.push(format!("/reports/instance/{id}"));
        paths.push(format!("/reports/instance/{id}/events"));
        for name in state.services.keys() {
            paths.push(format!("/reports/instance/{id}/service/{name}"));
        }
    }
    paths
}

/// One answer, as compared across replicas.
#[derive(Debug)]
struct Compared {
    status: u16,
    etag: Option<String>,
    skeleton: String,
    durations: Vec<f64>,
    body: String,
}

impl Compared {
    /// The same report: same status, ETag and body, durations up to now
    /// within the seconds between the two requests (10 s at most).
    fn same_as(&self, other: &Compared) -> bool {
        self.status == other.status
            && self.etag == other.etag
            && self.skeleton == other.skeleton
            && self.durations.len() == other.durations.len()
            && self
                .durations
                .iter()
                .zip(&other.durations)
                .all(|(a, b)| (a - b).abs() <= 10.0)
    }
}

/// Asks every replica for every path, in XML and in JSON: the same status,
/// ETag and body from each (but for what depends on the instant it was
/// asked), or what differs first. Returns how many answers were 200.
fn compare_reports(replicas: &[&Service], paths: &[String], as_of: &str) -> Result<usize, String> {
    let mut clients: Vec<Client> = replicas.iter().map(|r| Client::new(r.port)).collect();
    let mut ok = 0;
    for path in paths {
        for accept in [None, Some("application/json")] {
            let mut first: Option<Compared> = None;
            for (n, client) in clients.iter_mut().enumerate() {
                let r = client
                    .get(path, accept)
                    .map_err(|e| format!("GET {path} from replica {n}: {e:#}"))?;
                let body = r.text();
                let (skeleton, durations) = split_time_relative(&body);
                let answer = Compared {
                    status: r.status,
                    etag: r.header("etag").map(str::to_owned),
                    skeleton,
                    durations,
                    body,
                };
                match &first {
                    None => {
                        if answer.status == 200 {
                            ok += 1;
                            let as_of_shown = answer.body.contains(&format!("as-of=\"{as_of}\""))
                                || answer.body.contains(&format!("\"as_of\":\"{as_of}\""));
                            if !as_of_shown || answer.etag.is_none() {
                                return Err(format!(
                                    "GET {path} ({accept:?}): not as of {as_of}, or no ETag: {answer:?}"
                                ));
                            }
                        }
                        first = Some(answer);
                    }
                    Some(expected) if !expected.same_as(&answer) => {
                        return Err(format!(
                            "GET {path} ({accept:?}): replica 0 said {} {:?} {}\nreplica {n} said {} {:?} {}",
                            expected.status,
                            expected.etag,
                            expected.body,
                            answer.status,
                            answer.etag,
                            answer.body
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(ok)
}

#[test]
fn what_depends_on_the_instant_of_a_request_is_told_apart() {
    let (a, da) = split_time_relative(
        "<x><duration-seconds>12.5</duration-seconds><e>last contacted 56 min ago; since just now</e></x>",
    );
    let (b, db) = split_time_relative(
        "<x><duration-seconds>13.001</duration-seconds><e>last contacted 57 min ago; since 2 s ago</e></x>",
    );
    assert_eq!(a, b);
    assert_eq!((da, db), (vec![12.5], vec![13.001]));
    let (j, dj) = split_time_relative("{\"duration_seconds\":3.25,\"name\":\"a go\"}");
    assert_eq!(j, "{\"duration_seconds\":#,\"name\":\"a go\"}");
    assert_eq!(dj, vec![3.25]);
    assert_ne!(
        split_time_relative("<t>2026-11-30T15:45:15Z</t>").0,
        split_time_relative("<t>2026-11-30T15:45:16Z</t>").0
    );
}

/// Every message in the dead-letter queue, taken: the `x-test-seq` and
/// reason of each.
async fn take_dead_letters(queue: &str) -> Vec<(usize, String)> {
    let connection = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut found = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let text = |key: &str| match headers.inner().get(key) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("dead letter without {key}: {other:?}"),
        };
        found.push((text("x-test-seq").parse().unwrap(), text(REASON_HEADER)));
    }
    let _ = connection.close(200, "done".into()).await;
    found
}

fn signal(replica: &Service, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &replica.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

#[test]
fn replicas_converge_to_identical_reports_through_kills_lag_and_a_bootstrap() {
    let rt = runtime();
    let base = unique_topology("replicas");
    let _cleanup: Vec<RemoveOnDrop> = ["r1", "r2", "r3", "r4"]
        .iter()
        .map(|name| RemoveOnDrop(base.clone().replica(name)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // From an hour ago: no report changes with the clock while the test
    // runs (config servers down, incomplete deployments stalled).
    let events = realistic_stream_from(Timestamp::now().plus_seconds(-3600.0), 61, 180, 4);
    let as_of = events.iter().map(Event::time).max().unwrap().to_rfc3339();
    let biggest = events.iter().map(|e| e.to_bytes().len()).max().unwrap();
    assert!(
        biggest < 4096,
        "every valid event is under --max-event-bytes: {biggest}"
    );
    let n = events.len();
    let (a, rest) = events.split_at(n * 15 / 100);
    let (b, rest) = rest.split_at(n * 20 / 100);
    let (c, d) = rest.split_at(n * 20 / 100);
    assert!(
        d.len() > 3_000,
        "a burst larger than the prefetch window ({PREFETCH}) and a batch: {}",
        d.len()
    );
    let (poison_a, poison_c) = (0..36, 36..72);

    // r1 first: its screening consumer is the single active one.
    let mut replicas: BTreeMap<&str, Service> = BTreeMap::new();
    for name in ["r1", "r2", "r3"] {
        let replica = start_replica(dir, &base, name, &[]);
        replica.wait_ready(Duration::from_secs(60));
        replicas.insert(name, replica);
    }

    // A: valid events and poison.
    rt.block_on(publish_with_poison(&base, a, poison_a.clone()));
    for (name, replica) in &replicas {
        wait_until(
            Duration::from_secs(60),
            &format!("{name} to handle phase A"),
            || {
                let m = metrics(replica);
                metric_sum(&m, "audrey_events_consumed_total") == a.len() as f64
                    && metric_sum(&m, "audrey_events_refused_total") == poison_a.len() as f64
            },
        );
    }
    wait_until(
        Duration::from_secs(30),
        "phase A's poison in the dead-letter queue",
        || rt.block_on(ready_messages(&base.dead_letter_queue)) == poison_a.len() as u32,
    );
    let screening: Vec<&str> = replicas
        .iter()
        .filter(|(_, r)| metric_sum(&metrics(r), "audrey_events_dead_lettered_total") > 0.0)
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(screening.len(), 1, "one replica screens: {screening:?}");
    let screener = screening[0];
    assert_eq!(
        metric_sum(
            &metrics(&replicas[screener]),
            "audrey_events_dead_lettered_total"
        ),
        poison_a.len() as f64
    );
    eprintln!("{screener} screens");
    // Every phase A message screened and acknowledged: killing the
    // screener below then cannot have a poison message screened twice.
    wait_until(
        Duration::from_secs(30),
        "the screening queue to hold nothing, acknowledged or not",
        || {
            let screen = &base.clone().replica(screener).replica.unwrap().screen_queue;
            audrey_testkit::broker::messages_held(screen).ok() == Some(0)
        },
    );

    // B: valid events, published on while the screening replica is
    // SIGKILLed a third of the way in. No poison is in flight then: a kill
    // between publishing a dead letter and acknowledging it would have the
    // next screener dead-letter that message again (at least once).
    let published = Arc::new(AtomicUsize::new(0));
    let publishing = {
        let (b, base, published) = (b.to_vec(), base.clone(), Arc::clone(&published));
        std::thread::spawn(move || {
            runtime().block_on(async {
                let publisher = Publisher::connect(AMQP_URL, &base).await.unwrap();
                for chunk in b.chunks(50) {
                    publisher.publish_all(chunk).await.unwrap();
                    published.fetch_add(chunk.len(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                publisher.close().await.unwrap();
            })
        })
    };
    wait_until(Duration::from_secs(60), "a third of phase B", || {
        published.load(Ordering::SeqCst) >= b.len() / 3
    });
    replicas.remove(screener).unwrap().kill();
    eprintln!(
        "SIGKILLed {screener} after {} of phase B's {} events",
        published.load(Ordering::SeqCst),
        b.len()
    );
    publishing.join().unwrap();

    // C: more poison, while it is away: another replica screens.
    rt.block_on(publish_with_poison(&base, c, poison_c.clone()));
    let dead = (poison_a.len() + poison_c.len()) as u32;
    wait_until(
        Duration::from_secs(60),
        "phase C's poison in the dead-letter queue, screened by another replica",
        || rt.block_on(ready_messages(&base.dead_letter_queue)) >= dead,
    );
    let taken_over: Vec<&str> = replicas
        .iter()
        .filter(|(_, r)| {
            metric_sum(&metrics(r), "audrey_events_dead_lettered_total") == poison_c.len() as f64
        })
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        taken_over.len(),
        1,
        "one other replica took the screening over"
    );
    let new_screener = taken_over[0];
    eprintln!("{new_screener} took the screening over");

    // The killed replica comes back: same store, same name.
    let restarted = start_replica(dir, &base, screener, &[]);
    restarted.wait_ready(Duration::from_secs(60));
    wait_until(
        Duration::from_secs(60),
        "the restarted replica to refuse phase C's poison from its queue",
        || metric_sum(&metrics(&restarted), "audrey_events_refused_total") == poison_c.len() as f64,
    );
    replicas.insert(screener, restarted);
    let everyone: Vec<&Service> = replicas.values().collect();
    let applied: Vec<Event> = [a, b, c].concat();
    let as_of_abc = applied.iter().map(Event::time).max().unwrap().to_rfc3339();
    wait_caught_up(&everyone, &as_of_abc, Duration::from_secs(60));

    // D: a burst while one replica is frozen: behind, it says so.
    let frozen_name = *replicas
        .keys()
        .find(|name| **name != new_screener && **name != screener)
        .unwrap();
    let frozen = &replicas[frozen_name];
    assert_eq!(health(frozen, "?max-lag=1s").0, 200);
    signal(frozen, "-STOP");
    let stopped = Instant::now();
    let burst = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime().block_on(async {
            let publisher = Publisher::connect(AMQP_URL, &base).await.unwrap();
            for chunk in d.chunks(500) {
                publisher.publish_all(chunk).await.unwrap();
            }
            publisher.close().await.unwrap();
        })
    }));
    // The service counts its queue's waiting events once a second, and a
    // count is what makes it say it is behind. Frozen for longer than that,
    // its next count is due the moment it resumes, before it can drain
    // the burst; frozen for less (a fast broker publishes the burst in
    // 0.4 s), the count could come only after the drain, with nothing to
    // see.
    std::thread::sleep(Duration::from_millis(1_500).saturating_sub(stopped.elapsed()));
    signal(frozen, "-CONT");
    if let Err(panic) = burst {
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "{frozen_name} was stopped for {:.1} s while {} events were published",
        stopped.elapsed().as_secs_f64(),
        d.len()
    );
    let resumed = Instant::now();
    let mut behind = None;
    let mut caught_up = None;
    let mut last = String::new();
    while caught_up.is_none() && resumed.elapsed() < Duration::from_secs(60) {
        let (status, body) = health(frozen, "?max-lag=1s");
        last.clone_from(&body);
        let lag: f64 = attribute(&body, "lag-seconds").unwrap().parse().unwrap();
        match status {
            503 if lag > 1.0 && body.contains("status=\"connected\"") => {
                behind.get_or_insert((resumed.elapsed(), body));
            }
            200 if behind.is_some() => caught_up = Some(resumed.elapsed()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (behind_at, behind_body) = behind.unwrap_or_else(|| {
        panic!(
            "no 503 from /health?max-lag=1s while behind; last answer: {last}; log:\n{}",
            frozen.log_text()
        )
    });
    let caught_up = caught_up.expect("a 200 from /health?max-lag=1s once caught up");
    eprintln!(
        "{frozen_name}: 503 {:.0} ms after SIGCONT ({}), 200 after {:.0} ms",
        behind_at.as_secs_f64() * 1e3,
        behind_body.lines().next().unwrap_or(""),
        caught_up.as_secs_f64() * 1e3
    );
    let everyone: Vec<&Service> = replicas.values().collect();
    wait_caught_up(&everyone, &as_of, Duration::from_secs(60));

    // A fourth replica starts empty from r1's checkpoint.
    let peer = format!("http://127.0.0.1:{}", replicas["r1"].port);
    let r4 = start_replica(dir, &base, "r4", &["--bootstrap-from", &peer]);
    r4.wait_ready(Duration::from_secs(120));
    assert!(
        r4.log_text().contains("started from the peer's checkpoint"),
        "{}",
        r4.log_text()
    );
    replicas.insert("r4", r4);
    let everyone: Vec<&Service> = replicas.values().collect();
    wait_caught_up(&everyone, &as_of, Duration::from_secs(60));

    // Identical reports from every replica.
    let expected = MemoryViews::from_events(&events);
    let paths = report_paths(&expected);
    let started = Instant::now();
    let mut outcome = compare_reports(&everyone, &paths, &as_of);
    while outcome.is_err() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        outcome = compare_reports(&everyone, &paths, &as_of);
    }
    let ok = outcome.unwrap_or_else(|e| panic!("the replicas disagree: {e}"));
    eprintln!(
        "{} paths, XML and JSON, identical on {} replicas ({ok} of them 200) in {:.1} s",
        paths.len(),
        everyone.len(),
        started.elapsed().as_secs_f64()
    );

    // Each poison message dead-lettered once, whoever screened; counted
    // as refused by the replicas whose queue held it.
    for (name, replica) in &replicas {
        let m = metrics(replica);
        let refused = metric_sum(&m, "audrey_events_refused_total") as usize;
        let dead_lettered = metric_sum(&m, "audrey_events_dead_lettered_total") as usize;
        let (want_refused, want_dead) = match *name {
            "r4" => (0, 0),
            name if name == screener => (poison_c.len(), 0),
            name if name == new_screener => (poison_a.len() + poison_c.len(), poison_c.len()),
            _ => (poison_a.len() + poison_c.len(), 0),
        };
        assert_eq!(
            (refused, dead_lettered),
            (want_refused, want_dead),
            "{name}: refused, dead-lettered"
        );
    }
    let mut dead_letters = rt.block_on(take_dead_letters(&base.dead_letter_queue));
    dead_letters.sort();
    let wanted: Vec<(usize, String)> = poison_a
        .chain(poison_c)
        .map(|n| (n, poison(n).2.to_owned()))
        .collect();
    assert_eq!(
        dead_letters, wanted,
        "each poison message dead-lettered once"
    );

    // Stopped cleanly, every store holds what the projection builds.
    let now = Timestamp::now();
    for (name, replica) in std::mem::take(&mut replicas) {
        assert_eq!(replica.stop(), Some(0), "{name} stops cleanly");
        let store = Store::open(dir.join(name)).unwrap();
        assert_store_matches(&store, &expected, now);
    }
}
