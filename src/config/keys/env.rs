//! The `PGWARDEN_*` environment mapping: each variable of the table turned into a value of its
//! key's kind and set in the document, as Patroni does with `PATRONI_*`.

use super::walk::scalar_text;
use super::{table, KeySpec, Kind};
use crate::config::error::ConfigError;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Turns one environment value into a document value for a key of `kind`, the way Patroni does:
/// lists may be `a,b` or YAML `[a, b]` / `- a`, mappings `k: v, k2: v2` or YAML `{...}`.
fn env_value(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => crate::config::values::parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| format!("{raw:?} is not a boolean (true/false, on/off)")),
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        Kind::StrList | Kind::AddrList => {
            let text = if raw.trim_start().starts_with('-') || raw.contains('[') {
                raw.to_string()
            } else {
                format!("[{raw}]")
            };
            let parsed: Value = serde_yaml::from_str(&text).map_err(|e| format!("not a list: {e}"))?;
            match parsed {
                Value::Array(items) => Ok(Value::Array(
                    items
                        .into_iter()
                        .map(|i| {
                            if let Value::String(_) = i {
                                i
                            } else {
                                Value::String(scalar_text(&i))
                            }
                        })
                        .collect(),
                )),
                _ => Err("not a list".into()),
            }
        }
        Kind::Map | Kind::ScalarMap => {
            let text = if raw.trim_start().starts_with('{') {
                raw.to_string()
            } else {
                format!("{{{raw}}}")
            };
            let parsed: Value = serde_yaml::from_str(&text).map_err(|e| format!("not a mapping: {e}"))?;
            if parsed.is_object() {
                Ok(parsed)
            } else {
                Err("not a mapping".into())
            }
        }
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// What the environment contributed.
#[derive(Debug, Default)]
pub(crate) struct EnvReport {
    /// `(variable, key path)` of every variable applied, so that a problem with a value that came
    /// from the environment can name the variable.
    pub set: Vec<(String, String)>,
    /// `PATRONI_*` variables that are present: pgwarden ignores them, and says so.
    pub patroni: Vec<String>,
}

impl EnvReport {
    /// The variable that set `key` or one of its parents (`raft.partner_addrs[1]` was set by
    /// `PGWARDEN_RAFT_PARTNER_ADDRS`).
    pub(crate) fn var_for(&self, key: &str) -> Option<&str> {
        self.set.iter().find_map(|(var, path)| {
            let rest = key.strip_prefix(path.as_str())?;
            (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then_some(var.as_str())
        })
    }
}

/// Applies `PGWARDEN_*` variables from `env` on top of the document; environment wins over the file,
/// as with Patroni's `PATRONI_*`. Empty values are ignored (Patroni does the same).
pub(crate) fn apply_env(
    root: &mut Map<String, Value>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<EnvReport, ConfigError> {
    static BY_VAR: LazyLock<HashMap<&'static str, &'static KeySpec>> = LazyLock::new(|| {
        table()
            .iter()
            .filter_map(|k| k.env.as_deref().map(|e| (e, k)))
            .collect()
    });
    let mut errors = Vec::new();
    let mut report = EnvReport::default();
    let mut vars: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if k.starts_with("PATRONI_") {
            report.patroni.push(k);
        } else if k.starts_with("PGWARDEN_") && !v.is_empty() {
            vars.push((k, v));
        }
    }
    vars.sort();
    report.patroni.sort();
    for (var, raw) in vars {
        let Some(spec) = BY_VAR.get(var.as_str()) else {
            continue;
        };
        match env_value(spec.kind, &raw) {
            Ok(value) => {
                set_path(root, &spec.path, value);
                report.set.push((var, spec.path.clone()));
            }
            Err(why) => errors.push(ConfigError::Env {
                var: var.clone(),
                key: spec.path.clone(),
                why,
            }),
        }
    }
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The `PGWARDEN_*` variable that takes the place of a `PATRONI_*` one, if pgwarden has it.
pub(crate) fn pgwarden_var(patroni_var: &str) -> Option<String> {
    let name = format!("PGWARDEN_{}", patroni_var.strip_prefix("PATRONI_")?);
    table()
        .iter()
        .any(|k| k.env.as_deref() == Some(name.as_str()))
        .then_some(name)
}

fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut cur = root;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            cur.insert(seg.to_string(), value);
            return;
        }
        let slot = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
}
