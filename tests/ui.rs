//! The page under `/ui/`, in a real headless Chromium driven over the
//! DevTools protocol: the service asks for a token, the reader types it,
//! the deployment list filters by status, a stalled deployment shows its
//! root blocker highlighted, a timeline row per instance and service and
//! its unresolved dependencies as arrows, a failed service is marked, an
//! instance shows its event history; and nothing goes to the console as an
//! error (uncaught exceptions, `console.error`, failed loads) once the
//! token is in. A screenshot of the stalled deployment is the test's
//! artifact (`$AUDREY_ARTIFACTS`, else the target directory); with
//! `AUDREY_UPDATE_SCREENSHOT=1` it also replaces `docs/ui-deployment.png`,
//! the README's picture.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audrey_consumer::Publisher;
use audrey_core::scenario::script::{self, param_ref, service, static_param, DeploymentScript};
use audrey_core::Timestamp;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "ui-token";

const STALLED: &str = "51a11ed0-0000-4000-8000-000000000001";
const FINISHED: &str = "f1b15bed-0000-4000-8000-000000000002";
const FAILED: &str = "fa11ed00-0000-4000-8000-000000000003";
const MYSQL: &str = "0b6a4d1e-7c2f-4a8b-9e3d-000000000011";
const WORDPRESS: &str = "9d8c7b6a-5e4f-4a3b-8c2d-000000000012";
const HAPROXY: &str = "4c3b2a19-8f7e-4d6c-9b5a-000000000013";

/// Seconds since the scripts' epoch: events relative to now.
fn now_t() -> i64 {
    (Timestamp::now().unix_seconds_f64() - script::at(0).unix_seconds_f64()) as i64
}

/// Ten minutes ago: haproxy waits for wordpress's url, wordpress's own
/// service for mysql's ipaddress, and mysql's service started and never
/// ended. Its apache ended well. Stalled: no progress for 7.5 min.
fn stalled(t: i64) -> Vec<audrey_core::Event> {
    let mut cs = DeploymentScript::new(STALLED).with_source("/configserver/ui-01");
    vec![
        cs.register(
            t,
            MYSQL,
            "mysql",
            &["ipaddress"],
            vec![service("mysql", vec![static_param("root_pw")])],
        ),
        cs.register(
            t,
            WORDPRESS,
            "wordpress",
            &["url"],
            vec![
                service("apache", vec![static_param("port")]),
                service("wordpress", vec![param_ref("db", MYSQL, "ipaddress")]),
            ],
        ),
        cs.register(
            t + 60,
            HAPROXY,
            "haproxy",
            &[],
            vec![service(
                "haproxy",
                vec![param_ref("backend", WORDPRESS, "url")],
            )],
        ),
        cs.contacted(t + 20, MYSQL),
        cs.started(t + 30, MYSQL, "mysql"),
        cs.contacted(t + 25, WORDPRESS),
        cs.started(t + 40, WORDPRESS, "apache"),
        cs.ended(t + 150, WORDPRESS, "apache", 0),
        cs.contacted(t + 90, HAPROXY),
    ]
}

/// One instance with one service, ended with `code`.
fn one_service(uuid: &str, instance: &str, t: i64, code: i32) -> Vec<audrey_core::Event> {
    // Its own source: event ids (`event-1`, ...) are unique per source.
    let mut cs =
        DeploymentScript::new(uuid).with_source(&format!("/configserver/ui-{}", &uuid[..8]));
    vec![
        cs.register(
            t,
            instance,
            "web",
            &[],
            vec![service("nginx", vec![static_param("port")])],
        ),
        cs.contacted(t + 5, instance),
        cs.started(t + 6, instance, "nginx"),
        cs.ended(t + 50, instance, "nginx", code),
    ]
}

