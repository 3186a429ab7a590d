//! The report cache answers what the uncached path answers, byte for byte,
//! whatever was applied since and whatever the time: two servers over one
//! store, one with the cache, one without, asked for every report after
//! every batch; and reports rendered at different times where the cache
//! says they read the same.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use audrey_api::cache::{ReportCache, Validity};
use audrey_api::{xml, ApiSettings, ApiState, Metrics};
use audrey_core::query::{self, ReportContext};
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::{Event, Timestamp};
use audrey_store::Store;

/// One answer: status, ETag, body.
#[derive(Debug, PartialEq)]
struct Reply {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

/// GET on a fresh connection, with extra headers.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = unchunk(&body);
    }
    Reply {
        status,
        etag: header("etag"),
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("size");
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end]).expect("hex").trim(),
            16,
        )
        .expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A server over `store` on an ephemeral port; the cache as given.
fn serve(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    cache: ReportCache,
) -> (u16, Arc<ApiState>) {
    let mut state = ApiState::new(
        Arc::clone(store),
        Arc::new(Metrics::new()),
        ApiSettings::default(),
    );
    state.reports = cache;
    let state = Arc::new(state);
    let listener = rt
        .block_on(audrey_api::bind("127.0.0.1:0".parse().unwrap()))
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    rt.spawn(audrey_api::serve(
        listener,
        Arc::clone(&state),
        std::future::pending(),
    ));
    (port, state)
}

/// Deployments of every kind: finished long ago (some failed), in flight
/// now (services running), given up (stalled), and config servers'
/// heartbeats (running, and one long silent).
fn events(now: Timestamp) -> Vec<Event> {
    let mut out = Vec::new();
    let shape = Shape {
        instances: 3,
        services_per_instance: 2,
        failure_rate: 0.3,
        ..Shape::default()
    };
    let mut old = ConfigServerScript::new("/configserver/cs-old", 1);
    let mut live = ConfigServerScript::new("/configserver/cs-live", 2);
    for i in 0..8 {
        out.extend(old.deployment(now.plus_seconds(-7_200.0 - 600.0 * f64::from(i)), &shape));
    }
    for i in 0..4 {
        out.extend(live.deployment(now.plus_seconds(-60.0 - 20.0 * f64::from(i)), &shape));
    }
    // Some that succeed whatever the seed: reports that only config
    // servers make change with the clock.
    let clean = Shape {
        failure_rate: 0.0,
        give_up_rate: 0.0,
        ..shape.clone()
    };
    for i in 0..3 {
        out.extend(old.deployment(now.plus_seconds(-20_000.0 - 600.0 * f64::from(i)), &clean));
        out.extend(live.deployment(now.plus_seconds(-3_600.0 - 600.0 * f64::from(i)), &clean));
    }
    out.push(old.heartbeat(now.plus_seconds(-3_000.0), 30));
    out.extend(live.heartbeats(now.plus_seconds(-120.0), now.plus_seconds(-5.0), 30));
    out.sort_by_key(Event::time);
    // What is still to come stays in the future: applied too (the views
    // take events in any order), it makes services started and not ended.
    out
}

