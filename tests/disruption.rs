//! The service is killed, the broker restarts: nothing acknowledged is
//! lost, nothing is counted twice, and nobody has to step in.
//!
//! These tests disturb the broker or kill processes, so they live in their
//! own test binary (cargo runs test binaries one after another) and take a
//! lock so they never overlap each other.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use audrey_consumer::Publisher;
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::Rng;
use audrey_core::Timestamp;
use audrey_store::Store;
use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn three_sigkills_mid_stream_lose_nothing_and_count_nothing_twice() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("crash");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(31, 450, 5);
    assert!(
        events.len() >= 20_000,
        "tens of thousands of events: {}",
        events.len()
    );

    // The first start declares the queue the publisher routes to.
    let mut service = Service::start(&data, &topology, &["--batch-size", "200"]);
    service.wait_ready(Duration::from_secs(60));
    // Publish the whole stream from another thread while we kill the service.
    let publishing = {
        let events = events.clone();
        let topology = topology.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
                for chunk in events.chunks(250) {
                    publisher.publish_all(chunk).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                publisher.close().await.unwrap();
            })
        })
    };
    let mut rng = Rng::new(7);
    for kill in 1..=3 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(900)));
        let consumed = metric_sum(
            &service.get("/metrics").text(),
            "audrey_events_consumed_total",
        );
        service.kill();
        eprintln!("SIGKILL {kill} after {consumed} events applied by that process");
        service = Service::start(&data, &topology, &["--batch-size", "200"]);
        service.wait_ready(Duration::from_secs(60));
    }
    service.kill();
    publishing.join().unwrap();
    drain_and_stop(&rt, &data, &topology);

    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

fn rabbitmqctl(args: &[&str]) {
    audrey_testkit::broker::rabbitmqctl(args).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn a_broker_restart_mid_stream_is_survived_without_anyone_stepping_in() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("restart");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(41, 60, 4);
    let (first, second) = events.split_at(events.len() * 2 / 3);

    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(first).await.unwrap();
        publisher.close().await.unwrap();
    });

    rabbitmqctl(&["stop_app"]);
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            Duration::from_secs(30),
            "/health to report AMQP down",
            || {
                let health = service.get("/health");
                health.status == 503 && health.text().contains("disconnected")
            },
        );
        // Reports are still served from RocksDB.
        let deployment = first.iter().find_map(|e| e.deployment()).unwrap();
        let report = service.get(&format!("/reports/deployment/{deployment}"));
        assert!(
            report.status == 200 || report.status == 404,
            "{}",
            report.status
        );
        let metrics = service.get("/metrics").text();
        assert_eq!(metric_sum(&metrics, "audrey_amqp_connected"), 0.0);
    }));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    if let Err(panic) = restarted {
        std::panic::resume_unwind(panic);
    }

    service.wait_ready(Duration::from_secs(90));
    assert!(service
        .log_text()
        .contains("AMQP disconnected; reconnecting"));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(second).await.unwrap();
        publisher.close().await.unwrap();
    });
    let port = service.port;
    let mut empty_polls = 0;
    wait_until(Duration::from_secs(120), "the queue to drain", || {
        empty_polls = if rt.block_on(ready_messages(&topology.queue)) == 0 {
            empty_polls + 1
        } else {
            0
        };
        empty_polls >= 10 && get(port, "/health", &[]).is_some_and(|r| r.status == 200)
    });
    assert_eq!(service.stop(), Some(0));
    if rt.block_on(ready_messages(&topology.queue)) > 0 {
        drain_and_stop(&rt, &data, &topology);
    }
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

/// The pid of the broker's channel process that holds `queue`'s consumer,
/// as `rabbitmqctl list_consumers` prints it in its table
/// (`<rabbit@host.N.N.N>`, the form `rabbit_misc:string_to_pid` reads).
fn consumer_channel_pid(queue: &str) -> Option<String> {
    audrey_testkit::broker::rabbitmqctl(&[
        "-q",
        "list_consumers",
        "--no-table-headers",
        "queue_name",
        "channel_pid",
    ])
    .ok()?
    .lines()
    .filter_map(|line| line.split_once('\t'))
    .find(|(name, _)| *name == queue)
    .map(|(_, pid)| pid.trim().to_owned())
}

/// `sys:suspend` or `sys:resume` of one process of the broker (the test's
/// own channel): the channel stays open, its connection answers
/// heartbeats, and no delivery reaches the client.
fn broker_process(verb: &str, pid: &str) {
    rabbitmqctl(&[
        "eval",
        &format!("sys:{verb}(rabbit_misc:string_to_pid(\"{pid}\"))."),
    ]);
}