/// A headless Chromium in its own process group, ended (the group) on drop.
struct Chromium {
    child: Child,
    /// Its DevTools HTTP port.
    port: u16,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--remote-debugging-port=0", "--no-first-run"])
            .args(["--disable-extensions", "--disable-background-networking"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Its own temporary directory (`org.chromium.Chromium.*`)
            // goes inside the profile, removed with it: ended by a signal,
            // Chromium leaves the one it made in /tmp behind.
            .env("TMPDIR", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("chromium is installed (Debian's `chromium` package)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut port = None;
        let mut seen = Vec::new();
        for line in stderr.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                port = rest.split('/').next().and_then(|p| p.parse().ok());
                break;
            }
            seen.push(line);
        }
        // Keep reading what it says, so that it never writes to a closed pipe.
        std::thread::spawn(move || stderr.for_each(drop));
        let mut browser = Chromium {
            child,
            port: 0,
            _profile: profile,
        };
        browser.port = port.unwrap_or_else(|| panic!("no DevTools port: {}", seen.join("\n")));
        browser
    }

    /// The page's DevTools websocket.
    fn page(&self) -> Cdp {
        let list = get(self.port, "/json/list", &[]).expect("DevTools answers");
        let targets: Value = serde_json::from_slice(&list.body).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("websocket handshake");
        Cdp {
            socket,
            next_id: 0,
            errors: Vec::new(),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever of the group is left (renderers, the zygote).
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// One page over the Chrome DevTools protocol.
struct Cdp {
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    /// Console errors, uncaught exceptions and failed loads, as they came.
    errors: Vec<String>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::text(request.to_string()))
            .unwrap();
        loop {
            let message = self.socket.read().expect("DevTools answers");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            self.observe(&message);
        }
    }

    /// Keeps what a reader with the console open would see in red.
    fn observe(&mut self, message: &Value) {
        let params = &message["params"];
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception");
                self.errors.push(format!("uncaught: {text}"));
            }
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.{}: {}", params["type"], params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                self.errors
                    .push(format!("{} ({})", entry["text"], entry["url"]));
            }
            _ => {}
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait_for(&mut self, expression: &str) {
        let started = Instant::now();
        while self.eval(expression) != json!(true) {
            if started.elapsed() > Duration::from_secs(30) {
                let state = self.eval("document.body && document.body.outerHTML.slice(0, 3000)");
                panic!("never true: {expression}\n{state}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `action` (a click, a hash change) and waits for the page to
    /// have rendered `view` from fresh reports.
    fn act(&mut self, action: &str, view: &str) {
        self.eval(&format!(
            "document.body.dataset.state = 'acting'; {action}; true"
        ));
        self.wait_for(&format!(
            "document.body.dataset.state === 'ready' && document.body.dataset.view === '{view}'"
        ));
    }

    /// The `data-uuid`s of the list's rows.
    fn listed(&mut self) -> Vec<String> {
        let rows = self.eval(
            "[...document.querySelectorAll('#deployments tbody tr[data-uuid]')].map(r => r.dataset.uuid)",
        );
        serde_json::from_value(rows).unwrap()
    }

    fn text(&mut self, selector: &str) -> String {
        let value = self.eval(&format!(
            "document.querySelector({selector:?})?.textContent ?? null"
        ));
        value
            .as_str()
            .unwrap_or_else(|| panic!("nothing matches {selector}"))
            .to_owned()
    }

    fn count(&mut self, selector: &str) -> u64 {
        self.eval(&format!("document.querySelectorAll({selector:?}).length"))
            .as_u64()
            .unwrap()
    }
}

fn artifact_dir() -> PathBuf {
    std::env::var_os("AUDREY_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

#[test]
fn the_page_shows_deployments_their_blocker_timeline_and_histories() {
    let rt = runtime();
    let topology = unique_topology("ui");
    let _cleanup = RemoveOnDrop(topology.clone());
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(
        &data.path().join("data"),
        &topology,
        &["--stall-after", "5m", "--api-token", TOKEN],
    );
    service.wait_ready(Duration::from_secs(30));
    let publisher = rt
        .block_on(Publisher::connect(AMQP_URL, &topology))
        .unwrap();
    let t = now_t();
    let events = [
        stalled(t - 600),
        one_service(
            FINISHED,
            "a1000000-0000-4000-8000-000000000021",
            t - 1800,
            0,
        ),
        one_service(FAILED, "a1000000-0000-4000-8000-000000000031", t - 1200, 2),
    ]
    .concat();
    rt.block_on(publisher.publish_all(&events)).unwrap();
    let auth = format!("Bearer {TOKEN}");
    wait_until(Duration::from_secs(30), "the events to be applied", || {
        let headers = [
            ("Authorization", auth.as_str()),
            ("Accept", "application/json"),
        ];
        let answered = |path: &str| get(service.port, path, &headers).filter(|r| r.status == 200);
        let listed = answered("/reports/deployments?status=incomplete")
            .zip(answered("/reports/deployments?status=success"))
            .zip(answered("/reports/deployments?status=error"));
        let contacted = answered(&format!("/reports/instance/{HAPROXY}"))
            .is_some_and(|r| r.text().contains("first_contacted"));
        contacted
            && listed.is_some_and(|((a, b), c)| {
                [a, b, c].iter().all(|r| r.text().contains("\"total\":1"))
            })
    });

    // The page's own files need no token; nothing else is there.
    let page = service.get("/ui/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(service.get("/ui/app.js").status, 200);
    assert_eq!(service.get("/ui/nothing.js").status, 404);

    let browser = Chromium::start();
    let mut cdp = browser.page();
    for domain in ["Runtime", "Log", "Page"] {
        cdp.call(&format!("{domain}.enable"), json!({}));
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );

    // Without a token the reports answer 401: the page says so.
    let base = format!("http://127.0.0.1:{}/ui/", service.port);
    cdp.call(
        "Page.navigate",
        json!({"url": format!("{base}#/deployments")}),
    );
    cdp.wait_for("document.readyState === 'complete' && document.body.dataset.state === 'failed'");
    assert!(cdp.text("#notice").contains("wants a token"));
    // The refused request is the only error so far (its report may come
    // after the page has drawn the refusal).
    let started = Instant::now();
    while !cdp.errors.iter().any(|e| e.contains("401")) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            cdp.errors
        );
        cdp.eval("true");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cdp.errors.iter().all(|e| e.contains("401")) && !cdp.errors.is_empty(),
        "{:?}",
        cdp.errors
    );
    cdp.errors.clear();

    // The reader types the token: the list, every deployment.
    cdp.act(
        &format!(
            "document.getElementById('token').value = '{TOKEN}'; document.getElementById('token-form').requestSubmit()"
        ),
        "deployments",
    );
    let mut all = cdp.listed();
    all.sort();
    let mut expected = vec![STALLED, FINISHED, FAILED];
    expected.sort();
    assert_eq!(all, expected);

    // The filters.
    for (filter, uuid) in [
        ("stalled", STALLED),
        ("success", FINISHED),
        ("error", FAILED),
    ] {
        cdp.act(
            &format!("document.querySelector('#filters a[data-filter={filter}]').click()"),
            "deployments",
        );
        assert_eq!(cdp.listed(), vec![uuid.to_owned()], "filter {filter}");
        let current =
            cdp.eval("document.querySelector('#filters a[aria-current=true]').dataset.filter");
        assert_eq!(current, filter);
    }

    // From the list to the stalled deployment.
    cdp.act(
        "document.querySelector('#filters a[data-filter=stalled]').click()",
        "deployments",
    );
    cdp.act(
        &format!(
            "document.querySelector('#deployments a[href=\"#/deployment/{STALLED}\"]').click()"
        ),
        "deployment",
    );
    // The root blocker: mysql's service, running since ten minutes ago.
    assert_eq!(
        cdp.eval("document.querySelector('#root-blocker').dataset.instance"),
        MYSQL
    );
    assert_eq!(
        cdp.eval("document.querySelector('#root-blocker').dataset.reason"),
        "service-running"
    );
    let blocker = cdp.text("#root-blocker");
    for needle in [
        "mysql".to_owned(),
        "service-running".to_owned(),
        format!(
            "waiting for instance mysql ({MYSQL}): service mysql started 10 min ago, never ended"
        ),
    ] {
        assert!(blocker.contains(&needle), "{needle} not in {blocker}");
    }
    // Reached from haproxy, through wordpress.
    assert_eq!(cdp.count("#root-blocker ol li"), 2);
    // The timeline: a row per instance and per service, the root's marked.
    assert_eq!(cdp.count("#timeline .tl-instance"), 3);
    assert_eq!(cdp.count("#timeline .tl-service"), 4);
    for (instance, service, mark) in [
        (MYSQL, "mysql", ".tl-bar.running"),
        (WORDPRESS, "apache", ".tl-bar.success"),
        (WORDPRESS, "wordpress", ".tl-note"),
        (HAPROXY, "haproxy", ".tl-note"),
    ] {
        let selector = format!(
            "#timeline .tl-service[data-instance=\"{instance}\"][data-service=\"{service}\"] {mark}"
        );
        assert_eq!(cdp.count(&selector), 1, "{selector}");
    }
    assert_eq!(
        cdp.eval("[...document.querySelectorAll('#timeline .tl-row.root')].map(r => r.dataset.service || 'instance')"),
        json!(["instance", "mysql"])
    );
    // The unresolved dependencies: an arrow from each waiting instance to
    // its source, the root's box highlighted.
    let edges = cdp.eval(
        "[...document.querySelectorAll('#dependencies .edge')].map(e => e.dataset.from + '>' + e.dataset.to).sort()",
    );
    let mut expected = vec![
        format!("{HAPROXY}>{WORDPRESS}"),
        format!("{WORDPRESS}>{MYSQL}"),
    ];
    expected.sort();
    assert_eq!(edges, json!(expected));
    assert_eq!(
        cdp.eval("document.querySelector('#dependencies .node.root').dataset.instance"),
        MYSQL
    );

    // The screenshot: the whole page.
    let height = cdp.eval("Math.ceil(document.documentElement.scrollHeight)");
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let dir = artifact_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let artifact = dir.join("ui-deployment.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    if std::env::var_os("AUDREY_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/ui-deployment.png");
        std::fs::write(&docs, &png).unwrap();
    }

    // From the deployment to mysql and its event history.
    cdp.act(
        &format!("document.querySelector('#instances a[href=\"#/instance/{MYSQL}\"]').click()"),
        "instance",
    );
    assert_eq!(cdp.count("#services tbody tr"), 1);
    let types =
        cdp.eval("[...document.querySelectorAll('#events tbody tr')].map(r => r.dataset.type)");
    assert_eq!(
        types,
        json!([
            "org.aeolusproject.audrey.instance.registered",
            "org.aeolusproject.audrey.instance.contacted",
            "org.aeolusproject.audrey.service.configuration_started",
        ])
    );
    // The deployment's own history, from its page.
    cdp.act("history.back()", "deployment");
    cdp.act(
        "document.querySelector('a[href$=\"/events\"]').click()",
        "events",
    );
    assert_eq!(cdp.count("#events tbody tr"), 9);

    // The failed deployment: its failure marked on the timeline.
    cdp.act(
        &format!("location.hash = '#/deployment/{FAILED}'"),
        "deployment",
    );
    assert_eq!(
        cdp.eval("document.querySelector('#root-blocker').dataset.reason"),
        "service-failed"
    );
    assert_eq!(
        cdp.text("#timeline .tl-service[data-status=failed] .tl-fail"),
        "✕ failed (2)"
    );
    // The finished one: no blocker, everything green.
    cdp.act(
        &format!("location.hash = '#/deployment/{FINISHED}'"),
        "deployment",
    );
    assert_eq!(cdp.count("#root-blocker"), 0);
    assert_eq!(cdp.count("#timeline .tl-service .tl-bar.success"), 1);
    assert_eq!(cdp.count("#timeline .tl-instance .tl-bar.success"), 1);

    // Nothing went wrong in the page once the token was in.
    cdp.eval("true"); // reads the events sent so far
    assert_eq!(cdp.text("#page-errors"), "");
    assert!(cdp.errors.is_empty(), "console errors: {:#?}", cdp.errors);
    drop(cdp);
    drop(browser);
    rt.block_on(publisher.close()).unwrap();
}
