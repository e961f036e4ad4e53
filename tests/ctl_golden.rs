//! Golden output: `list`, `topology` and `history` in every format, rendered from fixed
//! cluster documents and compared with what Patroni's patronictl prints for the same
//! documents (tests/golden/patronictl_reference.py regenerates the expected files).

use pgwarden::ctl::render::{self, Format};
use pgwarden::grpc::convert;
use serde_json::Value;
use std::path::PathBuf;

fn golden(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture(name: &str) -> pgwarden::grpc::pb::Cluster {
    let doc: Value = serde_json::from_str(&golden(&format!("cluster_{name}.json"))).unwrap();
    convert::cluster(&doc["cluster"], doc["initialize"].as_str(), "")
}

const FORMATS: [(Format, &str); 5] = [
    (Format::Pretty, "pretty"),
    (Format::Tsv, "tsv"),
    (Format::Json, "json"),
    (Format::Yaml, "yaml"),
    (Format::Topology, "topology"),
];

fn check(expected_file: &str, actual: &str, failures: &mut Vec<String>) {
    let expected = golden(expected_file);
    if expected != actual {
        failures.push(format!(
            "{expected_file} differs\n--- expected\n{expected}--- actual\n{actual}"
        ));
    }
}

/// Every fixture in every format, with and without -e, prints what patronictl prints.
#[test]
fn list_and_topology_match_patronictl_in_every_format() {
    let mut failures = Vec::new();
    for name in ["basic", "extended", "uninitialized", "initializing"] {
        let c = fixture(name);
        for (fmt, ext) in FORMATS {
            for extended in [false, true] {
                let suffix = if extended { "_e" } else { "" };
                check(
                    &format!("list_{name}{suffix}.{ext}"),
                    &render::list(&c, fmt, extended),
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// History rows of 3 and 5 fields in every format.
#[test]
fn history_matches_patronictl_in_every_format() {
    let doc: Value = serde_json::from_str(&golden("history_rows.json")).unwrap();
    let h = convert::history(&doc);
    let mut failures = Vec::new();
    for (fmt, ext) in &FORMATS[..4] {
        check(
            &format!("history.{ext}"),
            &render::history(&h, *fmt),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
