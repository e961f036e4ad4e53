//! Method sections: Patroni's custom replica-creation methods (`postgresql.<name>`, listed in
//! `create_replica_methods`) and the custom bootstrap method (`bootstrap.<name>`, named by
//! `bootstrap.method`). Each is read into a [`MethodSection`]: the keys that tell pgwarden how
//! to run the command, and the rest, which the command gets as `--key=value`.

use super::ConfigError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One method section, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodSection {
    /// `command`: the program and its own arguments (split into words, no shell).
    pub command: String,
    /// `keep_data` (replica methods): run over what the data directory holds.
    pub keep_data: bool,
    /// `no_leader` or Patroni's older `no_master` (replica methods): runs with no member to
    /// copy from.
    pub no_leader: bool,
    /// `no_params`: the standard `--scope=...` arguments are not appended.
    pub no_params: bool,
    /// `keep_existing_recovery_conf` (bootstrap): the recovery settings and signal file the
    /// command wrote are kept.
    pub keep_existing_recovery_conf: bool,
    /// `recovery_conf` (bootstrap): recovery settings written before the first start.
    pub recovery_conf: BTreeMap<String, String>,
    /// Every other key, passed to the command as `--key=value`.
    pub params: BTreeMap<String, String>,
}

/// Which kind of section: the keys each accepts differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// `postgresql.<name>`.
    Replica,
    /// `bootstrap.<name>`.
    Bootstrap,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(key: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" | "" => Ok(false),
            _ => Err(ConfigError::Invalid {
                key: key.into(),
                why: format!("{s:?} is not a boolean"),
            }),
        },
        other => Err(ConfigError::Invalid {
            key: key.into(),
            why: format!("{other} is not a boolean"),
        }),
    }
}

/// Reads the section `key` (e.g. `postgresql.pgbackrest`). A missing section, one without a
/// `command`, and a value that is not a scalar are errors naming the key.
pub fn parse_method_section(
    key: &str,
    section: Option<&Value>,
    kind: MethodKind,
) -> Result<MethodSection, ConfigError> {
    let what = match kind {
        MethodKind::Replica => "a replica method other than `basebackup`",
        MethodKind::Bootstrap => "a bootstrap method other than `initdb`",
    };
    let map: &Map<String, Value> = match section {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => {
            return Err(ConfigError::Invalid {
                key: key.into(),
                why: format!("the section is missing: {what} needs one, with at least `command`"),
            })
        }
        Some(other) => {
            return Err(ConfigError::WrongType {
                key: key.into(),
                expected: "a mapping".into(),
                found: other.to_string(),
            })
        }
    };
    let mut out = MethodSection::default();
    for (k, v) in map {
        let sub = format!("{key}.{k}");
        match (k.as_str(), kind) {
            ("command", _) => match v {
                Value::String(s) if !s.trim().is_empty() => out.command = s.clone(),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: sub,
                        why: "must be a non-empty command line".into(),
                    })
                }
            },
            ("no_params", _) => out.no_params = flag(&sub, v)?,
            ("keep_data", MethodKind::Replica) => out.keep_data = flag(&sub, v)?,
            ("no_leader" | "no_master", MethodKind::Replica) => out.no_leader |= flag(&sub, v)?,
            ("keep_existing_recovery_conf", MethodKind::Bootstrap) => {
                out.keep_existing_recovery_conf = flag(&sub, v)?
            }
            ("recovery_conf", MethodKind::Bootstrap) => match v {
                Value::Object(m) => {
                    for (rk, rv) in m {
                        let Some(s) = scalar(rv) else {
                            return Err(ConfigError::Invalid {
                                key: format!("{sub}.{rk}"),
                                why: "must be a string, number or boolean".into(),
                            });
                        };
                        out.recovery_conf.insert(rk.clone(), s);
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(ConfigError::WrongType {
                        key: sub,
                        expected: "a mapping of recovery settings".into(),
                        found: v.to_string(),
                    })
                }
            },
            _ => match scalar(v) {
                Some(s) => {
                    out.params.insert(k.clone(), s);
                }
                None if v.is_null() => {}
                None => {
                    return Err(ConfigError::Invalid {
                        key: sub,
                        why: "an extra parameter of a method must be a string, number or boolean (it is passed as --key=value)"
                            .into(),
                    })
                }
            },
        }
    }
    if out.command.is_empty() {
        return Err(ConfigError::Missing {
            key: format!("{key}.command"),
            why: "a custom method runs this command",
        });
    }
    Ok(out)
}

