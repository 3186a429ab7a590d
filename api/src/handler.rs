//! One request, end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use audrey_core::query::{
    self, fingerprint, DeploymentFilter, DeploymentOrder, DeploymentReportParts, ReportContext,
};
use audrey_core::rows::fnv1a;
use audrey_core::rows::Deployment;
use audrey_core::views::ViewRead;
use audrey_core::{DeploymentId, Status, Timestamp};
use audrey_store::{Reader, StoreError};

use crate::cache::{Key, Lookup, Reach, Rendered, Validity};
use crate::routes::{Route, RouteError};
use crate::{xml, ApiState};

/// Longest request path (with query) we read.
pub const MAX_PATH_BYTES: usize = 2048;
/// Most header bytes (names and values) we read.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most deployments one page lists.
pub const MAX_PAGE: u64 = 1000;
/// The largest `offset` a page may start at (the OpenAPI document's
/// int64 maximum).
pub const MAX_OFFSET: u64 = i64::MAX as u64;

const XML: &str = "application/xml; charset=utf-8";
const JSON: &str = "application/json";

pub use crate::routes::Format;

/// A request that ends in an error status with an XML error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store read failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store could not be read",
        )
    }
}

/// The answer before HTTP framing.
pub(crate) struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    /// Reports get an ETag (of their content, the freshness watermark
    /// aside) and may answer 304.
    etag: Option<String>,
}

impl Answer {
    /// A 200 that is not a report (no ETag).
    fn plain(content_type: &'static str, body: Vec<u8>) -> Self {
        Answer {
            status: StatusCode::OK,
            content_type,
            body,
            etag: None,
        }
    }
}

pub async fn handle(
    method: Method,
    path: warp::path::FullPath,
    query: String,
    headers: HeaderMap,
    state: Arc<ApiState>,
) -> warp::reply::Response {
    let started = Instant::now();
    let (label, answer) = match answer(&method, path.as_str(), &query, &headers, &state).await {
        Ok((label, answer)) => (label, answer),
        Err((label, e)) => (
            label,
            Answer {
                status: e.status,
                content_type: XML,
                body: xml::error(e.status.as_u16(), &e.message),
                etag: None,
            },
        ),
    };
    let response = frame(&method, &headers, answer);
    state.metrics.http_request(
        label,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A request's outcome with the label of the route it took (for metrics).
type WithRouteLabel<T> = Result<(&'static str, T), (&'static str, ApiError)>;

async fn answer(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    state: &Arc<ApiState>,
) -> WithRouteLabel<Answer> {
    const UNROUTED: &str = "unrouted";
    if path.len() + query.len() > MAX_PATH_BYTES {
        return Err((
            UNROUTED,
            ApiError::new(StatusCode::URI_TOO_LONG, "the request path is too long"),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err((
            UNROUTED,
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "the request headers are too large",
            ),
        ));
    }
    let route = Route::parse(path).map_err(|e| {
        let error = match e {
            RouteError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            RouteError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
        };
        (UNROUTED, error)
    })?;
    let label = route.label();
    let fail = |e: ApiError| (label, e);
    if method != Method::GET && method != Method::HEAD {
        return Err(fail(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here: use GET or HEAD"),
        )));
    }
    if let Route::Ui(asset) = route {
        // The page's own files: no data in them, so no token; any Accept.
        let body = asset.body.to_vec();
        let etag = Some(crate::ui::etag(asset));
        return Ok((
            label,
            Answer {
                etag,
                ..Answer::plain(asset.content_type, body)
            },
        ));
    }
    if route.is_report() {
        authorize(headers, state.settings.api_token.as_deref()).map_err(fail)?;
    }
    let format = if route == Route::Metrics {
        Format::Xml // unused: metrics are text
    } else {
        negotiate(headers).map_err(fail)?
    };
    match &route {
        Route::Checkpoint => {
            return checkpoint(query, state)
                .await
                .map(|a| (label, a))
                .map_err(fail)
        }
        Route::CheckpointFile(name, file) => {
            return checkpoint_file(name, file, query, state)
                .map(|a| (label, a))
                .map_err(fail)
        }
        _ => {}
    }
    let (query, wait) = long_poll(query).map_err(fail)?;
    let Some(wait) = wait.filter(|_| route.is_report()) else {
        return compute(&route, &query, format, state)
            .await
            .map(|a| (label, a))
            .map_err(fail);
    };
    // A long-poll: while the report is still the one the reader has (its
    // If-None-Match), wait for the views to change (or the clock to make
    // a deployment stalled, a config server down) and look again; answer
    // as soon as it differs, or with the same (a 304) when `wait` is over.
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = state.subscribe_to_changes();
    let mut answer = compute(&route, &query, format, state).await.map_err(fail)?;
    // The look the request began with does not count: the first change
    // after it is looked at at once.
    let mut looked = tokio::time::Instant::now() - LONG_POLL_COALESCE;
    while answer.status == StatusCode::OK
        && !state.stopping()
        && answer
            .etag
            .as_deref()
            .is_some_and(|etag| if_none_match(headers, etag))
    {
        tokio::select! {
            _ = changes.changed() => {
                // The first batch after a quiet spell is looked at at
                // once; in a burst, at most one look per interval.
                tokio::time::sleep_until(looked + LONG_POLL_COALESCE).await;
                changes.borrow_and_update();
            }
            _ = tokio::time::sleep(LONG_POLL_CLOCK_CHECK) => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
        looked = tokio::time::Instant::now();
        answer = compute(&route, &query, format, state).await.map_err(fail)?;
    }
    Ok((label, answer))
}

/// The longest `?wait=` a long-poll may ask for: longer than most proxies'
/// idle timeouts already.
const MAX_LONG_POLL: Duration = Duration::from_secs(300);
/// How often a long-poll looks again with no event at all: what changes
/// with the clock alone (stalled, a config server down) shows this late.
const LONG_POLL_CLOCK_CHECK: Duration = Duration::from_secs(2);
/// The least time between two looks of one long-poll: in a burst of
/// batches, a waiting reader computes its report at most 100 times a
/// second (the first batch after a quiet spell is looked at at once).
const LONG_POLL_COALESCE: Duration = Duration::from_millis(10);

/// Takes `wait=` (a duration: `1500ms`, `30s`, `2m`, bare seconds) out of
/// the query.
fn long_poll(query: &str) -> Result<(String, Option<Duration>), ApiError> {
    let mut wait = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("wait", value)) => {
                let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                let parsed = parse_wait(&value).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "wait must be whole ms, s or m (1500ms, 30s, 2m) of at most {} s",
                            MAX_LONG_POLL.as_secs()
                        ),
                    )
                })?;
                wait = Some(parsed);
            }
            _ => rest.push(pair),
        }
    }
    Ok((rest.join("&"), wait))
}

