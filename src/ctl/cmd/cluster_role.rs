//! `promote-cluster` and `demote-cluster` (patronictl 4.x): remove `standby_cluster` from the
//! dynamic configuration, or set it, then watch the leader take the new role.

use super::{cluster_of, Result};
use crate::config::merge_patch;
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::confirm;
use crate::ctl::render::{self, Format};
use crate::pb;
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::time::Instant;

/// How long the command watches for the leader's new role before giving up (Patroni
/// watches without a limit; a script needs one).
const WATCH_LIMIT: Duration = Duration::from_secs(300);

/// The `standby_cluster` section of `demote-cluster`'s options: `None` unless one of
/// `--host`, `--port` or `--restore-command` is given (patronictl's rule).
pub(super) fn standby_section(
    host: Option<String>,
    port: Option<u16>,
    primary_slot_name: Option<String>,
    restore_command: Option<String>,
) -> Result<Value> {
    if host.is_none() && port.is_none() && restore_command.is_none() {
        return Err(CtlError::Usage(
            "At least --host, --port or --restore-command should be specified".into(),
        ));
    }
    let mut m = Map::new();
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        m.insert("host".into(), json!(h));
    }
    if let Some(p) = port {
        m.insert("port".into(), json!(p));
    }
    if let Some(s) = primary_slot_name.filter(|s| !s.is_empty()) {
        m.insert("primary_slot_name".into(), json!(s));
    }
    if let Some(r) = restore_command.filter(|r| !r.is_empty()) {
        m.insert("restore_command".into(), json!(r));
    }
    Ok(Value::Object(m))
}

/// Demotes (`standby` is the section) or promotes (`None`) the cluster.
pub(super) async fn change_cluster_role(
    c: &mut Client,
    cluster: Option<&str>,
    scope: Option<&str>,
    force: bool,
    standby: Option<Value>,
) -> Result<()> {
    let demote = standby.is_some();
    let action = if demote { "demot" } else { "promot" };
    let target_role = if demote { "standby_leader" } else { "leader" };
    let cl = cluster_of(c, cluster, scope).await?;
    let name = cl.scope.clone();
    let Some(leader) = cl
        .members
        .iter()
        .find(|m| m.role == "leader" || m.role == "standby_leader")
        .cloned()
    else {
        return Err(CtlError::Refused(format!(
            "Cluster has no leader, {action}ion is not possible"
        )));
    };
    if leader.role == target_role {
        return Err(CtlError::Refused(
            "Cluster is already in the required state".into(),
        ));
    }
    println!("Current cluster topology");
    print!("{}", render::list(&cl, Format::Pretty, false));
    if !force && !confirm(&format!("Are you sure you want to {action}e {name} cluster?"))? {
        return Err(CtlError::Refused(format!("Aborted cluster {action}ion")));
    }
    // PATCH /config's semantics: `null` removes the section.
    let patch = json!({ "standby_cluster": standby.unwrap_or(Value::Null) });
    let (old, revision) = super::config::config(c).await?;
    let new = merge_patch(&old, &patch);
    c.replace_config(pb::ReplaceConfigRequest {
        config_json: new.to_string(),
        expected_revision: Some(revision),
    })
    .await
    .map_err(|s| CtlError::Refused(format!("Failed to {action}e {name} cluster: {}", s.message())))?;

    let until = Instant::now() + WATCH_LIMIT;
    loop {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        let cl = cluster_of(c, cluster, scope).await?;
        let holder = cl
            .members
            .iter()
            .find(|m| m.role == "leader" || m.role == "standby_leader");
        let role = holder.map(|m| m.role.as_str());
        // A standby leader shows how it replicates ("streaming") where a primary shows
        // "running": either means PostgreSQL is up in its new role.
        let state = holder.map(|m| m.state.as_str());
        if role == Some(target_role) && matches!(state, Some("running" | "streaming")) {
            println!("{now} cluster is successfully {action}ed");
            print!("{}", render::list(&cl, Format::Pretty, false));
            return Ok(());
        }
        println!(
            "{now} cluster is unlocked: {}, leader role: {}, leader state: {}",
            if holder.is_none() { "True" } else { "False" },
            role.unwrap_or("None"),
            state.unwrap_or("None")
        );
        if Instant::now() >= until {
            return Err(CtlError::Refused(format!(
                "the cluster's leader did not become {target_role} within {} s",
                WATCH_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
