//! The broker side an operator sets up and relies on, against the real
//! RabbitMQ: least-privilege users (README, "Broker users with least
//! privilege"), the broker's own dead-lettering when the service cannot
//! publish a dead letter, the quorum queue's delivery limit, and trusted
//! sources.
//!
//! Users and permissions live in a vhost of each test's own, created with
//! `rabbitmqctl` and deleted (with its users) when the test ends, even when
//! it fails.

mod common;

use std::time::Duration;

use audrey_consumer::publisher::{header, PublishError};
use audrey_consumer::topology::DELIVERY_LIMIT;
use audrey_consumer::{Publisher, Topology};
use audrey_core::memory::MemoryViews;
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::{Event, Timestamp};
use audrey_store::Store;
use audrey_testkit::broker::{queue_state, remove_topologies, unique_name};
use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ErrorKind};

/// What `rabbitmqctl set_permissions` takes: three regular expressions on
/// exchange and queue names (an empty one matches nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Permissions {
    configure: &'static str,
    write: &'static str,
    read: &'static str,
}

/// A config server: publishes to `audrey.events`, and nothing else.
const CONFIG_SERVER: Permissions = Permissions {
    configure: "",
    write: r"^audrey\.events$",
    read: "",
};

/// The service: declares its exchanges and queues, binds them, consumes
/// its queue, publishes dead letters.
const SERVICE: Permissions = Permissions {
    configure: r"^audrey\.(events|events\.dlx|reporting|reporting\.dead)$",
    write: r"^audrey\.(events\.dlx|reporting|reporting\.dead)$",
    read: r"^audrey\.(events|events\.dlx|reporting)$",
};

const DEAD_LETTER_REASON: &str = "x-audrey-reason";

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let quiet: Vec<&str> = std::iter::once("-q").chain(args.iter().copied()).collect();
    audrey_testkit::broker::rabbitmqctl(&quiet)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// A vhost of the test's own and the users made for it, all deleted on
/// drop. `guest` (an administrator) gets every permission in it: the
/// operator's view (declaring, reading the dead-letter queue).
struct Vhost {
    name: String,
    users: Vec<String>,
}

impl Vhost {
    fn create(test: &str) -> Vhost {
        // A leading `/`, as in many deployments: the URL must encode it.
        let name = format!("/{}", unique_name("audrey-test", test));
        rabbitmqctl(&["add_vhost", &name]).unwrap();
        let vhost = Vhost {
            name,
            users: Vec::new(),
        };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .unwrap();
        vhost
    }

    /// `guest`, in this vhost.
    fn operator_url(&self) -> String {
        self.url("guest", "guest")
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:5672/{}",
            percent_encode(user),
            percent_encode(password),
            percent_encode(&self.name)
        )
    }

    /// A new user with these permissions in this vhost: its URL.
    fn add_user(&mut self, role: &str, permissions: Permissions) -> (String, String) {
        let user = unique_name(role, "user");
        let password = uuid::Uuid::new_v4().simple().to_string();
        rabbitmqctl(&["add_user", &user, &password]).unwrap();
        self.users.push(user.clone());
        self.set_permissions(&user, permissions);
        let url = self.url(&user, &password);
        (user, url)
    }

    fn set_permissions(&self, user: &str, p: Permissions) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            user,
            p.configure,
            p.write,
            p.read,
        ])
        .unwrap();
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        for user in &self.users {
            if let Err(e) = rabbitmqctl(&["delete_user", user]) {
                eprintln!("cleaning up: {e}");
            }
        }
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("cleaning up: {e}");
        }
    }
}

/// A URL component: everything but unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The AMQP reply code of a channel or connection error (403 for
/// ACCESS_REFUSED), if the broker sent one.
fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// Waits until `queue` holds `n` ready messages.
fn wait_for_messages(rt: &tokio::runtime::Runtime, url: &str, queue: &str, n: u32) {
    wait_until(
        Duration::from_secs(30),
        &format!("{n} messages in {queue}"),
        || rt.block_on(queue_state(url, queue)).unwrap().0 >= n,
    );
}

fn headers(delivery: &Delivery) -> FieldTable {
    delivery.properties.headers().clone().unwrap_or_default()
}

