//! Member actions: `restart`, `reinit`, `reload` and `flush` (cancel a scheduled restart or
//! switchover). Each asks about every selected member and reports each answer.

use super::config::config;
use super::manual::parse_scheduled;
use super::{cluster_of, http_status, next_hour, select, Result};
use crate::ctl::cli::{FlushTarget, RoleFilter};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::{confirm, prompt};
use crate::ctl::render::{self, Format};
use crate::pb;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// `restart`: now or scheduled, optionally only if the version is older or a restart is pending.
#[allow(clippy::too_many_arguments)]
pub(super) async fn restart(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    members: Vec<String>,
    role: RoleFilter,
    any: bool,
    pg_version: Option<String>,
    pending: bool,
    timeout: Option<u32>,
    scheduled: Option<String>,
    force: bool,
) -> Result<()> {
    let cl = cluster_of(c, Some(&cluster), scope).await?;
    let mut names = select(&cl, &members, role)?;
    if any {
        names.truncate(1);
    }
    print!("{}", render::list(&cl, Format::Pretty, false));
    let scheduled = match scheduled {
        Some(s) => s,
        None if force => "now".into(),
        None => prompt(
            &format!("When should the restart take place (e.g. {}) ", next_hour()),
            Some("now"),
        )?,
    };
    let scheduled_at = parse_scheduled(&scheduled)?;
    let pg_version = match pg_version {
        Some(v) => v,
        None if force => String::new(),
        None => prompt(
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
            Some(""),
        )?,
    };
    if !force
        && !confirm(&format!(
            "Are you sure you want to restart members {}?",
            names.join(", ")
        ))?
    {
        return Err(CtlError::Aborted("restart".into()));
    }
    let mut failed = false;
    for m in &names {
        let r = c
            .restart(pb::RestartRequest {
                member: m.clone(),
                pending,
                role: String::new(),
                postgres_version: pg_version.clone(),
                timeout_seconds: timeout.unwrap_or(0),
                scheduled_at: scheduled_at.clone().unwrap_or_default(),
            })
            .await;
        match r {
            Ok(r) if r.get_ref().http_status == 202 => {
                println!("Success: restart scheduled on member {m}")
            }
            Ok(_) => println!("Success: restart on member {m}"),
            Err(s) => {
                let code = http_status(&s);
                if code == "409" {
                    println!("Failed: Another restart is already scheduled.");
                    failed = true;
                } else {
                    println!(
                        "Failed: restart for member {m}, status code={code}, ({})",
                        s.message()
                    );
                    // A member that did not need the restart was not a failure.
                    failed |= s.message() != "restart conditions are not satisfied";
                }
            }
        }
    }
    if failed {
        return Err(CtlError::Refused("restart failed on at least one member".into()));
    }
    Ok(())
}

/// `reinit`: rebuild members from a fresh base backup, optionally waiting until they run.
pub(super) async fn reinit(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    members: Vec<String>,
    force: bool,
    wait: bool,
    from_leader: bool,
) -> Result<()> {
    let cl = cluster_of(c, Some(&cluster), scope).await?;
    let members = if !members.is_empty() {
        members
    } else {
        // patronictl asks which replica; under --force there is no one to ask, and
        // reinitializing every replica at once is never what a missing name meant.
        let replicas: Vec<String> = cl
            .members
            .iter()
            .filter(|m| super::role_matches(m, RoleFilter::Replica))
            .map(|m| m.name.clone())
            .collect();
        if force {
            return Err(CtlError::Usage(format!(
                "reinit --force needs the members to reinitialize (replicas of {cluster}: {})",
                replicas.join(", ")
            )));
        }
        if replicas.is_empty() {
            return Err(CtlError::Usage(format!(
                "{cluster} cluster doesn't have any replicas"
            )));
        }
        print!("{}", render::list(&cl, Format::Pretty, false));
        let answer = prompt(
            &format!(
                "Which member do you want to reinitialize [{}]?",
                replicas.join(", ")
            ),
            Some(""),
        )?;
        if answer.is_empty() {
            return Err(CtlError::Aborted("reinitialize: no member given".into()));
        }
        vec![answer]
    };
    let names = select(&cl, &members, RoleFilter::Any)?;
    if !force
        && !confirm(&format!(
            "Are you sure you want to reinitialize members {}?",
            names.join(", ")
        ))?
    {
        return Err(CtlError::Aborted("reinitialize".into()));
    }
    let mut started = Vec::new();
    let mut failed = false;
    for m in &names {
        match c
            .reinitialize(pb::ReinitializeRequest {
                member: m.clone(),
                force,
                from_leader,
            })
            .await
        {
            Ok(_) => {
                println!("Success: reinitialize for member {m}");
                started.push(m.clone());
            }
            Err(s) => {
                println!(
                    "Failed: reinitialize for member {m}, status code={}, ({})",
                    http_status(&s),
                    s.message()
                );
                failed = true;
            }
        }
    }
    if wait && !started.is_empty() {
        println!("Waiting for reinitialize to complete on: {}", started.join(", "));
        wait_members(c, &started, Duration::from_secs(600), |m| {
            m.state == "streaming" || m.state == "running"
        })
        .await?;
        println!("Reinitialize is completed on: {}", started.join(", "));
    }
    if failed {
        return Err(CtlError::Refused(
            "reinitialize failed on at least one member".into(),
        ));
    }
    Ok(())
}

