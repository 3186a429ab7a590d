//! End to end through the real RabbitMQ: events published by the reference
//! publisher reach the views exactly once, bad ones land in the dead-letter
//! queue with their reason, and the service stops cleanly on SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use audrey_consumer::connect::DEFAULT_FRAME_MAX;
use audrey_consumer::ingest::REASON_HEADER;
use audrey_consumer::publisher::header;
use audrey_consumer::{ContentMode, Publisher};
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::Rng;
use audrey_core::{Event, Timestamp};
use audrey_store::Store;
use common::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

#[test]
fn a_shuffled_stream_with_duplicates_ends_in_exactly_the_expected_views() {
    let rt = runtime();
    let topology = unique_topology("e2e");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));

    let in_order = realistic_stream(11, 8, 4);
    let mut rng = Rng::new(3);
    let mut published = in_order.clone();
    let duplicates: Vec<_> = in_order
        .iter()
        .filter(|_| rng.chance(0.1))
        .cloned()
        .collect();
    published.extend(duplicates.iter().cloned());
    rng.shuffle(&mut published);
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        for chunk in published.chunks(200) {
            publisher.publish_all(chunk).await.unwrap();
        }
        publisher.close().await.unwrap();
    });

    service.wait_handled(
        Duration::from_secs(60),
        "every event to be consumed",
        &[
            "audrey_events_consumed_total",
            "audrey_events_duplicate_total",
        ],
        published.len(),
    );
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        in_order.len() as f64
    );
    assert_eq!(
        metric_sum(&metrics, "audrey_events_duplicate_total"),
        duplicates.len() as f64
    );

    // What a reader sees over HTTP is valid and says what the projection says.
    let expected = MemoryViews::from_events(&in_order);
    let some = expected
        .deployments
        .values()
        .find(|d| d.deleted.is_none())
        .unwrap()
        .uuid;
    let report = service.get(&format!("/reports/deployment/{some}"));
    assert_eq!(report.status, 200);
    assert_xsd_valid(&report.body);
    assert!(report.text().contains(&format!("uuid=\"{some}\"")));

    assert_eq!(service.stop(), Some(0), "SIGTERM ends the service with 0");
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &expected, Timestamp::now());
}

