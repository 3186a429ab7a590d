//! Structure-aware fuzzing of the way in: nothing a sender puts in a
//! message makes decoding panic; whatever decoding accepts projects,
//! every report of the resulting views can be computed (and agrees with
//! the others), and its canonical form decodes back to the same event.
//!
//! The inputs: arbitrary bytes; arbitrary JSON values (recursive); valid
//! events (`schemas/examples/` and the `scenario` streams) mutated field by
//! field (a field replaced by arbitrary JSON, keys removed, types changed,
//! arbitrary Unicode text with control characters, U+FFFE, very long
//! strings, numbers JSON cannot hold exactly, broken framing); and
//! binary-mode messages, valid ones with their headers and body mutated
//! and wholly arbitrary ones.
//!
//! The default case counts (896 cases in all) keep this to about a second
//! in a debug build, so `cargo test -p audrey-core` stays quick; a long
//! run: `PROPTEST_CASES=200000 cargo test --release -p audrey-core --test
//! fuzz` (every property that many cases).

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::LazyLock;

use audrey_core::contract::{
    EventType, HeaderValue, SourcePattern, TrustedSources, DEFAULT_MAX_EVENT_BYTES,
    EARLIEST_EVENT_TIME_SECONDS,
};
use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, DeploymentFilter, ReportContext};
use audrey_core::scenario::script::{blog_registered, DeploymentScript, BLOG, MYSQL, WORDPRESS};
use audrey_core::scenario::{ConfigServerScript, Shape};
use audrey_core::{Event, Name, Status, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

// ---------------------------------------------------------------- inputs

/// Proptest's configuration with `default_cases`, unless `PROPTEST_CASES`
/// asks for another count.
fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// Every valid event the mutations start from: the examples of the
/// contract, then a stream of the scenarios (whose events the base views
/// hold, so that mutated events meet rows they touch).
struct Seeds {
    /// The structured JSON of each seed event.
    json: Vec<Value>,
    /// The views of the scenario stream.
    views: MemoryViews,
    /// UUIDs the seeds mention, for fields that want one.
    uuids: Vec<String>,
}

static SEEDS: LazyLock<Seeds> = LazyLock::new(|| {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("schemas/examples")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut json: Vec<Value> = files
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();

    let mut cs = DeploymentScript::new(BLOG);
    let mut stream = blog_registered(&mut cs);
    stream.extend([
        cs.contacted(10, MYSQL),
        cs.provided(11, MYSQL, &["ipaddress", "hostname"]),
        cs.started(12, MYSQL, "mysql"),
        cs.ended(13, MYSQL, "mysql", 0),
        cs.contacted(14, WORDPRESS),
        cs.started(15, WORDPRESS, "wordpress"),
        cs.ended(16, WORDPRESS, "wordpress", 3),
    ]);
    let gone = "7e57dead-0000-4000-8000-00000000d001";
    let mut other = DeploymentScript::new(gone).with_source("/configserver/cs-02");
    stream.push(other.register(
        0,
        "7e57dead-0000-4000-8000-00000000a001",
        "lonely",
        &["ip"],
        vec![],
    ));
    stream.push(other.deleted(5));
    let start = Timestamp::from_unix_seconds(1_795_615_200);
    let shape = Shape {
        instances: 3,
        services_per_instance: 2,
        failure_rate: 0.3,
        ..Shape::default()
    };
    let mut real = ConfigServerScript::new("/configserver/cs-03", 7);
    stream.extend(real.deployment(start, &shape));
    stream.extend(real.heartbeats(start, start.plus_seconds(60.0), 30));
    stream.sort_by_key(|e| e.time());

    let views = MemoryViews::from_events(&stream);
    json.extend(stream.iter().map(Event::to_json));
    let mut uuids: BTreeSet<String> = views.deployments.keys().map(|d| d.to_string()).collect();
    uuids.extend(views.instances.keys().map(|i| i.to_string()));
    Seeds {
        json,
        views,
        uuids: uuids.into_iter().collect(),
    }
});

/// The contract's JSON Schema: what the decoder accepts, it accepts.
static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/events.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
});

