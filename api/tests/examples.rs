//! The report examples in `schemas/report-examples/` are what readers copy:
//! each must be valid against `schemas/reports.xsd`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_report_example_is_valid_against_the_schema() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = root.join("schemas/reports.xsd");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("schemas/report-examples"))
        .expect("schemas/report-examples")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "xml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "examples: {examples:?}");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(&examples)
        .output()
        .expect("xmllint runs (libxml2-utils; ./dev installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