/// A `wait=` value: whole milliseconds (`ms`), seconds (`s`, or no unit)
/// or minutes (`m`), at most [`MAX_LONG_POLL`]. Exactly what the OpenAPI
/// document's pattern for it allows, no more (no fraction, no sign, no
/// space, no compound `1m30s`), so the document can say what gets 400.
fn parse_wait(text: &str) -> Option<Duration> {
    let (digits, unit_ms) = if let Some(d) = text.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = text.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = text.strip_suffix('m') {
        (d, 60_000)
    } else {
        (text, 1000)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are allowed; past them, a value within the bound has
    // at most 6 digits (300000ms).
    let significant = digits.trim_start_matches('0');
    if significant.len() > 6 {
        return None;
    }
    let n: u64 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    let wait = Duration::from_millis(n * unit_ms);
    (wait <= MAX_LONG_POLL).then_some(wait)
}

/// Runs a route once: small reads on the request's task, the rest on the
/// blocking pool.
async fn compute(
    route: &Route,
    query: &str,
    format: Format,
    state: &Arc<ApiState>,
) -> Result<Answer, ApiError> {
    if let Some(key) = cache_key(route, format) {
        return cached(key, route, format, state).await;
    }
    // Deployment reports go through the cache (and see their size there).
    if route.reads_a_few_rows() {
        // A handful of point reads, mostly from RocksDB's caches: cheaper
        // than the hop to the blocking pool and back.
        return run(route, query, format, state);
    }
    let state = Arc::clone(state);
    let query = query.to_owned();
    let route = route.clone();
    tokio::task::spawn_blocking(move || run(&route, &query, format, &state))
        .await
        .unwrap_or_else(|e| Err(panicked(e)))
}

/// The 500 of a request whose work on the blocking pool panicked.
fn panicked(e: tokio::task::JoinError) -> ApiError {
    tracing::error!(error = %e, "a request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The reports the cache keeps: deployment, instance and service reports.
fn cache_key(route: &Route, format: Format) -> Option<Key> {
    match route {
        Route::Deployment(id) => Some(Key::Deployment(*id, format)),
        Route::Instance(id) => Some(Key::Instance(*id, format)),
        Route::Service(id, name) => Some(Key::Service(*id, name.clone(), format)),
        _ => None,
    }
}

/// A report through the cache ([`crate::cache`]): kept and still right,
/// a copy with the latest watermark put in, no store read; else computed
/// (on the request's task when small) and kept.
async fn cached(
    key: Key,
    route: &Route,
    format: Format,
    state: &Arc<ApiState>,
) -> Result<Answer, ApiError> {
    // The epoch before any read: whatever is read after holds every batch
    // applied up to it.
    let epoch = state.store.writes();
    // The watermark before the report's snapshot: a report is at least as
    // fresh as its as-of.
    let as_of = state
        .reports
        .as_of(epoch, || state.store.reader().as_of())?;
    // One moment for the whole answer: the report, and its durations.
    let ctx = state.report_context();
    let now = ctx.now;
    // A deployment report made from its own rows stays right across
    // batches until the store says one of them changed.
    let unchanged_after = |kept| match route {
        Route::Deployment(id) => !state.store.deployment_changed_after(*id, kept),
        _ => false,
    };
    let stale = match state.reports.get(&key, epoch, now, unchanged_after) {
        Lookup::Hit(rendered) => return Ok(answer_of(&rendered, format, as_of, now)),
        Lookup::Stale(rendered, validity) => Some((rendered, validity)),
        Lookup::Miss => None,
    };
    // A deployment whose parts are kept: its report at this moment, with
    // no store read.
    if let Route::Deployment(id) = route {
        if let Some(parts) = state.reports.parts(*id, epoch, unchanged_after) {
            let reach = Reach::of(&parts);
            let (rendered, validity) = if is_small(parts.instances() as i64) {
                render_deployment(&parts, format, stale, &ctx)
            } else {
                // Rendering a large one would hold up the worker thread.
                tokio::task::spawn_blocking(move || render_deployment(&parts, format, stale, &ctx))
                    .await
                    .map_err(panicked)?
            };
            let answer = answer_of(&rendered, format, as_of, now);
            state.reports.put(key, rendered, epoch, validity, reach);
            return Ok(answer);
        }
    }
    // A deployment's row says how large its report is: read once, on the
    // snapshot the report is then built from here (one view of the store).
    // No row: the 404 is answered from that read, here.
    let (inline, read) = match route {
        Route::Deployment(id) => {
            let reader = state.store.reader();
            match reader.deployment(*id)? {
                Some(row) if is_small(row.tally.instances.total()) => (true, Some((reader, row))),
                Some(_) => (false, None),
                None => return Err(no_deployment(*id)),
            }
        }
        _ => (true, None),
    };
    let (rendered, validity, reach) = if inline {
        render_report(route, format, state, &ctx, stale, read, epoch)?
    } else {
        let state = Arc::clone(state);
        let route = route.clone();
        tokio::task::spawn_blocking(move || {
            render_report(&route, format, &state, &ctx, stale, None, epoch)
        })
        .await
        .unwrap_or_else(|e| Err(panicked(e)))?
    };
    let answer = answer_of(&rendered, format, as_of, now);
    state.reports.put(key, rendered, epoch, validity, reach);
    Ok(answer)
}

/// A 200 with a rendered report at `now` and the watermark.
fn answer_of(
    rendered: &Rendered,
    format: Format,
    as_of: Option<Timestamp>,
    now: Timestamp,
) -> Answer {
    Answer {
        status: StatusCode::OK,
        content_type: rendered.content_type,
        body: rendered.body_with(format, as_of, now),
        etag: Some(rendered.etag.clone()),
    }
}

/// Computes a deployment, instance or service report on a fresh snapshot
/// and renders it, unless `stale` (kept from an older epoch) shows the
/// same state: then its rendering is reused. With until when it reads
/// the same. `read`: a snapshot taken after the as-of was read and the
/// deployment's row read from it (to see the report's size), which the
/// report is built from instead of reading the row again. A deployment
/// report's parts are kept for `epoch` (read before the snapshot).
fn render_report<'s>(
    route: &Route,
    format: Format,
    state: &'s ApiState,
    ctx: &ReportContext,
    stale: Option<(Arc<Rendered>, Validity)>,
    read: Option<(Reader<'s>, Deployment)>,
    epoch: u64,
) -> Result<(Arc<Rendered>, Validity, Reach), ApiError> {
    let (reader, deployment) = match read {
        Some((reader, row)) => (reader, Some(row)),
        None => (state.store.reader(), None),
    };
    let not_found = |what: String| ApiError::new(StatusCode::NOT_FOUND, what);
    let made = match route {
        Route::Deployment(id) => {
            let row = match deployment {
                Some(row) => Some(row),
                None => reader.deployment(*id)?,
            };
            let parts = match row {
                Some(row) => query::deployment_report_parts(&reader, row)?,
                None => None,
            }
            .ok_or_else(|| no_deployment(*id))?;
            let parts = Arc::new(parts);
            state.reports.put_parts(*id, Arc::clone(&parts), epoch);
            let (rendered, validity) = render_deployment(&parts, format, stale, ctx);
            (rendered, validity, Reach::of(&parts))
        }
        Route::Instance(id) => {
            let r = query::instance_report(&reader, *id, ctx)?
                .ok_or_else(|| not_found(format!("no instance {id}")))?;
            let durations = r.durations();
            let state = fingerprint(&r);
            let rendered = finish(&r, state, xml::instance, format, stale, ctx.now, &durations);
            (rendered, Validity::Always, Reach::Epoch)
        }
        Route::Service(id, name) => {
            let r = query::service_report(&reader, *id, name, ctx)?
                .ok_or_else(|| not_found(format!("no service `{name}` on instance {id}")))?;
            let durations = r.durations();
            let durations = durations.as_slice();
            let state = fingerprint(&r);
            let rendered = finish(&r, state, xml::service, format, stale, ctx.now, durations);
            (rendered, Validity::Always, Reach::Epoch)
        }
        _ => unreachable!("only reports the cache keeps come here"),
    };
    Ok(made)
}

/// A deployment's report from its parts at `ctx.now`, rendered (or
/// `stale` reused, as [`finish`] says).
fn render_deployment(
    parts: &DeploymentReportParts,
    format: Format,
    stale: Option<(Arc<Rendered>, Validity)>,
    ctx: &ReportContext,
) -> (Arc<Rendered>, Validity) {
    let r = parts.at(ctx);
    let validity = Validity::of_deployment(parts, &r, ctx);
    let durations = parts.durations();
    let durations = durations.as_slice();
    let state = fingerprint(&(&r, parts.clock_inputs()));
    let rendered = finish(
        &r,
        state,
        xml::deployment,
        format,
        stale,
        ctx.now,
        durations,
    );
    (rendered, validity)
}

/// Renders a report in `format` with the ETag of `state` (its
/// fingerprint, with what else it is computed from); or reuses `stale`
/// when it names the same state, its durations run from the same starts
/// and what the clock changes in it (an "ago", a config server's status)
/// still reads as when `stale` was rendered at `now`: then the bytes are
/// the same, as `state` leaves out only what moves with the clock.
/// `durations`: the report's durations in the order it writes them, with
/// the start of each still running, whose value is left out of the bytes
/// kept.
fn finish<R: Serialize>(
    report: &R,
    state: u64,
    xml: impl FnOnce(&R) -> Vec<u8>,
    format: Format,
    stale: Option<(Arc<Rendered>, Validity)>,
    now: Timestamp,
    durations: &[Option<Timestamp>],
) -> Arc<Rendered> {
    let etag = report_etag(state, format);
    let starts = || durations.iter().flatten().copied();
    let same = |(rendered, kept): &(Arc<Rendered>, Validity)| {
        rendered.etag == etag
            && kept.holds_at(now)
            && rendered.running.iter().map(|r| r.1).eq(starts())
    };
    if let Some((rendered, _)) = stale.filter(same) {
        return rendered;
    }
    let (content_type, body) = match format {
        Format::Xml => (XML, xml(report)),
        Format::Json => (
            JSON,
            serde_json::to_vec(report).expect("reports always serialise"),
        ),
    };
    // Kept for long: only the bytes it needs (renderers grow by doubling).
    let mut body = body;
    let running = cut_durations(&mut body, format, durations);
    body.shrink_to_fit();
    let as_of_at = as_of_point(&body, format);
    let rendered = Rendered {
        content_type,
        body,
        as_of_at,
        running,
        etag,
    };
    Arc::new(rendered)
}

/// The weak ETag of a report's state (its fingerprint) in one format.
fn report_etag(state: u64, format: Format) -> String {
    let digest = fnv1a(state.to_be_bytes().into_iter().chain([format as u8]));
    format!("W/\"{digest:016x}\"")
}

/// Most instances a deployment may have for its report to be built on the
/// request's own task: beyond, reading them would hold up the other
/// requests (and the consumer) sharing that worker thread.
const INLINE_DEPLOYMENT_INSTANCES: i64 = 64;

/// Whether a deployment of `instances` instances is small enough to
/// report inline.
fn is_small(instances: i64) -> bool {
    instances <= INLINE_DEPLOYMENT_INSTANCES
}

/// The 404 of a deployment the store does not hold.
fn no_deployment(id: DeploymentId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no deployment {id}"))
}

/// Runs the query for a route on a fresh snapshot and renders it.
fn run(route: &Route, query: &str, format: Format, state: &ApiState) -> Result<Answer, ApiError> {
    let ctx = state.report_context();
    let store = &state.store;
    let not_found = |what: String| ApiError::new(StatusCode::NOT_FOUND, what);
    // Read before the report: a report is at least as fresh as its as-of.
    let as_of = store.reader().as_of()?;
    // Only the representation asked for is rendered. The ETag names the
    // state shown: of the body, or the report's fingerprint when it has
    // one (so a running service's duration so far does not change it);
    // never the watermark, added after, which moves with every event
    // anywhere. Weak: bodies of one ETag may differ in those.
    let report =
        |body_xml: &dyn Fn() -> Vec<u8>, json: &dyn erased::Json, state: Option<u64>| -> Answer {
            let (content_type, body) = match format {
                Format::Xml => (XML, body_xml()),
                Format::Json => (JSON, json.to_json()),
            };
            let etag = match state {
                Some(state) => report_etag(state, format),
                None => format!("W/\"{:016x}\"", fnv1a(body.iter().copied())),
            };
            Answer {
                status: StatusCode::OK,
                content_type,
                body: with_as_of(body, format, as_of),
                etag: Some(etag),
            }
        };
    match route {
        Route::Deployment(_) | Route::Instance(_) | Route::Service(..) => {
            unreachable!("answered through the cache")
        }
        Route::DeploymentEvents(id) => {
            let known = store.reader().deployment_exists(*id)?;
            if !known {
                return Err(no_deployment(*id));
            }
            let (offset, limit) = paging(query)?;
            let page = store.history(*id, None, offset, limit)?;
            let json = history_json(&page, *id, None, offset, limit);
            Ok(report(&|| xml::events(&json), &json, None))
        }
        Route::InstanceEvents(id) => {
            let deployment = query::instance_report(&store.reader(), *id, &ctx)?
                .ok_or_else(|| not_found(format!("no instance {id}")))?
                .deployment;
            let (offset, limit) = paging(query)?;
            let page = store.history(deployment, Some(*id), offset, limit)?;
            let json = history_json(&page, deployment, Some(*id), offset, limit);
            Ok(report(&|| xml::events(&json), &json, None))
        }
        Route::ConfigServers => {
            let servers = query::config_servers(&store.reader(), &ctx)?;
            #[derive(Serialize)]
            struct Servers<'a> {
                config_servers: &'a [query::ConfigServerState],
            }
            Ok(report(
                &|| xml::config_servers(&servers),
                &Servers {
                    config_servers: &servers,
                },
                None,
            ))
        }
        Route::Deployments => {
            let params = ListParams::parse(query)?;
            let page = query::deployment_page_in(
                &store.reader(),
                params.filter,
                params.order,
                params.offset,
                params.limit,
                &ctx,
            )?;
            #[derive(Serialize)]
            struct Page<'a> {
                #[serde(skip_serializing_if = "Option::is_none")]
                status: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                sort: Option<&'a str>,
                #[serde(flatten)]
                page: &'a query::DeploymentPage,
            }
            let status = params.status.as_deref();
            let sort = params.sort;
            Ok(report(
                &|| xml::deployments(&page, status, sort),
                &Page {
                    status,
                    sort,
                    page: &page,
                },
                None,
            ))
        }
        Route::Health => {
            let max_lag = health_max_lag(query)?;
            let rocksdb_open = store.views_version().is_ok();
            let amqp = state.amqp_connected();
            let waiting = state.replication.waiting();
            let lag = crate::replication::lag_seconds(waiting, as_of, ctx.now);
            let caught_up = max_lag.is_none_or(|max| lag <= max);
            let ready = rocksdb_open && amqp && caught_up;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let health = xml::Health {
                ready,
                rocksdb_open,
                amqp_connected: amqp,
                as_of,
                waiting,
                lag_seconds: lag,
            };
            let body = match format {
                Format::Xml => xml::health(&health),
                Format::Json => serde_json::to_vec(&health).expect("JSON"),
            };
            let content_type = if format == Format::Xml { XML } else { JSON };
            Ok(Answer {
                status,
                content_type,
                body,
                etag: None,
            })
        }
        Route::Metrics => Ok(Answer::plain(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.scrape(store, &ctx)?.into_bytes(),
        )),
        Route::Checkpoint | Route::CheckpointFile(..) => {
            unreachable!("answered before: they wait or stream")
        }
        Route::Ui(_) => unreachable!("answered before: static files"),
    }
}

/// Puts the freshness watermark in a rendered report: the `as-of`
/// attribute of the XML root element, or the `as_of` key of the JSON
/// object. Nothing when no event was applied yet.
fn with_as_of(body: Vec<u8>, format: Format, as_of: Option<Timestamp>) -> Vec<u8> {
    if as_of.is_none() {
        return body;
    }
    let rendered = Rendered {
        content_type: "",
        as_of_at: as_of_point(&body, format),
        body,
        running: Vec::new(),
        etag: String::new(),
    };
    rendered.body_with(format, as_of, Timestamp::now())
}

/// Takes the values of the durations still running out of a report's
/// rendered `body`; `durations` are all the durations it shows, in order,
/// with the start of those still running. A duration is the value of a
/// `duration_seconds` member in JSON (a string's quotes are escaped, so
/// no text can look like one), or the text of a `<duration-seconds>`
/// element in XML (text escapes `<`); all follow the watermark's place.
/// Where each value was, with its start.
fn cut_durations(
    body: &mut Vec<u8>,
    format: Format,
    durations: &[Option<Timestamp>],
) -> Vec<(usize, Timestamp)> {
    let (opening, ends): (&[u8], &[u8]) = match format {
        Format::Json => (b"\"duration_seconds\":", b",}"),
        Format::Xml => (b"<duration-seconds>", b"<"),
    };
    let mut running = Vec::new();
    if durations.iter().all(Option::is_none) {
        return running; // nothing runs: no need to look
    }
    let mut from = 0;
    for duration in durations {
        let Some(found) = body[from..]
            .windows(opening.len())
            .position(|w| w == opening)
        else {
            debug_assert!(false, "a report shows each of its durations");
            break;
        };
        let at = from + found + opening.len();
        let len = body[at..]
            .iter()
            .position(|b| ends.contains(b))
            .unwrap_or(0);
        match duration {
            Some(since) => {
                body.drain(at..at + len);
                running.push((at, *since));
                from = at;
            }
            None => from = at + len,
        }
    }
    running
}

/// Where the watermark goes in a rendered report (see
/// [`Rendered::body_with`]): after the `{` of the JSON object (alone in
/// it when the object is empty), or at the end of the XML root element's
/// start tag.
fn as_of_point(body: &[u8], format: Format) -> Option<(usize, bool)> {
    match format {
        Format::Json => {
            let alone = body.starts_with(b"{}");
            body.iter().position(|b| *b == b'{').map(|p| (p + 1, alone))
        }
        Format::Xml => {
            // The root element follows the declaration; its start tag ends
            // at its first `>` (attribute values escape `>`), or `/>`.
            let root = body.windows(2).position(|w| w == b"?>").and_then(|decl| {
                body[decl + 2..]
                    .iter()
                    .position(|b| *b == b'<')
                    .map(|p| decl + 2 + p)
            });
            let end = root.and_then(|r| body[r..].iter().position(|b| *b == b'>').map(|p| r + p));
            end.map(|e| if body[e - 1] == b'/' { e - 1 } else { e })
                .map(|at| (at, false))
        }
    }
}

/// `?max-lag=5s` on `/health`: how far behind the service may be and still
/// answer ready.
fn health_max_lag(query: &str) -> Result<Option<f64>, ApiError> {
    let mut max = None;
    for (key, value) in form_pairs(query) {
        match key.as_str() {
            "max-lag" => {
                let lag: audrey_core::domain::HumanDuration = value
                    .parse()
                    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("max-lag: {e}")))?;
                max = Some(lag.as_secs_f64());
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter `{other}` (expected max-lag)"),
                ))
            }
        }
    }
    Ok(max)
}

