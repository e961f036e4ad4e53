//! The commands: each asks the admin API, prints what patronictl prints, and returns an
//! error (non-zero exit) when the operation failed.
//!
//! [`run`] only dispatches the clap [`Command`] to one file per command group; the helpers
//! every group needs (finding the cluster, selecting members, `--watch`) live here.
//!
//! - `list`: `list`, `topology`, `history`, `dsn`.
//! - `manual`: `switchover` and `failover`, and the `--scheduled` timestamp parser.
//! - `config`: `show-config` and `edit-config`.
//! - `actions`: member actions: `restart`, `reinit`, `reload`, `flush`.
//! - `pause`: `pause` and `resume`.
//! - `remove`: `remove` (the cluster) and `remove-member`.
//! - `members`: `members` (the Raft membership).
//! - `dcs`: `dcs get|status|put|delete|snapshot save` (the embedded DCS itself).
//! - `generate`: `generate man|completions`.
//! - `query`: SQL on a member's PostgreSQL; `version`: the tool's and each member's versions.

mod actions;
mod cluster_role;
mod config;
mod dcs;
mod generate;
mod list;
mod manual;
mod members;
mod pause;
mod query;
mod remove;
mod version;

use super::cli::{Cli, Command, RoleFilter};
use super::client::{Client, CtlError, Target};
use super::render::Format;
use crate::pb;
use manual::Manual;
use std::io::Write;
use std::time::Duration;

type Result<T> = std::result::Result<T, CtlError>;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Version { cluster, .. } => {
            // First, as patronictl: the tool's own version shows even if no member answers.
            println!("pgwardenctl version {}", env!("CARGO_PKG_VERSION"));
            if cluster.is_none() {
                return Ok(());
            }
        }
        Command::Generate { what } => return generate::generate(what),
        _ => {}
    }
    let target = Target::from_cli(&cli)?;
    let mut c = target.connect().await?;
    let scope = target.scope.as_deref();
    match cli.command {
        Command::List {
            clusters,
            extended,
            timestamp,
            format,
            watch,
        } => {
            let view = list::View {
                format,
                extended,
                timestamp,
            };
            list::list(&target, c, clusters, scope, view, watch).await
        }
        Command::Topology { clusters, watch } => {
            let view = list::View {
                format: Format::Topology,
                extended: false,
                timestamp: false,
            };
            list::list(&target, c, clusters, scope, view, watch).await
        }
        Command::History { cluster, format } => list::history(&mut c, cluster, scope, format).await,
        Command::Switchover {
            cluster,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            manual::manual(
                &mut c,
                Manual::Switchover,
                cluster.as_deref(),
                scope,
                leader,
                candidate,
                scheduled,
                force,
            )
            .await
        }
        Command::Failover {
            cluster,
            candidate,
            force,
        } => {
            manual::manual(
                &mut c,
                Manual::Failover,
                cluster.as_deref(),
                scope,
                None,
                candidate,
                None,
                force,
            )
            .await
        }
        Command::Restart {
            cluster,
            members,
            role,
            any,
            pg_version,
            pending,
            timeout,
            scheduled,
            force,
        } => {
            actions::restart(
                &mut c, cluster, scope, members, role, any, pg_version, pending, timeout, scheduled, force,
            )
            .await
        }
        Command::Reinit {
            cluster,
            members,
            force,
            wait,
            from_leader,
        } => actions::reinit(&mut c, cluster, scope, members, force, wait, from_leader).await,
        Command::Reload {
            cluster,
            members,
            role,
            force,
        } => actions::reload(&mut c, cluster, scope, members, role, force).await,
        Command::Flush {
            cluster,
            args,
            role,
            force,
        } => {
            let (target, members) = actions::flush_args(args)?;
            actions::flush(&mut c, cluster, scope, target, members, role, force).await
        }
        Command::Pause { cluster, wait } => pause::pause(&mut c, cluster.as_deref(), scope, true, wait).await,
        Command::Resume { cluster, wait } => {
            pause::pause(&mut c, cluster.as_deref(), scope, false, wait).await
        }
        Command::PromoteCluster { cluster, force } => {
            cluster_role::change_cluster_role(&mut c, cluster.as_deref(), scope, force, None).await
        }
        Command::DemoteCluster {
            cluster,
            force,
            host,
            port,
            restore_command,
            primary_slot_name,
        } => {
            let section = cluster_role::standby_section(host, port, primary_slot_name, restore_command)?;
            cluster_role::change_cluster_role(&mut c, cluster.as_deref(), scope, force, Some(section)).await
        }
        Command::ShowConfig { cluster } => config::show(&mut c, cluster, scope).await,
        Command::EditConfig {
            cluster,
            quiet,
            set,
            pg,
            apply,
            replace,
            force,
        } => {
            let cl = cluster_of(&mut c, cluster.as_deref(), scope).await?;
            config::edit_config(&mut c, &cl.scope, quiet, set, pg, apply, replace, force).await
        }
        Command::Remove { cluster, format } => remove::remove(&mut c, cluster, scope, format).await,
        Command::RemoveMember {
            cluster,
            member,
            force,
        } => remove::remove_member(&mut c, cluster, scope, member, force).await,
        Command::Members { action } => members::members(&mut c, action).await,
        Command::Dcs { action } => dcs::dcs(&mut c, action).await,
        Command::Dsn {
            cluster,
            role,
            member,
        } => list::dsn(&mut c, cluster, scope, role, member).await,
        Command::Version { cluster, members } => version::version(&mut c, cluster, scope, members).await,
        Command::Query(q) => query::query(&mut c, q, scope).await,
        Command::Generate { .. } => Ok(()),
    }
}

