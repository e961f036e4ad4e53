//! The monitoring pack in packaging/monitoring: the Grafana dashboard and the Prometheus alert
//! rules the packages install under /usr/share/pgwarden/monitoring. They must load, and they may
//! reference only metrics that pgwarden's /metrics really exports: the exported names are taken
//! from the renderer itself, for a primary, a replica and a witness, so a renamed metric breaks
//! this test rather than a user's dashboard.

use pgwarden::api::cluster::Snapshot;
use pgwarden::api::metrics::{render, RaftInfo};
use pgwarden::ha::status::{DaemonInfo, NodeStatus};
use pgwarden::types::{MemberState, Role};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pack(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/monitoring")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(pack(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every metric name /metrics can print, from the HELP lines of a few member states chosen so
/// that each conditional metric appears at least once.
fn exported_metrics() -> BTreeSet<String> {
    let info = DaemonInfo {
        version: "0".into(),
        scope: "s".into(),
        name: "n".into(),
    };
    let snap = Snapshot::from_kvs("/service/s/", &[]);
    let raft = RaftInfo {
        id: 1,
        term: 2,
        leader_id: Some(1),
        leader_name: Some("n".into()),
        last_log_index: 10,
        applied_index: 10,
        voters: 3,
        learners: 0,
        millis_since_quorum_ack: Some(20),
    };
    let mut replica = NodeStatus::initial(info.clone(), false);
    replica.role = Role::Replica;
    replica.state = MemberState::Running;
    replica.server_version = Some(150_000);
    replica.lag = Some(1);
    replica.slot_retained_bytes.insert("slot".into(), 1);
    let mut primary = NodeStatus::initial(info.clone(), false);
    primary.role = Role::Primary;
    primary.state = MemberState::Running;
    primary.server_version = Some(150_000);
    let witness = NodeStatus::initial(info, true);
    let now = tokio::time::Instant::now();
    let mut names = BTreeSet::new();
    for st in [&replica, &primary, &witness] {
        for line in render(st, &snap, Some(&raft), now).lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                names.insert(rest.split(' ').next().unwrap_or_default().to_string());
            }
        }
    }
    names
}

/// The `patroni_*` / `pgwarden_*` names a PromQL expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '_');
        if starts_word && (bytes[i].is_ascii_alphabetic() || bytes[i] == '_') {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '_' || bytes[j] == ':')
            {
                j += 1;
            }
            let word: String = bytes[i..j].iter().collect();
            if word.starts_with("patroni_") || word.starts_with("pgwarden_") {
                out.push(word);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression in the dashboard: panel targets, annotations and variable queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap_or_default().to_string());
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            exprs.push(e.to_string());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    exprs
}

fn alert_rules() -> Vec<Value> {
    let doc: Value = serde_yaml::from_str(&read("prometheus-alerts.yml")).expect("alert rules are YAML");
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn monitoring_dashboard_is_a_loadable_grafana_dashboard() {
    let d: Value = serde_json::from_str(&read("grafana-dashboard.json")).expect("dashboard is JSON");
    assert_eq!(d["uid"], json!("pgwarden-cluster"));
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name"))
        .collect();
    assert_eq!(vars, ["datasource", "scope"]);
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("panel title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id at {title}"
        );
        let ty = p["type"].as_str().expect("panel type");
        assert!(
            ["row", "stat", "timeseries", "table", "gauge"].contains(&ty),
            "{title}: panel type {ty}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos {g}");
        // Panels must not overlap, or Grafana pushes them around on load.
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{title} overlaps another panel at {cx},{cy}"
                );
            }
        }
        if ty != "row" {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title}: no query");
            for t in targets {
                let e = t["expr"].as_str().expect("expr");
                assert!(
                    e.contains("scope=\"$scope\""),
                    "{title}: {e} ignores the cluster variable"
                );
                assert_eq!(t["datasource"]["uid"], json!("${datasource}"), "{title}");
            }
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{title}: description"
            );
        }
    }
}

#[test]
fn monitoring_dashboard_and_alerts_reference_only_exported_metrics() {
    let exported = exported_metrics();
    assert!(
        exported.contains("pgwarden_replication_lag_bytes"),
        "{exported:?}"
    );
    let d: Value = serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    let mut used = BTreeSet::new();
    for e in dashboard_exprs(&d) {
        for m in metric_names(&e) {
            assert!(
                exported.contains(&m),
                "the dashboard uses {m}, which /metrics does not export ({e})"
            );
            used.insert(m);
        }
    }
    for r in alert_rules() {
        let e = r["expr"].as_str().expect("expr");
        for m in metric_names(e) {
            assert!(
                exported.contains(&m),
                "alert {} uses {m}, which /metrics does not export",
                r["alert"]
            );
        }
    }
    // What the dashboard is for: leader, lag, timeline, Raft term/commit/apply, lease, fence
    // stops, failovers.
    for m in [
        "patroni_primary",
        "pgwarden_replication_lag_bytes",
        "patroni_postgres_timeline",
        "pgwarden_raft_term",
        "pgwarden_raft_last_log_index",
        "pgwarden_raft_applied_index",
        "pgwarden_leader_lease_remaining_seconds",
        "pgwarden_fence_stops_total",
        "pgwarden_promotions_total",
    ] {
        assert!(used.contains(m), "the dashboard shows no {m}");
    }
}

#[test]
fn monitoring_alert_rules_cover_the_agreed_conditions() {
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for a in [
        "PgwardenNoLeader",
        "PgwardenReplicationLagOverFailoverLimit",
        "PgwardenMemberDown",
        "PgwardenRaftQuorumAtRisk",
        "PgwardenPendingRestart",
    ] {
        assert!(names.contains(a), "no {a} alert");
    }
    for r in &rules {
        let name = r["alert"].as_str().expect("every rule is an alert");
        assert!(
            ["critical", "warning", "info"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        assert!(r["annotations"]["summary"].is_string(), "{name}: summary");
        assert!(r["annotations"]["description"].is_string(), "{name}: description");
    }
}

/// promtool from PGWARDEN_PROMTOOL (scripts/test.sh unpacks it from Debian's prometheus package)
/// or PATH.
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    let found = Command::new("promtool").arg("--version").output().is_ok();
    found.then(|| PathBuf::from("promtool"))
}

/// `promtool check rules` and the rule unit tests (packaging/monitoring/tests/alerts-test.yml:
/// a healthy cluster fires nothing; a fenced primary, a missing voter and a lagging replica
/// fire what they should; two primaries fire).
#[test]
fn monitoring_alert_rules_pass_promtool() {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var_os("PGWARDEN_REQUIRE_PACKAGE_TESTS").is_none(),
            "promtool is needed (scripts/test.sh unpacks it and sets PGWARDEN_PROMTOOL)"
        );
        eprintln!("skipped: no promtool (set PGWARDEN_PROMTOOL or run scripts/test.sh)");
        return;
    };
    for args in [
        vec!["check", "rules", "prometheus-alerts.yml"],
        vec!["test", "rules", "tests/alerts-test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(pack(""))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn monitoring_metric_name_extraction() {
    assert_eq!(
        metric_names("sum by (scope) (patroni_primary{scope=\"$scope\"}) > pgwarden_raft_voters / 2"),
        ["patroni_primary", "pgwarden_raft_voters"]
    );
    assert!(metric_names("up{job=\"pgwarden\"} == 0").is_empty());
}