impl super::Config {
    /// The replica methods in order: `None` for `basebackup`, the checked section for every
    /// other name. The first error names the method's section.
    pub fn replica_method_sections(&self) -> Result<Vec<(String, Option<MethodSection>)>, ConfigError> {
        let Some(pg) = &self.postgresql else {
            return Ok(vec![]);
        };
        pg.create_replica_methods()
            .into_iter()
            .map(|name| {
                if name == "basebackup" {
                    return Ok((name, None));
                }
                let key = format!("postgresql.{name}");
                let m = parse_method_section(&key, pg.replica_methods.get(&name), MethodKind::Replica)?;
                Ok((name, Some(m)))
            })
            .collect()
    }

    /// The custom bootstrap method named by `bootstrap.method`, or `None` for `initdb`.
    pub fn bootstrap_method_section(&self) -> Result<Option<(String, MethodSection)>, ConfigError> {
        let b = &self.bootstrap;
        match b.method.as_deref() {
            None | Some("initdb") => Ok(None),
            Some(name) => {
                let key = format!("bootstrap.{name}");
                let m = parse_method_section(&key, b.methods.get(name), MethodKind::Bootstrap)?;
                Ok(Some((name.to_owned(), m)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datain_replica_section_splits_control_keys_from_parameters() {
        let v = json!({"command": "pgbackrest --stanza=x --delta restore", "keep_data": true,
                       "no_params": "true", "no_master": true, "type": "time", "threads": 4});
        let m = parse_method_section("postgresql.pgbackrest", Some(&v), MethodKind::Replica).unwrap();
        assert_eq!(m.command, "pgbackrest --stanza=x --delta restore");
        assert!(m.keep_data && m.no_params && m.no_leader);
        assert_eq!(
            m.params,
            [
                ("threads".to_string(), "4".to_string()),
                ("type".into(), "time".into())
            ]
            .into()
        );
    }

    #[test]
    fn datain_missing_section_or_command_is_an_error_naming_the_key() {
        let e = parse_method_section("postgresql.wal_g", None, MethodKind::Replica).unwrap_err();
        assert!(e.to_string().contains("postgresql.wal_g"), "{e}");
        let e = parse_method_section(
            "bootstrap.pitr",
            Some(&json!({"no_params": true})),
            MethodKind::Bootstrap,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bootstrap.pitr.command"), "{e}");
        let e = parse_method_section(
            "postgresql.x",
            Some(&json!({"command": "a", "nested": {"a": 1}})),
            MethodKind::Replica,
        )
        .unwrap_err();
        assert!(e.to_string().contains("postgresql.x.nested"), "{e}");
        let e = parse_method_section(
            "postgresql.x",
            Some(&json!({"command": "a", "keep_data": "maybe"})),
            MethodKind::Replica,
        )
        .unwrap_err();
        assert!(e.to_string().contains("keep_data"), "{e}");
    }

    #[test]
    fn datain_bootstrap_section_reads_recovery_conf() {
        let v = json!({"command": "restore.sh", "keep_existing_recovery_conf": true,
                       "recovery_conf": {"restore_command": "cp /a/%f %p", "recovery_target_action": "promote"}});
        let m = parse_method_section("bootstrap.pitr", Some(&v), MethodKind::Bootstrap).unwrap();
        assert!(m.keep_existing_recovery_conf);
        assert_eq!(m.recovery_conf["restore_command"], "cp /a/%f %p");
        assert!(m.params.is_empty());
    }
}
