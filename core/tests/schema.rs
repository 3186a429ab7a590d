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