/// `reload`: make members reload their configuration.
pub(super) async fn reload(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    members: Vec<String>,
    role: RoleFilter,
    force: bool,
) -> Result<()> {
    let cl = cluster_of(c, Some(&cluster), scope).await?;
    let names = select(&cl, &members, role)?;
    if !force
        && !confirm(&format!(
            "Are you sure you want to reload members {}?",
            names.join(", ")
        ))?
    {
        return Err(CtlError::Aborted("reload".into()));
    }
    let loop_wait = config(c)
        .await
        .ok()
        .and_then(|(v, _)| v.get("loop_wait").and_then(Value::as_u64))
        .unwrap_or(10);
    let mut failed = false;
    for m in &names {
        match c.reload(pb::ReloadRequest { member: m.clone() }).await {
            Ok(_) => println!(
                "Reload request received for member {m} and will be processed within {loop_wait} seconds"
            ),
            Err(s) => {
                println!(
                    "Failed: reload for member {m}, status code={}, ({})",
                    http_status(&s),
                    s.message()
                );
                failed = true;
            }
        }
    }
    if failed {
        return Err(CtlError::Refused("reload failed on at least one member".into()));
    }
    Ok(())
}

/// `flush`'s words after the cluster: patronictl's `[MEMBERS...] restart|switchover`, or
/// pgwarden's earlier `restart|switchover [MEMBERS...]` (scripts use both).
pub(super) fn flush_args(mut args: Vec<String>) -> Result<(FlushTarget, Vec<String>)> {
    let target = |s: &str| match s {
        "restart" => Some(FlushTarget::Restart),
        "switchover" => Some(FlushTarget::Switchover),
        _ => None,
    };
    if let Some(t) = args.last().and_then(|s| target(s)) {
        args.pop();
        return Ok((t, args));
    }
    if let Some(t) = args.first().and_then(|s| target(s)) {
        args.remove(0);
        return Ok((t, args));
    }
    Err(CtlError::Usage(format!(
        "flush: say what to cancel, restart or switchover, after the members (got: {})",
        args.join(" ")
    )))
}

/// `flush`: cancel the scheduled switchover or the members' scheduled restarts.
pub(super) async fn flush(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    target: FlushTarget,
    members: Vec<String>,
    role: RoleFilter,
    force: bool,
) -> Result<()> {
    let cl = cluster_of(c, Some(&cluster), scope).await?;
    match target {
        FlushTarget::Switchover => {
            let r = c.cancel_switchover(pb::CancelSwitchoverRequest {}).await?;
            println!("Success: {}", r.into_inner().message);
            Ok(())
        }
        FlushTarget::Restart => {
            let names = select(&cl, &members, role)?;
            if !force
                && !confirm(&format!(
                    "Are you sure you want to cancel the scheduled restarts of members {}?",
                    names.join(", ")
                ))?
            {
                return Err(CtlError::Aborted("flush".into()));
            }
            for m in &names {
                match c
                    .cancel_restart(pb::CancelRestartRequest { member: m.clone() })
                    .await
                {
                    Ok(_) => println!("Success: flush scheduled restart for member {m}"),
                    Err(s) if s.code() == tonic::Code::NotFound => {
                        println!("Failed: no scheduled restart for member {m}")
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            Ok(())
        }
    }
}

/// Polls until every member in `names` satisfies `ok`.
async fn wait_members(
    c: &mut Client,
    names: &[String],
    limit: Duration,
    ok: impl Fn(&pb::Member) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(cl) = c.get_cluster(pb::GetClusterRequest {}).await {
            let cl = cl.into_inner();
            if names
                .iter()
                .all(|n| cl.members.iter().any(|m| &m.name == n && ok(m)))
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(CtlError::Refused(format!(
                "gave up waiting after {}s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
