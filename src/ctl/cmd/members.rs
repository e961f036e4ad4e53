//! `members list|add|replace|remove`: the Raft members (voters and learners) of the embedded DCS.

use super::Result;
use crate::ctl::cli::MembersAction;
use crate::ctl::client::{Client, CtlError};
use crate::ctl::prompt::confirm;
use crate::ctl::render;
use crate::pb;

pub(super) async fn members(c: &mut Client, action: MembersAction) -> Result<()> {
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
            let what = if m.why.is_empty() {
                if m.voter { "voter" } else { "learner" }.to_string()
            } else {
                m.why.clone()
            };
            println!(
                "Success: {} (id {}) at {} is a member ({what})",
                m.name, m.id, m.addr
            );
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
