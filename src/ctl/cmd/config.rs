//! `show-config` and `edit-config`: the dynamic configuration, shown as patronictl's YAML and
//! edited with `--set`, `--pg`, `--apply`, `--replace` or `$EDITOR`.

use super::{cluster_of, Result};
use crate::config::merge_patch;
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::confirm;
use crate::ctl::{diff, pyfmt};
use crate::pb;
use serde_json::{Map, Value};

/// `show-config`.
pub(super) async fn show(c: &mut Client, cluster: Option<String>, scope: Option<&str>) -> Result<()> {
    cluster_of(c, cluster.as_deref(), scope).await?;
    let (v, _) = config(c).await?;
    println!("{}", pyfmt::yaml_block(&v));
    Ok(())
}

/// The dynamic configuration and its revision (for the compare-and-set of `edit-config`).
pub(super) async fn config(c: &mut Client) -> Result<(Value, u64)> {
    let r = c.get_config(pb::GetConfigRequest {}).await?.into_inner();
    let v = serde_json::from_str(&r.json)
        .map_err(|e| CtlError::Usage(format!("the member sent a configuration that is not JSON: {e}")))?;
    Ok((v, r.revision))
}

fn read_source(name: &str) -> Result<String> {
    if name == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| CtlError::Read {
            path: "-".into(),
            source,
        })?;
        Ok(s)
    } else {
        std::fs::read_to_string(name).map_err(|source| CtlError::Read {
            path: name.into(),
            source,
        })
    }
}

fn parse_yaml(what: &str, text: &str) -> Result<Value> {
    serde_yaml::from_str::<Value>(text).map_err(|e| CtlError::Usage(format!("{what} is not valid YAML: {e}")))
}

/// `-s a.b=value`: the path's dots separate keys, except after `postgresql.parameters`
/// (GUC names may contain dots); the value is YAML; an empty value deletes the key.
fn set_path(cfg: &mut Value, pair: &str) -> Result<()> {
    let Some((path, value)) = pair.split_once('=') else {
        return Err(CtlError::Usage(format!("Invalid parameter setting {pair}")));
    };
    let value = if value.trim().is_empty() {
        Value::Null
    } else {
        parse_yaml(&format!("the value of {path}"), value)?
    };
    let mut keys: Vec<String> = path.trim().split('.').map(str::to_string).collect();
    if keys.len() > 2 && keys[0] == "postgresql" && keys[1] == "parameters" {
        let guc = keys[2..].join(".");
        keys.truncate(2);
        keys.push(guc);
    }
    fn set(node: &mut Value, keys: &[String], value: Value) {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(m) = node else { return };
        match keys {
            [] => {}
            [k] => {
                if value.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), value);
                }
            }
            [k, rest @ ..] => {
                let child = m.entry(k.clone()).or_insert(Value::Object(Map::new()));
                set(child, rest, value);
                if child.as_object().is_some_and(Map::is_empty) {
                    m.remove(k);
                }
            }
        }
    }
    set(cfg, &keys, value);
    Ok(())
}

fn run_editor(before: &str) -> Result<String> {
    let file = tempfile::Builder::new()
        .prefix("pgwarden-config-")
        .suffix(".yaml")
        .tempfile()
        .map_err(|source| CtlError::Read {
            path: std::env::temp_dir(),
            source,
        })?;
    let path = file.path().to_path_buf();
    std::fs::write(&path, before).map_err(|source| CtlError::Read {
        path: path.clone(),
        source,
    })?;
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let argv =
        crate::shell::split_words(&editor).map_err(|e| CtlError::Usage(format!("EDITOR={editor:?}: {e}")))?;
    let Some((prog, args)) = argv.split_first() else {
        return Err(CtlError::Usage("EDITOR is empty".into()));
    };
    let status = std::process::Command::new(prog)
        .args(args)
        .arg(&path)
        .status()
        .map_err(|source| CtlError::Read {
            path: prog.into(),
            source,
        })?;
    if !status.success() {
        return Err(CtlError::Usage(format!(
            "Editor exited with return code {status}"
        )));
    }
    std::fs::read_to_string(&path).map_err(|source| CtlError::Read { path, source })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn edit_config(
    c: &mut Client,
    scope: &str,
    quiet: bool,
    set: Vec<String>,
    pg: Vec<String>,
    apply: Option<String>,
    replace: Option<String>,
    force: bool,
) -> Result<()> {
    let (old, revision) = config(c).await.map_err(|e| {
        CtlError::Usage(format!(
            "The config key does not exist in the cluster {scope}: {e}"
        ))
    })?;
    let before = pyfmt::yaml_block(&old);
    let mut new = old.clone();
    let mut edited = false;
    if let Some(f) = &replace {
        new = parse_yaml(f, &read_source(f)?)?;
        edited = true;
    }
    if let Some(f) = &apply {
        let patch = parse_yaml(f, &read_source(f)?)?;
        new = merge_patch(&new, &patch);
        edited = true;
    }
    let pairs: Vec<String> = set
        .into_iter()
        .chain(
            pg.into_iter()
                .map(|p| format!("postgresql.parameters.{}", p.trim_start())),
        )
        .collect();
    for p in &pairs {
        set_path(&mut new, p)?;
        edited = true;
    }
    if !edited {
        let after = run_editor(&before)?;
        new = parse_yaml("the edited configuration", &after)?;
    }
    if !new.is_object() {
        return Err(CtlError::Usage(
            "the configuration must be a YAML mapping (key: value lines)".into(),
        ));
    }
    if new == old {
        if !quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !quiet {
        print!("{}", diff::unified(&before, &pyfmt::yaml_block(&new)));
    }
    if (apply.as_deref() == Some("-") || replace.as_deref() == Some("-")) && !force {
        println!("Use --force option to apply changes");
        return Ok(());
    }
    if !force && !confirm("Apply these changes?")? {
        return Err(CtlError::Aborted("edit-config".into()));
    }
    match c
        .replace_config(pb::ReplaceConfigRequest {
            config_json: new.to_string(),
            expected_revision: Some(revision),
        })
        .await
    {
        Ok(_) => {
            println!("Configuration changed");
            Ok(())
        }
        Err(s) if s.code() == tonic::Code::Aborted => Err(CtlError::Refused(
            "Config modification aborted due to concurrent changes".into(),
        )),
        Err(s) => Err(s.into()),
    }
}
