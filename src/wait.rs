//! `wait`: block until a deployment is done, like `kubectl rollout status`
//! or `cloud-init status --wait`, by long-polling its report (`?wait=` with
//! `If-None-Match`), so the service answers the moment it changes.
//!
//! Exit codes (scripts depend on them): 0 success; 1 error (a service
//! failed); 2 timeout; 3 stalled; 4 the service refused to answer (a bad
//! token, a bad request). A deployment the service does not know yet, or
//! a service that does not answer, is waited for until the timeout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::cli::{WaitArgs, WaitFormat};
use crate::http_client;

/// What the wait ended with, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Error,
    Timeout,
    Stalled,
    Refused,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Error => 1,
            Outcome::Timeout => 2,
            Outcome::Stalled => 3,
            Outcome::Refused => 4,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Stalled => "stalled",
            Outcome::Refused => "refused",
        }
    }
}

/// The parts of the deployment report (JSON) that decide and tell.
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    name: Option<String>,
    status: String,
    stalled: bool,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    instances: Vec<Value>,
    #[serde(default)]
    blocked_on: Option<BlockedOn>,
}

#[derive(Debug, Deserialize)]
struct BlockedOn {
    explanation: String,
}

/// The longest single long-poll: well under the service's limit and most
/// proxies' idle timeouts; the wait goes on with the next one.
const POLL: Duration = Duration::from_secs(60);
/// Between attempts when there is nothing to long-poll on (unknown
/// deployment, unreachable service).
const RETRY: Duration = Duration::from_secs(1);

pub fn run(args: &WaitArgs) -> ExitCode {
    let started = Instant::now();
    let deadline = started + args.timeout.0;
    let agent = match http_client::agent(
        args.ca_file.as_deref(),
        http_client::Statuses::AreAnswers,
        None,
    ) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("audrey-reporting wait: {error:#}");
            return ExitCode::from(crate::USAGE_ERROR);
        }
    };
    let url = format!(
        "{}/reports/deployment/{}",
        args.url.trim_end_matches('/'),
        args.deployment
    );
    let mut etag: Option<String> = None;
    let mut last: Option<Value> = None;
    let mut trouble: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return finish(args, Outcome::Timeout, last.as_ref(), trouble, started);
        }
        let poll = left.min(POLL);
        let mut request = agent
            .get(&format!("{url}?wait={}ms", poll.as_millis()))
            .config()
            .timeout_global(Some(poll + Duration::from_secs(10)))
            .build()
            .header("Accept", "application/json");
        if let Some(token) = &args.api_token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        if let Some(tag) = &etag {
            request = request.header("If-None-Match", tag);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(e) => {
                trouble = Some(format!("{} does not answer: {e}", args.url));
                std::thread::sleep(RETRY.min(left));
                continue;
            }
        };
        let status = response.status().as_u16();
        match status {
            200 => {
                etag = response
                    .headers()
                    .get("ETag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: Value = match read_json(response) {
                    Ok(body) => body,
                    Err(e) => {
                        trouble = Some(format!("{e:#}"));
                        std::thread::sleep(RETRY.min(left));
                        continue;
                    }
                };
                trouble = None;
                let outcome = serde_json::from_value::<Report>(body.clone())
                    .ok()
                    .and_then(|r| decide(&r));
                last = Some(body);
                if let Some(outcome) = outcome {
                    return finish(args, outcome, last.as_ref(), None, started);
                }
            }
            304 => {}
            404 => {
                trouble = Some(format!(
                    "{} does not know deployment {} yet",
                    args.url, args.deployment
                ));
                etag = None;
                std::thread::sleep(RETRY.min(left));
            }
            500..=599 => {
                trouble = Some(format!("{} answered {status}", args.url));
                std::thread::sleep(RETRY.min(left));
            }
            _ => {
                let why = read_text(response);
                let trouble = format!("{} answered {status}: {why}", args.url);
                return finish(
                    args,
                    Outcome::Refused,
                    last.as_ref(),
                    Some(trouble),
                    started,
                );
            }
        }
    }
}

/// Success, error and stalled end the wait; incomplete goes on.
fn decide(report: &Report) -> Option<Outcome> {
    match report.status.as_str() {
        "success" => Some(Outcome::Success),
        "error" => Some(Outcome::Error),
        _ if report.stalled => Some(Outcome::Stalled),
        _ => None,
    }
}

fn read_json(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let bytes = response
        .body_mut()
        .read_to_vec()
        .context("reading the report")?;
    serde_json::from_slice(&bytes).context("the report is not JSON")
}

/// The message of an error body (`<error code=".."><message>..`), or the
/// body as it is.
fn read_text(mut response: ureq::http::Response<ureq::Body>) -> String {
    let text = response.body_mut().read_to_string().unwrap_or_default();
    match (text.find("<message>"), text.find("</message>")) {
        (Some(start), Some(end)) if start < end => text[start + "<message>".len()..end].to_owned(),
        _ => text.trim().to_owned(),
    }
}

/// Prints the one line (or the JSON object) and gives the exit code.
fn finish(
    args: &WaitArgs,
    outcome: Outcome,
    report: Option<&Value>,
    trouble: Option<String>,
    started: Instant,
) -> ExitCode {
    let parsed = report.and_then(|r| serde_json::from_value::<Report>(r.clone()).ok());
    match args.format {
        WaitFormat::Json => {
            let line = serde_json::json!({
                "deployment": args.deployment.to_string(),
                "outcome": outcome.word(),
                "exit_code": outcome.code(),
                "waited_seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                "problem": trouble,
                "report": report,
            });
            println!("{line}");
        }
        WaitFormat::Text => println!("{}", summary(args, outcome, parsed.as_ref(), trouble)),
    }
    ExitCode::from(outcome.code())
}

/// `deployment blog (3c9e...): success in 4 min (2 instances)`, or with the
/// root blocker when it did not succeed.
fn summary(
    args: &WaitArgs,
    outcome: Outcome,
    report: Option<&Report>,
    trouble: Option<String>,
) -> String {
    let id = args.deployment;
    let Some(r) = report else {
        let why = trouble.unwrap_or_else(|| "no answer".into());
        return format!("deployment {id}: {} ({why})", outcome.word());
    };
    let who = match &r.name {
        Some(name) => format!("deployment {name} ({id})"),
        None => format!("deployment {id}"),
    };
    let took = r
        .duration_seconds
        .map(|s| format!(" after {}", audrey_core::query::span(s)))
        .unwrap_or_default();
    let instances = format!("{} instances", r.instances.len());
    let blocker = r
        .blocked_on
        .as_ref()
        .map(|b| format!(": {}", b.explanation))
        .unwrap_or_default();
    match outcome {
        Outcome::Success => format!("{who}: success{took} ({instances})"),
        Outcome::Error => format!("{who}: error{took} ({instances}){blocker}"),
        Outcome::Stalled => format!("{who}: stalled{took} ({instances}){blocker}"),
        Outcome::Timeout => format!(
            "{who}: still {} after waiting {} ({instances}){blocker}",
            r.status,
            audrey_core::query::span(args.timeout.0.as_secs_f64())
        ),
        Outcome::Refused => format!(
            "{who}: {}",
            trouble.unwrap_or_else(|| "the service refused to answer".into())
        ),
    }
}
