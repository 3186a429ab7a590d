//! The report cache answers what the uncached path answers, byte for byte,
//! whatever was applied since and whatever the time: two servers over one
//! store, one with the cache, one without, asked for every report after
//! every batch; and reports rendered at different times where the cache
//! says they read the same. A duration still running is the one figure
//! that differs from one answer to the next: it is compared apart.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use audrey_api::cache::{Key, Lookup, ReportCache, Validity};
use audrey_api::routes::Format;
use audrey_api::{xml, ApiSettings, ApiState, Metrics};
use audrey_core::projection::seconds_between;
use audrey_core::query::{self, ReportContext, Seconds};
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::views::ViewRead;
use audrey_core::{DeploymentId, Event, Timestamp};
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

/// A report's body with the values of its durations taken out, and
/// those values in order: a running one is the moment's.
fn without_durations(body: &[u8]) -> (String, Vec<f64>) {
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let (opening, ends): (&str, &[char]) = if text.starts_with('{') {
        ("\"duration_seconds\":", &[',', '}'])
    } else {
        ("<duration-seconds>", &['<'])
    };
    let (mut rest, mut out, mut values) = (text.as_str(), String::new(), Vec::new());
    while let Some(found) = rest.find(opening) {
        let at = found + opening.len();
        let len = rest[at..].find(ends).expect("its end");
        values.push(rest[at..at + len].parse().expect("seconds"));
        out.push_str(&rest[..at]);
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    (out, values)
}

/// A deployment's report at `ctx.now` and until when the cache may keep
/// it; whether its duration still runs.
fn deployment_report_validity(
    reader: &impl ViewRead,
    id: DeploymentId,
    ctx: &ReportContext,
) -> Option<(Validity, bool)> {
    let row = reader.deployment(id).ok()??;
    let parts = query::deployment_report_parts(reader, row).ok()??;
    let r = parts.at(ctx);
    Some((
        Validity::of_deployment(&parts, &r, ctx),
        parts.durations().flatten().is_some(),
    ))
}

/// How far a check of a deployment report keeps from the report's next
/// change: a check asks for it several times over a few milliseconds, and
/// its text (a blocker's "ago", say) may change with the clock in between.
const CLEAR_OF_CHANGE: f64 = 0.25;

/// Waits, if need be, until a deployment's report will read the same for
/// at least [`CLEAR_OF_CHANGE`] seconds, so that all the answers one check
/// compares were rendered at moments when the service's answer was one.
fn wait_clear_of_change(store: &Store, id: DeploymentId) {
    loop {
        let now = Timestamp::now();
        let ctx = ReportContext::at(now);
        let left = match deployment_report_validity(&store.reader(), id, &ctx) {
            Some((Validity::Until(end), _)) => seconds_between(now, end),
            _ => return,
        };
        if left >= CLEAR_OF_CHANGE {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(left.max(0.0) + 0.001));
    }
}

/// The cache's key of a report in either format.
type KeyOf = Box<dyn Fn(Format) -> Key>;

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
    let mut kept_running = 0;
    let mut hits_checked = 0;
    let mut kept_across = 0;
    for chunk in all.chunks(all.len() / 6 + 1) {
        store.apply_batch(chunk).unwrap();
        // Reports of deployments the batch did not touch are still kept
        // (and then answered below, the same as the uncached server's).
        for d in &deployments {
            let key = Key::Deployment(*d, Format::Xml);
            let unchanged_after = |kept| !store.deployment_changed_after(*d, kept);
            let lookup =
                cached
                    .reports
                    .get(&key, store.writes(), Timestamp::now(), unchanged_after);
            kept_across += usize::from(matches!(lookup, Lookup::Hit(_)));
        }
        cached.views_changed();
        plain.views_changed();
        let ctx = ReportContext::at(Timestamp::now());
        let reader = store.reader();
        let mut paths = Vec::new();
        for d in &deployments {
            let report = deployment_report_validity(&reader, *d, &ctx);
            let running = report.is_some_and(|(_, running)| running);
            let d = *d;
            let key: KeyOf = Box::new(move |format| Key::Deployment(d, format));
            paths.push((
                format!("/reports/deployment/{d}"),
                report.map(|(validity, _)| validity),
                running.then_some(key),
                Some(d),
            ));
        }
        for i in &instances {
            let i = *i;
            let report = query::instance_report(&reader, i, &ctx).unwrap();
            if let Some(r) = &report {
                for s in &r.services {
                    let name = s.name.clone();
                    let key: KeyOf = Box::new(move |f| Key::Service(i, name.clone(), f));
                    paths.push((
                        format!("/reports/instance/{i}/service/{}", s.name.as_str()),
                        Some(Validity::Always),
                        s.durations().flatten().map(|_| key),
                        None,
                    ));
                }
            }
            let running = report
                .as_ref()
                .is_some_and(|r| r.durations().iter().any(Option::is_some));
            let key: KeyOf = Box::new(move |format| Key::Instance(i, format));
            paths.push((
                format!("/reports/instance/{i}"),
                report.map(|_| Validity::Always),
                running.then_some(key),
                None,
            ));
        }
        for (path, validity, running, deployment) in &paths {
            for accept in ["application/xml", "application/json"] {
                if let Some(d) = deployment {
                    wait_clear_of_change(&store, *d);
                }
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
                    // Kept but for its running durations, which are the
                    // moment's: the rest is the same, and they grow from
                    // one answer to the next (asked for in this order).
                    Some(_) if running.is_some() => {
                        let (first, first_s) = without_durations(&first.body);
                        let (second, second_s) = without_durations(&second.body);
                        let (plain, plain_s) = without_durations(&plain.body);
                        assert_eq!(first, plain, "{path} {accept}");
                        assert_eq!(first, second, "{path} {accept}: the kept copy");
                        let apart = |a: &[f64], b: &[f64]| {
                            assert_eq!(a.len(), b.len(), "{path} {accept}");
                            a.iter().zip(b).map(|(a, b)| b - a).collect::<Vec<_>>()
                        };
                        let grown = apart(&first_s, &second_s)
                            .into_iter()
                            .chain(apart(&second_s, &plain_s));
                        assert!(
                            grown.clone().all(|d| d >= 0.0),
                            "{path} {accept}: {first_s:?} {second_s:?} {plain_s:?}"
                        );
                        assert!(
                            grown.clone().all(|d| d < 5.0),
                            "{path}: {first_s:?} {plain_s:?}"
                        );
                        // Kept, and answered with the durations of the
                        // moment, not the ones it was rendered with.
                        let format = match accept {
                            "application/xml" => Format::Xml,
                            _ => Format::Json,
                        };
                        let key = running.as_ref().unwrap()(format);
                        let lookup =
                            cached
                                .reports
                                .get(&key, store.writes(), Timestamp::now(), |_| false);
                        assert!(
                            matches!(lookup, Lookup::Hit(_)),
                            "{path} {accept}: not kept"
                        );
                        std::thread::sleep(std::time::Duration::from_millis(3));
                        let later = get(cached_port, path, &headers);
                        let (later, later_s) = without_durations(&later.body);
                        assert_eq!(later, second, "{path} {accept}");
                        let moved = apart(&second_s, &later_s);
                        assert!(
                            moved.iter().all(|d| *d >= 0.0) && moved.iter().any(|d| *d > 0.0),
                            "{path} {accept}: {second_s:?} {later_s:?}"
                        );
                        kept_running += 1;
                    }
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
    assert!(
        kept_running > 4,
        "only {kept_running} reports with a running duration were kept"
    );
    assert!(
        kept_across > 0,
        "no deployment report was kept across a batch about others"
    );
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
    let (mut until, mut always, mut running_kept) = (0, 0, 0);
    for d in &deployments {
        let (validity, running) = deployment_report_validity(&reader, *d, &at(now)).unwrap();
        // Both formats, with a running duration taken out.
        let render = |t| {
            let r = query::deployment_report(&reader, *d, &at(t))
                .unwrap()
                .unwrap();
            let (xml, json) = (xml::deployment(&r), serde_json::to_vec(&r).unwrap());
            if running {
                let ((xml, xml_s), (json, json_s)) =
                    (without_durations(&xml), without_durations(&json));
                assert_eq!(xml_s, json_s, "{d}");
                (xml.into_bytes(), json.into_bytes())
            } else {
                (xml, json)
            }
        };
        running_kept += usize::from(running);
        match validity {
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
    assert!(until > 0, "{until} {always}");
    assert!(running_kept > 0, "no running deployment's report is kept");

    // Instance and service reports: the same whatever the time, but for
    // their running durations, each the seconds since the start that
    // `durations` gives.
    let (mut running, mut finished) = (0, 0);
    let check = |what: &str,
                 at_time: &dyn Fn(Timestamp) -> (Vec<u8>, Vec<u8>),
                 starts: &[Option<Timestamp>]| {
        let year = now.plus_seconds(365.0 * 86_400.0);
        let mut seen = Vec::new();
        for t in [now, year] {
            let (xml, json) = at_time(t);
            let ((xml, xml_s), (json, json_s)) =
                (without_durations(&xml), without_durations(&json));
            assert_eq!(xml_s, json_s, "{what}");
            assert_eq!(
                xml_s.len(),
                starts.len(),
                "{what}: a start for each duration"
            );
            for (shown, start) in xml_s.iter().zip(starts) {
                if let Some(start) = start {
                    assert_eq!(*shown, Seconds::between(*start, t).rounded(), "{what}");
                }
            }
            let ended: Vec<f64> = xml_s
                .iter()
                .zip(starts)
                .filter(|(_, s)| s.is_none())
                .map(|(v, _)| *v)
                .collect();
            seen.push((xml, json, ended));
        }
        assert_eq!(
            seen[0], seen[1],
            "{what}: the same a year later but for its running durations"
        );
    };
    for i in &instances {
        let report = |t| {
            query::instance_report(&reader, *i, &at(t))
                .unwrap()
                .unwrap()
        };
        let r = report(now);
        let starts = r.durations();
        if starts.iter().any(Option::is_some) {
            running += 1;
        } else {
            finished += 1;
        }
        let at_time = |t| {
            let r = report(t);
            (xml::instance(&r), serde_json::to_vec(&r).unwrap())
        };
        check(&format!("{i}"), &at_time, &starts);
        for s in &r.services {
            let at_time = |t| {
                let r = query::service_report(&reader, *i, &s.name, &at(t))
                    .unwrap()
                    .unwrap();
                (xml::service(&r), serde_json::to_vec(&r).unwrap())
            };
            let starts: Vec<_> = s.durations().into_iter().collect();
            check(&format!("{i} {}", s.name.as_str()), &at_time, &starts);
        }
    }
    assert!(running > 0 && finished > 0, "{running} {finished}");
}
