//! docs/configuration.md and the configuration types describe the same keys.
//!
//! The key set comes from `Config::known_keys()`, which is the table that also drives the
//! unknown-key check, the shape check and the environment mapping (unit tests in `src/config` prove
//! that table and the serde types agree). The documented set comes from the rows of every Markdown
//! table whose header starts with `| Key |`, first cell a key path in backticks. A new key without
//! documentation, a documented key that does not exist, or a default / dynamic flag / environment
//! variable that differs fails here.

use pgwarden::config::Config;
use std::collections::BTreeMap;

const DOC: &str = include_str!("../docs/configuration.md");

struct Row {
    default: String,
    dynamic: String,
    env: String,
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_string()
}

/// Rows of the key tables, by key path.
fn documented() -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let mut header: Option<Vec<String>> = None;
    for line in DOC.lines() {
        if !line.trim_start().starts_with('|') {
            header = None;
            continue;
        }
        let c = cells(line);
        let Some(h) = &header else {
            if c.first().is_some_and(|h| h == "Key") {
                header = Some(c);
            }
            continue;
        };
        if c[0].starts_with("---") {
            continue;
        }
        let col = |name: &str| {
            h.iter()
                .position(|x| x == name)
                .and_then(|i| c.get(i).cloned())
                .unwrap_or_default()
        };
        assert!(c[0].starts_with('`'), "row without a backticked key: {line}");
        let key = unquote(&c[0]);
        let row = Row {
            default: unquote(&col("Default")),
            dynamic: col("Dynamic"),
            env: unquote(&col("Env")),
        };
        assert!(
            rows.insert(key.clone(), row).is_none(),
            "`{key}` is documented twice"
        );
    }
    rows
}

/// Every key the types know is documented, and every documented key exists.
#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = documented();
    let known: BTreeMap<String, _> = Config::known_keys()
        .into_iter()
        .map(|k| (k.path.clone(), k))
        .collect();
    let undocumented: Vec<&String> = known.keys().filter(|k| !doc.contains_key(*k)).collect();
    let unknown: Vec<&String> = doc.keys().filter(|k| !known.contains_key(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/configuration.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "documented keys that pgwarden does not know: {unknown:?}"
    );
}

/// The documented default, dynamic flag and environment variable match the key table.
#[test]
fn documented_defaults_dynamic_flags_and_env_vars_match_the_code() {
    let doc = documented();
    let mut wrong = Vec::new();
    for k in Config::known_keys() {
        let Some(row) = doc.get(&k.path) else { continue };
        if row.default != k.default.to_string() {
            wrong.push(format!(
                "{}: default documented as {:?}, code has {:?}",
                k.path,
                row.default,
                k.default.to_string()
            ));
        }
        let dynamic = if k.dynamic { "yes" } else { "no" };
        if row.dynamic != dynamic {
            wrong.push(format!(
                "{}: dynamic documented as {:?}, code has {dynamic:?}",
                k.path, row.dynamic
            ));
        }
        let env = k.env.clone().unwrap_or_default();
        if row.env != env {
            wrong.push(format!(
                "{}: env documented as {:?}, code has {env:?}",
                k.path, row.env
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every PGWARDEN_ variable named in the prose exists (or is a prefix of existing ones).
#[test]
fn environment_variables_named_in_the_prose_exist() {
    let vars: Vec<String> = Config::known_keys()
        .iter()
        .filter_map(|k| k.env.clone())
        .collect();
    let mut rest = DOC;
    while let Some(i) = rest.find("PGWARDEN_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let ok = if name.ends_with('_') {
            vars.iter().any(|v| v.starts_with(name))
        } else {
            vars.iter().any(|v| v == name)
        };
        assert!(ok, "docs/configuration.md names {name}, which no key uses");
        rest = &tail[end..];
    }
}

/// The settings refused until their feature is built are documented, with the key the refusal
/// names, in the section that says why.
#[test]
fn safety_refused_settings_are_documented() {
    let section = DOC
        .split("\n## Refused until built\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/configuration.md has a `Refused until built` section");
    // Custom bootstrap and replica methods (docs/backups-pgbackrest.md) and standby clusters
    // (docs/multi-datacenter.md) are built; an encrypted TLS key is still refused.
    let key = "restapi.keyfile_password";
    assert!(
        section.contains(&format!("`{key}`")),
        "`{key}` is refused but not documented in `Refused until built`"
    );
    assert!(
        DOC.contains("\n## pg_hba.conf\n"),
        "the pg_hba precedence and default are documented"
    );
}
