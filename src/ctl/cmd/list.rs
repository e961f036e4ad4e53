//! `list`, `topology`, `history` and `dsn`: read-only views of the cluster.

use super::{cluster_of, role_matches, watching, Result};
use crate::ctl::cli::{RoleFilter, Watch};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::render::{self, Format};
use crate::pb;

/// `list`: the members table, once or under `--watch`.
pub(super) async fn list(
    c: &Client,
    cluster: Option<String>,
    scope: Option<&str>,
    extended: bool,
    timestamp: bool,
    format: Format,
    watch: Watch,
) -> Result<()> {
    watching(watch.period(), || async {
        if timestamp {
            println!("{}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
        }
        let cl = cluster_of(&mut c.clone(), cluster.as_deref(), scope).await?;
        print!("{}", render::list(&cl, format, extended));
        Ok(())
    })
    .await
}

/// `topology`: the members table as a replication tree, once or under `--watch`.
pub(super) async fn topology(
    c: &Client,
    cluster: Option<String>,
    scope: Option<&str>,
    watch: Watch,
) -> Result<()> {
    watching(watch.period(), || async {
        let cl = cluster_of(&mut c.clone(), cluster.as_deref(), scope).await?;
        print!("{}", render::list(&cl, Format::Topology, false));
        Ok(())
    })
    .await
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
