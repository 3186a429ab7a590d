//! The Audrey reporting XML: one function per document, element and
//! attribute names of the original Audrey config server's reports, new
//! ones in the same style.
//! Optional elements are left out while their data is missing. Every
//! document is described by `schemas/reports.xsd`.

use std::borrow::Cow;

use audrey_core::query::{
    AwaitedSource, BlockedOn, ConfigServerState, DeploymentPage, DeploymentReport, InstanceReport,
    Seconds, ServiceReport,
};
use audrey_core::Timestamp;

/// Text as XML 1.0 can carry it: a character XML forbids (C0 controls but
/// tab, line feed and carriage return; U+FFFE; U+FFFF) becomes U+FFFD.
/// The event contract refuses such characters, so only what a reader sent
/// (a request path quoted in an error) ever needs this; it is applied to
/// every attribute and text all the same, so no input can make a document
/// that is not well-formed.
pub fn xml_safe(text: &str) -> Cow<'_, str> {
    let forbidden = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
    };
    if text.chars().any(forbidden) {
        Cow::Owned(
            text.chars()
                .map(|c| if forbidden(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// A small XML writer straight into the document's bytes: attributes and
/// text are escaped as quick-xml escapes them (the five markup characters
/// and `\r`; in attributes `\n` and `\t` too, which attribute-value
/// normalisation would turn into spaces), after [`xml_safe`]. Written by
/// hand rather than through quick-xml's events, which built each tag in a
/// string of its own first: about a tenth of an instance report's CPU
/// (BENCHMARKS.md). A test holds the two byte for byte.
pub struct Xml {
    bytes: Vec<u8>,
}

/// Where a text goes: an attribute value escapes line ends and tabs too.
#[derive(Clone, Copy, PartialEq)]
enum Within {
    Text,
    Attribute,
}

impl Xml {
    pub fn new() -> Self {
        // Most reports are a few hundred bytes to a few KiB.
        let mut bytes = Vec::with_capacity(1024);
        bytes.extend_from_slice(br#"<?xml version="1.0" encoding="UTF-8"?>"#);
        Self { bytes }
    }

    /// `<name a="v" …` without the closing `>` or `/>`.
    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.bytes.push(b'<');
        self.bytes.extend_from_slice(name.as_bytes());
        for (key, value) in attributes {
            self.bytes.push(b' ');
            self.bytes.extend_from_slice(key.as_bytes());
            self.bytes.extend_from_slice(b"=\"");
            self.escaped(value, Within::Attribute);
            self.bytes.push(b'"');
        }
    }

    pub fn start(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.open(name, attributes);
        self.bytes.push(b'>');
        self
    }

    pub fn end(&mut self, name: &str) -> &mut Self {
        self.bytes.extend_from_slice(b"</");
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(b'>');
        self
    }

    pub fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.open(name, attributes);
        self.bytes.extend_from_slice(b"/>");
        self
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.start(name, &[]);
        self.escaped(text, Within::Text);
        self.end(name)
    }

    /// `<name>TIMESTAMP</name>`, only when there is one.
    pub fn time(&mut self, name: &str, time: Option<Timestamp>) -> &mut Self {
        if let Some(time) = time {
            self.text(name, time.rfc3339().as_str());
        }
        self
    }

    /// `<name>SECONDS</name>` (to the millisecond), only when there is one.
    pub fn seconds(&mut self, name: &str, seconds: Option<Seconds>) -> &mut Self {
        if let Some(seconds) = seconds {
            self.text(name, &seconds.rounded().to_string());
        }
        self
    }

    /// `text` made [`xml_safe`] and escaped, in one pass over its bytes:
    /// runs that need nothing are copied whole.
    fn escaped(&mut self, text: &str, within: Within) {
        let bytes = text.as_bytes();
        let (mut copied, mut at) = (0, 0);
        while at < bytes.len() {
            let (replacement, width): (&[u8], usize) = match bytes[at] {
                b'<' => (b"&lt;", 1),
                b'>' => (b"&gt;", 1),
                b'&' => (b"&amp;", 1),
                b'\'' => (b"&apos;", 1),
                b'"' => (b"&quot;", 1),
                b'\r' => (b"&#13;", 1),
                b'\n' if within == Within::Attribute => (b"&#10;", 1),
                b'\t' if within == Within::Attribute => (b"&#9;", 1),
                b'\n' | b'\t' => {
                    at += 1;
                    continue;
                }
                // Other C0 controls, and U+FFFE and U+FFFF (EF BF BE/BF):
                // what XML 1.0 cannot carry.
                byte if byte < b' ' => ("\u{fffd}".as_bytes(), 1),
                0xEF if bytes[at + 1..].starts_with(&[0xBF, 0xBE])
                    || bytes[at + 1..].starts_with(&[0xBF, 0xBF]) =>
                {
                    ("\u{fffd}".as_bytes(), 3)
                }
                _ => {
                    at += 1;
                    continue;
                }
            };
            self.bytes.extend_from_slice(&bytes[copied..at]);
            self.bytes.extend_from_slice(replacement);
            at += width;
            copied = at;
        }
        self.bytes.extend_from_slice(&bytes[copied..]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.push(b'\n');
        self.bytes
    }
}

impl Default for Xml {
    fn default() -> Self {
        Self::new()
    }
}

fn source_elements(xml: &mut Xml, source_instance: &str, awaited: &AwaitedSource) {
    xml.empty("source-assembly", &[("uuid", source_instance)]);
    match awaited {
        AwaitedSource::Parameter(p) => xml.empty("return-param-name", &[("name", p.as_str())]),
        AwaitedSource::Service(s) => xml.empty("service-name", &[("name", s.as_str())]),
    };
}

pub fn deployment(report: &DeploymentReport) -> Vec<u8> {
    let mut xml = Xml::new();
    let uuid = report.uuid.to_string();
    let mut attributes = vec![("uuid", uuid.as_str())];
    if let Some(name) = &report.name {
        attributes.push(("name", name.as_str()));
    }
    attributes.push(("status", report.status.as_str()));
    attributes.push(("stalled", if report.stalled { "true" } else { "false" }));
    xml.start("deployment", &attributes);
    xml.time("registered", report.registered);
    if !report.missing_instances.is_empty() {
        xml.start("missing-instances", &[]);
        for id in &report.missing_instances {
            xml.empty("instance", &[("uuid", &id.to_string())]);
        }
        xml.end("missing-instances");
    }
    xml.time("completed", report.completed);
    xml.time("last-progress", report.last_progress);
    xml.seconds("duration-seconds", report.duration_seconds);
    xml.start("instances", &[]);
    for i in &report.instances {
        let uuid = i.uuid.to_string();
        let mut attributes = vec![("uuid", uuid.as_str())];
        if let Some(assembly) = &i.assembly {
            attributes.push(("assembly", assembly.as_str()));
        }
        attributes.push(("status", i.status.as_str()));
        xml.empty("instance", &attributes);
    }
    xml.end("instances");
    if !report.unresolved_dependencies.is_empty() {
        xml.start("unresolved-dependencies", &[]);
        for d in &report.unresolved_dependencies {
            xml.start(
                "dependency",
                &[
                    ("instance", &d.instance.to_string()),
                    ("service", d.service.as_str()),
                    ("parameter", d.parameter.as_str()),
                ],
            );
            source_elements(&mut xml, &d.source_instance.to_string(), &d.awaited);
            xml.end("dependency");
        }
        xml.end("unresolved-dependencies");
    }
    if let Some(blocked) = &report.blocked_on {
        blocked_on(&mut xml, blocked);
    }
    if !report.config_servers.is_empty() {
        config_server_list(&mut xml, &report.config_servers);
    }
    xml.end("deployment");
    xml.finish()
}

fn blocked_on(xml: &mut Xml, b: &BlockedOn) {
    let instance = b.instance.to_string();
    let mut attributes = vec![("instance", instance.as_str())];
    if let Some(assembly) = &b.assembly {
        attributes.push(("assembly", assembly.as_str()));
    }
    attributes.push(("reason", b.reason.as_str()));
    if let Some(service) = &b.service {
        attributes.push(("service", service.as_str()));
    }
    let code = b.return_code.map(|c| c.to_string());
    if let Some(code) = &code {
        attributes.push(("return-code", code.as_str()));
    }
    xml.start("blocked-on", &attributes);
    xml.time("since", b.since);
    xml.time("last-contacted", b.last_contacted);
    xml.seconds("slower-than-peers-seconds", b.slower_than_peers_seconds);
    xml.text("explanation", &b.explanation);
    if !b.parameters.is_empty() {
        xml.start("pending-return-parameters", &[]);
        for p in &b.parameters {
            xml.empty("return-parameter", &[("name", p.as_str())]);
        }
        xml.end("pending-return-parameters");
    }
    if !b.chain.is_empty() {
        xml.start("chain", &[]);
        for step in &b.chain {
            let (instance, waits_for) = (step.instance.to_string(), step.waits_for.to_string());
            let mut attributes = vec![("instance", instance.as_str())];
            if let Some(assembly) = &step.assembly {
                attributes.push(("assembly", assembly.as_str()));
            }
            attributes.push(("service", step.service.as_str()));
            attributes.push(("parameter", step.parameter.as_str()));
            attributes.push(("waits-for", waits_for.as_str()));
            xml.empty("wait", &attributes);
        }
        xml.end("chain");
    }
    if !b.cycle.is_empty() {
        xml.start("cycle", &[]);
        for id in &b.cycle {
            xml.empty("instance", &[("uuid", &id.to_string())]);
        }
        xml.end("cycle");
    }
    xml.end("blocked-on");
}

fn config_server_list(xml: &mut Xml, servers: &[ConfigServerState]) {
    xml.start("config-servers", &[]);
    for s in servers {
        let interval = s.interval_seconds.map(|i| i.to_string());
        let mut attributes = vec![("source", s.source.as_str()), ("status", s.status.as_str())];
        if let Some(version) = &s.version {
            attributes.push(("version", version.as_str()));
        }
        if let Some(interval) = &interval {
            attributes.push(("interval-seconds", interval.as_str()));
        }
        match s.last_heartbeat {
            Some(t) => {
                xml.start("config-server", &attributes);
                xml.time("last-heartbeat", Some(t));
                xml.end("config-server");
            }
            None => {
                xml.empty("config-server", &attributes);
            }
        }
    }
    xml.end("config-servers");
}

pub fn config_servers(servers: &[ConfigServerState]) -> Vec<u8> {
    let mut xml = Xml::new();
    if servers.is_empty() {
        xml.empty("config-servers", &[]);
    } else {
        config_server_list(&mut xml, servers);
    }
    xml.finish()
}

fn service_element(xml: &mut Xml, s: &ServiceReport, with_instance: bool) {
    let instance = s.instance.to_string();
    let mut attributes = vec![("name", s.name.as_str())];
    if with_instance {
        attributes.push(("instance", instance.as_str()));
    }
    attributes.push(("status", s.status.as_str()));
    xml.start("service", &attributes);
    xml.time("configuration-started", s.configuration_started);
    xml.time("configuration-ended", s.configuration_ended);
    if let Some(code) = s.completion_status {
        xml.text("completion-status", &code.to_string());
    }
    xml.seconds("duration-seconds", s.duration_seconds);
    if !s.unresolved_service_parameters.is_empty() {
        xml.start("unresolved-service-parameters", &[]);
        for p in &s.unresolved_service_parameters {
            xml.start("service-parameter", &[("name", p.name.as_str())]);
            source_elements(xml, &p.source_instance.to_string(), &p.awaited);
            xml.end("service-parameter");
        }
        xml.end("unresolved-service-parameters");
    }
    xml.end("service");
}

pub fn service(report: &ServiceReport) -> Vec<u8> {
    let mut xml = Xml::new();
    service_element(&mut xml, report, true);
    xml.finish()
}

pub fn instance(report: &InstanceReport) -> Vec<u8> {
    let mut xml = Xml::new();
    let uuid = report.uuid.to_string();
    let deployment = report.deployment.to_string();
    let mut attributes = vec![("uuid", uuid.as_str()), ("deployment", deployment.as_str())];
    if let Some(assembly) = &report.assembly {
        attributes.push(("assembly", assembly.as_str()));
    }
    attributes.push(("status", report.status.as_str()));
    xml.start("instance", &attributes);
    xml.time("registered", report.registered);
    xml.time("first-contacted", report.first_contacted);
    xml.time("last-contacted", report.last_contacted);
    xml.time("completed", report.completed);
    xml.seconds("duration-seconds", report.duration_seconds);
    if report.services.is_empty() {
        xml.empty("services", &[]);
    } else {
        xml.start("services", &[]);
        for s in &report.services {
            service_element(&mut xml, s, false);
        }
        xml.end("services");
    }
    if !report.pending_return_parameters.is_empty() {
        xml.start("pending-return-parameters", &[]);
        for p in &report.pending_return_parameters {
            xml.empty("return-parameter", &[("name", p.as_str())]);
        }
        xml.end("pending-return-parameters");
    }
    xml.end("instance");
    xml.finish()
}

/// The deployments list; `status` is the filter as asked (`stalled` too),
/// `sort` the order as asked.
pub fn deployments(page: &DeploymentPage, status: Option<&str>, sort: Option<&str>) -> Vec<u8> {
    let mut xml = Xml::new();
    let (total, offset, limit) = (
        page.total.to_string(),
        page.offset.to_string(),
        page.limit.to_string(),
    );
    let mut attributes = vec![
        ("total", total.as_str()),
        ("offset", offset.as_str()),
        ("limit", limit.as_str()),
    ];
    if let Some(status) = status {
        attributes.push(("status", status));
    }
    if let Some(sort) = sort {
        attributes.push(("sort", sort));
    }
    if page.deployments.is_empty() {
        xml.empty("deployments", &attributes);
        return xml.finish();
    }
    xml.start("deployments", &attributes);
    for d in &page.deployments {
        let uuid = d.uuid.to_string();
        let mut attributes = vec![("uuid", uuid.as_str())];
        if let Some(name) = &d.name {
            attributes.push(("name", name.as_str()));
        }
        attributes.push(("status", d.status.as_str()));
        attributes.push(("stalled", if d.stalled { "true" } else { "false" }));
        xml.start("deployment", &attributes);
        xml.time("started", d.started);
        xml.time("last-progress", d.last_progress);
        let c = d.instances;
        xml.empty(
            "instance-counts",
            &[
                ("total", &c.total.to_string()),
                ("success", &c.success.to_string()),
                ("incomplete", &c.incomplete.to_string()),
                ("error", &c.error.to_string()),
            ],
        );
        xml.empty(
            "unresolved-dependencies",
            &[("count", &d.unresolved_dependencies.to_string())],
        );
        xml.end("deployment");
    }
    xml.end("deployments");
    xml.finish()
}

/// An entity's history: each event with its data as compact JSON text.
pub fn events(page: &HistoryJson<'_>) -> Vec<u8> {
    let mut xml = Xml::new();
    let (total, offset, limit) = (
        page.total.to_string(),
        page.offset.to_string(),
        page.limit.to_string(),
    );
    let deployment = page.deployment.to_string();
    let instance = page.instance.map(|i| i.to_string());
    let mut attributes = vec![
        ("total", total.as_str()),
        ("offset", offset.as_str()),
        ("limit", limit.as_str()),
        ("deployment", deployment.as_str()),
    ];
    if let Some(instance) = &instance {
        attributes.push(("instance", instance.as_str()));
    }
    if page.events.is_empty() {
        xml.empty("events", &attributes);
        return xml.finish();
    }
    xml.start("events", &attributes);
    for e in &page.events {
        let time = e.time.to_rfc3339();
        let mut attributes = vec![
            ("id", e.id),
            ("source", e.source),
            ("type", e.r#type),
            ("time", time.as_str()),
        ];
        let instance = e.instance.map(|i| i.to_string());
        if let Some(instance) = &instance {
            attributes.push(("instance", instance.as_str()));
        }
        if let Some(service) = &e.service {
            attributes.push(("service", service));
        }
        xml.start("event", &attributes);
        xml.text("data", &e.data.to_string());
        xml.end("event");
    }
    xml.end("events");
    xml.finish()
}

/// The history page as both renderings see it (and JSON serialises it).
#[derive(Debug, serde::Serialize)]
pub struct HistoryJson<'a> {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub deployment: audrey_core::DeploymentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<audrey_core::InstanceId>,
    pub events: Vec<HistoryEvent<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct HistoryEvent<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub r#type: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<audrey_core::InstanceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    pub data: serde_json::Value,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.rfc3339().as_str())
}

impl<'a> HistoryEvent<'a> {
    pub fn of(event: &'a audrey_core::Event) -> Self {
        Self {
            id: event.id().as_str(),
            source: event.source().as_str(),
            r#type: event.event_type().name(),
            time: event.time(),
            instance: event.instance(),
            service: event
                .as_deployment_event()
                .and_then(|e| e.data.service())
                .map(|s| s.as_str()),
            data: event.data_json(),
        }
    }
}

/// What `/health` says (the XML and JSON are rendered from it).
#[derive(Debug, serde::Serialize)]
pub struct Health {
    #[serde(rename = "status", serialize_with = "ready_word")]
    pub ready: bool,
    #[serde(rename = "rocksdb", serialize_with = "open_word")]
    pub rocksdb_open: bool,
    #[serde(rename = "amqp", serialize_with = "connected_word")]
    pub amqp_connected: bool,
    /// The latest event applied (the freshness watermark).
    #[serde(
        serialize_with = "optional_rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub as_of: Option<Timestamp>,
    /// Events waiting in the queue, once counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u32>,
    /// How far behind: 0 when nothing waits.
    pub lag_seconds: f64,
}

fn ready_word<S: serde::Serializer>(ready: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *ready { "ready" } else { "not-ready" })
}

fn open_word<S: serde::Serializer>(open: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *open { "open" } else { "closed" })
}

fn connected_word<S: serde::Serializer>(connected: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *connected {
        "connected"
    } else {
        "disconnected"
    })
}

fn optional_rfc3339<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.rfc3339().as_str()),
        None => s.serialize_none(),
    }
}