#[test]
fn binary_and_structured_content_modes_give_one_set_of_events() {
    let rt = runtime();
    let topology = unique_topology("modes");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));

    let events = realistic_stream(31, 6, 3);
    let (binary, structured): (Vec<_>, Vec<_>) = events
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let binary: Vec<Event> = binary.into_iter().map(|(_, e)| e).collect();
    let structured: Vec<Event> = structured.into_iter().map(|(_, e)| e).collect();
    // Every tenth event also goes out in the other mode: the same event.
    let again: Vec<Event> = events.iter().step_by(10).cloned().collect();
    let invalid = 3;
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher
            .publish_all_as(&binary, ContentMode::Binary)
            .await
            .unwrap();
        publisher
            .publish_all_as(&structured, ContentMode::Structured)
            .await
            .unwrap();
        for event in &again {
            let mode = if binary.contains(event) {
                ContentMode::Structured
            } else {
                ContentMode::Binary
            };
            publisher
                .publish_all_as(std::slice::from_ref(event), mode)
                .await
                .unwrap();
        }
        // The AMQP binding's application properties, `cloudEvents_` style,
        // for one more copy of the first event.
        let first = &events[0];
        let mut headers = FieldTable::default();
        if let serde_json::Value::Object(attributes) = first.to_json() {
            for (name, value) in attributes {
                if let (serde_json::Value::String(value), true) =
                    (value, !matches!(name.as_str(), "data" | "datacontenttype"))
                {
                    headers.insert(
                        format!("cloudEvents_{name}").as_str().into(),
                        header(&value),
                    );
                }
            }
        }
        let data = serde_json::to_vec(&first.data_json()).unwrap();
        let properties = BasicProperties::default()
            .with_headers(headers.clone())
            .with_content_type("application/json".into());
        publisher
            .publish_message(first.event_type().name(), &data, properties)
            .await
            .unwrap();
        // Binary messages that are wrong are refused for the usual reasons.
        let mut no_deployment = headers.inner().clone();
        no_deployment.remove("cloudEvents_deployment");
        let no_deployment = FieldTable::from(no_deployment);
        for (headers, body) in [
            (no_deployment, data.clone()),
            (headers.clone(), b"{not json".to_vec()),
        ] {
            let properties = BasicProperties::default()
                .with_headers(headers)
                .with_content_type("application/json".into());
            publisher
                .publish_message(first.event_type().name(), &body, properties)
                .await
                .unwrap();
        }
        let mut wrong_type = headers.clone();
        wrong_type.insert(
            "cloudEvents_type".into(),
            header("org.aeolusproject.audrey.nope"),
        );
        let properties = BasicProperties::default()
            .with_headers(wrong_type)
            .with_content_type("application/json".into());
        publisher
            .publish_message(first.event_type().name(), &data, properties)
            .await
            .unwrap();
        publisher.close().await.unwrap();
    });

    let duplicates = again.len() + 1;
    service.wait_handled(
        Duration::from_secs(60),
        "every message to be handled",
        &[
            "audrey_events_consumed_total",
            "audrey_events_duplicate_total",
            "audrey_events_dead_lettered_total",
        ],
        events.len() + duplicates + invalid,
    );
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        events.len() as f64
    );
    assert_eq!(
        metric_sum(&metrics, "audrey_events_duplicate_total"),
        duplicates as f64,
        "an event published in both modes is one event"
    );
    for (reason, n) in [("missing_field", 1), ("not_json", 1), ("unknown_type", 1)] {
        let series = format!("audrey_events_dead_lettered_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &series), Some(n as f64), "{series}");
    }
    assert_eq!(service.stop(), Some(0));

    // One canonical form in the log, however the event arrived.
    let store = Store::open(&data).unwrap();
    let mut logged = Vec::new();
    store
        .for_each_logged_event(|e| {
            logged.push(e);
            Ok(true)
        })
        .unwrap();
    let mut expected = events.clone();
    let key = |e: &Event| (e.source().to_string(), e.id().to_string());
    logged.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(logged, expected);
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

/// One bad message of each kind the contract names, with the reason the
/// service must give for it.
fn poison(kind: usize, n: usize) -> (String, Vec<u8>, &'static str) {
    let valid_envelope = |data: serde_json::Value, t: &str| {
        serde_json::json!({
            "specversion": "1.0", "id": format!("bad-{n}"), "source": "/configserver/evil",
            "type": format!("org.aeolusproject.audrey.{t}"), "time": "2026-11-25T14:00:00Z",
            "deployment": "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53", "data": data
        })
    };
    let rk = "org.aeolusproject.audrey.instance.contacted".to_owned();
    match kind {
        0 => (
            rk,
            format!("this is not JSON {n} {{").into_bytes(),
            "not_json",
        ),
        1 => (
            rk,
            serde_json::to_vec(&serde_json::json!({"hello": n})).unwrap(),
            "not_cloudevent",
        ),
        2 => (
            rk,
            valid_envelope(serde_json::json!({}), "instance.exploded")
                .to_string()
                .into_bytes(),
            "unknown_type",
        ),
        3 => (
            rk,
            valid_envelope(serde_json::json!({}), "instance.contacted")
                .to_string()
                .into_bytes(),
            "missing_field",
        ),
        4 => (
            rk,
            valid_envelope(
                serde_json::json!({"instance": "not-a-uuid"}),
                "instance.contacted",
            )
            .to_string()
            .into_bytes(),
            "invalid_field",
        ),
        _ => (rk, vec![b'x'; 5000], "too_large"),
    }
}

#[test]
fn poison_messages_are_dead_lettered_with_their_reason_and_block_nothing() {
    let rt = runtime();
    let topology = unique_topology("poison");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &["--max-event-bytes", "4096"]);
    service.wait_ready(Duration::from_secs(60));

    let valid = realistic_stream(21, 6, 3);
    let bad_count = 1_200;
    let mut expected_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        let mut valid_iter = valid.iter();
        for n in 0..bad_count {
            let (routing_key, body, reason) = poison(n % 6, n);
            *expected_reasons.entry(reason).or_default() += 1;
            let mut headers = FieldTable::default();
            headers.insert("x-test-seq".into(), header(&n.to_string()));
            publisher
                .publish_raw(&routing_key, &body, headers)
                .await
                .unwrap();
            if let Some(event) = valid_iter.next() {
                publisher.publish(event).await.unwrap();
            }
        }
        let rest: Vec<_> = valid_iter.cloned().collect();
        publisher.publish_all(&rest).await.unwrap();
        publisher.close().await.unwrap();
    });

    wait_until(
        Duration::from_secs(90),
        "every message to be handled",
        || {
            let m = service.get("/metrics").text();
            metric_sum(&m, "audrey_events_consumed_total") >= valid.len() as f64
                && metric_sum(&m, "audrey_events_dead_lettered_total") >= bad_count as f64
        },
    );
    let metrics = service.get("/metrics").text();
    for (reason, n) in &expected_reasons {
        let series = format!("audrey_events_dead_lettered_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &series), Some(*n as f64), "{series}");
    }

    // Every bad message is in the dead-letter queue, with its reason.
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for message in rt.block_on(take_all(AMQP_URL, &topology.dead_letter_queue)) {
        let headers = message.properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get(REASON_HEADER) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("dead letter without a reason: {other:?}"),
        };
        assert!(
            headers.inner().contains_key("x-test-seq"),
            "original headers are kept"
        );
        *found.entry(reason).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = expected_reasons
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(found, expected);

    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&valid), Timestamp::now());
}