/// Characters, biased to those that break things: C0 and C1 controls,
/// the non-characters, XML's specials, bidi and combining marks, line
/// separators, astral planes.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        3 => proptest::char::range('a', 'z'),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
        1 => (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).unwrap()),
        3 => proptest::sample::select(vec![
            '\u{0}', '\t', '\n', '\r', '\u{7f}', '\u{85}', '\u{a0}', '\u{fffe}', '\u{ffff}',
            '\u{fffd}', '\u{feff}', '\u{2028}', '\u{2029}', '\u{200e}', '\u{200f}', '\u{202e}',
            '\u{301}', '\u{d7ff}', '\u{e000}', '\u{10ffff}', '\u{1f600}', '/', '<', '>', '&',
            '"', '\'', '\\', '%', '*', ' ', '.', ':', '-', '{', '}', '[', ']',
        ]),
    ]
}

/// Strings: short ones of any characters, and ones at and around every
/// length limit of the contract (64, 255, 1024 characters) and far beyond.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(any_char(), 0..40).prop_map(String::from_iter),
        2 => (
            proptest::sample::select(vec![63usize, 64, 65, 254, 255, 256, 1023, 1024, 1025, 70_000]),
            proptest::collection::vec(any_char(), 1..4),
        )
            .prop_map(|(n, chars)| chars.iter().cycle().take(n).collect()),
    ]
}

/// RFC 3339-like times: every field at and beyond its range, the edges of
/// what a timestamp holds (1677 to 2262), offsets, and plain junk.
fn any_time() -> impl Strategy<Value = String> {
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        Just(String::new()),
        (any::<bool>(), 0u32..26, 0u32..61)
            .prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
    ];
    let fraction = prop_oneof![
        Just(String::new()),
        (1usize..12).prop_map(|n| format!(".{}", "9".repeat(n))),
        (1usize..10).prop_map(|n| format!(".{}", "0".repeat(n))),
    ];
    prop_oneof![
        4 => (
            prop_oneof![1995u32..2300, 0u32..10_000],
            0u32..14,
            0u32..33,
            0u32..25,
            0u32..61,
            0u32..61,
            fraction,
            offset,
            prop_oneof![Just('T'), Just('t'), Just(' ')],
        )
            .prop_map(|(y, mo, d, h, mi, s, frac, off, t)| {
                format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{off}")
            }),
        2 => proptest::sample::select(vec![
            "2262-04-11T23:47:16.854775807Z",
            "2262-04-11T23:47:16.854775808Z",
            "2262-04-11T23:47:16.854775807-23:59",
            "2262-04-11T00:00:00+23:59",
            "1677-09-21T00:12:43.145224192Z",
            "9999-12-31T23:59:59.999999999Z",
            "2000-01-01T00:00:00Z",
            "2000-01-01T00:00:00+00:01",
            "1999-12-31T23:59:59.999999999Z",
            "2000-01-01T00:30:00+01:00",
            "2028-02-29T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-25T14:00:00.5Z",
            "2026-11-25t14:00:00z",
        ])
        .prop_map(str::to_owned),
        1 => any_string(),
    ]
}

/// UUIDs: those of the seeds (so events meet rows), fresh ones, the nil
/// one, and malformed or differently written ones.
fn any_uuid() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(SEEDS.uuids.clone()),
        2 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => Just("00000000-0000-0000-0000-000000000000".to_owned()),
        1 => proptest::sample::select(SEEDS.uuids.clone()).prop_map(|u| u.to_uppercase()),
        1 => proptest::sample::select(SEEDS.uuids.clone()).prop_map(|u| u.replace('-', "")),
        1 => proptest::sample::select(SEEDS.uuids.clone()).prop_map(|u| format!("{{{u}}}")),
        1 => proptest::sample::select(SEEDS.uuids.clone()).prop_map(|u| format!("urn:uuid:{u}")),
    ]
}

/// The words of the contract: attribute and field names, types, kinds.
const KEYS: [&str; 26] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "deployment",
    "data",
    "dataschema",
    "subject",
    "uuid",
    "name",
    "instance",
    "assembly",
    "provided_parameters",
    "services",
    "parameters",
    "kind",
    "parameter",
    "service",
    "instances",
    "request",
    "return_code",
    "version",
    "interval_seconds",
    "data_base64",
];

