//! The commands: each asks the admin API, prints what patronictl prints, and returns an
//! error (non-zero exit) when the operation failed.

use super::cli::{Cli, Command, FlushTarget, Generate, MembersAction, RoleFilter};
use super::client::{Client, CtlError, Target};
use super::prompt::{confirm, prompt};
use super::render::{self, Format};
use super::{diff, pyfmt};
use crate::config::merge_patch;
use crate::pb;
use serde_json::{Map, Value};
use std::io::Write;
use std::time::Duration;
use tokio::time::Instant;

type Result<T> = std::result::Result<T, CtlError>;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Version => {
            println!("pgwardenctl version {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Generate { what } => return generate(what),
        _ => {}
    }
    let target = Target::from_cli(&cli)?;
    let mut c = target.connect().await?;
    let scope = target.scope.clone();
    match cli.command {
        Command::List {
            cluster,
            extended,
            timestamp,
            format,
            watch,
        } => {
            watching(watch.period(), || async {
                if timestamp {
                    println!("{}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
                }
                let cl = cluster_of(&mut c.clone(), cluster.as_deref(), scope.as_deref()).await?;
                print!("{}", render::list(&cl, format, extended));
                Ok(())
            })
            .await
        }
        Command::Topology { cluster, watch } => {
            watching(watch.period(), || async {
                let cl = cluster_of(&mut c.clone(), cluster.as_deref(), scope.as_deref()).await?;
                print!("{}", render::list(&cl, Format::Topology, false));
                Ok(())
            })
            .await
        }
        Command::History { cluster, format } => {
            cluster_of(&mut c, cluster.as_deref(), scope.as_deref()).await?;
            let h = c.get_history(pb::GetHistoryRequest {}).await?.into_inner();
            print!("{}", render::history(&h, format));
            Ok(())
        }
        Command::Switchover {
            cluster,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            manual(
                &mut c,
                Manual::Switchover,
                cluster.as_deref(),
                scope.as_deref(),
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
            manual(
                &mut c,
                Manual::Failover,
                cluster.as_deref(),
                scope.as_deref(),
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
            let cl = cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
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
        Command::Reinit {
            cluster,
            members,
            force,
            wait,
            from_leader,
        } => {
            let cl = cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
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
                wait_members(&mut c, &started, Duration::from_secs(600), |m| {
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
        Command::Reload {
            cluster,
            members,
            role,
            force,
        } => {
            let cl = cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
            let names = select(&cl, &members, role)?;
            if !force
                && !confirm(&format!(
                    "Are you sure you want to reload members {}?",
                    names.join(", ")
                ))?
            {
                return Err(CtlError::Aborted("reload".into()));
            }
            let loop_wait = config(&mut c)
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
                        println!("Failed: reload for member {m}, status code={}, ({})", http_status(&s), s.message());
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(CtlError::Refused("reload failed on at least one member".into()));
            }
            Ok(())
        }
        Command::Flush {
            cluster,
            target,
            members,
            role,
            force,
        } => {
            let cl = cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
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
        Command::Pause { cluster, wait } => {
            pause(&mut c, cluster.as_deref(), scope.as_deref(), true, wait).await
        }
        Command::Resume { cluster, wait } => {
            pause(&mut c, cluster.as_deref(), scope.as_deref(), false, wait).await
        }
        Command::ShowConfig { cluster } => {
            cluster_of(&mut c, cluster.as_deref(), scope.as_deref()).await?;
            let (v, _) = config(&mut c).await?;
            println!("{}", pyfmt::yaml_block(&v));
            Ok(())
        }
        Command::EditConfig {
            cluster,
            quiet,
            set,
            pg,
            apply,
            replace,
            force,
        } => {
            let cl = cluster_of(&mut c, cluster.as_deref(), scope.as_deref()).await?;
            edit_config(&mut c, &cl.scope, quiet, set, pg, apply, replace, force).await
        }
        Command::Remove { cluster, format } => {
            let cl = cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
            print!("{}", render::list(&cl, format, false));
            if prompt("Please confirm the cluster name to remove", None)? != cluster {
                return Err(CtlError::Usage("Cluster names specified do not match".into()));
            }
            let msg = "Yes I am aware";
            if prompt(
                &format!(
                    "You are about to remove all information in DCS for {cluster}, please type: \"{msg}\""
                ),
                None,
            )? != msg
            {
                return Err(CtlError::Usage(format!("You did not exactly type \"{msg}\"")));
            }
            if let Some(l) = leader_of(&cl) {
                if prompt(
                    "This cluster currently is healthy. Please specify the leader name to continue",
                    None,
                )? != l
                {
                    return Err(CtlError::Usage(
                        "You did not specify the current leader of the cluster".into(),
                    ));
                }
            }
            let r = c
                .remove_cluster(pb::RemoveClusterRequest { scope: cluster })
                .await?;
            println!("{}", r.into_inner().message);
            Ok(())
        }
        Command::RemoveMember {
            cluster,
            member,
            force,
        } => {
            cluster_of(&mut c, Some(&cluster), scope.as_deref()).await?;
            if !force
                && !confirm(&format!(
                    "Are you sure you want to remove member {member} from cluster {cluster}?"
                ))?
            {
                return Err(CtlError::Aborted("remove-member".into()));
            }
            let r = c.remove_member(pb::RemoveMemberRequest { member }).await?;
            println!("{}", r.into_inner().message);
            Ok(())
        }
        Command::Members { action } => members(&mut c, action).await,
        Command::Dsn {
            cluster,
            role,
            member,
        } => {
            let cl = cluster_of(&mut c, cluster.as_deref(), scope.as_deref()).await?;
            let m = match (&member, role) {
                (Some(n), _) => cl.members.iter().find(|m| &m.name == n),
                (None, Some(r)) => cl.members.iter().find(|m| role_matches(m, r)),
                (None, None) => cl.members.iter().find(|m| role_matches(m, RoleFilter::Leader)),
            };
            let m = m.ok_or_else(|| CtlError::Usage("Can not find a suitable member".into()))?;
            let host = m.host.clone().unwrap_or_default();
            println!("host={host} port={}", m.port.unwrap_or(5432));
            Ok(())
        }
        Command::Version | Command::Generate { .. } => Ok(()),
    }
}

fn generate(what: &Generate) -> Result<()> {
    use clap::CommandFactory;
    match what {
        Generate::Man { dir } => {
            let io = |e: std::io::Error| CtlError::Read {
                path: dir.clone(),
                source: e,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            clap_mangen::generate_to(Cli::command(), dir).map_err(io)?;
            Ok(())
        }
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "pgwardenctl", &mut std::io::stdout());
            Ok(())
        }
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
        RoleFilter::Replica => !(m.role == "leader" || m.role == "standby_leader"),
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

/// `now` (or empty) is no schedule; a time without zone is local time, as in patronictl.
fn parse_scheduled(s: &str) -> Result<Option<String>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.to_rfc3339()));
    }
    for f in [
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
        "%Y-%m-%d %H:%M:%S%:z",
        "%Y-%m-%dT%H:%M:%S%z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, f) {
            return Ok(Some(t.to_rfc3339()));
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, f) {
            use chrono::TimeZone;
            if let Some(t) = chrono::Local.from_local_datetime(&n).earliest() {
                return Ok(Some(t.to_rfc3339()));
            }
        }
    }
    Err(CtlError::Usage(format!(
        "Unable to parse scheduled timestamp ({s}). It should be in an unambiguous format (e.g. ISO 8601)"
    )))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Manual {
    Switchover,
    Failover,
}

/// switchover and failover, with patronictl's questions and checks.
#[allow(clippy::too_many_arguments)]
async fn manual(
    c: &mut Client,
    action: Manual,
    cluster: Option<&str>,
    scope: Option<&str>,
    leader: Option<String>,
    candidate: Option<String>,
    scheduled: Option<String>,
    force: bool,
) -> Result<()> {
    let name = if action == Manual::Switchover {
        "switchover"
    } else {
        "failover"
    };
    let cl = cluster_of(c, cluster, scope).await?;
    let scope = cl.scope.clone();
    println!("Current cluster topology");
    print!("{}", render::list(&cl, Format::Pretty, false));
    let current = leader_of(&cl);
    let mut leader = leader;
    if action == Manual::Switchover {
        let Some(cur) = &current else {
            return Err(CtlError::Usage("This cluster has no leader".into()));
        };
        let l = match leader.take() {
            Some(l) => l,
            None if force => cur.clone(),
            None => prompt("Primary", Some(cur))?,
        };
        if &l != cur {
            return Err(CtlError::Usage(format!(
                "Member {l} is not the leader of cluster {scope}"
            )));
        }
        leader = Some(l);
    }
    let mut candidates: Vec<String> = cl
        .members
        .iter()
        .filter(|m| Some(&m.name) != current.as_ref())
        .filter(|m| {
            !serde_json::from_str::<Value>(&m.tags_json)
                .ok()
                .and_then(|t| t.get("nofailover").and_then(Value::as_bool))
                .unwrap_or(false)
        })
        .map(|m| m.name.clone())
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        return Err(CtlError::Usage(format!("No candidates found to {name} to")));
    }
    let candidate = match candidate {
        Some(c) => c,
        None if force => String::new(),
        None => {
            let list: Vec<String> = candidates.iter().map(|c| format!("'{c}'")).collect();
            prompt(&format!("Candidate [{}]", list.join(", ")), Some(""))?
        }
    };
    if action == Manual::Failover && candidate.is_empty() {
        return Err(CtlError::Usage(
            "Failover could be performed only to a specific candidate".into(),
        ));
    }
    if !candidate.is_empty() && !candidates.contains(&candidate) {
        if Some(&candidate) == current.as_ref() {
            return Err(CtlError::Usage(format!(
                "Member {candidate} is already the leader of cluster {scope}"
            )));
        }
        return Err(CtlError::Usage(format!(
            "Member {candidate} does not exist in cluster {scope} or is tagged as nofailover"
        )));
    }
    let sync: Vec<&str> = cl
        .members
        .iter()
        .filter(|m| m.role == "sync_standby" || m.role == "quorum_standby")
        .map(|m| m.name.as_str())
        .collect();
    if !force
        && action == Manual::Failover
        && !sync.is_empty()
        && !sync.contains(&candidate.as_str())
        && !confirm(&format!(
            "Are you sure you want to failover to the asynchronous node {candidate}?"
        ))?
    {
        return Err(CtlError::Aborted(name.into()));
    }
    let mut scheduled_at = None;
    if action == Manual::Switchover {
        let s = match scheduled {
            Some(s) => s,
            None if force => "now".into(),
            None => prompt(
                &format!("When should the switchover take place (e.g. {} ) ", next_hour()),
                Some("now"),
            )?,
        };
        scheduled_at = parse_scheduled(&s)?;
        if scheduled_at.is_some() && cl.paused {
            return Err(CtlError::Usage(
                "Can't schedule switchover in the paused state".into(),
            ));
        }
    }
    if !force {
        let demote = current
            .as_ref()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let q = match &scheduled_at {
            Some(at) => {
                format!("Are you sure you want to schedule switchover of cluster {scope} at {at}{demote}?")
            }
            None => format!("Are you sure you want to {name} cluster {scope}{demote}?"),
        };
        if !confirm(&q)? {
            let what = if scheduled_at.is_some() {
                format!("scheduled {name}")
            } else {
                name.to_string()
            };
            return Err(CtlError::Aborted(what));
        }
    }
    let r = match action {
        Manual::Switchover => {
            c.switchover(pb::SwitchoverRequest {
                leader: leader.unwrap_or_default(),
                candidate,
                scheduled_at: scheduled_at.unwrap_or_default(),
            })
            .await
        }
        Manual::Failover => c.failover(pb::FailoverRequest { candidate }).await,
    };
    match r {
        Ok(r) => {
            println!(
                "{} {}",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.6f"),
                r.into_inner().message
            );
            if let Ok(after) = c.get_cluster(pb::GetClusterRequest {}).await {
                print!("{}", render::list(&after.into_inner(), Format::Pretty, false));
            }
            Ok(())
        }
        Err(s) => {
            let title = if action == Manual::Switchover {
                "Switchover"
            } else {
                "Failover"
            };
            println!("{title} failed, details: {}, {}", http_status(&s), s.message());
            Err(CtlError::from_status(s))
        }
    }
}

async fn config(c: &mut Client) -> Result<(Value, u64)> {
    let r = c.get_config(pb::GetConfigRequest {}).await?.into_inner();
    let v = serde_json::from_str(&r.json)
        .map_err(|e| CtlError::Usage(format!("the member sent a configuration that is not JSON: {e}")))?;
    Ok((v, r.revision))
}

async fn pause(
    c: &mut Client,
    cluster: Option<&str>,
    scope: Option<&str>,
    on: bool,
    wait: bool,
) -> Result<()> {
    cluster_of(c, cluster, scope).await?;
    // The member that takes the request polls the others' REST status, as patronictl does.
    let wait_seconds = if wait { PAUSE_WAIT_SECONDS } else { 0 };
    if wait {
        println!(
            "'{}' request sent, waiting until it is recognized by all nodes",
            if on { "pause" } else { "resume" }
        );
    }
    let r = if on {
        c.pause(pb::PauseRequest { wait_seconds }).await
    } else {
        c.resume(pb::ResumeRequest { wait_seconds }).await
    };
    println!("{}", r?.into_inner().message);
    Ok(())
}

/// How long `pause --wait` / `resume --wait` waits for every member to report it.
const PAUSE_WAIT_SECONDS: u32 = 120;

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
async fn edit_config(
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

async fn members(c: &mut Client, action: MembersAction) -> Result<()> {
    match action {
        MembersAction::List { format } => {
            let m = c
                .list_raft_members(pb::ListRaftMembersRequest {})
                .await?
                .into_inner();
            print!("{}", render::raft_members(&m, format));
            Ok(())
        }
        MembersAction::Add { addr } => {
            let m = c
                .add_raft_member(pb::AddRaftMemberRequest { addr })
                .await?
                .into_inner();
            println!("Success: {} (id {}) at {} is a voter", m.name, m.id, m.addr);
            Ok(())
        }
        MembersAction::Replace { addr } => {
            let m = c
                .replace_raft_member(pb::ReplaceRaftMemberRequest { addr })
                .await?
                .into_inner();
            println!(
                "Success: {} (id {}) at {} replaced the member of that name",
                m.name, m.id, m.addr
            );
            Ok(())
        }
        MembersAction::Remove { member, force } => {
            if !force && !confirm(&format!("Are you sure you want to remove Raft member {member}?"))? {
                return Err(CtlError::Aborted("remove".into()));
            }
            let r = c
                .remove_raft_member(pb::RemoveRaftMemberRequest { member })
                .await?;
            println!("{}", r.into_inner().message);
            Ok(())
        }
    }
}
