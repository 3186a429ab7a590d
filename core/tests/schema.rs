//! `schemas/events.schema.json` and the Rust decoder agree: every example
//! validates and decodes; every invalid document is refused by both.

use std::fs;
use std::path::PathBuf;

use audrey_core::contract::{EventType, DEFAULT_MAX_EVENT_BYTES};
use audrey_core::Event;
use serde_json::Value;

fn schemas() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_slice(&fs::read(schemas().join("events.schema.json")).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(schemas().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates_and_decodes_and_every_type_has_one() {
    let validator = validator();
    let mut types = Vec::new();
    for path in files("examples") {
        let bytes = fs::read(&path).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let event = Event::decode(&bytes, DEFAULT_MAX_EVENT_BYTES)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The canonical form is valid too.
        assert!(validator.is_valid(&event.to_json()), "{}", path.display());
        types.push(event.event_type());
    }
    types.sort();
    let mut all = EventType::ALL.to_vec();
    all.sort();
    assert_eq!(types, all);
}

/// What the event log stores and `export` writes is the example itself,
/// compact, with every object's keys in byte order: nothing added, lost or
/// reordered by the encoder. Only the time is rewritten, with as few
/// fraction digits as it needs (`.000Z` is `Z`), and the optional
/// `datacontenttype` is always stated.
#[test]
fn the_canonical_bytes_of_every_example_are_the_example_compacted_with_sorted_keys() {
    for path in files("examples") {
        let bytes = fs::read(&path).unwrap();
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        let event = Event::decode(&bytes, DEFAULT_MAX_EVENT_BYTES).unwrap();
        value["time"] = Value::String(event.time().to_rfc3339());
        value["datacontenttype"] = Value::String("application/json".into());
        let canonical = event.to_bytes();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            serde_json::to_string(&value).unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(event.to_json(), value, "{}", path.display());
    }
}

#[test]
fn every_invalid_document_is_refused_by_both() {
    let validator = validator();
    let invalid = files("invalid");
    assert!(invalid.len() >= 20);
    for path in invalid {
        let bytes = fs::read(&path).unwrap();
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            assert!(
                !validator.is_valid(&value),
                "the schema accepts {}",
                path.display()
            );
        }
        let err = Event::decode(&bytes, DEFAULT_MAX_EVENT_BYTES).err();
        assert!(err.is_some(), "the decoder accepts {}", path.display());
    }
}

/// `schemas/binary-mode/` holds each example in binary content mode (the
/// attributes as `ce-` headers, the data as the body, its type as the
/// content type): each decodes to the same event as its structured twin.
#[test]
fn every_example_in_binary_mode_is_the_same_event() {
    use audrey_core::contract::HeaderValue;
    let binary = files("binary-mode");
    assert_eq!(binary.len(), files("examples").len());
    for path in binary {
        let message: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let headers: Vec<(String, HeaderValue)> = message["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::Text(v.as_str().unwrap().to_owned())))
            .collect();
        let body = serde_json::to_vec(&message["body"]).unwrap();
        let content_type = message.get("content_type").and_then(Value::as_str);
        let decoded = Event::decode_binary(&headers, content_type, &body, DEFAULT_MAX_EVENT_BYTES)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let twin = schemas().join("examples").join(path.file_name().unwrap());
        let structured = Event::decode(&fs::read(&twin).unwrap(), DEFAULT_MAX_EVENT_BYTES).unwrap();
        assert_eq!(decoded, structured, "{}", path.display());
    }
}