#[test]
fn cached_answers_are_the_uncached_ones_after_every_batch() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (cached_port, cached) = serve(&rt, &store, ReportCache::default());
    let (plain_port, plain) = serve(&rt, &store, ReportCache::with_budget(0));

    let now = Timestamp::now();
    let all = events(now);
    let deployments: BTreeSet<_> = all.iter().filter_map(Event::deployment).collect();
    let instances: BTreeSet<_> = all.iter().filter_map(Event::instance).collect();
    let mut kept_reports = 0;
    let mut hits_checked = 0;
    for chunk in all.chunks(all.len() / 6 + 1) {
        store.apply_batch(chunk).unwrap();
        cached.views_changed();
        plain.views_changed();
        let ctx = ReportContext::at(Timestamp::now());
        let reader = store.reader();
        let mut paths = Vec::new();
        for d in &deployments {
            let validity = query::deployment_report(&reader, *d, &ctx)
                .unwrap()
                .map(|r| Validity::of_deployment(&r, &ctx));
            paths.push((format!("/reports/deployment/{d}"), validity));
        }
        for i in &instances {
            let report = query::instance_report(&reader, *i, &ctx).unwrap();
            if let Some(r) = &report {
                for s in &r.services {
                    paths.push((
                        format!("/reports/instance/{i}/service/{}", s.name.as_str()),
                        Some(Validity::of_service(s)),
                    ));
                }
            }
            paths.push((
                format!("/reports/instance/{i}"),
                report.map(|r| Validity::of_instance(&r)),
            ));
        }
        for (path, validity) in &paths {
            for accept in ["application/xml", "application/json"] {
                let headers = [("Accept", accept)];
                let first = get(cached_port, path, &headers);
                let second = get(cached_port, path, &headers);
                let plain = get(plain_port, path, &headers);
                assert_eq!(first.status, plain.status, "{path}");
                assert_eq!(first.etag, plain.etag, "{path}");
                assert_eq!(second.etag, plain.etag, "{path}");
                match validity {
                    // Unknown yet: 404 on both.
                    None => assert_eq!(first, plain, "{path}"),
                    // A running duration: only the ETag is the same.
                    Some(Validity::Now) => {}
                    Some(_) => {
                        kept_reports += 1;
                        assert_eq!(
                            String::from_utf8_lossy(&first.body),
                            String::from_utf8_lossy(&plain.body),
                            "{path} {accept}"
                        );
                        assert_eq!(first, second, "{path} {accept}: the kept copy");
                        // A reader that has it is told so, from memory.
                        let etag = second.etag.clone().expect("an ETag");
                        let again = get(
                            cached_port,
                            path,
                            &[("Accept", accept), ("If-None-Match", &etag)],
                        );
                        assert_eq!(again.status, 304, "{path}");
                        hits_checked += 1;
                    }
                }
            }
        }
    }
    assert!(
        kept_reports > 50,
        "only {kept_reports} reports could be kept"
    );
    assert!(hits_checked > 50);
    assert!(cached.reports.size().0 > 0, "the cache kept nothing");
    assert_eq!(
        plain.reports.size(),
        (0, 0),
        "a cache of 0 bytes keeps nothing"
    );
}

#[test]
fn a_kept_report_reads_the_same_until_its_validity_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Timestamp::now();
    let all = events(now);
    store.apply_batch(&all).unwrap();
    let reader = store.reader();
    let at = |t: Timestamp| ReportContext::at(t);
    let deployments: BTreeSet<_> = all.iter().filter_map(Event::deployment).collect();
    let instances: BTreeSet<_> = all.iter().filter_map(Event::instance).collect();
    let (mut until, mut always, mut never) = (0, 0, 0);
    for d in &deployments {
        let render = |t| {
            query::deployment_report(&reader, *d, &at(t))
                .unwrap()
                .map(|r| (xml::deployment(&r), serde_json::to_vec(&r).unwrap()))
        };
        let r = query::deployment_report(&reader, *d, &at(now))
            .unwrap()
            .unwrap();
        match Validity::of_deployment(&r, &at(now)) {
            Validity::Now => never += 1,
            Validity::Always => {
                always += 1;
                assert_eq!(render(now), render(now.plus_seconds(365.0 * 86_400.0)));
            }
            Validity::Until(end) => {
                until += 1;
                assert!(end > now);
                let before = end.plus_seconds(-0.000_001);
                assert_eq!(render(now), render(before), "{d}");
                assert_eq!(render(now), render(now.plus_seconds(0.5)), "{d}");
                // It does change later (a config server down, or gone).
                assert_ne!(render(now), render(end.plus_seconds(0.01)), "{d}");
            }
        }
    }
    for i in &instances {
        let render = |t| {
            query::instance_report(&reader, *i, &at(t))
                .unwrap()
                .map(|r| (xml::instance(&r), serde_json::to_vec(&r).unwrap()))
        };
        let r = query::instance_report(&reader, *i, &at(now))
            .unwrap()
            .unwrap();
        match Validity::of_instance(&r) {
            Validity::Now => {
                never += 1;
                assert_ne!(render(now), render(now.plus_seconds(1.0)), "{i}");
            }
            Validity::Always => {
                always += 1;
                assert_eq!(render(now), render(now.plus_seconds(365.0 * 86_400.0)));
            }
            Validity::Until(_) => panic!("instance reports have no config servers"),
        }
        for s in &r.services {
            let at_time = |t| {
                query::service_report(&reader, *i, &s.name, &at(t))
                    .unwrap()
                    .map(|r| (xml::service(&r), serde_json::to_vec(&r).unwrap()))
            };
            if Validity::of_service(s) == Validity::Always {
                assert_eq!(at_time(now), at_time(now.plus_seconds(86_400.0)));
            } else {
                assert_ne!(at_time(now), at_time(now.plus_seconds(1.0)));
            }
        }
    }
    assert!(
        until > 0 && always > 0 && never > 0,
        "{until} {always} {never}"
    );
}