const WORDS: [&str; 16] = [
    "1.0",
    "application/json",
    "org.aeolusproject.audrey.instance.registered",
    "org.aeolusproject.audrey.deployment.registered",
    "org.aeolusproject.audrey.instance.contacted",
    "org.aeolusproject.audrey.service.configuration_started",
    "org.aeolusproject.audrey.service.configuration_ended",
    "org.aeolusproject.audrey.instance.parameters_provided",
    "org.aeolusproject.audrey.deployment.deleted",
    "org.aeolusproject.audrey.configserver.heartbeat",
    "org.aeolusproject.audrey.nope",
    "static",
    "parameter-reference",
    "service-reference",
    "mysql",
    "ipaddress",
];

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        1 => any_string(),
    ]
}

/// Strings a field might hold, valid or not.
fn any_text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any_string(),
        2 => proptest::sample::select(WORDS.to_vec()).prop_map(str::to_owned),
        2 => any_uuid(),
        1 => any_time(),
    ]
}

/// Numbers at the edges of every integer field and of what JSON holds.
fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(vec![
            0i64,
            1,
            -1,
            30,
            86_400,
            86_401,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            i64::from(u32::MAX),
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1.0f64)),
        Just(Value::from(-0.0f64)),
        Just(Value::from(f64::MAX)),
    ]
}

/// Arbitrary JSON, nested.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any_number(),
        any_text_value().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((any_key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Number literals no `Value` can hold exactly: written into the JSON
/// text in place of a field.
fn raw_number() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775808",
            "2147483648",
            "-2147483649",
            "4294967296",
            "1.0",
            "-0",
            "1E2",
            "0.000000000000000000000000001",
            "123456789012345678901234567890123456789",
        ])
        .prop_map(str::to_owned),
        (1usize..5000).prop_map(|n| "9".repeat(n)),
    ]
}

/// One change to one node of a JSON document.
#[derive(Debug, Clone)]
enum Mutation {
    /// The node becomes arbitrary JSON.
    Replace(Value),
    /// The key (or array item) goes; the root becomes `null`.
    Remove,
    /// The same content as another JSON type.
    ChangeType,
    /// The node becomes a string.
    Text(String),
    /// The node becomes a number literal written into the text.
    RawNumber(String),
    /// The object gains a key (a non-object becomes one).
    Insert(String, Value),
    /// An array's first item, or a string, twice.
    Repeat,
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any_json().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        2 => Just(Mutation::ChangeType),
        4 => any_text_value().prop_map(Mutation::Text),
        1 => raw_number().prop_map(Mutation::RawNumber),
        1 => (any_key(), any_json()).prop_map(|(k, v)| Mutation::Insert(k, v)),
        1 => Just(Mutation::Repeat),
    ]
}

/// Where a node is in a document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn node_paths(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Step::Key(k.clone()));
                node_paths(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Step::Index(i));
                node_paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// Applies each mutation to the node its site picks (among all nodes,
