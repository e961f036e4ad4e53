//! The walk over a configuration document: every key checked against the table (unknown keys
//! with a hint, shapes, inert keys that are set, custom tags close to a known one), and the
//! refusals.

use super::{lookup, table, Kind, RefuseWhen, State, DCS_PREFIX};
use crate::config::error::{ConfigError, ConfigWarning};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Names of replica-creation and bootstrap methods that may have their own section.
#[derive(Default)]
pub(crate) struct MethodNames {
    replica: BTreeSet<String>,
    bootstrap: Option<String>,
}

impl MethodNames {
    /// Reads the method names from the document, so that `postgresql.wal_g:` is accepted exactly
    /// when `wal_g` is listed in a `create_replica_methods`.
    pub(crate) fn from_doc(root: &Value) -> Self {
        let mut names = MethodNames::default();
        for path in [
            &["postgresql", "create_replica_methods"][..],
            &["bootstrap", "dcs", "standby_cluster", "create_replica_methods"],
        ] {
            if let Some(Value::Array(list)) = get_path(root, path) {
                names
                    .replica
                    .extend(list.iter().filter_map(|v| v.as_str()).map(str::to_string));
            }
        }
        if let Some(Value::String(m)) = get_path(root, &["bootstrap", "method"]) {
            if m != "initdb" {
                names.bootstrap = Some(m.clone());
            }
        }
        names
    }
}

fn get_path<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| v.get(seg))
}

/// What the walk found.
#[derive(Default)]
pub(crate) struct WalkReport {
    /// Keys the table does not know (errors under strict loading).
    pub unknown: Vec<ConfigWarning>,
    /// Inert keys that are set, and custom tags that look like misspelt known tags.
    pub notes: Vec<ConfigWarning>,
    /// Values of the wrong shape.
    pub errors: Vec<ConfigError>,
}

/// Walks `obj` (whose table path is `table_prefix`, shown to the user as `shown_prefix`), checking
/// every key against the table: unknown keys, inert keys (one note for the outermost inert key
/// that is set), values of the wrong shape. Refusals are checked by [`refusals`], in table order.
pub(crate) fn walk(
    obj: &Map<String, Value>,
    table_prefix: &str,
    shown_prefix: &str,
    methods: &MethodNames,
    out: &mut WalkReport,
) {
    walk_in(obj, table_prefix, shown_prefix, methods, false, out);
}

fn walk_in(
    obj: &Map<String, Value>,
    table_prefix: &str,
    shown_prefix: &str,
    methods: &MethodNames,
    inside_inert: bool,
    out: &mut WalkReport,
) {
    let parent_open = lookup(table_prefix).is_some_and(|s| s.kind == Kind::Open);
    for (key, value) in obj {
        let tpath = join(table_prefix, key);
        let shown = join(shown_prefix, key);
        let spec = lookup(&tpath).or_else(|| {
            if table_prefix == "postgresql" && methods.replica.contains(key.as_str()) {
                lookup("postgresql.<method>")
            } else if table_prefix == "bootstrap" && methods.bootstrap.as_deref() == Some(key.as_str()) {
                lookup("bootstrap.<method>")
            } else {
                None
            }
        });
        let Some(spec) = spec else {
            if !parent_open {
                out.unknown.push(ConfigWarning::UnknownKey {
                    key: shown,
                    hint: hint(&tpath),
                });
            } else if let Some(known) = near_known_child(table_prefix, key) {
                // A custom tag is legal, but `nofailvoer: true` silently lets the node be promoted.
                out.notes.push(ConfigWarning::NearKnownTag { key: shown, known });
            }
            continue;
        };
        if value.is_null() {
            // `key:` with nothing after it means "not set" in YAML files, and "delete" in a PATCH.
            continue;
        }
        match spec.state {
            State::PatroniOnly(why) => {
                if !inside_inert {
                    out.notes.push(ConfigWarning::Ignored { key: shown, why });
                }
                continue;
            }
            State::NoEffect(why) if !inside_inert && !spec.is_what_happens(value) => {
                out.notes.push(ConfigWarning::NoEffect {
                    key: shown.clone(),
                    why,
                    var: None,
                })
            }
            _ => {}
        }
        if let Err(e) = check(spec.kind, value, &shown) {
            out.errors.push(e);
            continue;
        }
        if matches!(spec.kind, Kind::Section | Kind::Open) {
            if let Value::Object(child) = value {
                let inert = inside_inert || spec.state.is_inert();
                walk_in(child, &tpath, &shown, methods, inert, out);
            }
        }
    }
}