/// The key-value pairs of a query string, percent-decoded.
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

/// How long a checkpoint request waits for its barrier to pass.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `/replication/checkpoint?barrier=ID`: waits until the barrier has
/// passed this replica's queue (so the store holds every event published
/// before the asking replica's queue existed), then checkpoints the store
/// and lists the checkpoint's files.
async fn checkpoint(query: &str, state: &Arc<ApiState>) -> Result<Answer, ApiError> {
    let mut barrier = None;
    for (key, value) in form_pairs(query) {
        match key.as_str() {
            "barrier" if crate::replication::is_plain_name(&value) => barrier = Some(value),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "expected barrier=ID (letters, digits, `.`, `_`, `-`)",
                ))
            }
        }
    }
    let barrier = barrier
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "a checkpoint needs barrier=ID"))?;
    if !state
        .replication
        .wait_for_barrier(&barrier, BARRIER_WAIT)
        .await
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "barrier {barrier} has not reached this replica (is it a replica, and consuming?)"
            ),
        ));
    }
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let root = crate::replication::checkpoints_dir(state.store.path());
        crate::replication::remove_old_checkpoints(&root);
        let name = crate::replication::new_checkpoint_name();
        let dir = root.join(&name);
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "checkpoint failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the checkpoint failed")
        };
        std::fs::create_dir_all(&root).map_err(|e| failed(&e))?;
        state.store.checkpoint(&dir).map_err(|e| failed(&e))?;
        let manifest = crate::replication::manifest(&name, &dir).map_err(|e| failed(&e))?;
        Ok(Answer::plain(
            JSON,
            serde_json::to_vec(&manifest).expect("JSON"),
        ))
    })
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the checkpoint failed",
        ))
    })
}

