//! `switchover` and `failover`, with patronictl's questions and checks, and the parser of
//! `--scheduled` timestamps (also used by `restart`).

use super::{cluster_of, http_status, leader_of, next_hour, Result};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::{confirm, prompt};
use crate::ctl::render::{self, Format};
use crate::pb;
use serde_json::Value;

/// `now` (or empty) is no schedule; a time without zone is local time, as in patronictl.
pub(super) fn parse_scheduled(s: &str) -> Result<Option<String>> {
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
pub(super) enum Manual {
    Switchover,
    Failover,
}

/// switchover and failover, with patronictl's questions and checks.
#[allow(clippy::too_many_arguments)]
pub(super) async fn manual(
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
