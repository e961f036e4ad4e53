//! `list`, `topology`, `history` and `dsn`: read-only views of the cluster.

use super::{cluster_of, role_matches, watching, Result};
use crate::ctl::cli::{RoleFilter, Watch};
use crate::ctl::client::{Client, CtlError, Target};
use crate::ctl::render::{self, Format};
use crate::pb;

/// How `list` and `topology` print.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub format: Format,
    pub extended: bool,
    pub timestamp: bool,
}

/// `list` and `topology`: the members table of each cluster named (default: the
/// configuration's scope, else the cluster served), once or under `--watch`. Each endpoint
/// serves one cluster; a cluster that the first endpoint does not serve is looked for at the
/// other endpoints, and one that none serves is an error naming what each serves.
pub(super) async fn list(
    target: &Target,
    first: Client,
    clusters: Vec<String>,
    scope: Option<&str>,
    view: View,
    watch: Watch,
) -> Result<()> {
    let names: Vec<Option<String>> = if clusters.is_empty() {
        vec![scope.map(str::to_string)]
    } else {
        clusters.into_iter().map(Some).collect()
    };
    let mut clients: Vec<(Option<String>, Client)> = Vec::new();
    let mut missing = Vec::new();
    for n in &names {
        match find(target, &first, n.as_deref(), names.len()).await? {
            Some(c) => clients.push((n.clone(), c)),
            None => missing.push(n.clone().unwrap_or_default()),
        }
    }
    if !missing.is_empty() && clients.is_empty() {
        return Err(not_served(target, &missing).await);
    }
    watching(watch.period(), || async {
        if view.timestamp {
            println!("{}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
        }
        for (n, c) in &clients {
            let cl = cluster_of(&mut c.clone(), n.as_deref(), None).await?;
            print!("{}", render::list(&cl, view.format, view.extended));
        }
        Ok(())
    })
    .await?;
    if !missing.is_empty() {
        return Err(not_served(target, &missing).await);
    }
    Ok(())
}

/// The client for cluster `name`: the first endpoint's if it serves it (or any cluster
/// when no name is given), else the first other endpoint that does. With a single cluster
/// asked and a single endpoint, the usual "not served here" error comes from `cluster_of`.
async fn find(target: &Target, first: &Client, name: Option<&str>, asked: usize) -> Result<Option<Client>> {
    let Some(name) = name else {
        return Ok(Some(first.clone()));
    };
    let served = first
        .clone()
        .get_cluster(pb::GetClusterRequest {})
        .await?
        .into_inner()
        .scope;
    if served == name {
        return Ok(Some(first.clone()));
    }
    if asked == 1 && target.endpoints.len() == 1 {
        return Ok(Some(first.clone()));
    }
    for e in &target.endpoints {
        let one = Target {
            endpoints: vec![e.clone()],
            ..target.clone()
        };
        let Ok(mut c) = one.connect().await else { continue };
        if let Ok(cl) = c.get_cluster(pb::GetClusterRequest {}).await {
            if cl.into_inner().scope == name {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// The error for clusters no endpoint serves, saying which cluster each endpoint serves.
async fn not_served(target: &Target, missing: &[String]) -> CtlError {
    let mut serves = Vec::new();
    for e in &target.endpoints {
        let one = Target {
            endpoints: vec![e.clone()],
            ..target.clone()
        };
        let what = match one.connect().await {
            Ok(mut c) => match c.get_cluster(pb::GetClusterRequest {}).await {
                Ok(cl) => format!("{e} serves {}", cl.into_inner().scope),
                Err(s) => format!("{e}: {}", CtlError::from_status(s)),
            },
            Err(_) => format!("{e} does not answer"),
        };
        serves.push(what);
    }
    CtlError::Usage(format!(
        "cluster {} is not served by the endpoints given ({}); pgwardenctl reaches one cluster per admin endpoint: add one of its members to -d",
        missing.join(", "),
        serves.join("; ")
    ))
}

/// `history`: the timeline switches.
pub(super) async fn history(
    c: &mut Client,
    cluster: Option<String>,
    scope: Option<&str>,
    format: Format,
) -> Result<()> {
    cluster_of(c, cluster.as_deref(), scope).await?;
    let h = c.get_history(pb::GetHistoryRequest {}).await?.into_inner();
    print!("{}", render::history(&h, format));
    Ok(())
}

/// `dsn`: host and port of the member named, or the first of the role, or the leader.
pub(super) async fn dsn(
    c: &mut Client,
    cluster: Option<String>,
    scope: Option<&str>,
    role: Option<RoleFilter>,
    member: Option<String>,
) -> Result<()> {
    let cl = cluster_of(c, cluster.as_deref(), scope).await?;
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