fn text(value: Option<&AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn integer(value: Option<&AMQPValue>) -> Option<i64> {
    match value? {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        _ => None,
    }
}

/// The first (latest) entry of the broker's `x-death` header: how the
/// broker itself dead-lettered the message.
fn first_death(delivery: &Delivery) -> FieldTable {
    let headers = headers(delivery);
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
            Some(AMQPValue::FieldTable(death)) => death.clone(),
            other => panic!("x-death without a table: {other:?}"),
        },
        other => panic!("no x-death header (not dead-lettered by the broker): {other:?}"),
    }
}

fn reason(delivery: &Delivery) -> Option<String> {
    text(headers(delivery).inner().get(DEAD_LETTER_REASON))
}

/// The permissions the README's `rabbitmqctl set_permissions` command
/// gives `user`: the three single-quoted arguments.
fn readme_permissions(user: &str) -> (String, String, String) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("rabbitmqctl set_permissions") && l.contains(&format!(" {user} ")))
        .unwrap_or_else(|| panic!("README gives no `rabbitmqctl set_permissions` for {user}"));
    let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
    assert_eq!(quoted.len(), 3, "three quoted regexes: {line}");
    (quoted[0].into(), quoted[1].into(), quoted[2].into())
}

fn as_strings(p: Permissions) -> (String, String, String) {
    (p.configure.into(), p.write.into(), p.read.into())
}

/// Publishes with the reference publisher: `events`, then `poison` (routing
/// key, body), then `after`.
async fn publish(url: &str, before: &[Event], poison: &[(&str, &[u8])], after: &[Event]) {
    let publisher = Publisher::connect(url, &Topology::default())
        .await
        .expect("the reference publisher connects");
    publisher.publish_all(before).await.unwrap();
    for (n, (routing_key, body)) in poison.iter().enumerate() {
        let mut headers = FieldTable::default();
        headers.insert("x-test-seq".into(), header(&n.to_string()));
        publisher
            .publish_raw(routing_key, body, headers)
            .await
            .unwrap();
    }
    publisher.publish_all(after).await.unwrap();
    publisher.close().await.unwrap();
}

const CONTACTED: &str = "org.aeolusproject.audrey.instance.contacted";