/// counted afresh each time); raw number literals are left as
/// placeholders, returned with the text they stand for.
fn mutate(value: &mut Value, mutations: &[(usize, Mutation)]) -> Vec<(String, String)> {
    let mut raw = Vec::new();
    for (site, mutation) in mutations {
        let mut paths = Vec::new();
        node_paths(value, &mut Vec::new(), &mut paths);
        let path = &paths[site % paths.len()];
        if let Mutation::Remove = mutation {
            match path.split_last() {
                None => *value = Value::Null,
                Some((last, parent)) => {
                    let parent = node_mut(value, parent).expect("a node's parent");
                    match (last, parent) {
                        (Step::Key(k), Value::Object(map)) => {
                            map.remove(k);
                        }
                        (Step::Index(i), Value::Array(items)) => {
                            items.remove(*i);
                        }
                        _ => unreachable!("a path steps through objects and arrays"),
                    }
                }
            }
            continue;
        }
        let node = node_mut(value, path).expect("a node");
        match mutation {
            Mutation::Replace(v) => *node = v.clone(),
            Mutation::Remove => unreachable!(),
            Mutation::ChangeType => {
                *node = match node.take() {
                    Value::String(s) => match serde_json::from_str::<Value>(&s) {
                        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                        _ => Value::Array(vec![Value::String(s)]),
                    },
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::from(i64::from(b)),
                    Value::Null => Value::Bool(false),
                    Value::Array(items) => Value::Object(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v))
                            .collect(),
                    ),
                    Value::Object(map) => Value::Array(map.into_iter().map(|(_, v)| v).collect()),
                }
            }
            Mutation::Text(s) => *node = Value::String(s.clone()),
            Mutation::RawNumber(text) => {
                let placeholder = format!("@@fuzz-raw-number-{}@@", raw.len());
                *node = Value::String(placeholder.clone());
                raw.push((placeholder, text.clone()));
            }
            Mutation::Insert(k, v) => match node {
                Value::Object(map) => {
                    map.insert(k.clone(), v.clone());
                }
                other => *other = Value::Object(Map::from_iter([(k.clone(), v.clone())])),
            },
            Mutation::Repeat => match node {
                Value::Array(items) if !items.is_empty() => items.push(items[0].clone()),
                Value::String(s) => *s = s.repeat(2),
                _ => {}
            },
        }
    }
    raw
}

/// How a mutated document is written out.
#[derive(Debug, Clone)]
enum Framing {
    Compact,
    Pretty,
    /// A UTF-8 byte order mark first.
    ByteOrderMark,
    /// Cut after this many bytes (modulo the length).
    Truncated(usize),
    /// Followed by more text.
    Trailing(String),
    /// The same key given first with another value.
    EarlierDuplicate(String, Value),
}

fn any_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        12 => Just(Framing::Compact),
        2 => Just(Framing::Pretty),
        1 => Just(Framing::ByteOrderMark),
        1 => any::<usize>().prop_map(Framing::Truncated),
        1 => any_string().prop_map(Framing::Trailing),
        2 => (any_key(), any_json()).prop_map(|(k, v)| Framing::EarlierDuplicate(k, v)),
    ]
}

fn render(value: &Value, raw: &[(String, String)], framing: &Framing) -> Vec<u8> {
    let mut text = match framing {
        Framing::Pretty => serde_json::to_string_pretty(value).unwrap(),
        _ => serde_json::to_string(value).unwrap(),
    };
    for (placeholder, number) in raw {
        text = text.replace(&format!("\"{placeholder}\""), number);
    }
    let mut bytes = text.into_bytes();
    match framing {
        Framing::Compact | Framing::Pretty => {}
        Framing::ByteOrderMark => bytes.splice(0..0, [0xef, 0xbb, 0xbf]).for_each(drop),
        Framing::Truncated(at) => bytes.truncate(at % (bytes.len() + 1)),
        Framing::Trailing(more) => bytes.extend_from_slice(more.as_bytes()),
        Framing::EarlierDuplicate(key, v) => {
            if bytes.first() == Some(&b'{') {
                let pair = format!("{}:{},", Value::from(key.as_str()), v);
                bytes.splice(1..1, pair.into_bytes()).for_each(drop);
            }
        }
    }
    bytes
}

/// One mutated seed, written out.
#[derive(Debug, Clone)]
struct Mutated {
    seed: usize,
    mutations: Vec<(usize, Mutation)>,
    framing: Framing,
}

fn any_mutated() -> impl Strategy<Value = Mutated> {
    (
        0..SEEDS.json.len(),
        proptest::collection::vec((any::<usize>(), any_mutation()), 0..4),
        any_framing(),
    )
        .prop_map(|(seed, mutations, framing)| Mutated {
            seed,
            mutations,
            framing,
        })
}

impl Mutated {
    fn bytes(&self) -> Vec<u8> {
        let mut value = SEEDS.json[self.seed].clone();
        let raw = mutate(&mut value, &self.mutations);
        render(&value, &raw, &self.framing)
    }
}