pub fn health(health: &Health) -> Vec<u8> {
    let mut xml = Xml::new();
    let as_of = health.as_of.map(Timestamp::to_rfc3339);
    let waiting = health.waiting.map(|w| w.to_string());
    let lag = format!("{:.3}", health.lag_seconds);
    let mut attributes = vec![("status", if health.ready { "ready" } else { "not-ready" })];
    if let Some(as_of) = &as_of {
        attributes.push(("as-of", as_of));
    }
    if let Some(waiting) = &waiting {
        attributes.push(("waiting", waiting));
    }
    attributes.push(("lag-seconds", &lag));
    xml.start("health", &attributes);
    xml.empty(
        "rocksdb",
        &[(
            "status",
            if health.rocksdb_open {
                "open"
            } else {
                "closed"
            },
        )],
    );
    xml.empty(
        "amqp",
        &[(
            "status",
            if health.amqp_connected {
                "connected"
            } else {
                "disconnected"
            },
        )],
    );
    xml.end("health");
    xml.finish()
}

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut xml = Xml::new();
    xml.start("error", &[]);
    xml.text("code", &code.to_string());
    xml.text("message", message);
    xml.end("error");
    xml.finish()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

    use super::*;

    /// The writer [`Xml`] replaced: quick-xml's events, after [`xml_safe`].
    struct ByQuickXml(quick_xml::Writer<Vec<u8>>);

    impl ByQuickXml {
        fn new() -> Self {
            let mut writer = quick_xml::Writer::new(Vec::new());
            let decl = BytesDecl::new("1.0", Some("UTF-8"), None);
            writer.write_event(Event::Decl(decl)).unwrap();
            Self(writer)
        }

        fn tag<'a>(name: &'a str, attributes: &[(String, String)]) -> BytesStart<'a> {
            let mut tag = BytesStart::new(name);
            for (key, value) in attributes {
                tag.push_attribute((key.as_str(), xml_safe(value).as_ref()));
            }
            tag
        }

        fn write(&mut self, step: &Step) {
            let event = match step {
                Step::Start(name, attributes) => Event::Start(Self::tag(name, attributes)),
                Step::Empty(name, attributes) => Event::Empty(Self::tag(name, attributes)),
                Step::End(name) => Event::End(BytesEnd::new(name.as_str())),
                Step::Text(name, text) => {
                    self.write(&Step::Start(name.clone(), vec![]));
                    let text = xml_safe(text);
                    self.0
                        .write_event(Event::Text(BytesText::new(&text)))
                        .unwrap();
                    return self.write(&Step::End(name.clone()));
                }
            };
            self.0.write_event(event).unwrap();
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Start(String, Vec<(String, String)>),
        Empty(String, Vec<(String, String)>),
        End(String),
        Text(String, String),
    }

    /// Text with every character either writer treats apart: markup,
    /// line ends, tabs, other controls, U+FFFD to U+FFFF, and beyond.
    fn text() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            '<',
            '>',
            '&',
            '\'',
            '"',
            '\r',
            '\n',
            '\t',
            '\0',
            '\u{1}',
            '\u{1f}',
            ' ',
            'a',
            'é',
            '\u{fffd}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{effe}',
            '\u{1f600}',
        ]);
        prop::collection::vec(prop_oneof![special, any::<char>()], 0..12)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn step() -> impl Strategy<Value = Step> {
        let name = "[a-z][a-z-]{0,8}";
        let attributes = || prop::collection::vec((name, text()), 0..4);
        prop_oneof![
            (name, attributes()).prop_map(|(n, a)| Step::Start(n, a)),
            (name, attributes()).prop_map(|(n, a)| Step::Empty(n, a)),
            name.prop_map(Step::End),
            (name, text()).prop_map(|(n, t)| Step::Text(n, t)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Byte for byte what quick-xml wrote, whatever the names, values
        /// and texts.
        #[test]
        fn the_bytes_are_quick_xmls(steps in prop::collection::vec(step(), 0..12)) {
            let (mut xml, mut reference) = (Xml::new(), ByQuickXml::new());
            for step in &steps {
                match step {
                    Step::Start(name, attributes) => {
                        let attributes: Vec<_> =
                            attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        xml.start(name, &attributes);
                    }
                    Step::Empty(name, attributes) => {
                        let attributes: Vec<_> =
                            attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        xml.empty(name, &attributes);
                    }
                    Step::End(name) => {
                        xml.end(name);
                    }
                    Step::Text(name, text) => {
                        xml.text(name, text);
                    }
                }
                reference.write(step);
            }
            let mut expected = reference.0.into_inner();
            expected.push(b'\n');
            prop_assert_eq!(String::from_utf8(xml.finish()).unwrap(), String::from_utf8(expected).unwrap());
        }
    }

    #[test]
    fn markup_and_what_xml_cannot_carry_are_escaped() {
        let mut xml = Xml::new();
        xml.start("a", &[("v", "x<\"'\n\t\r&>\u{0}\u{ffff}")])
            .text("t", "x<\"'\n\t\r&>\u{1}\u{fffe}")
            .end("a");
        assert_eq!(
            String::from_utf8(xml.finish()).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <a v=\"x&lt;&quot;&apos;&#10;&#9;&#13;&amp;&gt;\u{fffd}\u{fffd}\">\
             <t>x&lt;&quot;&apos;\n\t&#13;&amp;&gt;\u{fffd}\u{fffd}</t></a>\n"
        );
    }
}