#[test]
fn a_channel_the_broker_stops_feeding_is_restarted_and_nothing_is_lost() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("stall");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(43, 40, 4);
    let (first, second) = events.split_at(events.len() / 3);
    // A small prefetch: most of what is published while the channel is
    // suspended stays ready in the queue, where the broker counts it.
    let service = Service::start(
        &data,
        &topology,
        &["--prefetch", "50", "--batch-size", "25"],
    );
    service.wait_ready(Duration::from_secs(60));
    let publish = |events: &[audrey_core::Event]| {
        rt.block_on(async {
            let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
            publisher.publish_all(events).await.unwrap();
            publisher.close().await.unwrap();
        })
    };
    let applied = || {
        metric_sum(
            &service.get("/metrics").text(),
            "audrey_events_consumed_total",
        )
    };
    publish(first);
    wait_until(Duration::from_secs(60), "the first third applied", || {
        applied() >= first.len() as f64
    });

    // The broker's side of the consumer's channel stops; the connection
    // stays up (heartbeats are answered by its own process).
    let pid = consumer_channel_pid(&topology.queue).expect("the service's consumer is listed");
    broker_process("suspend", &pid);
    let suspended = std::time::Instant::now();
    let noticed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        publish(second);
        // What the old channel held (at most the prefetch) comes back only
        // once the broker lets go of it; everything else is applied on a new
        // channel while the old one is still stuck.
        wait_until(
            Duration::from_secs(90),
            "all but the stuck channel's prefetch to be applied",
            || applied() >= (events.len() - 50) as f64,
        );
        assert!(
            service.log_text().contains("a stalled consumer"),
            "the service says why it reconnected:\n{}",
            service.log_text()
        );
    }));
    let flowing_again_after = suspended.elapsed();
    // Resumed whatever happened: the old channel then ends (its connection
    // is gone) and the broker takes back what it had handed it.
    broker_process("resume", &pid);
    if let Err(panic) = noticed {
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "events flowed again on a new channel {:.1} s after the old one was suspended",
        flowing_again_after.as_secs_f64()
    );
    assert!(
        flowing_again_after >= audrey_consumer::stall::STALL_AFTER,
        "not before the stall rule's {:?}: {flowing_again_after:?}",
        audrey_consumer::stall::STALL_AFTER
    );

    wait_until(Duration::from_secs(60), "every event applied", || {
        applied() >= events.len() as f64
    });
    wait_until(Duration::from_secs(30), "the queue to hold nothing", || {
        audrey_testkit::broker::messages_held(&topology.queue).ok() == Some(0)
    });
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        events.len() as f64,
        "each event applied once"
    );
    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

/// Has the broker close the connections named `audrey-reporting` (the
/// service's; the tests of this binary run one at a time) `times` times,
/// `every` apart, in one `rabbitmqctl eval` (each rabbitmqctl call costs
/// most of a second). Returns how many connections were closed.
fn close_service_connections(times: u32, every: Duration) -> u64 {
    let code = format!(
        r#"Named = fun(P) ->
             case catch rabbit_networking:connection_info(P, [client_properties]) of
               [{{client_properties, Props}}] when is_list(Props) ->
                 lists:keyfind(<<"connection_name">>, 1, Props)
                   =:= {{<<"connection_name">>, longstr, <<"audrey-reporting">>}};
               _ -> false
             end
           end,
           lists:sum([begin
                        timer:sleep({}),
                        length([rabbit_networking:close_connection(P, "closed by the test")
                                || P <- rabbit_networking:connections(), Named(P)])
                      end || _ <- lists:seq(1, {})])."#,
        every.as_millis(),
        times
    );
    let said = audrey_testkit::broker::rabbitmqctl(&["-q", "eval", &code])
        .unwrap_or_else(|e| panic!("{e:#}"));
    said.trim()
        .parse()
        .unwrap_or_else(|_| panic!("rabbitmqctl eval said {said:?}"))
}

#[test]
fn connections_closed_mid_stream_count_each_event_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let topology = unique_topology("closed");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(47, 800, 5);
    // The first start declares the queue; the whole stream is queued while
    // the service is down, so that it drains a backlog: every closing then
    // finds batches in the writer and in flight.
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));
    assert_eq!(service.stop(), Some(0));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(&events).await.unwrap();
        publisher.close().await.unwrap();
    });
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));
    let closed = close_service_connections(10, Duration::from_millis(150));
    assert!(
        closed >= 3,
        "the service's connection was closed {closed} times"
    );
    wait_until(Duration::from_secs(120), "the queue to drain", || {
        audrey_testkit::broker::messages_held(&topology.queue).ok() == Some(0)
    });
    let metrics = service.get("/metrics").text();
    let duplicates = metric_sum(&metrics, "audrey_events_duplicate_total");
    eprintln!(
        "{} events, {closed} connections closed, {duplicates} redelivered duplicates",
        events.len()
    );
    // Each event counted once however often it was delivered: the count
    // of a batch made durable does not wait for its acknowledgement.
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        events.len() as f64,
        "audrey_events_consumed_total after {closed} closed connections"
    );
    assert!(service
        .log_text()
        .contains("AMQP disconnected; reconnecting"));
    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}