/// Header values as the AMQP client hands them over.
fn any_header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        6 => any_text_value().prop_map(HeaderValue::Text),
        1 => any::<u64>().prop_map(HeaderValue::Timestamp),
        1 => proptest::sample::select(vec![0u64, 946_684_799, 946_684_800, 1_795_615_200, 9_223_372_036, 9_223_372_037, i64::MAX as u64, u64::MAX])
            .prop_map(HeaderValue::Timestamp),
        1 => any::<i64>().prop_map(HeaderValue::Integer),
        1 => proptest::sample::select(vec![0i64, -1, 946_684_800_000, 1_795_615_200_500, 9_223_372_036_854, 9_223_372_036_855, i64::MAX, i64::MIN])
            .prop_map(HeaderValue::Integer),
        1 => any::<bool>().prop_map(HeaderValue::Boolean),
        1 => Just(HeaderValue::Other),
    ]
}

const PREFIXES: [&str; 6] = [
    "ce-",
    "cloudEvents_",
    "cloudEvents:",
    "CE-",
    "cloudevents_",
    "x-",
];

/// Header names: an AMQP field table's keys are short strings, at most
/// 255 bytes on the wire.
fn any_header_name() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        3 => (
            proptest::sample::select(PREFIXES.to_vec()),
            prop_oneof![
                3 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
                1 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_uppercase),
                1 => any_string(),
            ],
        )
            .prop_map(|(prefix, name)| format!("{prefix}{name}")),
        1 => any_string(),
    ];
    name.prop_map(|mut name| {
        while name.len() > 255 {
            name.pop();
        }
        name
    })
}

/// One change to a binary message's headers.
#[derive(Debug, Clone)]
enum HeaderChange {
    Remove(usize),
    Value(usize, HeaderValue),
    Rename(usize, String),
    /// The header given again (with another value, when there is one).
    Again(usize, Option<HeaderValue>),
    Add(String, HeaderValue),
}

fn any_header_change() -> impl Strategy<Value = HeaderChange> {
    prop_oneof![
        any::<usize>().prop_map(HeaderChange::Remove),
        (any::<usize>(), any_header_value()).prop_map(|(i, v)| HeaderChange::Value(i, v)),
        (any::<usize>(), any_header_name()).prop_map(|(i, n)| HeaderChange::Rename(i, n)),
        (any::<usize>(), proptest::option::of(any_header_value()))
            .prop_map(|(i, v)| HeaderChange::Again(i, v)),
        (any_header_name(), any_header_value()).prop_map(|(n, v)| HeaderChange::Add(n, v)),
    ]
}

fn any_content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        8 => Just(Some("application/json".to_owned())),
        1 => proptest::sample::select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            " application/json ;",
            "application/cloudevents+json",
            "text/plain",
            "",
            ";",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => any_string().prop_map(Some),
    ]
}

/// A binary-mode message: a seed's attributes as headers (each with a
/// prefix of its own), changed; its data as the body, mutated, or bytes.
#[derive(Debug, Clone)]
struct Binary {
    seed: usize,
    prefixes: Vec<usize>,
    changes: Vec<HeaderChange>,
    content_type: Option<String>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Data(Vec<(usize, Mutation)>),
    Bytes(Vec<u8>),
}

fn any_binary() -> impl Strategy<Value = Binary> {
    (
        0..SEEDS.json.len(),
        proptest::collection::vec(any::<usize>(), 8),
        proptest::collection::vec(any_header_change(), 0..3),
        any_content_type(),
        prop_oneof![
            6 => proptest::collection::vec((any::<usize>(), any_mutation()), 0..3).prop_map(Body::Data),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        ],
    )
        .prop_map(|(seed, prefixes, changes, content_type, body)| Binary {
            seed,
            prefixes,
            changes,
            content_type,
            body,
        })
}