/// Runs `f` once, or every `period` seconds (clearing the screen) until interrupted.
async fn watching<F, Fut>(period: Option<u64>, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let Some(p) = period else { return f().await };
    loop {
        print!("\x1b[2J\x1b[1;1H");
        if let Err(e) = f().await {
            println!("Error: {e}");
        }
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(p.max(1))).await;
    }
}

/// The cluster, refusing a cluster name that is not the one the endpoint serves.
async fn cluster_of(c: &mut Client, name: Option<&str>, scope: Option<&str>) -> Result<pb::Cluster> {
    let cl = c.get_cluster(pb::GetClusterRequest {}).await?.into_inner();
    let wanted = name.or(scope);
    if let Some(w) = wanted {
        if w != cl.scope {
            return Err(CtlError::Usage(format!(
                "cluster {w} is not served here: the member {} belongs to cluster {}",
                cl.answered_by, cl.scope
            )));
        }
    }
    Ok(cl)
}

fn leader_of(c: &pb::Cluster) -> Option<String> {
    c.members
        .iter()
        .find(|m| m.role == "leader" || m.role == "standby_leader")
        .map(|m| m.name.clone())
}

fn role_matches(m: &pb::Member, r: RoleFilter) -> bool {
    match r {
        RoleFilter::Any => true,
        RoleFilter::Leader => m.role == "leader" || m.role == "standby_leader",
        RoleFilter::Primary => m.role == "leader",
        RoleFilter::StandbyLeader => m.role == "standby_leader",
        RoleFilter::Replica | RoleFilter::Standby => !(m.role == "leader" || m.role == "standby_leader"),
    }
}

/// The members named (each must exist), or all, filtered by role.
fn select(c: &pb::Cluster, names: &[String], role: RoleFilter) -> Result<Vec<String>> {
    for n in names {
        if !c.members.iter().any(|m| &m.name == n) {
            return Err(CtlError::Usage(format!(
                "{n} is not a member of cluster {}",
                c.scope
            )));
        }
    }
    let out: Vec<String> = c
        .members
        .iter()
        .filter(|m| names.is_empty() || names.contains(&m.name))
        .filter(|m| role_matches(m, role))
        .map(|m| m.name.clone())
        .collect();
    if out.is_empty() {
        return Err(CtlError::Usage("No members matched the given role".into()));
    }
    Ok(out)
}

fn http_status(s: &tonic::Status) -> String {
    s.metadata()
        .get("x-http-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("n/a")
        .to_string()
}

fn next_hour() -> String {
    (chrono::Local::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}
