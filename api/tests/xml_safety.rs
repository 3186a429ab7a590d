//! Whatever characters the contract lets a sender put in a string field,
//! and whatever a reader puts in a request (quoted in an error), every XML
//! document the API renders is well-formed (parsed fully by quick-xml, each
//! string read back as it was) and valid against `schemas/reports.xsd`
//! (checked by xmllint, one run per case over all its documents).
//!
//! The strings: names of 1 to 255 characters, event ids and sources of 1
//! to 255, free text (`request`, heartbeat `version`) up to the decoder's
//! bounds, each of any character the contract allows (none of C0, DEL,
//! U+FFFE, U+FFFF; no `/` in names), biased to XML's specials, astral
//! characters, combining and bidi marks, C1 controls and U+0085.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;

use audrey_api::xml::{self, HistoryEvent, HistoryJson};
use audrey_core::contract::{
    DeploymentEvent, EventData, Heartbeat, InstanceRegistration, Parameter, ParameterSource,
    ServiceConfig, DEFAULT_MAX_EVENT_BYTES,
};
use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, DeploymentFilter, ReportContext};
use audrey_core::{DeploymentId, Event, EventId, InstanceId, Name, Source, Status, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use quick_xml::events::Event as XmlEvent;
use quick_xml::XmlVersion;

// ---------------------------------------------------------------- inputs

/// What the contract refuses in every string (`is_refused_char` of the
/// core, `events.schema.json`).
fn refused(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}'
}

/// Allowed characters, biased to those that trouble XML and its readers.
fn allowed_char(slash: bool) -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        3 => proptest::char::range('a', 'z'),
        1 => (0x80u32..0xa0).prop_map(|c| char::from_u32(c).unwrap()),
        4 => proptest::sample::select(vec![
            '<', '>', '&', '"', '\'', ';', '#', '=', ']', '%', '/', ' ', '\u{85}', '\u{a0}',
            '\u{200b}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{61c}', '\u{300}',
            '\u{301}', '\u{327}', '\u{20dd}', '\u{fe0f}', '\u{2028}', '\u{2029}', '\u{d7ff}',
            '\u{e000}', '\u{fdd0}', '\u{fffc}', '\u{fffd}', '\u{feff}', '\u{10000}', '\u{1d11e}',
            '\u{1f600}', '\u{1f1eb}', '\u{e0041}', '\u{10fffd}', '\u{10ffff}', '\u{5d0}',
            '\u{627}', '\u{4e2d}',
        ]),
    ]
    .prop_filter("a refused character", move |c| {
        !refused(*c) && (slash || *c != '/')
    })
}

/// 1 to `max` allowed characters: mostly short, sometimes at the limit.
fn text(max: usize, slash: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(allowed_char(slash), 1..12),
        1 => proptest::collection::vec(allowed_char(slash), max - 5..=max),
    ]
    .prop_map(String::from_iter)
}

fn name() -> impl Strategy<Value = Name> {
    text(255, false).prop_map(|s| Name::parse(&s).expect("an allowed name"))
}

/// A name, often from a small pool (so that names meet: a reference finds
/// its source, two parameters share a name).
fn pooled_name() -> impl Strategy<Value = Name> {
    prop_oneof![
        2 => name(),
        1 => proptest::sample::select(vec!["a", "<&>", "\u{85}", "x\u{301}"])
            .prop_map(|s| Name::parse(s).unwrap()),
    ]
}

fn names(max: usize) -> impl Strategy<Value = Vec<Name>> {
    proptest::collection::vec(pooled_name(), 0..=max)
}

fn unique(names: Vec<Name>) -> Vec<Name> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

fn unique_parameters(parameters: &[(Name, Kind)]) -> Vec<(Name, Kind)> {
    let mut seen = BTreeSet::new();
    parameters
        .iter()
        .filter(|(name, _)| seen.insert(name.clone()))
        .cloned()
        .collect()
}

fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n.max(1)))
}