/// `/replication/checkpoint/{name}/{file}?offset=N`: the next chunk of a
/// checkpoint file (empty at its end).
fn checkpoint_file(
    name: &str,
    file: &str,
    query: &str,
    state: &ApiState,
) -> Result<Answer, ApiError> {
    let mut offset = 0;
    for (key, value) in form_pairs(query) {
        match (key.as_str(), value.parse::<u64>()) {
            ("offset", Ok(n)) => offset = n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "expected offset=N (bytes)",
                ))
            }
        }
    }
    let path = crate::replication::checkpoints_dir(state.store.path())
        .join(name)
        .join(file);
    let chunk = crate::replication::read_chunk(&path, offset).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no checkpoint file {name}/{file}"),
        )
    })?;
    Ok(Answer::plain("application/octet-stream", chunk))
}

/// Lets `run` hand any report to the JSON encoder.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("reports always serialise")
        }
    }
}

fn history_json(
    page: &audrey_store::HistoryPage,
    deployment: audrey_core::DeploymentId,
    instance: Option<audrey_core::InstanceId>,
    offset: u64,
    limit: u64,
) -> xml::HistoryJson<'_> {
    xml::HistoryJson {
        total: page.total,
        offset,
        limit,
        deployment,
        instance,
        events: page.events.iter().map(xml::HistoryEvent::of).collect(),
    }
}

