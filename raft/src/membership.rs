//! Membership administration and status: `Hello` (who a node is), the cluster status as
//! a node sees it, and adding or removing members on the leader (forwarded there from
//! any member).

use crate::inner::NodeInner;
use crate::network::{CallError, Rpc};
use crate::wire::{
    self, AdminError, AdminReply, AdminRequest, ClusterStatus, HelloReply, MemberStatus, NodeReport,
};
use crate::{Node, NodeId};
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::time::Duration;

impl NodeInner {
    pub(crate) async fn hello(&self) -> HelloReply {
        let initialized = self.raft.is_initialized().await.unwrap_or(false);
        // One read of the metrics, released before anything else: a second `borrow()` while
        // the first guard lives (temporaries of a struct literal live to its end) can
        // deadlock against openraft's core, which writes the metrics in between (a reader
        // waits behind a waiting writer), and that stops the whole node.
        let (leader, leads) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_leader, m.state == openraft::ServerState::Leader)
        };
        HelloReply {
            node_id: self.id,
            name: self.me.name.clone(),
            addr: self.me.addr.clone(),
            initialized,
            leader,
            leads,
            leader_contact_ms: self
                .candidacy
                .since_contact()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_log: self.store.last_log_id(),
            site: self.me.site.clone(),
        }
    }

    pub(crate) fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let (views, voters) = self.member_views();
        let desired = crate::voters::desired_voters(views.len(), self.config.voters.target);
        let replaced = self.replaced.snapshot();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                name: node.name.clone(),
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index),
                site: node.site.clone(),
                why: views.iter().find(|v| v.id == *id).map_or_else(String::new, |v| {
                    crate::voters::why(v, voters.len(), desired, replaced.get(id).copied())
                }),
            })
            .collect();
        ClusterStatus {
            me: self.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied: m.last_applied.map_or(0, |l| l.index),
            members,
        }
    }

    /// This node's own state (`dcs status`). The snapshot size is read from the stored
    /// snapshot: a few hundred KiB at most for the keyspaces pgwarden holds.
    pub(crate) fn report(&self) -> NodeReport {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Shutdown => "shutdown",
        };
        let snapshot = self.store.snapshot_store().load().ok().flatten();
        NodeReport {
            id: self.id,
            name: self.me.name.clone(),
            addr: self.me.addr.clone(),
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied: m.last_applied.map_or(0, |l| l.index),
            store_bytes: self.store.size_on_disk(),
            snapshot_bytes: snapshot.as_ref().map_or(0, |s| s.data.len() as u64),
            snapshot_index: snapshot.and_then(|s| s.meta.last_log_id).map(|l| l.index),
            lease_keys: self.sm.list("").iter().filter(|kv| kv.ttl_ms.is_some()).count() as u64,
            reaper_active: m.state == openraft::ServerState::Leader,
        }
    }

    pub(crate) async fn serve_admin(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        // A node's own report is its own to give, member or not.
        if matches!(req, AdminRequest::Report) {
            return Ok(AdminReply::Report(self.report()));
        }
        if !self.is_member().await {
            return Err(AdminError::NoLeader);
        }
        // With no leader known, a node's own status is still worth answering.
        if matches!(req, AdminRequest::Status) && self.leader().is_none() {
            return Ok(AdminReply::Status(self.status()));
        }
        match self.leader() {
            Some((lid, _)) if lid == self.id => self.admin_local(req).await,
            Some((lid, node)) => {
                let r: Result<Result<AdminReply, AdminError>, CallError> = self
                    .peers
                    .call(Rpc::Admin, lid, &node.addr, &req, Duration::from_secs(120))
                    .await;
                r.map_err(|e| AdminError::Raft(format!("forwarding to the leader: {e}")))?
            }
            None => Err(AdminError::NoLeader),
        }
    }

    async fn admin_local(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        match req {
            AdminRequest::Status => Ok(AdminReply::Status(self.status())),
            AdminRequest::Report => Ok(AdminReply::Report(self.report())),
            AdminRequest::LeaseLeft { keys } => {
                let now = tokio::time::Instant::now();
                let table = self.leases.lock();
                let left = keys
                    .iter()
                    .map(|(k, rev)| {
                        table
                            .left(k, *rev, now)
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    })
                    .collect();
                Ok(AdminReply::LeaseLeft(left))
            }
            AdminRequest::AddMember { addr, replace } => {
                let hello: HelloReply = self
                    .peers
                    .call(
                        Rpc::Hello,
                        0,
                        &addr,
                        &wire::Hello::default(),
                        Duration::from_secs(2),
                    )
                    .await
                    .map_err(|e| AdminError::Unreachable {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })?;
                let _guard = self.membership_lock.lock().await;
                let membership = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
                if voters.contains(&hello.node_id) {
                    return Err(AdminError::AlreadyMember(hello.node_id));
                }
                let same_name: Vec<NodeId> = membership
                    .nodes()
                    .filter(|(id, n)| n.name == hello.name && **id != hello.node_id)
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(old) = same_name.first() {
                    if !replace {
                        return Err(AdminError::NameTaken {
                            name: hello.name,
                            id: *old,
                        });
                    }
                }
                let node = Node {
                    name: hello.name.clone(),
                    addr: hello.addr.clone(),
                    site: hello.site.clone(),
                };
                tracing::info!(node_id = hello.node_id, node = %node, site = ?node.site, "adding member as learner");
                // Blocking: returns once the learner has caught up (by log or snapshot),
                // so promoting it to voter cannot stall the quorum.
                self.raft
                    .add_learner(hello.node_id, node, true)
                    .await
                    .map_err(|e| AdminError::Raft(e.to_string()))?;
                let old_voters: Vec<NodeId> =
                    same_name.iter().copied().filter(|o| voters.contains(o)).collect();
                if !old_voters.is_empty() {
                    // One joint-consensus change gives the dead member's vote to the new
                    // node, so the voter count never drops below three on the way.
                    for old in &old_voters {
                        voters.remove(old);
                    }
                    voters.insert(hello.node_id);
                    self.raft
                        .change_membership(voters, false)
                        .await
                        .map_err(|e| AdminError::Raft(e.to_string()))?;
                }
                let old_learners: BTreeSet<NodeId> = same_name
                    .iter()
                    .copied()
                    .filter(|o| !old_voters.contains(o))
                    .collect();
                if !old_learners.is_empty() {
                    self.raft
                        .change_membership(ChangeMembers::RemoveNodes(old_learners), false)
                        .await
                        .map_err(|e| AdminError::Raft(e.to_string()))?;
                }
                drop(_guard);
                // Promoted now if the voter set is below its target (the driver would do
                // it within a second; doing it here lets the reply say so).
                if let Err(e) = self.check_voters(Some(hello.node_id)).await {
                    tracing::warn!(error = %e, "checking the voter set after adding a member");
                }
                let voter = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == hello.node_id);
                tracing::info!(node_id = hello.node_id, replaced = ?same_name, voter, "member added");
                let why = self
                    .status()
                    .members
                    .into_iter()
                    .find(|m| m.id == hello.node_id)
                    .map(|m| m.why)
                    .unwrap_or_default();
                Ok(AdminReply::Added(MemberStatus {
                    id: hello.node_id,
                    name: hello.name,
                    addr: hello.addr,
                    voter,
                    matched: None,
                    site: hello.site,
                    why,
                }))
            }
            AdminRequest::RemoveMember { member } => {
                let _guard = self.membership_lock.lock().await;
                let membership = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                let id = membership
                    .nodes()
                    .find(|(id, n)| n.name == member || id.to_string() == member)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| AdminError::UnknownMember(member.clone()))?;
                let was_voter = membership.voter_ids().any(|v| v == id);
                if was_voter {
                    let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
                    self.raft
                        .change_membership(voters, false)
                        .await
                        .map_err(|e| AdminError::Raft(e.to_string()))?;
                } else {
                    // A learner is not in the voter set: replacing the voters would keep it.
                    self.raft
                        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| AdminError::Raft(e.to_string()))?;
                }
                self.replaced.lock().remove(&id);
                tracing::info!(node_id = id, member = %member, was_voter, "member removed");
                Ok(AdminReply::Removed(id))
            }
        }
    }
}
