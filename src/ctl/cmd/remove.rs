//! `remove` (all of a cluster's DCS state, after three confirmations) and `remove-member`.

use super::{cluster_of, leader_of, Result};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::{confirm, prompt};
use crate::ctl::render::{self, Format};
use crate::pb;

/// `remove`: delete the cluster's state from the DCS.
pub(super) async fn remove(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    format: Format,
) -> Result<()> {
    let cl = cluster_of(c, Some(&cluster), scope).await?;
    print!("{}", render::list(&cl, format, false));
    if prompt("Please confirm the cluster name to remove", None)? != cluster {
        return Err(CtlError::Usage("Cluster names specified do not match".into()));
    }
    let msg = "Yes I am aware";
    if prompt(
        &format!("You are about to remove all information in DCS for {cluster}, please type: \"{msg}\""),
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

/// `remove-member`: delete one member's record from the DCS.
pub(super) async fn remove_member(
    c: &mut Client,
    cluster: String,
    scope: Option<&str>,
    member: String,
    force: bool,
) -> Result<()> {
    cluster_of(c, Some(&cluster), scope).await?;
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