/// `offset` (0 to [`MAX_OFFSET`], default 0) and `limit` (1 to
/// [`MAX_PAGE`], default 100), nothing else.
fn paging(query: &str) -> Result<(u64, u64), ApiError> {
    let params = ListParams::parse(query)?;
    if params.status.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown query parameter `status`",
        ));
    }
    Ok((params.offset, params.limit))
}

struct ListParams {
    filter: DeploymentFilter,
    status: Option<String>,
    order: DeploymentOrder,
    /// The order as asked (`uuid`, `age`, `progress`), echoed in the page.
    sort: Option<&'static str>,
    offset: u64,
    limit: u64,
}

impl ListParams {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
        let mut params = ListParams {
            filter: DeploymentFilter::All,
            status: None,
            order: DeploymentOrder::Uuid,
            sort: None,
            offset: 0,
            limit: 100,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            match key {
                "status" => {
                    params.filter = match value.as_ref() {
                        "stalled" => DeploymentFilter::Stalled,
                        other => {
                            DeploymentFilter::Status(Status::parse(other).ok_or_else(|| {
                                bad("status must be one of incomplete, error, success, stalled"
                                    .into())
                            })?)
                        }
                    };
                    params.status = Some(value.into_owned());
                }
                "sort" => {
                    let (order, word) = match value.as_ref() {
                        "uuid" => (DeploymentOrder::Uuid, "uuid"),
                        "age" => (DeploymentOrder::Age, "age"),
                        "progress" => (DeploymentOrder::Progress, "progress"),
                        _ => return Err(bad("sort must be one of uuid, age, progress".into())),
                    };
                    params.order = order;
                    params.sort = Some(word);
                }
                "offset" => {
                    params.offset =
                        value
                            .parse()
                            .ok()
                            .filter(|o| *o <= MAX_OFFSET)
                            .ok_or_else(|| {
                                bad(format!(
                                    "offset must be a whole number from 0 to {MAX_OFFSET}"
                                ))
                            })?;
                }
                "limit" => {
                    params.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_PAGE).contains(l))
                        .ok_or_else(|| {
                            bad(format!("limit must be a whole number from 1 to {MAX_PAGE}"))
                        })?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown query parameter `{}`",
                        other.chars().take(40).collect::<String>()
                    )))
                }
            }
        }
        Ok(params)
    }
}