#[test]
fn least_privilege_users_run_the_service_and_publish_and_nothing_more() {
    assert_eq!(
        readme_permissions("audrey-config-server"),
        as_strings(CONFIG_SERVER),
        "the README documents what this test checks"
    );
    assert_eq!(readme_permissions("audrey-reporting"), as_strings(SERVICE));

    let rt = runtime();
    let mut vhost = Vhost::create("least-privilege");
    let (_, config_server) = vhost.add_user("audrey-config-server", CONFIG_SERVER);
    let (_, reporting) = vhost.add_user("audrey-reporting", SERVICE);
    let topology = Topology::default();

    // Before the service ever ran, the exchange is missing, and the config
    // server may not create it.
    match rt.block_on(Publisher::connect(&config_server, &topology)) {
        Err(PublishError::Amqp(e)) => assert_eq!(reply_code(&e), Some(403), "{e}"),
        Err(other) => panic!("refused, but not by the broker: {other}"),
        Ok(_) => panic!("a publish-only user declared the exchange"),
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start_with_url(&data, &topology, &reporting, &[]);
    service.wait_ready(Duration::from_secs(60));

    // The config server publishes (confirmed, mandatory) through the
    // reference publisher, a poison message among the events.
    let events = realistic_stream(51, 6, 3);
    let (before, after) = events.split_at(events.len() / 2);
    let poison: &[u8] = b"{ this is not JSON";
    rt.block_on(publish(
        &config_server,
        before,
        &[(CONTACTED, poison)],
        after,
    ));

    wait_until(Duration::from_secs(60), "every event to be applied", || {
        let m = service.get("/metrics").text();
        metric_sum(&m, "audrey_events_consumed_total") >= events.len() as f64
            && metric_sum(&m, "audrey_events_dead_lettered_total") >= 1.0
    });
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        events.len() as f64
    );
    assert_eq!(
        metric_value(
            &metrics,
            "audrey_events_dead_lettered_total{reason=\"not_json\"}"
        ),
        Some(1.0)
    );
    let expected = MemoryViews::from_events(&events);
    let live = expected
        .deployments
        .values()
        .find(|d| d.deleted.is_none())
        .unwrap()
        .uuid;
    let report = service.get(&format!("/reports/deployment/{live}"));
    assert_eq!(report.status, 200);
    assert_xsd_valid(&report.body);

    // The service published the dead letter itself: with its reason.
    let operator = vhost.operator_url();
    wait_for_messages(&rt, &operator, &topology.dead_letter_queue, 1);
    let dead = rt.block_on(take_all(&operator, &topology.dead_letter_queue));
    assert_eq!(dead.len(), 1);
    assert_eq!(reason(&dead[0]).as_deref(), Some("not_json"));
    assert_eq!(dead[0].data, poison);

    // The config server's user may not read, declare or delete the
    // service's queue, nor touch the exchanges: 403 ACCESS_REFUSED, each
    // closing its channel.
    rt.block_on(async {
        let connection = Connection::connect(&config_server, Default::default())
            .await
            .unwrap();
        let queue = topology.queue.as_str();
        let mut refused = Vec::new();
        macro_rules! check {
            ($what:expr, |$channel:ident| $call:expr) => {{
                let $channel = connection.create_channel().await.unwrap();
                let outcome = $call.await.map(|_| ());
                refused.push(($what, outcome.as_ref().err().and_then(reply_code)));
                if outcome.is_ok() {
                    let _ = $channel.close(200, "done".into()).await;
                }
            }};
        }
        check!("basic.get", |ch| ch
            .basic_get(queue.into(), BasicGetOptions::default()));
        check!("basic.consume", |ch| ch.basic_consume(
            queue.into(),
            "snooping".into(),
            BasicConsumeOptions::default(),
            FieldTable::default()
        ));
        check!("queue.purge", |ch| ch
            .queue_purge(queue.into(), QueuePurgeOptions::default()));
        check!("queue.delete", |ch| ch
            .queue_delete(queue.into(), QueueDeleteOptions::default()));
        check!("queue.declare (its own)", |ch| ch.queue_declare(
            "config-server.own".into(),
            QueueDeclareOptions::default(),
            FieldTable::default()
        ));
        check!("queue.declare (the service's)", |ch| ch.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default()
        ));
        check!("exchange.delete", |ch| ch.exchange_delete(
            topology.exchange.as_str().into(),
            ExchangeDeleteOptions::default()
        ));
        check!("exchange.declare (not passive)", |ch| topology
            .declare_exchange(&ch));
        let _ = connection.close(200, "done".into()).await;
        for (what, code) in refused {
            assert_eq!(code, Some(403), "{what} by the config server's user");
        }
    });
    // Nothing was taken from the service's queue, and it still works.
    assert_eq!(
        rt.block_on(queue_state(&operator, &topology.queue))
            .unwrap()
            .1,
        1,
        "the service is still the one consumer"
    );

    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &expected, Timestamp::now());
}

