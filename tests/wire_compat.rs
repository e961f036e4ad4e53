//! The DCS values across one version step. During a rolling upgrade old and new members read
//! and write the same keys (Patroni's keyspace under `<namespace><scope>/`), so what one
//! version writes must parse on the other. Per released version, `tests/fixtures/wire/
//! <version>/dcs/snapshot.json` is the keyspace of a running cluster of that version, saved
//! with `pgwardenctl dcs snapshot save` (tests/field_systemd.rs's rolling-upgrade test writes
//! it when PGWARDEN_DCS_FIXTURE names a file, from the old cluster before any host is
//! upgraded). This test checks that the current code:
//! - reads the file (the format `pgwarden restore-dcs` reads),
//! - parses every key of it as the HA loop does, with nothing left unparsable, and
//! - writes each value back with every field the old version wrote, with the same value
//!   (so that an old member reads what a new one writes; a field added since must be
//!   optional to the old reader).
//!
//! The Raft messages themselves are checked by pgwarden-raft's `wire_compat` test.

use pgwarden::config::DynamicConfig;
use pgwarden::ha::view::{ClusterView, MemberRecord, StatusKey, SyncKey};
use pgwarden_raft::backup::DcsBackup;
use pgwarden_testkit::compat::covers;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn snapshots() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let mut found = vec![];
    for e in std::fs::read_dir(&root).expect("tests/fixtures/wire").flatten() {
        let f = e.path().join("dcs/snapshot.json");
        if f.exists() {
            found.push((e.file_name().to_string_lossy().into_owned(), f));
        }
    }
    found.sort();
    found
}

/// The value re-encoded by the current type for the key, or None for plain-text keys.
fn reencode(rel: &str, value: &str) -> Result<Option<Value>, String> {
    let old: Value = match rel {
        "leader" | "initialize" => return Ok(None),
        _ => serde_json::from_str(value).map_err(|e| format!("{rel}: {e}"))?,
    };
    let new = match rel {
        "config" => {
            let (c, problems) = DynamicConfig::from_json_lenient(&old);
            if !problems.is_empty() {
                return Err(format!("config: {problems:?}"));
            }
            c.to_json()
        }
        "sync" => to_value(serde_json::from_value::<SyncKey>(old).map_err(|e| e.to_string())?),
        "status" => to_value(StatusKey::parse(value).ok_or("status does not parse")?),
        "history" => to_value(
            serde_json::from_value::<Vec<pgwarden::ha::view::HistoryRow>>(old).map_err(|e| e.to_string())?,
        ),
        r if r.starts_with("members/") => {
            to_value(serde_json::from_value::<MemberRecord>(old).map_err(|e| e.to_string())?)
        }
        // failover, failsafe and others: kept as JSON by their readers.
        _ => old,
    };
    Ok(Some(new))
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("encodes")
}

/// An earlier version's keyspace parses and is written back with all its fields.
#[test]
fn wire_compat_dcs_values_of_earlier_versions() {
    let sets = snapshots();
    assert!(
        !sets.is_empty(),
        "no DCS fixtures under tests/fixtures/wire/*/dcs"
    );
    for (version, file) in sets {
        let backup = DcsBackup::read(&file).unwrap_or_else(|e| panic!("version {version}: {e}"));
        let view = ClusterView::from_kvs(&backup.prefix, &backup.keys);
        assert!(
            view.unparsable.is_empty(),
            "version {version}: keys that no longer parse: {:?}",
            view.unparsable
        );
        // What a healthy cluster of three holds.
        assert!(view.initialize.is_some(), "version {version}: initialize");
        assert!(view.leader.is_some(), "version {version}: leader");
        assert!(view.config.is_some(), "version {version}: config");
        assert!(view.status.is_some(), "version {version}: status");
        assert_eq!(view.members.len(), 3, "version {version}: members");
        for kv in &backup.keys {
            let rel = kv.key.strip_prefix(&backup.prefix).unwrap_or(&kv.key);
            let Some(new) = reencode(rel, &kv.value)
                .unwrap_or_else(|e| panic!("version {version}'s {rel} does not parse: {e}"))
            else {
                continue;
            };
            let old: Value = serde_json::from_str(&kv.value).unwrap();
            covers(&old, &new, rel).unwrap_or_else(|e| {
                panic!("version {version}'s {rel}: an old member could not read ours: {e}")
            });
        }
    }
}
