//! Which endpoint a path names. Routing is plain string work here (not a
//! tower of warp filters) so every path, good or bad, lands in one `match`
//! and gets the right status and an XML error body.

use audrey_core::{DeploymentId, InstanceId, Name};
use percent_encoding::percent_decode_str;

use crate::replication::is_plain_name;

/// The endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/reports/deployment/{uuid}` and `/reports/{1|2}/deployment/{uuid}`.
    Deployment(DeploymentId),
    /// `/reports/instance/{uuid}` and `/reports/{1|2}/instance/{uuid}`.
    Instance(InstanceId),
    /// `/reports/instance/{uuid}/service/{name}`.
    Service(InstanceId, Name),
    /// `/reports/deployment/{uuid}/events?offset=&limit=`: its history.
    DeploymentEvents(DeploymentId),
    /// `/reports/instance/{uuid}/events?offset=&limit=`: its history.
    InstanceEvents(InstanceId),
    /// `/reports/deployments?status=&offset=&limit=`.
    Deployments,
    /// `/reports/configserver`.
    ConfigServers,
    /// `/health`: readiness (503 when not ready), with liveness implied.
    Health,
    /// `/metrics`.
    Metrics,
    /// `/replication/checkpoint?barrier=`: a checkpoint of the store for a
    /// new replica, once the barrier has passed.
    Checkpoint,
    /// `/replication/checkpoint/{name}/{file}?offset=`: a chunk of one file
    /// of a checkpoint.
    CheckpointFile(String, String),
    /// `/ui/{file}` (`/ui` and `/ui/`: the page): the HTML view's files.
    Ui(&'static crate::ui::Asset),
}

/// The representation a client asked for (`Accept`): with the route, what
/// names one answer (and a rendered report in the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Xml,
    Json,
}

/// Why a path names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound(String),
    BadRequest(String),
}

impl Route {
    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Deployment(_) => "/reports/deployment/{uuid}",
            Route::Instance(_) => "/reports/instance/{uuid}",
            Route::Service(..) => "/reports/instance/{uuid}/service/{name}",
            Route::DeploymentEvents(_) => "/reports/deployment/{uuid}/events",
            Route::InstanceEvents(_) => "/reports/instance/{uuid}/events",
            Route::Deployments => "/reports/deployments",
            Route::ConfigServers => "/reports/configserver",
            Route::Health => "/health",
            Route::Metrics => "/metrics",
            Route::Checkpoint => "/replication/checkpoint",
            Route::CheckpointFile(..) => "/replication/checkpoint/{name}/{file}",
            Route::Ui(_) => "/ui/{file}",
        }
    }

    /// Whether the route is behind the optional token: the reports, and
    /// the checkpoints (the whole store) above all.
    pub fn is_report(&self) -> bool {
        !matches!(self, Route::Health | Route::Metrics | Route::Ui(_))
    }

    /// Whether answering reads a bounded handful of rows (an instance or
    /// service report, the health check) rather than scanning (lists,
    /// histories, the metrics' walk of incomplete deployments): such
    /// requests are answered on the request's own task, the others on the
    /// blocking pool. A deployment report reads one row per instance: the
    /// handler decides by the deployment's size.
    pub fn reads_a_few_rows(&self) -> bool {
        matches!(
            self,
            Route::Instance(_) | Route::Service(..) | Route::Health
        )
    }

    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let not_found = || RouteError::NotFound(format!("no such endpoint: {}", shorten(path)));
        let mut segments: Vec<&str> = path.split('/').skip(1).collect();
        if segments.last() == Some(&"") && segments.len() > 1 {
            segments.pop(); // a trailing slash
        }
        match segments.as_slice() {
            ["health"] => Ok(Route::Health),
            ["metrics"] => Ok(Route::Metrics),
            ["reports", "deployments"] => Ok(Route::Deployments),
            ["reports", "configserver"] => Ok(Route::ConfigServers),
            ["reports", "deployment", id] | ["reports", "1" | "2", "deployment", id] => {
                Ok(Route::Deployment(deployment_id(id)?))
            }
            ["reports", "instance", id] | ["reports", "1" | "2", "instance", id] => {
                Ok(Route::Instance(instance_id(id)?))
            }
            ["reports", "deployment", id, "events"] => {
                Ok(Route::DeploymentEvents(deployment_id(id)?))
            }
            ["reports", "instance", id, "events"] => Ok(Route::InstanceEvents(instance_id(id)?)),
            ["reports", "instance", id, "service", name] => {
                Ok(Route::Service(instance_id(id)?, service_name(name)?))
            }
            ["replication", "checkpoint"] => Ok(Route::Checkpoint),
            ["ui"] => Ok(Route::Ui(crate::ui::index())),
            ["ui", file] => crate::ui::asset(file).map(Route::Ui).ok_or_else(not_found),
            ["replication", "checkpoint", name, file] => {
                let (name, file) = (decode(name)?, decode(file)?);
                if !is_plain_name(&name) || !is_plain_name(&file) {
                    return Err(RouteError::BadRequest(
                        "a checkpoint or file name is letters, digits, `.`, `_` and `-`".into(),
                    ));
                }
                Ok(Route::CheckpointFile(name, file))
            }
            _ => Err(not_found()),
        }
    }
}