#[test]
fn every_permission_of_the_service_user_is_needed() {
    // Each alternative of each documented regex, left out in turn, stops
    // the service from starting on a fresh vhost, refused by the broker on
    // that very exchange or queue.
    type Variant = (&'static str, Permissions, &'static str);
    let variants: [Variant; 10] = [
        (
            "configure without audrey.events",
            Permissions {
                configure: r"^audrey\.(events\.dlx|reporting|reporting\.dead)$",
                ..SERVICE
            },
            "exchange 'audrey.events'",
        ),
        (
            "configure without audrey.events.dlx",
            Permissions {
                configure: r"^audrey\.(events|reporting|reporting\.dead)$",
                ..SERVICE
            },
            "exchange 'audrey.events.dlx'",
        ),
        (
            "configure without audrey.reporting",
            Permissions {
                configure: r"^audrey\.(events|events\.dlx|reporting\.dead)$",
                ..SERVICE
            },
            "queue 'audrey.reporting'",
        ),
        (
            "configure without audrey.reporting.dead",
            Permissions {
                configure: r"^audrey\.(events|events\.dlx|reporting)$",
                ..SERVICE
            },
            "queue 'audrey.reporting.dead'",
        ),
        (
            "write without audrey.events.dlx",
            Permissions {
                write: r"^audrey\.(reporting|reporting\.dead)$",
                ..SERVICE
            },
            "exchange 'audrey.events.dlx'",
        ),
        (
            "write without audrey.reporting",
            Permissions {
                write: r"^audrey\.(events\.dlx|reporting\.dead)$",
                ..SERVICE
            },
            "queue 'audrey.reporting'",
        ),
        (
            "write without audrey.reporting.dead",
            Permissions {
                write: r"^audrey\.(events\.dlx|reporting)$",
                ..SERVICE
            },
            "queue 'audrey.reporting.dead'",
        ),
        (
            "read without audrey.events",
            Permissions {
                read: r"^audrey\.(events\.dlx|reporting)$",
                ..SERVICE
            },
            "exchange 'audrey.events'",
        ),
        (
            "read without audrey.events.dlx",
            Permissions {
                read: r"^audrey\.(events|reporting)$",
                ..SERVICE
            },
            "exchange 'audrey.events.dlx'",
        ),
        (
            "read without audrey.reporting",
            Permissions {
                read: r"^audrey\.(events|events\.dlx)$",
                ..SERVICE
            },
            "queue 'audrey.reporting'",
        ),
    ];
    let rt = runtime();
    let mut vhost = Vhost::create("minimal");
    let (user, url) = vhost.add_user("audrey-reporting", SERVICE);
    let topology = Topology::default();
    let operator = vhost.operator_url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (what, permissions, resource) in variants {
        rt.block_on(remove_topologies(
            &operator,
            std::slice::from_ref(&topology),
        ));
        vhost.set_permissions(&user, permissions);
        let service = Service::start_with_url(&data, &topology, &url, &[]);
        let refusal = format!("ACCESS_REFUSED - access to {resource} in vhost");
        wait_until(
            Duration::from_secs(30),
            &format!("{what}: the broker to refuse {resource}"),
            || service.log_text().contains(&refusal),
        );
        let health = service.get("/health");
        assert_eq!(health.status, 503, "{what}: not ready");
        service.kill();
    }
}