impl Binary {
    fn message(&self) -> (Vec<(String, HeaderValue)>, Vec<u8>) {
        let seed = SEEDS.json[self.seed]
            .as_object()
            .expect("an event is an object");
        let mut headers: Vec<(String, HeaderValue)> = seed
            .iter()
            .filter(|(k, _)| *k != "data" && *k != "datacontenttype")
            .enumerate()
            .map(|(i, (k, v))| {
                let prefix = PREFIXES[self.prefixes[i % self.prefixes.len()] % 3];
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (format!("{prefix}{k}"), HeaderValue::Text(value))
            })
            .collect();
        for change in &self.changes {
            let n = headers.len().max(1);
            match change {
                HeaderChange::Remove(i) if !headers.is_empty() => {
                    headers.remove(i % n);
                }
                HeaderChange::Value(i, v) if !headers.is_empty() => headers[i % n].1 = v.clone(),
                HeaderChange::Rename(i, name) if !headers.is_empty() => {
                    headers[i % n].0 = name.clone()
                }
                HeaderChange::Again(i, v) if !headers.is_empty() => {
                    let (name, value) = headers[i % n].clone();
                    headers.push((name, v.clone().unwrap_or(value)));
                }
                HeaderChange::Add(name, v) => headers.push((name.clone(), v.clone())),
                _ => {}
            }
        }
        let body = match &self.body {
            Body::Data(mutations) => {
                let mut data = seed.get("data").cloned().unwrap_or(Value::Null);
                let raw = mutate(&mut data, mutations);
                render(&data, &raw, &Framing::Compact)
            }
            Body::Bytes(bytes) => bytes.clone(),
        };
        (headers, body)
    }
}

// ------------------------------------------------------------ properties

fn ok<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

/// A refusal says what is wrong in a bounded message (it goes into a
/// dead-letter header and the log).
fn check_refusal(error: &audrey_core::DecodeError) -> Result<(), TestCaseError> {
    let message = error.to_string();
    prop_assert!(!error.reason().is_empty());
    prop_assert!(
        message.chars().count() <= 1024,
        "a refusal of {} characters: {}...",
        message.chars().count(),
        message.chars().take(200).collect::<String>()
    );
    Ok(())
}

/// What must hold of an accepted event: its canonical form decodes back
/// to it and is valid against the contract's schema; the clock and trust
/// checks answer; it projects.
fn check_accepted(event: &Event, views: &mut MemoryViews) -> Result<(), TestCaseError> {
    let canonical = event.to_bytes();
    // Canonical: compact, every object's keys in byte order (as the log
    // has always stored them), and the same document as `to_json`.
    let reparsed: serde_json::Value = serde_json::from_slice(&canonical)
        .map_err(|e| TestCaseError::fail(format!("the canonical form is not JSON: {e}")))?;
    prop_assert_eq!(&reparsed, &event.to_json());
    prop_assert_eq!(
        serde_json::to_vec(&reparsed).unwrap(),
        canonical.clone(),
        "the canonical form is not compact with sorted keys"
    );
    match Event::decode(&canonical, DEFAULT_MAX_EVENT_BYTES) {
        Ok(again) => prop_assert_eq!(&again, event, "canonical form decodes to another event"),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the canonical form of an accepted event is refused: {e}\n{}",
                String::from_utf8_lossy(&canonical)
            )))
        }
    }
    let errors: Vec<String> = SCHEMA
        .iter_errors(&event.to_json())
        .map(|e| e.to_string())
        .collect();
    prop_assert!(
        errors.is_empty(),
        "the canonical form is not valid against events.schema.json: {:?}\n{}",
        errors,
        String::from_utf8_lossy(&canonical)
    );
    for now in [
        Timestamp::now(),
        Timestamp::from_nanos(i64::MIN),
        Timestamp::from_nanos(i64::MAX),
    ] {
        let _ = event.check_clock(now);
    }
    let patterns: Vec<SourcePattern> = ["/configserver/*", "*a*b*c*", "*"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let _ = TrustedSources::new(patterns).check(event);
    views.apply(event);
    Ok(())
}