fn decode(segment: &str) -> Result<String, RouteError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| RouteError::BadRequest("the path is not UTF-8 once decoded".into()))
}

fn deployment_id(segment: &str) -> Result<DeploymentId, RouteError> {
    DeploymentId::parse(&decode(segment)?)
        .map_err(|e| RouteError::BadRequest(format!("malformed deployment UUID: {e}")))
}

fn instance_id(segment: &str) -> Result<InstanceId, RouteError> {
    InstanceId::parse(&decode(segment)?)
        .map_err(|e| RouteError::BadRequest(format!("malformed instance UUID: {e}")))
}

fn service_name(segment: &str) -> Result<Name, RouteError> {
    Name::parse(&decode(segment)?)
        .map_err(|e| RouteError::BadRequest(format!("malformed service name: it {e}")))
}

fn shorten(path: &str) -> String {
    let mut s: String = path.chars().take(120).collect();
    if s.len() < path.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e";

    #[test]
    fn versioned_and_plain_paths_name_the_same_report() {
        let plain = Route::parse(&format!("/reports/deployment/{U}")).unwrap();
        assert_eq!(
            Route::parse(&format!("/reports/1/deployment/{U}")).unwrap(),
            plain
        );
        assert_eq!(
            Route::parse(&format!("/reports/2/deployment/{U}/")).unwrap(),
            plain
        );
        assert!(matches!(
            Route::parse(&format!("/reports/3/deployment/{U}")),
            Err(RouteError::NotFound(_))
        ));
    }

    #[test]
    fn service_names_are_percent_decoded_and_checked() {
        let r = Route::parse(&format!("/reports/instance/{U}/service/my%20svc")).unwrap();
        assert_eq!(
            r,
            Route::Service(
                InstanceId::parse(U).unwrap(),
                Name::parse("my svc").unwrap()
            )
        );
        for bad in ["..%2f..%2fetc", "%00", &"x".repeat(300), "%ff"] {
            let path = format!("/reports/instance/{U}/service/{bad}");
            assert!(
                matches!(Route::parse(&path), Err(RouteError::BadRequest(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Route::parse("/reports/instance/not-a-uuid"),
            Err(RouteError::BadRequest(_))
        ));
        assert!(matches!(
            Route::parse(&format!("/reports/instance/{U}/service/../../etc/passwd")),
            Err(RouteError::NotFound(_))
        ));
    }

    #[test]
    fn the_page_is_its_files_only_and_needs_no_token() {
        for path in ["/ui", "/ui/", "/ui/index.html"] {
            assert_eq!(
                Route::parse(path).unwrap(),
                Route::Ui(crate::ui::index()),
                "{path}"
            );
        }
        let script = Route::parse("/ui/app.js").unwrap();
        assert!(matches!(script, Route::Ui(a) if a.name == "app.js"));
        assert!(!script.is_report());
        for path in [
            "/ui/nothing.js",
            "/ui/../reports/deployments",
            "/ui/a/app.js",
        ] {
            assert!(
                matches!(Route::parse(path), Err(RouteError::NotFound(_))),
                "{path}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the path, routing answers (a route, 400 or 404), never panics.
        #[test]
        fn any_path_is_routed_or_refused(path in "/[ -~]{0,300}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Route::parse(&path);
            let encoded: String = bytes.iter().map(|b| format!("%{b:02x}")).collect();
            let _ = Route::parse(&format!("/reports/instance/{U}/service/{encoded}"));
            let _ = Route::parse(&format!("/reports/deployment/{encoded}"));
        }
    }
}