/// The refused keys that `doc` sets, in table order, each with its key and what to do. `doc`
/// is the file (`table_prefix` and `shown_prefix` empty) or the DCS `config` key (`table_prefix`
/// is [`DCS_PREFIX`], and `shown_prefix` what the caller calls that document).
pub(crate) fn refusals(doc: &Value, table_prefix: &str, shown_prefix: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for spec in table() {
        let State::Refused(refusal) = spec.state else {
            continue;
        };
        let rel = if table_prefix.is_empty() {
            spec.path.as_str()
        } else {
            match spec
                .path
                .strip_prefix(table_prefix)
                .and_then(|r| r.strip_prefix('.'))
            {
                Some(r) => r,
                None => continue,
            }
        };
        let Some(value) = rel.split('.').try_fold(doc, |v, seg| v.get(seg)) else {
            continue;
        };
        let key = join(shown_prefix, rel);
        let refuse = |v: &str| ConfigError::NotBuilt {
            key: key.clone(),
            why: refusal.todo.replace("{v}", v),
        };
        match refusal.when {
            RefuseWhen::WithParent => {}
            _ if value.is_null() => {}
            RefuseWhen::Set => errors.push(refuse("")),
            RefuseWhen::Except(allowed) => {
                let items = match value {
                    Value::Array(items) => items.iter().collect(),
                    one => vec![one],
                };
                for item in items.into_iter().filter_map(Value::as_str) {
                    if !allowed.contains(&item) {
                        errors.push(refuse(item));
                    }
                }
            }
            RefuseWhen::AnyChild(children) => {
                if children
                    .iter()
                    .any(|c| value.get(c).is_some_and(|v| !v.is_null()))
                {
                    errors.push(refuse(""));
                }
            }
        }
    }
    errors
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A hint for an unknown key: where a misplaced dynamic key belongs, or a near spelling.
fn hint(tpath: &str) -> Option<String> {
    let (parent, leaf) = tpath.rsplit_once('.').unwrap_or(("", tpath));
    if parent.is_empty() && lookup(&format!("{DCS_PREFIX}.{leaf}")).is_some() {
        return Some(format!(
            "`{leaf}` is a dynamic setting: put it under `bootstrap.dcs` or change it with `pgwardenctl edit-config`"
        ));
    }
    if parent == "postgresql" && leaf == "use_slots" {
        return Some("`use_slots` is cluster-wide: set it under `bootstrap.dcs.postgresql`".into());
    }
    if parent == "raft" && ["password", "min_timeout", "max_timeout", "append_entries_period"].contains(&leaf)
    {
        return Some("pysyncobj setting; see the `raft` section of docs/configuration.md".into());
    }
    let candidates = table().iter().filter_map(|k| {
        let (p, l) = k.path.rsplit_once('.').unwrap_or(("", k.path.as_str()));
        (p == parent && !l.starts_with('<')).then_some(l)
    });
    let best = candidates
        .map(|c| (edit_distance(c, leaf), c))
        .filter(|(dist, _)| *dist <= 2)
        .min();
    best.map(|(_, c)| format!("did you mean `{}`?", join(parent, c)))
}

/// The known child of the open section `parent` (`tags`) that `key` is probably a misspelling
/// of: at most one edit away for short names, two for longer ones, ignoring case.
fn near_known_child(parent: &str, key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    let limit = if key.len() < 6 { 1 } else { 2 };
    table()
        .iter()
        .filter_map(|k| k.path.strip_prefix(parent)?.strip_prefix('.'))
        .filter(|known| !known.contains('.') && *known != key)
        .map(|known| (edit_distance(known, &lower), known))
        .filter(|(dist, _)| *dist <= limit)
        .min()
        .map(|(_, known)| join(parent, known))
}

/// Levenshtein distance; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks one value against its kind. Address and duration syntax are checked here too, so that
/// every such error carries its key.
pub(crate) fn check(kind: Kind, v: &Value, key: &str) -> Result<(), ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: key.to_string(),
        expected: kind.expected(),
        found: type_name(v).to_string(),
    };
    let ok = match kind {
        Kind::Section | Kind::Open | Kind::Map => v.is_object(),
        Kind::ScalarMap => match v {
            Value::Object(m) => {
                for (k, val) in m {
                    if val.is_array() || val.is_object() {
                        return Err(ConfigError::WrongType {
                            key: join(key, k),
                            expected: "a scalar value".into(),
                            found: type_name(val).into(),
                        });
                    }
                }
                true
            }
            _ => false,
        },
        Kind::Str | Kind::Path => v.is_string(),
        // Patroni's parse_bool: `synchronous_mode_strict: on` or `1` is a valid flag.
        Kind::Bool => crate::config::values::lenient::bool_value(v).is_some(),
        Kind::Int => v.is_i64() || v.is_u64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok()),
        Kind::Port => {
            let port = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            return match port {
                Some(p) if p <= u64::from(u16::MAX) => Ok(()),
                _ => Err(ConfigError::Invalid {
                    key: key.into(),
                    why: format!("{v} is not a port number (0-65535)"),
                }),
            };
        }
        Kind::Secs => {
            return match crate::config::values::Secs::from_value(v) {
                Some(_) => Ok(()),
                None => Err(ConfigError::BadDuration {
                    key: key.into(),
                    value: scalar_text(v),
                }),
            }
        }
        Kind::Addr => match v.as_str() {
            Some(s) => {
                return crate::config::values::HostPort::parse(s)
                    .map(|_| ())
                    .map_err(|why| bad_addr(key, s, why))
            }
            None => false,
        },
        Kind::ListenAddr => match v.as_str() {
            Some(s) => {
                return crate::config::values::ListenAddr::parse(s)
                    .map(|_| ())
                    .map_err(|why| bad_addr(key, s, why))
            }
            None => false,
        },
        Kind::AddrList => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let k = format!("{key}[{i}]");
                    let Some(s) = item.as_str() else {
                        return Err(ConfigError::WrongType {
                            key: k,
                            expected: "\"host:port\"".into(),
                            found: type_name(item).into(),
                        });
                    };
                    crate::config::values::HostPort::parse(s).map_err(|why| bad_addr(&k, s, why))?;
                }
                true
            }
            _ => false,
        },
        Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::OptList => match v {
            Value::Array(items) => items.iter().all(|i| match i {
                Value::String(_) => true,
                Value::Object(m) => m.len() == 1 && m.values().all(|x| !x.is_array() && !x.is_object()),
                _ => false,
            }),
            Value::Object(m) => m.values().all(|x| !x.is_array() && !x.is_object()),
            _ => false,
        },
        Kind::Command => {
            v.is_string()
                || v.as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
        }
        Kind::Enum(vals) => {
            let Some(s) = v.as_str() else { return Err(wrong()) };
            if vals.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                true
            } else {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    why: format!("{s:?} is not one of {}", vals.join(", ")),
                });
            }
        }
        Kind::SyncMode => {
            if v.is_boolean() {
                true
            } else if let Some(s) = v.as_str() {
                if crate::config::values::SyncMode::parse(s).is_none() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        why: format!("{s:?} is not one of on, off, quorum"),
                    });
                }
                true
            } else {
                false
            }
        }
        Kind::WatchdogMode => {
            if v.is_boolean() {
                true
            } else if let Some(s) = v.as_str() {
                if crate::config::values::WatchdogMode::parse(s).is_none() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        why: format!("{s:?} is not one of off, automatic, required"),
                    });
                }
                true
            } else {
                false
            }
        }
        Kind::Scalar => !v.is_object(),
        Kind::MapList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        Kind::Any => true,
    };
    if ok {
        Ok(())
    } else {
        Err(wrong())
    }
}

fn bad_addr(key: &str, value: &str, why: String) -> ConfigError {
    ConfigError::BadAddress {
        key: key.into(),
        value: value.into(),
        why,
    }
}

pub(super) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
