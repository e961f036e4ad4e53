//! Loading: YAML → JSON value → environment overrides → key walk (unknown keys, shapes, inert
//! keys) → refusals from the key table → serde → [`Config::validate`]. The JSON value is the DCS's
//! format too, so one walk and one set of serde impls serve the file and the DCS. Every error found
//! is returned at once, each naming its key (and the environment variable, if one set the value).

use super::keys::{self, EnvReport, MethodNames, WalkReport};
use super::{Config, ConfigError, ConfigWarning, Loaded, Strictness};
use serde_json::{Map, Value};
use std::path::Path;

/// Turns a YAML document into the JSON value the rest of loading works on. JSON is the DCS's format,
/// so one walk and one set of serde impls serve both.
fn yaml_to_json(text: &str, path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_value(&yaml).map_err(|e| ConfigError::Invalid {
        key: String::new(),
        why: format!("the document cannot be represented as JSON (non-string mapping keys?): {e}"),
    })?;
    match json {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(ConfigError::NotAMapping {
            found: keys::type_name(&other),
        }),
    }
}

/// Removes `key: null` entries at every mapping level: in a file, an empty value means "not set".
fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(m) = v {
            strip_nulls(m);
        }
    }
}

fn get<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segs = path.split('.');
    let first = root.get(segs.next()?)?;
    segs.try_fold(first, |v, s| v.get(s))
}

impl Config {
    /// Loads `path` with the process environment applied.
    pub fn load(path: &Path, strictness: Strictness) -> Result<Loaded, ConfigError> {
        Self::load_with_env(path, strictness, std::env::vars())
    }

