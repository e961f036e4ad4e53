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
    for name in ["basic", "extended", "uninitialized", "initializing", "standby"] {
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

/// `dcs get` and `dcs status` (issue 22) in every format, from fixed answers: keys with and
/// without a lease, a reachable leader and follower, and a member that did not answer.
fn dcs_fixtures() -> (pgwarden::grpc::pb::DcsKeys, pgwarden::grpc::pb::DcsStatus) {
    use pgwarden::grpc::pb::{DcsKey, DcsKeys, DcsMemberStatus, DcsStatus};
    let keys = DcsKeys {
        revision: 1207,
        keys: vec![
            DcsKey {
                key: "/service/batman/config".into(),
                value: r#"{"ttl":30,"loop_wait":10}"#.into(),
                create_revision: 4,
                mod_revision: 4,
                ttl_ms: None,
                lease_left_ms: None,
            },
            DcsKey {
                key: "/service/batman/leader".into(),
                value: "pg0".into(),
                create_revision: 9,
                mod_revision: 1203,
                ttl_ms: Some(30_000),
                lease_left_ms: Some(27_512),
            },
        ],
    };
    let up = |id: u64, name: &str, role: &str, reaper: bool| DcsMemberStatus {
        id,
        name: name.into(),
        addr: format!("10.0.0.{id}:5010"),
        voter: true,
        reachable: true,
        error: String::new(),
        role: role.into(),
        term: 3,
        leader_id: 1,
        last_log_index: 1207,
        applied: 1207,
        store_bytes: 524_288,
        snapshot_bytes: 20_480,
        snapshot_index: Some(1000),
        lease_keys: 4,
        reaper_active: reaper,
    };
    let status = DcsStatus {
        answered_by: 2,
        members: vec![
            up(1, "pg0", "leader", true),
            up(2, "pg1", "follower", false),
            DcsMemberStatus {
                id: 3,
                name: "pg2".into(),
                addr: "10.0.0.3:5010".into(),
                voter: true,
                reachable: false,
                error: "10.0.0.3:5010 is unreachable: connection refused".into(),
                ..Default::default()
            },
        ],
    };
    (keys, status)
}

#[test]
fn dcs_ops_get_and_status_output_is_stable_in_every_format() {
    let (keys, status) = dcs_fixtures();
    let mut failures = Vec::new();
    for (fmt, ext) in &FORMATS[..4] {
        check(
            &format!("dcs_get.{ext}"),
            &render::dcs_keys(&keys, *fmt),
            &mut failures,
        );
        check(
            &format!("dcs_status.{ext}"),
            &render::dcs_status(&status, *fmt),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A `query` value from the fixture's JSON, as psycopg would have handed it to Python.
fn sql_value(v: &Value) -> render::SqlValue {
    use render::SqlValue;
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| SqlValue::Float(n.as_f64().unwrap()), SqlValue::Int),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// `query` in every format (and tsv with `--delimiter ,`): typed values, duplicate column
/// names, no rows, a multi-line value and the error line, as patronictl 4.1.5 prints them.
#[test]
fn ctl_query_output_matches_patronictl_in_every_format() {
    let cases: Value = serde_json::from_str(&golden("query_rows.json")).unwrap();
    let mut failures = Vec::new();
    for (name, case) in cases.as_object().unwrap() {
        let columns: Option<Vec<String>> = case["columns"]
            .as_array()
            .map(|c| c.iter().map(|x| x.as_str().unwrap().to_string()).collect());
        let rows: Vec<Vec<render::SqlValue>> = case["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(sql_value).collect())
            .collect();
        for (fmt, ext) in &FORMATS[..4] {
            check(
                &format!("query_{name}.{ext}"),
                &render::query(columns.as_deref(), &rows, *fmt, "\t"),
                &mut failures,
            );
        }
        check(
            &format!("query_{name}.csv"),
            &render::query(columns.as_deref(), &rows, Format::Tsv, ","),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