/// The service asks for 32 KiB AMQP frames (its connection buffers are 32
/// frames each): an event of many frames is applied whole, and a message
/// over `--max-event-bytes` that spans dozens of frames is dead-lettered
/// with every byte of its body.
#[test]
fn messages_of_many_frames_are_applied_or_dead_lettered_whole() {
    use audrey_core::scenario::script::{self, DeploymentScript};
    let rt = runtime();
    let topology = unique_topology("frames");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));

    // A registration of about 300 KiB (the default limit is 1 MiB).
    let services = (0..30)
        .map(|s| {
            let parameters = (0..40)
                .map(|p| script::static_param(&format!("{p:03}-{}", "x".repeat(240))))
                .collect();
            script::service(&format!("service-{s}"), parameters)
        })
        .collect();
    let big =
        DeploymentScript::new(script::BLOG).register(0, script::MYSQL, "mysql", &[], services);
    let json_len = serde_json::to_vec(&big.to_json()).unwrap().len();
    assert!(
        json_len > 8 * DEFAULT_FRAME_MAX as usize,
        "{json_len} bytes"
    );
    let oversized = vec![b'x'; 1536 * 1024];
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish(&big).await.unwrap();
        publisher
            .publish_raw(
                "org.aeolusproject.audrey.instance.contacted",
                &oversized,
                FieldTable::default(),
            )
            .await
            .unwrap();
        publisher.close().await.unwrap();
    });
    service.wait_handled(
        Duration::from_secs(60),
        "both messages to be handled",
        &[
            "audrey_events_consumed_total",
            "audrey_events_dead_lettered_total",
        ],
        2,
    );
    let metrics = service.get("/metrics").text();
    assert_eq!(metric_sum(&metrics, "audrey_events_consumed_total"), 1.0);
    assert_eq!(
        metric_value(
            &metrics,
            "audrey_events_dead_lettered_total{reason=\"too_large\"}"
        ),
        Some(1.0)
    );
    let dead = rt.block_on(take_all(AMQP_URL, &topology.dead_letter_queue));
    assert_eq!(dead.len(), 1, "the oversized message is dead-lettered");
    assert!(
        dead[0].data == oversized,
        "dead-lettered body of {} bytes",
        dead[0].data.len()
    );

    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&[big]), Timestamp::now());
}

/// Operators page on ERROR lines: a service told to stop (SIGTERM) after it
/// has consumed must say "stopped cleanly" and nothing at ERROR level,
/// restart after restart. Before every channel was closed ahead of the
/// connection, a channel that closed itself on drop could still be closing
/// when the connection's close was answered, and lapin logged "Connection
/// error" ("invalid channel state: Closing", or "invalid connection state:
/// Closed") on a few of these stops: the race depends on the broker's order
/// of answers. With that code this test failed in 4 of 12 runs of its 60
/// rounds; it has not failed since in 14.
#[test]
fn a_stopped_service_logs_no_error_restart_after_restart() {
    const ROUNDS: usize = 60;
    let rt = runtime();
    let topology = unique_topology("stops");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let events = realistic_stream(4, 8, 2);
    let chunk = events.len().div_ceil(ROUNDS);
    for (round, events) in events.chunks(chunk).enumerate() {
        let service = Service::start(&data, &topology, &["--log-format", "json"]);
        service.wait_ready(Duration::from_secs(60));
        rt.block_on(async {
            let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
            publisher.publish_all(events).await.unwrap();
            publisher.close().await.unwrap();
        });
        // Stopped with the consumer, the queue-depth watch and the
        // dead-letter channel all open, after a round of work.
        service.wait_handled(
            Duration::from_secs(60),
            "the round's events consumed",
            &[
                "audrey_events_consumed_total",
                "audrey_events_duplicate_total",
            ],
            events.len(),
        );
        let log = service.log.clone();
        assert_eq!(service.stop(), Some(0), "round {round}");
        let text = std::fs::read_to_string(log).unwrap();
        let errors: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("\"level\":\"ERROR\""))
            .collect();
        assert!(
            errors.is_empty(),
            "round {round} logged errors: {errors:#?}"
        );
        assert!(text.contains("stopped cleanly"), "round {round}: {text}");
    }
}