    /// Loads `path` with the given environment (tests pass their own).
    pub fn load_with_env(
        path: &Path,
        strictness: Strictness,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text, path, strictness, env)
    }

    /// Parses YAML text; `origin` names the source in syntax errors.
    pub fn from_yaml_str(
        text: &str,
        origin: &Path,
        strictness: Strictness,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut root = yaml_to_json(text, origin)?;
        strip_nulls(&mut root);
        let env = keys::apply_env(&mut root, env)?;
        let mut warnings: Vec<ConfigWarning> = env
            .patroni
            .iter()
            .map(|var| ConfigWarning::PatroniEnv {
                var: var.clone(),
                instead: keys::pgwarden_var(var),
            })
            .collect();

        // Sections we refuse outright, before anything else, so the message is the first thing seen.
        let mut errors: Vec<ConfigError> = keys::UNSUPPORTED_DCS
            .iter()
            .filter(|s| root.contains_key(**s))
            .map(|s| ConfigError::UnsupportedDcs {
                section: s.to_string(),
            })
            .collect();
        if get(&root, "bootstrap.users").is_some() {
            errors.push(ConfigError::Removed {
                key: "bootstrap.users".into(),
                why: "removed in Patroni 4.0 and not supported: create roles in a `bootstrap.post_bootstrap` script",
            });
        }
        if let Some(Value::Object(b)) = root.get_mut("bootstrap") {
            b.remove("users");
        }
        for s in keys::UNSUPPORTED_DCS {
            root.remove(*s);
        }

        let mut report = WalkReport::default();
        keys::walk(
            &root,
            "",
            "",
            &MethodNames::from_doc(&Value::Object(root.clone())),
            &mut report,
        );
        errors.append(&mut report.errors);

        let witness = matches!(get(&root, "raft.witness"), Some(Value::Bool(true)));
        errors.extend(Self::missing_keys(&root, witness));
        // Unknown keys are errors under strict loading; with other errors they are reported too,
        // at start as well, since a misspelt section (`authentification`) is usually why a
        // required key is missing.
        let unknown_are_errors = strictness == Strictness::Strict || !errors.is_empty();
        if unknown_are_errors {
            errors.extend(report.unknown.drain(..).filter_map(|w| match w {
                ConfigWarning::UnknownKey { key, hint } => Some(ConfigError::UnknownKey { key, hint }),
                _ => None,
            }));
        }
        // A witness runs no PostgreSQL: its `postgresql` section is dropped with one note, and
        // what it says is neither refused nor reported key by key.
        let witness_pg = witness && root.remove("postgresql").is_some();
        if witness_pg {
            report.notes.retain(
                |w| !matches!(w, ConfigWarning::NoEffect { key, .. } if key.starts_with("postgresql.")),
            );
        }
        let refused = keys::refusals(&Value::Object(root.clone()), "", "");
        if !errors.is_empty() {
            errors.extend(refused);
            return Err(blame_env(
                ConfigError::from_list(errors).expect("not empty"),
                &env,
            ));
        }

        warnings.append(&mut report.unknown);
        warnings.extend(report.notes.into_iter().map(|w| match w {
            ConfigWarning::NoEffect { key, why, var: None } => ConfigWarning::NoEffect {
                var: env.var_for(&key).map(str::to_string),
                key,
                why,
            },
            other => other,
        }));
        if witness_pg {
            warnings.push(ConfigWarning::Note {
                key: "postgresql".into(),
                message: "ignored: a witness never runs PostgreSQL".into(),
            });
        }

        let mut config: Config =
            serde_path_to_error::deserialize(Value::Object(root)).map_err(|e| ConfigError::Deserialize {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        config.drop_stray_method_sections();
        match (config.validate(), refused.is_empty()) {
            (Ok(mut more), true) => {
                warnings.append(&mut more);
                Ok(Loaded { config, warnings })
            }
            (result, _) => {
                let mut all = refused;
                if let Err(e) = result {
                    all.extend(flatten(e));
                }
                Err(blame_env(ConfigError::from_list(all).expect("not empty"), &env))
            }
        }
    }

    /// Required keys, checked on the document so each error names its key. `postgresql` is required
    /// only on a data node; `raft.data_dir` too (a witness has a default).
    fn missing_keys(root: &Map<String, Value>, witness: bool) -> Vec<ConfigError> {
        let mut required: Vec<(&str, &'static str)> = vec![
            ("scope", "the cluster name"),
            ("name", "this member's unique name"),
            ("restapi.listen", "the REST API bind address"),
            (
                "restapi.connect_address",
                "the REST API address other members use",
            ),
            ("raft.self_addr", "this node's Raft address"),
        ];
        if !witness {
            required.extend([
                ("raft.data_dir", "where the Raft log is stored"),
                (
                    "postgresql.listen",
                    "PostgreSQL's listen address (not needed with `raft.witness: true`)",
                ),
                (
                    "postgresql.connect_address",
                    "PostgreSQL's address for other members",
                ),
                ("postgresql.data_dir", "PGDATA"),
                (
                    "postgresql.authentication.superuser.username",
                    "the superuser pgwarden connects as",
                ),
                (
                    "postgresql.authentication.replication.username",
                    "the role replicas stream with",
                ),
            ]);
        }
        let mut out: Vec<ConfigError> = required
            .into_iter()
            .filter(|(k, _)| get(root, k).is_none())
            .map(|(key, why)| ConfigError::Missing { key: key.into(), why })
            .collect();
        if get(root, "postgresql.authentication.rewind").is_some()
            && get(root, "postgresql.authentication.rewind.username").is_none()
        {
            out.push(ConfigError::Missing {
                key: "postgresql.authentication.rewind.username".into(),
                why: "a rewind user needs a name",
            });
        }
        out
    }

    /// Keeps only the method sections that a method list or `bootstrap.method` names (the flatten
    /// maps also catch unknown keys, which the walk already reported).
    fn drop_stray_method_sections(&mut self) {
        let standby_methods: Vec<String> = self
            .bootstrap
            .dcs
            .standby_cluster
            .as_ref()
            .and_then(|s| s.create_replica_methods.clone())
            .unwrap_or_default();
        if let Some(pg) = &mut self.postgresql {
            let listed: Vec<String> = pg.create_replica_methods.clone().unwrap_or_default();
            pg.replica_methods
                .retain(|k, _| listed.contains(k) || standby_methods.contains(k));
        }
        let method = self.bootstrap.method.clone();
        self.bootstrap
            .methods
            .retain(|k, _| method.as_deref() == Some(k.as_str()));
    }
}

/// The individual errors of `e` (the list of [`ConfigError::Several`], else `e` itself).
fn flatten(e: ConfigError) -> Vec<ConfigError> {
    match e {
        ConfigError::Several(list) => list,
        one => vec![one],
    }
}

/// Names the environment variable in every error about a key whose value came from the
/// environment (the file may say something else, and the operator looks there first).
fn blame_env(e: ConfigError, env: &EnvReport) -> ConfigError {
    let one = |e: ConfigError| match e.key().and_then(|k| env.var_for(k)) {
        Some(var) if !matches!(e, ConfigError::Env { .. }) => ConfigError::FromEnv {
            var: var.to_string(),
            error: Box::new(e),
        },
        _ => e,
    };
    match e {
        ConfigError::Several(list) => ConfigError::Several(list.into_iter().map(one).collect()),
        e => one(e),
    }
}