#[test]
fn when_the_service_may_not_publish_a_dead_letter_the_broker_dead_letters_it() {
    let rt = runtime();
    let mut vhost = Vhost::create("dlx-fallback");
    let topology = Topology::default();
    let operator = vhost.operator_url();
    // The topology exists (the service ran before, or an operator declared
    // it); now the service's user may no longer write to the dead-letter
    // exchange.
    rt.block_on(async {
        let connection = Connection::connect(&operator, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.declare(&channel).await.unwrap();
        let _ = connection.close(200, "done".into()).await;
    });
    let (_, reporting) = vhost.add_user(
        "audrey-reporting",
        Permissions {
            write: r"^audrey\.(reporting|reporting\.dead)$",
            ..SERVICE
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start_with_url(&data, &topology, &reporting, &[]);
    service.wait_ready(Duration::from_secs(60));

    let events = realistic_stream(52, 6, 3);
    let (before, after) = events.split_at(events.len() / 2);
    let not_json: &[u8] = b"{ not JSON";
    let not_cloudevent: &[u8] = br#"{"hello": "world"}"#;
    rt.block_on(publish(
        &operator,
        before,
        &[(CONTACTED, not_json), (CONTACTED, not_cloudevent)],
        after,
    ));

    wait_until(
        Duration::from_secs(60),
        "every message to be handled",
        || {
            let m = service.get("/metrics").text();
            metric_sum(&m, "audrey_events_consumed_total") >= events.len() as f64
                && metric_sum(&m, "audrey_events_dead_lettered_total") >= 2.0
        },
    );
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        events.len() as f64,
        "the events around the invalid ones are applied"
    );
    for reason in ["not_json", "not_cloudevent"] {
        let series = format!("audrey_events_dead_lettered_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &series), Some(1.0), "{series}");
    }
    assert!(
        service.log_text().contains("ACCESS_REFUSED"),
        "the log says why the dead letter could not be published:\n{}",
        service.log_text()
    );

    // Both reached the dead-letter queue through the broker: rejected from
    // the service's queue, with `x-death` and without our reason.
    wait_for_messages(&rt, &operator, &topology.dead_letter_queue, 2);
    let mut dead = rt.block_on(take_all(&operator, &topology.dead_letter_queue));
    assert_eq!(dead.len(), 2);
    dead.sort_by_key(|d| text(headers(d).inner().get("x-test-seq")));
    for (delivery, body) in dead.iter().zip([not_json, not_cloudevent]) {
        assert_eq!(delivery.data, body);
        assert_eq!(reason(delivery), None, "not published by the service");
        let death = first_death(delivery);
        let death = death.inner();
        assert_eq!(text(death.get("reason")).as_deref(), Some("rejected"));
        assert_eq!(
            text(death.get("queue")).as_deref(),
            Some(topology.queue.as_str())
        );
        assert_eq!(
            text(death.get("exchange")).as_deref(),
            Some(topology.exchange.as_str())
        );
    }
    let health = service.get("/health");
    assert_eq!(health.status, 200, "still consuming: {}", health.text());

    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&events), Timestamp::now());
}

#[test]
fn a_message_redelivered_past_the_delivery_limit_is_dead_lettered_not_stuck() {
    let rt = runtime();
    let topology = unique_topology("delivery-limit");
    let _cleanup = RemoveOnDrop(topology.clone());
    let now = Timestamp::now();
    let crashing = ConfigServerScript::new("/configserver/crashing", 71).heartbeat(now, 30);
    let healthy = ConfigServerScript::new("/configserver/cs-01", 72).heartbeat(now, 30);

    // A consumer that crashes on the message: it comes back each time.
    let deliveries = rt.block_on(async {
        let connection = Connection::connect(AMQP_URL, Default::default())
            .await
            .unwrap();
        // A publisher allowed to configure declares the missing exchange.
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.declare(&channel).await.unwrap();
        publisher.publish(&crashing).await.unwrap();
        publisher.close().await.unwrap();
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .unwrap();
        let mut consumer = channel
            .basic_consume(
                topology.queue.as_str().into(),
                "crashing".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut counts = Vec::new();
        while let Ok(next) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
            let delivery = next.expect("consuming").expect("a delivery");
            assert_eq!(delivery.data, crashing.to_bytes());
            counts.push(integer(headers(&delivery).inner().get("x-delivery-count")));
            assert!(counts.len() < 100, "the message keeps coming back");
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .unwrap();
        }
        let _ = connection.close(200, "done".into()).await;
        counts
    });
    let limit = DELIVERY_LIMIT as usize;
    assert_eq!(
        deliveries.len(),
        limit + 1,
        "delivered once and redelivered up to the limit: {deliveries:?}"
    );
    assert_eq!(deliveries[0], None, "the first delivery has no count");
    assert_eq!(deliveries[limit], Some(DELIVERY_LIMIT));

    // The broker dead-lettered it: the queue is free again.
    wait_for_messages(&rt, AMQP_URL, &topology.dead_letter_queue, 1);
    let dead = rt.block_on(take_all(AMQP_URL, &topology.dead_letter_queue));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, crashing.to_bytes());
    let death = first_death(&dead[0]);
    let death = death.inner();
    assert_eq!(text(death.get("reason")).as_deref(), Some("delivery_limit"));
    assert_eq!(
        text(death.get("queue")).as_deref(),
        Some(topology.queue.as_str())
    );
    assert_eq!(reason(&dead[0]), None);
    assert_eq!(rt.block_on(ready_messages(&topology.queue)), 0);

    // The service then gets what is published next.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &[]);
    service.wait_ready(Duration::from_secs(60));
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish(&healthy).await.unwrap();
        publisher.close().await.unwrap();
    });
    wait_until(
        Duration::from_secs(30),
        "the next event to be applied",
        || {
            metric_sum(
                &service.get("/metrics").text(),
                "audrey_events_consumed_total",
            ) >= 1.0
        },
    );
    let servers = service.get("/reports/configserver").text();
    assert!(
        servers.contains("source=\"/configserver/cs-01\""),
        "{servers}"
    );
    assert!(!servers.contains("crashing"), "{servers}");
    let metrics = service.get("/metrics").text();
    assert_eq!(metric_sum(&metrics, "audrey_events_consumed_total"), 1.0);
    assert_eq!(
        metric_sum(&metrics, "audrey_events_dead_lettered_total"),
        0.0
    );
    assert_eq!(service.stop(), Some(0));
}

