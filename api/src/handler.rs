//! One request, end to end.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use audrey_core::query::{self, DeploymentFilter};
use audrey_core::rows::fnv1a;
use audrey_core::Status;
use audrey_store::StoreError;

use crate::routes::{Route, RouteError};
use crate::{xml, ApiState};

/// Longest request path (with query) we read.
pub const MAX_PATH_BYTES: usize = 2048;
/// Most header bytes (names and values) we read.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most deployments one page lists.
pub const MAX_PAGE: u64 = 1000;

const XML: &str = "application/xml; charset=utf-8";
const JSON: &str = "application/json";

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

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
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    /// Reports get an ETag and may answer 304.
    cacheable: bool,
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
                cacheable: false,
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
    if route.is_report() {
        authorize(headers, state.settings.api_token.as_deref()).map_err(fail)?;
    }
    let format = if route == Route::Metrics {
        Format::Xml // unused: metrics are text
    } else {
        negotiate(headers).map_err(fail)?
    };
    let inline = match route {
        Route::Deployment(id) => is_small(state, id),
        _ => route.reads_a_few_rows(),
    };
    if inline {
        // A handful of point reads, mostly from RocksDB's caches: cheaper
        // than the hop to the blocking pool and back.
        return run(&route, query, format, state)
            .map(|a| (label, a))
            .map_err(fail);
    }
    let state = Arc::clone(state);
    let query = query.to_owned();
    let result = tokio::task::spawn_blocking(move || run(&route, &query, format, &state))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a request handler panicked");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        });
    result.map(|a| (label, a)).map_err(fail)
}

/// Most instances a deployment may have for its report to be built on the
/// request's own task: beyond, reading them would hold up the other
/// requests (and the consumer) sharing that worker thread.
const INLINE_DEPLOYMENT_INSTANCES: i64 = 64;

/// Whether a deployment is small enough to report inline (one cached row
/// read). Unknown or unreadable: no, the blocking pool answers.
fn is_small(state: &ApiState, id: audrey_core::DeploymentId) -> bool {
    use audrey_core::views::ViewRead;
    matches!(
        state.store.reader().deployment(id),
        Ok(Some(d)) if d.tally.instances.total() <= INLINE_DEPLOYMENT_INSTANCES
    )
}

/// Runs the query for a route on a fresh snapshot and renders it.
fn run(route: &Route, query: &str, format: Format, state: &ApiState) -> Result<Answer, ApiError> {
    let ctx = state.report_context();
    let store = &state.store;
    let not_found = |what: String| ApiError::new(StatusCode::NOT_FOUND, what);
    // Only the representation asked for is rendered.
    let report = |body_xml: &dyn Fn() -> Vec<u8>, json: &dyn erased::Json| -> Answer {
        match format {
            Format::Xml => Answer {
                status: StatusCode::OK,
                content_type: XML,
                body: body_xml(),
                cacheable: true,
            },
            Format::Json => Answer {
                status: StatusCode::OK,
                content_type: JSON,
                body: json.to_json(),
                cacheable: true,
            },
        }
    };
    match route {
        Route::Deployment(id) => {
            let r = query::deployment_report(&store.reader(), *id, &ctx)?
                .ok_or_else(|| not_found(format!("no deployment {id}")))?;
            Ok(report(&|| xml::deployment(&r), &r))
        }
        Route::Instance(id) => {
            let r = query::instance_report(&store.reader(), *id)?
                .ok_or_else(|| not_found(format!("no instance {id}")))?;
            Ok(report(&|| xml::instance(&r), &r))
        }
        Route::Service(id, name) => {
            let r = query::service_report(&store.reader(), *id, name)?
                .ok_or_else(|| not_found(format!("no service `{name}` on instance {id}")))?;
            Ok(report(&|| xml::service(&r), &r))
        }
        Route::DeploymentEvents(id) => {
            let known = store.reader().deployment_exists(*id)?;
            if !known {
                return Err(not_found(format!("no deployment {id}")));
            }
            let (offset, limit) = paging(query)?;
            let page = store.history(*id, None, offset, limit)?;
            let json = history_json(&page, *id, None, offset, limit);
            Ok(report(&|| xml::events(&json), &json))
        }
        Route::InstanceEvents(id) => {
            let deployment = query::instance_report(&store.reader(), *id)?
                .ok_or_else(|| not_found(format!("no instance {id}")))?
                .deployment;
            let (offset, limit) = paging(query)?;
            let page = store.history(deployment, Some(*id), offset, limit)?;
            let json = history_json(&page, deployment, Some(*id), offset, limit);
            Ok(report(&|| xml::events(&json), &json))
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
            ))
        }
        Route::Deployments => {
            let params = ListParams::parse(query)?;
            let page = query::deployment_page(
                &store.reader(),
                params.filter,
                params.offset,
                params.limit,
                &ctx,
            )?;
            #[derive(Serialize)]
            struct Page<'a> {
                #[serde(skip_serializing_if = "Option::is_none")]
                status: Option<&'a str>,
                #[serde(flatten)]
                page: &'a query::DeploymentPage,
            }
            let status = params.status.as_deref();
            Ok(report(
                &|| xml::deployments(&page, status),
                &Page {
                    status,
                    page: &page,
                },
            ))
        }
        Route::Health => {
            let rocksdb_open = store.views_version().is_ok();
            let amqp = state.amqp_connected();
            let ready = rocksdb_open && amqp;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = match format {
                Format::Xml => xml::health(ready, rocksdb_open, amqp),
                Format::Json => serde_json::to_vec(&serde_json::json!({
                    "status": if ready { "ready" } else { "not-ready" },
                    "rocksdb": if rocksdb_open { "open" } else { "closed" },
                    "amqp": if amqp { "connected" } else { "disconnected" },
                }))
                .expect("JSON"),
            };
            let content_type = if format == Format::Xml { XML } else { JSON };
            Ok(Answer {
                status,
                content_type,
                body,
                cacheable: false,
            })
        }
        Route::Metrics => Ok(Answer {
            status: StatusCode::OK,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: state.metrics.scrape(store, &ctx)?.into_bytes(),
            cacheable: false,
        }),
    }
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

/// `offset` and `limit` (1 to [`MAX_PAGE`], default 100), nothing else.
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
    offset: u64,
    limit: u64,
}

impl ListParams {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
        let mut params = ListParams {
            filter: DeploymentFilter::All,
            status: None,
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
                "offset" => {
                    params.offset = value
                        .parse()
                        .map_err(|_| bad("offset must be a whole number".into()))?;
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
    if answer.cacheable && status == StatusCode::OK {
        let etag = format!("\"{:016x}\"", fnv1a(body.iter().copied()));
        let matches = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())
            });
        if matches {
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
    use crate::{ApiSettings, Metrics};
    use audrey_core::scenario::script::{blog_registered, DeploymentScript, BLOG};
    use audrey_core::scenario::{ConfigServerScript, Shape};
    use audrey_core::Timestamp;
    use audrey_store::Store;

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

        assert!(is_small(
            &state,
            audrey_core::DeploymentId::parse(BLOG).unwrap()
        ));
        assert!(!is_small(&state, large[0].deployment().unwrap()));
        let unknown = audrey_core::DeploymentId::from_bytes([7; 16]);
        assert!(!is_small(&state, unknown));
    }
}