/// Structured mode: decodes or refuses; an accepted event also meets the
/// schema as it was sent.
fn check_structured(bytes: &[u8], views: &mut MemoryViews) -> Result<Option<Event>, TestCaseError> {
    for limit in [0, bytes.len().saturating_sub(1)] {
        if let Err(e) = Event::decode(bytes, limit) {
            check_refusal(&e)?;
        }
    }
    let decoded = Event::decode(bytes, DEFAULT_MAX_EVENT_BYTES);
    // Live deliveries are decoded from their bytes, `import` from a parsed
    // `Value`: both must accept the same events and refuse with the same
    // words.
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        prop_assert_eq!(
            Event::from_value(&value).map_err(|e| e.to_string()),
            decoded.clone().map_err(|e| e.to_string()),
            "decoded from bytes and from a Value differently: {}",
            String::from_utf8_lossy(bytes)
        );
    }
    match decoded {
        Ok(event) => {
            let mut sent: Value = serde_json::from_slice(bytes).expect("accepted bytes are JSON");
            // A known difference, left to the contract's owners: the
            // decoder reads `"request": null` as no request, where the
            // schema wants a string whenever the key is there.
            if let Some(data) = sent.get_mut("data").and_then(Value::as_object_mut) {
                if event.event_type() == EventType::InstanceContacted
                    && data.get("request") == Some(&Value::Null)
                {
                    data.remove("request");
                }
            }
            let errors: Vec<String> = SCHEMA.iter_errors(&sent).map(|e| e.to_string()).collect();
            prop_assert!(
                errors.is_empty(),
                "the decoder accepts what events.schema.json refuses: {:?}\n{}",
                errors,
                String::from_utf8_lossy(bytes)
            );
            check_accepted(&event, views)?;
            Ok(Some(event))
        }
        Err(e) => {
            check_refusal(&e)?;
            Ok(None)
        }
    }
}

fn check_binary(
    headers: &[(String, HeaderValue)],
    content_type: Option<&str>,
    body: &[u8],
    views: &mut MemoryViews,
) -> Result<Option<Event>, TestCaseError> {
    let _ = audrey_core::contract::binary::is_binary_mode(headers.iter().map(|(n, _)| n.as_str()));
    if let Err(e) = Event::decode_binary(headers, content_type, body, 16) {
        check_refusal(&e)?;
    }
    match Event::decode_binary(headers, content_type, body, DEFAULT_MAX_EVENT_BYTES) {
        Ok(event) => {
            check_accepted(&event, views)?;
            Ok(Some(event))
        }
        Err(e) => {
            check_refusal(&e)?;
            Ok(None)
        }
    }
}