#[test]
fn only_events_from_trusted_sources_are_applied() {
    let rt = runtime();
    let topology = unique_topology("trusted");
    let _cleanup = RemoveOnDrop(topology.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &topology, &["--trusted-source", "/configserver/*"]);
    service.wait_ready(Duration::from_secs(60));

    let start = Timestamp::now().plus_seconds(-300.0);
    let shape = Shape {
        instances: 2,
        ..Shape::default()
    };
    let mut trusted = ConfigServerScript::new("/configserver/cs-01", 81);
    let mut good = trusted.deployment(start, &shape);
    good.push(trusted.heartbeat(start.plus_seconds(200.0), 30));
    let mut evil = ConfigServerScript::new("/evil/cs", 82);
    let mut bad = evil.deployment(start, &shape);
    bad.push(evil.heartbeat(start.plus_seconds(200.0), 30));
    let mut all: Vec<Event> = good.iter().chain(&bad).cloned().collect();
    all.sort_by_key(|e| e.time());
    rt.block_on(async {
        let publisher = Publisher::connect(AMQP_URL, &topology).await.unwrap();
        publisher.publish_all(&all).await.unwrap();
        publisher.close().await.unwrap();
    });

    let untrusted = "audrey_events_dead_lettered_total{reason=\"untrusted_source\"}";
    wait_until(Duration::from_secs(60), "every event to be handled", || {
        let m = service.get("/metrics").text();
        metric_sum(&m, "audrey_events_consumed_total") >= good.len() as f64
            && metric_value(&m, untrusted).unwrap_or(0.0) >= bad.len() as f64
    });
    let metrics = service.get("/metrics").text();
    assert_eq!(
        metric_sum(&metrics, "audrey_events_consumed_total"),
        good.len() as f64
    );
    assert_eq!(metric_value(&metrics, untrusted), Some(bad.len() as f64));
    assert_eq!(
        metric_sum(&metrics, "audrey_events_dead_lettered_total"),
        bad.len() as f64
    );

    let good_deployment = good[0].deployment().unwrap();
    let bad_deployment = bad[0].deployment().unwrap();
    assert_eq!(
        service
            .get(&format!("/reports/deployment/{good_deployment}"))
            .status,
        200
    );
    assert_eq!(
        service
            .get(&format!("/reports/deployment/{bad_deployment}"))
            .status,
        404
    );
    let servers = service.get("/reports/configserver").text();
    assert!(
        servers.contains("source=\"/configserver/cs-01\""),
        "{servers}"
    );
    assert!(!servers.contains("/evil/cs"), "{servers}");

    // Each untrusted event is in the dead-letter queue, unchanged, with its
    // reason.
    wait_for_messages(&rt, AMQP_URL, &topology.dead_letter_queue, bad.len() as u32);
    let dead = rt.block_on(take_all(AMQP_URL, &topology.dead_letter_queue));
    assert_eq!(dead.len(), bad.len());
    let mut dead_ids = Vec::new();
    for delivery in &dead {
        assert_eq!(reason(delivery).as_deref(), Some("untrusted_source"));
        let event = Event::decode(&delivery.data, usize::MAX).expect("the event, unchanged");
        assert_eq!(event.source().as_str(), "/evil/cs");
        dead_ids.push(event.id().to_string());
    }
    let mut bad_ids: Vec<String> = bad.iter().map(|e| e.id().to_string()).collect();
    dead_ids.sort();
    bad_ids.sort();
    assert_eq!(dead_ids, bad_ids);

    assert_eq!(service.stop(), Some(0));
    let store = Store::open(&data).unwrap();
    assert_store_matches(&store, &MemoryViews::from_events(&good), Timestamp::now());
}