/// Checks the bearer token in constant time (for equal lengths).
fn authorize(headers: &HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same_length = given.len() == token.len();
    let difference = given
        .bytes()
        .zip(token.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_length && difference == 0 {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        ))
    }
}

/// XML unless the client prefers JSON; 406 if it accepts neither.
fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Xml);
    };
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/xml" | "text/xml" | "application/*" | "text/*" | "*/*" => Format::Xml,
            "application/json" => Format::Json,
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, format));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "this endpoint answers application/xml or application/json",
        )
    })
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// asks for this header).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = |t: &str| t.strip_prefix("W/").unwrap_or(t).to_owned();
    let etag = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || opaque(t) == etag
        })
}

/// HTTP framing: headers, ETag and 304, HEAD without a body.
fn frame(method: &Method, headers: &HeaderMap, answer: Answer) -> warp::reply::Response {
    let mut builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_TYPE, answer.content_type);
    let mut status = answer.status;
    let mut body = answer.body;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(header::ALLOW, "GET, HEAD");
    }
    if status == StatusCode::UNAUTHORIZED {
        builder = builder.header(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"audrey-reporting\"",
        );
    }
    if let Some(etag) = answer.etag.filter(|_| status == StatusCode::OK) {
        if if_none_match(headers, &etag) {
            status = StatusCode::NOT_MODIFIED;
            body = Vec::new();
        }
        builder = builder.header(header::ETAG, etag);
    }
    if *method == Method::HEAD {
        let length = body.len();
        builder = builder.header(header::CONTENT_LENGTH, HeaderValue::from(length));
        body = Vec::new();
    }
    builder
        .status(status)
        .body(body)
        .map(warp::reply::Reply::into_response)
        .unwrap_or_else(|_| warp::reply::Reply::into_response(StatusCode::INTERNAL_SERVER_ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use crate::{ApiSettings, Metrics};
    use audrey_core::scenario::script::{
        at, blog_registered, blog_with_mysql_running, DeploymentScript, BLOG, MYSQL,
    };
    use audrey_core::scenario::{ConfigServerScript, Shape};
    use audrey_core::Timestamp;
    use audrey_store::Store;

    /// `wait=` takes what the OpenAPI document's pattern allows, no more.
    #[test]
    fn wait_is_whole_ms_seconds_or_minutes_up_to_300_s() {
        let ms = |n| Some(Duration::from_millis(n));
        for (text, wait) in [
            ("0", ms(0)),
            ("30", ms(30_000)),
            ("30s", ms(30_000)),
            ("0300s", ms(300_000)),
            ("1500ms", ms(1_500)),
            ("300000ms", ms(300_000)),
            ("000000000000000000001ms", ms(1)),
            ("5m", ms(300_000)),
            ("0m", ms(0)),
        ] {
            assert_eq!(parse_wait(text), wait, "{text}");
        }
        for text in [
            "",
            "s",
            "ms",
            "301",
            "300001ms",
            "6m",
            "1h",
            "1.5s",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1m30s",
            "5ss",
            "5sm",
            "9999999999999999999999s",
        ] {
            assert_eq!(parse_wait(text), None, "{text}");
        }
    }

    #[test]
    fn only_small_deployments_are_reported_on_the_requests_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store
            .apply_batch(&blog_registered(&mut DeploymentScript::new(BLOG)))
            .unwrap();
        let shape = Shape {
            instances: INLINE_DEPLOYMENT_INSTANCES as usize + 1,
            services_per_instance: 1,
            ..Shape::default()
        };
        let start = Timestamp::from_unix_seconds(1_795_615_200);
        let large = ConfigServerScript::new("/configserver/cs-big", 3).deployment(start, &shape);
        store.apply_batch(&large).unwrap();
        let state = ApiState::new(store, Arc::new(Metrics::new()), ApiSettings::default());

        let row = |id| state.store.reader().deployment(id).unwrap().unwrap();
        let instances = |row: Deployment| row.tally.instances.total();
        assert!(is_small(instances(row(DeploymentId::parse(BLOG).unwrap()))));
        assert!(!is_small(instances(row(large[0].deployment().unwrap()))));
    }

    fn parts_of(store: &Store, id: DeploymentId) -> DeploymentReportParts {
        let reader = store.reader();
        let row = reader.deployment(id).unwrap().unwrap();
        query::deployment_report_parts(&reader, row)
            .unwrap()
            .unwrap()
    }

    /// The report rendered from scratch at `ctx.now`, as a string.
    fn rendered_at(parts: &DeploymentReportParts, format: Format, ctx: &ReportContext) -> String {
        let r = parts.at(ctx);
        String::from_utf8(match format {
            Format::Xml => xml::deployment(&r),
            Format::Json => serde_json::to_vec(&r).unwrap(),
        })
        .unwrap()
    }

    /// As the cache serves a deployment's report (a kept rendering while
    /// its validity holds, with the running duration put in at each
    /// answer; rendered again after), every answer is the report rendered
    /// from scratch at that moment.
    #[test]
    fn a_kept_deployment_report_reads_as_one_rendered_at_each_moment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply_batch(&blog_with_mysql_running(&mut DeploymentScript::new(BLOG)))
            .unwrap();
        let parts = parts_of(&store, DeploymentId::parse(BLOG).unwrap());
        for format in [Format::Xml, Format::Json] {
            let ctx = |ms: i64| ReportContext::at(at(0).plus_seconds(ms as f64 / 1000.0));
            let mut kept = render_deployment(&parts, format, None, &ctx(35_000));
            assert_eq!(kept.0.running.len(), 1, "the deployment's duration runs");
            let (mut renders, mut answers) = (1, 0);
            let mut texts = BTreeSet::new();
            // From 35 s to 50 s, every 125 ms: mysql's run becomes
            // longer than wordpress's (10 s) at 41 s.
            for ms in (35_000..=50_000).step_by(125) {
                let ctx = ctx(ms);
                if !kept.1.holds_at(ctx.now) {
                    let fresh = render_deployment(&parts, format, Some(kept.clone()), &ctx);
                    assert!(!Arc::ptr_eq(&fresh.0, &kept.0), "reused past its validity");
                    kept = fresh;
                    renders += 1;
                }
                let answer = String::from_utf8(kept.0.body_with(format, None, ctx.now)).unwrap();
                assert_eq!(
                    answer,
                    rendered_at(&parts, format, &ctx),
                    "{format:?} at {ms} ms"
                );
                texts.insert(answer.contains("longer than any other run"));
                answers += 1;
            }
            // Kept across moments, and rendered again as the text changed.
            assert!(
                renders > 1 && renders * 4 < answers,
                "{renders} of {answers}"
            );
            assert_eq!(texts.len(), 2, "the blocker came to read as slower");
        }
    }

    /// A late event older than the deployment's first moves where its
    /// duration starts, and nothing else in its report: its ETag changes
    /// and its kept rendering is not reused.
    #[test]
    fn a_late_event_older_than_the_first_is_not_answered_from_the_kept_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cs = DeploymentScript::new(BLOG);
        store
            .apply_batch(&blog_with_mysql_running(&mut cs))
            .unwrap();
        let blog = DeploymentId::parse(BLOG).unwrap();
        let before = parts_of(&store, blog);
        store.apply_batch(&[cs.contacted(-50, MYSQL)]).unwrap();
        let after = parts_of(&store, blog);
        let then = ReportContext::at(at(35));
        let now = ReportContext::at(at(36));
        assert_eq!(
            fingerprint(&before.at(&now)),
            fingerprint(&after.at(&now)),
            "the report's own fingerprint does not see it"
        );
        assert_ne!(
            rendered_at(&before, Format::Json, &now),
            rendered_at(&after, Format::Json, &now)
        );
        for format in [Format::Xml, Format::Json] {
            let kept = render_deployment(&before, format, None, &then);
            let fresh = render_deployment(&after, format, Some(kept.clone()), &now);
            assert_ne!(fresh.0.etag, kept.0.etag, "{format:?}");
            let answer = String::from_utf8(fresh.0.body_with(format, None, now.now)).unwrap();
            assert_eq!(answer, rendered_at(&after, format, &now), "{format:?}");
        }
    }

    #[tokio::test]
    async fn an_unknown_deployment_is_a_404_and_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let state = Arc::new(ApiState::new(
            store,
            Arc::new(Metrics::new()),
            ApiSettings::default(),
        ));
        let blog = DeploymentId::parse(BLOG).unwrap();
        let route = Route::Deployment(blog);
        for _ in 0..2 {
            let Err(e) = compute(&route, "", Format::Xml, &state).await else {
                panic!("a report of a deployment the store does not hold");
            };
            assert_eq!(e.status, StatusCode::NOT_FOUND);
            assert_eq!(e.message, format!("no deployment {blog}"));
        }
        // Once it arrives, its report is served, not a kept 404.
        state
            .store
            .apply_batch(&blog_registered(&mut DeploymentScript::new(BLOG)))
            .unwrap();
        let answer = compute(&route, "", Format::Xml, &state).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
    }
}