/// From 2000-01-01 to the last instant a timestamp holds (2262).
fn time() -> impl Strategy<Value = Timestamp> {
    let earliest = 946_684_800_000_000_000i64;
    prop_oneof![
        8 => (0i64..3_600_000_000_000).prop_map(|n| Timestamp::from_nanos(1_795_615_200_000_000_000 + n)),
        1 => (earliest..=i64::MAX).prop_map(Timestamp::from_nanos),
        1 => proptest::sample::select(vec![earliest, i64::MAX, 1_795_615_200_000_000_000])
            .prop_map(Timestamp::from_nanos),
    ]
}

/// A parameter of a service: where its value comes from.
#[derive(Debug, Clone)]
enum Kind {
    Static,
    /// A provided parameter of the instance at this index (or of an
    /// instance outside the deployment).
    Provided(Option<usize>, Name),
    Service(Option<usize>, Name),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Static),
        (proptest::option::weighted(0.8, 0usize..4), pooled_name())
            .prop_map(|(i, n)| Kind::Provided(i, n)),
        (proptest::option::weighted(0.8, 0usize..4), pooled_name())
            .prop_map(|(i, n)| Kind::Service(i, n)),
    ]
}

#[derive(Debug, Clone)]
struct InstancePlan {
    uuid: uuid::Uuid,
    assembly: Name,
    provided: Vec<Name>,
    services: Vec<(Name, Vec<(Name, Kind)>)>,
    /// An agent's request text when it contacts.
    contacted: Option<Option<String>>,
    /// Services run: (index, return code).
    runs: Vec<(usize, Option<i32>)>,
    /// Provided parameters reported: indices into `provided`, and others.
    provides: (Vec<usize>, Vec<Name>),
}

fn instance_plan() -> impl Strategy<Value = InstancePlan> {
    (
        uuid(),
        name(),
        names(3),
        proptest::collection::vec(
            (
                pooled_name(),
                proptest::collection::vec((pooled_name(), kind()), 0..3),
            ),
            0..3,
        ),
        proptest::option::of(proptest::option::of(text(1024, true))),
        proptest::collection::vec((0usize..3, proptest::option::of(any::<i32>())), 0..3),
        (proptest::collection::vec(0usize..3, 0..3), names(2)),
    )
        .prop_map(
            |(uuid, assembly, provided, services, contacted, runs, provides)| InstancePlan {
                uuid,
                assembly,
                provided: unique(provided),
                services,
                contacted,
                runs,
                provides,
            },
        )
}

/// One case: a deployment of a few instances, the config servers that
/// reported on it (some with heartbeats), each event's id and time.
#[derive(Debug, Clone)]
struct Plan {
    deployment: uuid::Uuid,
    name: Name,
    instances: Vec<InstancePlan>,
    /// `deployment.registered`: which instances it lists, and one missing.
    registered: Option<(Vec<bool>, Option<uuid::Uuid>)>,
    sources: Vec<String>,
    /// Per source: a heartbeat's version and interval.
    heartbeats: Vec<Option<(String, u32)>>,
    /// Event ids, sources (indices) and times, used in turn.
    stamps: Vec<(String, usize, Timestamp)>,
    /// Error messages as a reader may make the service quote them.
    errors: Vec<(u16, String)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        uuid(),
        name(),
        proptest::collection::vec(instance_plan(), 1..4),
        proptest::option::of((
            proptest::collection::vec(any::<bool>(), 4),
            proptest::option::of(uuid()),
        )),
        proptest::collection::vec(text(255, true), 1..4),
        proptest::collection::vec(
            proptest::option::weighted(0.7, (text(64, true), 1u32..=86_400)),
            3,
        ),
        proptest::collection::vec((text(255, true), 0usize..3, time()), 40),
        proptest::collection::vec(
            (
                400u16..=599,
                proptest::collection::vec(any::<char>(), 1..200).prop_map(String::from_iter),
            ),
            1..3,
        ),
    )
        .prop_map(
            |(deployment, name, instances, registered, sources, heartbeats, stamps, errors)| Plan {
                deployment,
                name,
                instances,
                registered,
                sources,
                heartbeats,
                stamps,
                errors,
            },
        )
}