/// Every report of the views can be computed, at any "now", and they
/// agree: each live deployment and instance has its report, each service
/// of an instance report is its own service report, the lists count what
/// they list, and the incremental counts are those recounted from the rows.
fn check_reports(views: &MemoryViews, accepted: &[Event]) -> Result<(), TestCaseError> {
    let contexts = [
        ReportContext::at(Timestamp::now()),
        ReportContext::at(Timestamp::from_nanos(i64::MAX)),
        ReportContext::at(Timestamp::from_unix_seconds(EARLIEST_EVENT_TIME_SECONDS)),
        ReportContext {
            stall_after_seconds: 0.0,
            heartbeat_tolerance: 1.0,
            ..ReportContext::at(Timestamp::now())
        },
    ];
    for ctx in &contexts {
        for (id, row) in &views.deployments {
            let report = ok(query::deployment_report(views, *id, ctx));
            prop_assert_eq!(report.is_some(), row.deleted.is_none(), "deployment {}", id);
            if let Some(report) = report {
                serde_json::to_vec(&report).unwrap();
                for i in &report.instances {
                    prop_assert!(
                        ok(query::instance_report(views, i.uuid, ctx)).is_some(),
                        "deployment {} lists instance {} without a report",
                        id,
                        i.uuid
                    );
                }
            }
        }
        let filters = [
            DeploymentFilter::All,
            DeploymentFilter::Status(Status::Success),
            DeploymentFilter::Status(Status::Incomplete),
            DeploymentFilter::Status(Status::Error),
            DeploymentFilter::Stalled,
        ];
        for filter in filters {
            let everything = ok(query::deployment_page(views, filter, 0, u64::MAX, ctx));
            prop_assert_eq!(
                everything.deployments.len() as u64,
                everything.total,
                "{:?}",
                filter
            );
            serde_json::to_vec(&everything).unwrap();
            for (offset, limit) in [(0, 1), (1, 1000), (u64::MAX, u64::MAX), (u64::MAX, 1)] {
                let page = ok(query::deployment_page(views, filter, offset, limit, ctx));
                prop_assert_eq!(page.total, everything.total);
            }
        }
        serde_json::to_vec(&ok(query::config_servers(views, ctx))).unwrap();
        let _ = ok(query::incomplete_deployments(views, ctx));
    }
    let ctx = &contexts[0];
    for id in views.instances.keys() {
        let Some(report) = ok(query::instance_report(views, *id, ctx)) else {
            continue;
        };
        serde_json::to_vec(&report).unwrap();
        for service in &report.services {
            let alone = ok(query::service_report(views, *id, &service.name, ctx));
            prop_assert_eq!(alone.as_ref(), Some(service), "instance {}", id);
        }
    }
    for event in accepted {
        if let (Some(instance), Some(service)) = (
            event.instance(),
            event.as_deployment_event().and_then(|e| e.data.service()),
        ) {
            let _ = ok(query::service_report(views, instance, service, ctx));
        }
    }
    let _ = ok(query::service_report(
        views,
        audrey_core::InstanceId::from_bytes([0xab; 16]),
        &Name::parse("mysql").unwrap(),
        ctx,
    ));
    prop_assert_eq!(ok(query::counts(views)), common::recount(views));
    common::assert_well_formed(views);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Bytes: never a panic, whatever they are.
    #[test]
    fn arbitrary_bytes_are_decoded_or_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut views = MemoryViews::new();
        check_structured(&bytes, &mut views)?;
        check_reports(&views, &[])?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Arbitrary JSON, as the message and as the data of every type.
    #[test]
    fn arbitrary_json_is_decoded_or_refused(value in any_json(), seed in 0..SEEDS.json.len()) {
        let mut views = SEEDS.views.clone();
        check_structured(&serde_json::to_vec(&value).unwrap(), &mut views)?;
        let mut envelope = SEEDS.json[seed].clone();
        envelope["data"] = value;
        let accepted = check_structured(&serde_json::to_vec(&envelope).unwrap(), &mut views)?;
        check_reports(&views, accepted.as_slice())?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid events mutated: each accepted one projects onto views that
    /// already hold the seeds' stream (or onto empty ones), and every
    /// report still comes out.
    #[test]
    fn mutated_events_project_and_report(
        messages in proptest::collection::vec(any_mutated(), 1..6),
        from_empty in proptest::bool::weighted(0.25),
    ) {
        let mut views = if from_empty { MemoryViews::new() } else { SEEDS.views.clone() };
        let mut accepted = Vec::new();
        for message in &messages {
            accepted.extend(check_structured(&message.bytes(), &mut views)?);
        }
        check_reports(&views, &accepted)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Binary mode: valid messages with headers and body changed.
    #[test]
    fn mutated_binary_messages_project_and_report(
        messages in proptest::collection::vec(any_binary(), 1..4),
    ) {
        let mut views = SEEDS.views.clone();
        let mut accepted = Vec::new();
        for message in &messages {
            let (headers, body) = message.message();
            accepted.extend(check_binary(&headers, message.content_type.as_deref(), &body, &mut views)?);
        }
        check_reports(&views, &accepted)?;
    }

    /// Binary mode: anything at all in the headers, content type and body.
    #[test]
    fn arbitrary_binary_messages_are_decoded_or_refused(
        headers in proptest::collection::vec((any_header_name(), any_header_value()), 0..10),
        content_type in any_content_type(),
        body in prop_oneof![
            any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        let mut views = SEEDS.views.clone();
        let accepted = check_binary(&headers, content_type.as_deref(), &body, &mut views)?;
        check_reports(&views, accepted.as_slice())?;
    }
}

/// The seeds themselves are valid (else the mutations start nowhere).
#[test]
fn every_seed_is_accepted() {
    for seed in &SEEDS.json {
        let bytes = serde_json::to_vec(seed).unwrap();
        if let Err(e) = Event::decode(&bytes, DEFAULT_MAX_EVENT_BYTES) {
            panic!("{e}: {seed}");
        }
    }
    assert!(SEEDS.json.len() > 40, "{} seeds", SEEDS.json.len());
}