/// The plan's events, built with the core's types, in the order planned.
fn events(plan: &Plan) -> Vec<Event> {
    let deployment = DeploymentId::from_uuid(plan.deployment);
    let sources: Vec<Source> = plan
        .sources
        .iter()
        .map(|s| Source::parse(s).expect("an allowed source"))
        .collect();
    let mut stamps = plan.stamps.iter().cycle();
    let mut stamp = || {
        let (id, source, time) = stamps.next().expect("a cycle");
        (
            EventId::parse(id).expect("an allowed id"),
            sources[source % sources.len()].clone(),
            *time,
        )
    };
    let mut out = Vec::new();
    let mut event = |data: EventData| {
        let (id, source, time) = stamp();
        out.push(Event::Deployment(DeploymentEvent {
            id,
            source,
            time,
            deployment,
            data,
        }));
    };
    let uuids: Vec<InstanceId> = plan
        .instances
        .iter()
        .map(|i| InstanceId::from_uuid(i.uuid))
        .collect();
    let outside = InstanceId::from_uuid(uuid::Uuid::from_u128(0x00ff_51de));
    let target = |i: &Option<usize>| i.map_or(outside, |i| uuids[i % uuids.len()]);
    for (plan_i, uuid) in plan.instances.iter().zip(&uuids) {
        let mut seen = BTreeSet::new();
        let services = plan_i
            .services
            .iter()
            .filter(|(n, _)| seen.insert(n.clone()))
            .map(|(service, parameters)| ServiceConfig {
                name: service.clone(),
                // One parameter per name: the decoder refuses a repeat
                // (the reports key a parameter by its name).
                parameters: unique_parameters(parameters)
                    .iter()
                    .map(|(name, kind)| Parameter {
                        name: name.clone(),
                        source: match kind {
                            Kind::Static => ParameterSource::Static,
                            Kind::Provided(i, p) => ParameterSource::ProvidedParameter {
                                instance: target(i),
                                parameter: p.clone(),
                            },
                            Kind::Service(i, s) => ParameterSource::ServiceReturnCode {
                                instance: target(i),
                                service: s.clone(),
                            },
                        },
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        event(EventData::InstanceRegistered(InstanceRegistration {
            deployment_name: plan.name.clone(),
            instance: *uuid,
            assembly: plan_i.assembly.clone(),
            provided_parameters: plan_i.provided.clone(),
            services: services.clone(),
        }));
        if let Some(request) = &plan_i.contacted {
            event(EventData::InstanceContacted {
                instance: *uuid,
                request: request.clone(),
            });
        }
        for (service, code) in &plan_i.runs {
            let Some(service) = services.get(*service) else {
                continue;
            };
            event(EventData::ConfigurationStarted {
                instance: *uuid,
                service: service.name.clone(),
            });
            if let Some(code) = code {
                event(EventData::ConfigurationEnded {
                    instance: *uuid,
                    service: service.name.clone(),
                    return_code: *code,
                });
            }
        }
        let (indices, others) = &plan_i.provides;
        let mut provided: Vec<Name> = indices
            .iter()
            .filter_map(|i| plan_i.provided.get(*i).cloned())
            .collect();
        provided.extend(others.iter().cloned());
        let provided = unique(provided);
        if !provided.is_empty() {
            event(EventData::ParametersProvided {
                instance: *uuid,
                parameters: provided,
            });
        }
    }
    if let Some((listed, missing)) = &plan.registered {
        let mut instances: Vec<InstanceId> = uuids
            .iter()
            .zip(listed)
            .filter(|(_, listed)| **listed)
            .map(|(u, _)| *u)
            .collect();
        instances.extend(missing.map(InstanceId::from_uuid));
        let instances: Vec<InstanceId> = instances
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !instances.is_empty() {
            event(EventData::DeploymentRegistered {
                name: plan.name.clone(),
                instances,
            });
        }
    }
    for (source, heartbeat) in sources.iter().zip(&plan.heartbeats) {
        if let Some((version, interval)) = heartbeat {
            let (id, _, time) = stamp();
            out.push(Event::Heartbeat(Heartbeat {
                id,
                source: source.clone(),
                time,
                version: version.clone(),
                interval_seconds: *interval,
            }));
        }
    }
    // The store keeps one event per (source, id): the first.
    let mut seen = BTreeSet::new();
    out.retain(|e| seen.insert((e.source().clone(), e.id().clone())));
    out
}

// ------------------------------------------------------------ the checks

fn ok<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

/// One rendered document, with what some of its strings must read back as.
struct Document {
    name: String,
    body: Vec<u8>,
    /// (element, attribute, value): the first such element's attribute
    /// must read back as this value.
    expect_attributes: Vec<(&'static str, &'static str, String)>,
    /// (element, text): every such element's text, in order.
    expect_texts: Option<(&'static str, Vec<String>)>,
}

impl Document {
    fn new(name: String, body: Vec<u8>) -> Self {
        Self {
            name,
            body,
            expect_attributes: Vec::new(),
            expect_texts: None,
        }
    }
}

/// Whether XML 1.0 can carry the character (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

/// Every document of the views: the deployment, each instance and
/// service, the lists, the config servers, each history page.
fn documents(plan: &Plan, events: &[Event], views: &MemoryViews) -> Vec<Document> {
    let ctx = ReportContext::at(Timestamp::now());
    let deployment = DeploymentId::from_uuid(plan.deployment);
    let mut docs = Vec::new();
    let report = ok(query::deployment_report(views, deployment, &ctx)).expect("the deployment");
    let mut doc = Document::new("deployment".into(), xml::deployment(&report));
    if let Some(name) = &report.name {
        doc.expect_attributes
            .push(("deployment", "name", name.to_string()));
    }
    docs.push(doc);
    for (n, id) in views.instances.keys().enumerate() {
        let Some(report) = ok(query::instance_report(views, *id, &ctx)) else {
            continue;
        };
        let mut doc = Document::new(format!("instance-{n}"), xml::instance(&report));
        if let Some(assembly) = &report.assembly {
            doc.expect_attributes
                .push(("instance", "assembly", assembly.to_string()));
        }
        docs.push(doc);
        for (s, service) in report.services.iter().enumerate() {
            let alone =
                ok(query::service_report(views, *id, &service.name, &ctx)).expect("its service");
            let mut doc = Document::new(format!("service-{n}-{s}"), xml::service(&alone));
            doc.expect_attributes
                .push(("service", "name", service.name.to_string()));
            docs.push(doc);
        }
    }
    let filters = [
        (DeploymentFilter::All, None),
        (DeploymentFilter::Status(Status::Success), Some("success")),
        (
            DeploymentFilter::Status(Status::Incomplete),
            Some("incomplete"),
        ),
        (DeploymentFilter::Status(Status::Error), Some("error")),
        (DeploymentFilter::Stalled, Some("stalled")),
    ];
    for (n, (filter, status)) in filters.into_iter().enumerate() {
        let page = ok(query::deployment_page(views, filter, 0, 100, &ctx));
        docs.push(Document::new(
            format!("deployments-{n}"),
            xml::deployments(&page, status, None),
        ));
    }
    let servers = ok(query::config_servers(views, &ctx));
    let mut doc = Document::new("config-servers".into(), xml::config_servers(&servers));
    doc.expect_attributes.extend(
        servers
            .first()
            .map(|s| ("config-server", "source", s.source.to_string())),
    );
    docs.push(doc);

    // Histories, as the store pages them: oldest first.
    let mut history: Vec<&Event> = events
        .iter()
        .filter(|e| e.deployment() == Some(deployment))
        .collect();
    history.sort_by(|a, b| (a.time(), a.source(), a.id()).cmp(&(b.time(), b.source(), b.id())));
    let mut pages: BTreeMap<Option<InstanceId>, Vec<&Event>> = BTreeMap::new();
    pages.insert(None, history.clone());
    for e in &history {
        if let Some(i) = e.instance() {
            pages.entry(Some(i)).or_default().push(e);
        }
    }
    for (n, (instance, events)) in pages.into_iter().enumerate() {
        let page = HistoryJson {
            total: events.len() as u64,
            offset: 0,
            limit: 1000,
            deployment,
            instance,
            events: events.iter().map(|e| HistoryEvent::of(e)).collect(),
        };
        let mut doc = Document::new(format!("events-{n}"), xml::events(&page));
        doc.expect_texts = Some((
            "data",
            events.iter().map(|e| e.data_json().to_string()).collect(),
        ));
        if let Some(first) = events.first() {
            doc.expect_attributes
                .push(("event", "id", first.id().to_string()));
            doc.expect_attributes
                .push(("event", "source", first.source().to_string()));
        }
        docs.push(doc);
    }
    for (n, (code, message)) in plan.errors.iter().enumerate() {
        let mut doc = Document::new(format!("error-{n}"), xml::error(*code, message));
        // What XML cannot carry becomes U+FFFD; the rest reads back as it
        // was (a carriage return too: it is written as a reference).
        doc.expect_texts = Some(("message", vec![xml::xml_safe(message).into_owned()]));
        docs.push(doc);
    }
    docs
}

/// Parses a document fully with quick-xml: one root, names matched,
/// attributes and text unescaped, every character one XML 1.0 carries;
/// then checks the strings expected in it read back unchanged.
fn check_well_formed(doc: &Document) -> Result<(), String> {
    let text = std::str::from_utf8(&doc.body).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Some(c) = text.chars().find(|c| !xml_char(*c)) {
        return Err(format!(
            "holds U+{:04X}, which XML 1.0 cannot carry",
            c as u32
        ));
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut attributes: Vec<(String, String, String)> = Vec::new();
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut open: Vec<String> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                if depth == 0 {
                    roots += 1;
                }
                let element = e.name().as_ref().to_owned();
                for attribute in e.attributes() {
                    let attribute = attribute.map_err(|e| format!("an attribute: {e}"))?;
                    let value = attribute
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| format!("an attribute value: {e}"))?;
                    let key = attribute.key.as_ref().to_owned();
                    attributes.push((element.clone(), key, value.into_owned()));
                }
                if matches!(event, XmlEvent::Start(_)) {
                    depth += 1;
                    open.push(element);
                    texts.push((open.last().unwrap().clone(), String::new()));
                }
            }
            XmlEvent::End(_) => {
                depth = depth.checked_sub(1).ok_or("an end tag too many")?;
                open.pop();
            }
            XmlEvent::Text(t) => {
                let content = t.xml10_content();
                if depth == 0 && !content.trim().is_empty() {
                    return Err("text outside the root".into());
                }
                if let (Some(element), Some(last)) = (open.last(), texts.last_mut()) {
                    if &last.0 == element {
                        last.1.push_str(&content);
                    }
                }
            }
            XmlEvent::GeneralRef(r) => {
                let c = match r
                    .resolve_char_ref()
                    .map_err(|e| format!("a reference: {e}"))?
                {
                    Some(c) if xml_char(c) => c,
                    Some(c) => return Err(format!("a reference to U+{:04X}", c as u32)),
                    None => match r.xml10_content().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("an undefined entity `{other}`")),
                    },
                };
                if depth == 0 {
                    return Err("a reference outside the root".into());
                }
                if let (Some(element), Some(last)) = (open.last(), texts.last_mut()) {
                    if &last.0 == element {
                        last.1.push(c);
                    }
                }
            }
            XmlEvent::Decl(_) => {}
            XmlEvent::Eof => break,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    if depth != 0 || roots != 1 {
        return Err(format!("{roots} root element(s), {depth} left open"));
    }
    for (element, key, expected) in &doc.expect_attributes {
        let found = attributes
            .iter()
            .find(|(e, k, _)| e == element && k == key)
            .map(|(_, _, v)| v);
        if found != Some(expected) {
            return Err(format!(
                "{element}/@{key} reads back as {found:?}, expected {expected:?}"
            ));
        }
    }
    if let Some((element, expected)) = &doc.expect_texts {
        let found: Vec<&String> = texts
            .iter()
            .filter(|(e, _)| e == element)
            .map(|(_, t)| t)
            .collect();
        let expected: Vec<&String> = expected.iter().collect();
        if found != expected {
            return Err(format!(
                "the <{element}> texts read back as {found:?}, expected {expected:?}"
            ));
        }
    }
    Ok(())
}

fn schema() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/reports.xsd")
}

/// Validates the documents against the XSD, all in one xmllint run.
fn check_valid(dir: &Path, docs: &[Document]) -> Result<(), String> {
    let mut files = Vec::new();
    for doc in docs {
        let path = dir.join(format!("{}.xml", doc.name));
        std::fs::write(&path, &doc.body).unwrap();
        files.push(path);
    }
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .args(&files)
        .output()
        .expect("xmllint runs (libxml2-utils; ./dev installs it)");
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let invalid: Vec<String> = docs
        .iter()
        .zip(&files)
        .filter(|(_, f)| stderr.contains(&format!("{} fails to validate", f.display())))
        .map(|(d, _)| format!("{}:\n{}", d.name, String::from_utf8_lossy(&d.body)))
        .collect();
    Err(format!(
        "not valid against reports.xsd:\n{stderr}\n{}",
        invalid.join("\n")
    ))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            ProptestConfig::default().cases
        } else {
            200
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_document_is_well_formed_and_valid(plan in plan()) {
        let events = events(&plan);
        for event in &events {
            // Only what the contract accepts: these are events a sender
            // may really publish.
            let decoded = Event::decode(&event.to_bytes(), DEFAULT_MAX_EVENT_BYTES);
            prop_assert_eq!(decoded.as_ref(), Ok(event), "the decoder refuses a planned event");
        }
        let views = MemoryViews::from_events(&events);
        let docs = documents(&plan, &events, &views);
        for doc in &docs {
            check_well_formed(doc).map_err(|e| {
                TestCaseError::fail(format!(
                    "{} is not well-formed: {e}\n{}",
                    doc.name,
                    String::from_utf8_lossy(&doc.body)
                ))
            })?;
        }
        let dir = tempfile::tempdir().unwrap();
        check_valid(dir.path(), &docs).map_err(TestCaseError::fail)?;
    }
}

/// The messages a reader may make the service quote (a path with control
/// characters, XML specials, lone surrogates percent-decoded lossily)
/// render valid errors, whatever the status.
#[test]
fn error_bodies_of_hostile_messages_are_valid() {
    let messages = [
        "no such endpoint: /\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
        "]]><!-- --><![CDATA[x]]>&amp;&#0;&#x1;<?pi?>",
        "\r\n\r\t \u{85}\u{2028}\u{fffe}\u{ffff}\u{fffd}\u{feff}",
        "\u{d7ff}\u{e000}\u{10ffff}\u{1f600}\u{202e}abc\u{301}",
        " ",
        "\r",
    ];
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<Document> = messages
        .iter()
        .enumerate()
        .map(|(n, m)| {
            let mut doc = Document::new(format!("error-{n}"), xml::error(400 + n as u16, m));
            doc.expect_texts = Some(("message", vec![xml::xml_safe(m).into_owned()]));
            doc
        })
        .collect();
    for doc in &docs {
        check_well_formed(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.name));
    }
    check_valid(dir.path(), &docs).unwrap();
}
