//! Which members vote: the choice of the voter set (a pure function, [`decide`]) and the
//! driver that applies it on the Raft leader.
//!
//! Every member that joins is a learner first. The leader keeps the voter set at the
//! configured target (3 or 5; fewer members: all of them, rounded down to an odd count
//! above 3), spread over the members' sites, and changes it one step at a time:
//! - promote a caught-up learner while the set is below the target;
//! - demote a voter while the set is above it (an unreachable one first);
//! - replace a voter that has been unreachable for `voter_replace_after` by a caught-up
//!   learner, in one joint change, only when the reachable voters are a majority of the
//!   old set and of the new set;
//! - move a vote to a learner of a site that holds none, from a site that holds two or
//!   more, while every voter answers.
//!
//! Each step is computed afresh from the current membership and the leader's view of its
//! peers, so running the driver twice, or on a new leader, does the same thing. A voter
//! that answers, however slowly, is never replaced, and a replaced voter that comes back
//! stays a learner: the set is full again, and moving votes between sites never picks a
//! member this leader replaced.

use crate::inner::NodeInner;
use crate::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The voter counts `raft.voters` accepts.
pub const ALLOWED_TARGETS: [usize; 2] = [3, 5];

/// A learner this far behind the leader's last log index (or less) counts as caught up.
pub const CATCH_UP_SLACK: u64 = 100;

/// How often the leader re-checks the voter set.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The voter policy of a cluster (`raft.voters`, `raft.voter_replace_after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoterPolicy {
    /// The target voter count: 3 or 5.
    pub target: usize,
    /// How long a voter must be unreachable before a learner replaces it.
    pub replace_after: Duration,
}

impl Default for VoterPolicy {
    fn default() -> Self {
        VoterPolicy {
            target: 5,
            replace_after: Duration::from_secs(30),
        }
    }
}

/// One member as the leader sees it, the input of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Raft id.
    pub id: NodeId,
    /// Its site (`raft.site`), if it declared one.
    pub site: Option<String>,
    /// Whether it votes now.
    pub voter: bool,
    /// How long the leader's calls to it have been failing (`None`: it answers).
    pub unreachable_for: Option<Duration>,
    /// Whether its log is within [`CATCH_UP_SLACK`] of the leader's.
    pub caught_up: bool,
    /// Whether this leader replaced it as a voter after it was unreachable.
    pub replaced: bool,
}

impl MemberView {
    fn answers(&self) -> bool {
        self.unreachable_for.is_none()
    }

    /// The site used to spread voters: a member with no site is a site of its own, so
    /// members that declare none are not grouped together.
    fn site_key(&self) -> String {
        match &self.site {
            Some(s) => format!("s:{s}"),
            None => format!("id:{}", self.id),
        }
    }
}

/// What the leader should do with the voter set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoterChange {
    /// Make the learner a voter (the set is below its target).
    Promote(NodeId),
    /// Make the voter a learner (the set is above its target).
    Demote(NodeId),
    /// Replace the unreachable voter `dead` by the learner `by`.
    Replace {
        /// The voter unreachable for longer than the policy allows.
        dead: NodeId,
        /// The learner that takes its vote.
        by: NodeId,
    },
    /// Move a vote from `from` (a site with two or more voters) to `to` (a site with none).
    Spread {
        /// The voter that becomes a learner.
        from: NodeId,
        /// The learner that becomes a voter.
        to: NodeId,
    },
}

impl VoterChange {
    /// The voter set after the change.
    pub fn apply(&self, voters: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let mut v = voters.clone();
        match *self {
            VoterChange::Promote(id) => {
                v.insert(id);
            }
            VoterChange::Demote(id) => {
                v.remove(&id);
            }
            VoterChange::Replace { dead: out, by: into } | VoterChange::Spread { from: out, to: into } => {
                v.remove(&out);
                v.insert(into);
            }
        }
        v
    }
}

/// The voter count wanted for `members` members: all of them up to the target, but an odd
/// count from 3 up (4 members with a target of 5 vote 3: a fourth voter adds a write to
/// wait for and no failure tolerated).
pub fn desired_voters(members: usize, target: usize) -> usize {
    let n = members.min(target);
    if n > 3 && n.is_multiple_of(2) {
        n - 1
    } else {
        n
    }
}

fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Whether a change from `old` to `new` voters can commit: openraft commits a joint
/// change with a majority of both sets, so both must have a majority that answers.
fn safe(members: &[MemberView], leader: NodeId, old: &BTreeSet<NodeId>, new: &BTreeSet<NodeId>) -> bool {
    let answers = |set: &BTreeSet<NodeId>| {
        set.iter()
            .filter(|id| **id == leader || members.iter().any(|m| m.id == **id && m.answers()))
            .count()
    };
    answers(old) >= majority(old.len()) && answers(new) >= majority(new.len())
}

/// The next step for the voter set, or `None` when it is as it should be (or no step is
/// safe now). `leader` is the deciding node (always kept a voter).
pub fn decide(leader: NodeId, members: &[MemberView], policy: &VoterPolicy) -> Option<VoterChange> {
    let voters: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let desired = desired_voters(members.len(), policy.target);
    let by_id: BTreeMap<NodeId, &MemberView> = members.iter().map(|m| (m.id, m)).collect();
    let voter_sites = |set: &BTreeSet<NodeId>| -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for id in set {
            if let Some(m) = by_id.get(id) {
                *c.entry(m.site_key()).or_insert(0) += 1;
            }
        }
        c
    };
    // Learners fit to vote: answering and caught up.
    let ready: Vec<&MemberView> = members
        .iter()
        .filter(|m| !m.voter && m.answers() && m.caught_up)
        .collect();
    let step = |change: VoterChange| {
        let new = change.apply(&voters);
        safe(members, leader, &voters, &new).then_some(change)
    };

    if voters.len() < desired {
        // The learner on the site with the fewest voters; one this leader replaced last.
        let sites = voter_sites(&voters);
        let pick = ready
            .iter()
            .min_by_key(|m| (m.replaced, sites.get(&m.site_key()).copied().unwrap_or(0), m.id))?;
        return step(VoterChange::Promote(pick.id));
    }

    if voters.len() > desired {
        // An unreachable voter first, then one from the most crowded site; never the leader.
        let sites = voter_sites(&voters);
        let pick = voters
            .iter()
            .filter(|id| **id != leader)
            .filter_map(|id| by_id.get(id))
            .max_by_key(|m| {
                (
                    !m.answers(),
                    m.unreachable_for,
                    sites.get(&m.site_key()).copied().unwrap_or(0),
                    m.id,
                )
            })?;
        return step(VoterChange::Demote(pick.id));
    }

    if voters.len() < 3 {
        return None;
    }

    // Replace the voter unreachable the longest, if past the limit.
    let dead = voters
        .iter()
        .filter(|id| **id != leader)
        .filter_map(|id| by_id.get(id))
        .filter(|m| m.unreachable_for.is_some_and(|d| d >= policy.replace_after))
        .max_by_key(|m| (m.unreachable_for, m.id));
    if let Some(dead) = dead {
        let mut rest = voters.clone();
        rest.remove(&dead.id);
        let sites = voter_sites(&rest);
        let dead_site = dead.site_key();
        // A site with no remaining voter (other than the dead one's), then the dead one's
        // site, then the site with the fewest voters.
        let pick = ready.iter().min_by_key(|m| {
            let key = m.site_key();
            let held = sites.get(&key).copied().unwrap_or(0);
            let rank = if held == 0 && key != dead_site {
                0
            } else if key == dead_site {
                1
            } else {
                2
            };
            (rank, held, m.replaced, m.id)
        });
        return pick.and_then(|p| {
            step(VoterChange::Replace {
                dead: dead.id,
                by: p.id,
            })
        });
    }

    // Spread: only while every voter answers, never to a member this leader replaced.
    if voters
        .iter()
        .all(|id| *id == leader || by_id.get(id).is_some_and(|m| m.answers()))
    {
        let sites = voter_sites(&voters);
        let to = ready
            .iter()
            .filter(|m| !m.replaced && !sites.contains_key(&m.site_key()))
            .min_by_key(|m| m.id)?;
        let from = voters
            .iter()
            .filter(|id| **id != leader)
            .filter_map(|id| by_id.get(id))
            .filter(|m| sites.get(&m.site_key()).copied().unwrap_or(0) >= 2)
            .max_by_key(|m| (sites.get(&m.site_key()).copied().unwrap_or(0), m.id))?;
        return step(VoterChange::Spread {
            from: from.id,
            to: to.id,
        });
    }
    None
}

/// Why a member votes or not, as `members list` shows it.
pub fn why(m: &MemberView, voters: usize, desired: usize, replaced_after: Option<Duration>) -> String {
    if m.voter {
        return "voter".into();
    }
    if let Some(d) = replaced_after {
        return format!("learner: replaced after unreachable {} s", d.as_secs());
    }
    if !m.answers() {
        return "learner: unreachable".into();
    }
    if !m.caught_up {
        return "learner: catching up".into();
    }
    if voters >= desired {
        return format!("learner: voter set full ({voters})");
    }
    "learner: about to be promoted".into()
}

/// What the leader remembers of the voters it replaced: how long each had been unreachable.
/// Lost with the leadership; a later leader shows such a member as an ordinary learner.
#[derive(Default)]
pub(crate) struct Replaced {
    after: std::sync::Mutex<BTreeMap<NodeId, Duration>>,
}

impl Replaced {
    /// The map, locked (a panic elsewhere while holding it left it whole: each change is
    /// one insert or remove).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Duration>> {
        self.after.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy, for one look at the members.
    pub(crate) fn snapshot(&self) -> BTreeMap<NodeId, Duration> {
        self.lock().clone()
    }
}

impl NodeInner {
    /// The members as this node sees them (meaningful on the leader, whose replication
    /// metrics and peer calls say who answers and who is caught up).
    pub(crate) fn member_views(&self) -> (Vec<MemberView>, BTreeSet<NodeId>) {
        let (membership, replication, last_log, me) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.membership_config.membership().clone(),
                m.replication.clone(),
                m.last_log_index.unwrap_or(0),
                m.id,
            )
        };
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replaced = self.replaced.snapshot();
        let views = membership
            .nodes()
            .map(|(id, node)| {
                let matched = if *id == me {
                    Some(last_log)
                } else {
                    replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                };
                MemberView {
                    id: *id,
                    site: node.site.clone(),
                    voter: voters.contains(id),
                    unreachable_for: if *id == me {
                        None
                    } else {
                        self.peers.failing_for(&node.addr)
                    },
                    caught_up: matched.is_some_and(|i| i + CATCH_UP_SLACK >= last_log),
                    replaced: replaced.contains_key(id),
                }
            })
            .collect();
        (views, voters)
    }

    /// One check of the voter set on the leader, applying at most one change. Returns the
    /// change made. Serialised with `members add|remove` by the membership lock.
    ///
    /// `caught_up`: a learner known to be caught up although the replication metrics may not
    /// show it yet (the one `add_learner` in blocking mode just returned for: openraft
    /// publishes its metrics a moment later).
    pub(crate) async fn check_voters(
        &self,
        caught_up: Option<NodeId>,
    ) -> Result<Option<VoterChange>, String> {
        let _guard = self.membership_lock.lock().await;
        let (leads, joint) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.state == openraft::ServerState::Leader,
                m.membership_config.membership().get_joint_config().len() > 1,
            )
        };
        // A change in flight is finished by openraft; decide again once it is.
        if !leads || joint {
            return Ok(None);
        }
        let (mut views, voters) = self.member_views();
        if let Some(v) = views.iter_mut().find(|v| Some(v.id) == caught_up) {
            v.caught_up = true;
        }
        let Some(change) = decide(self.id, &views, &self.config.voters) else {
            return Ok(None);
        };
        let new = change.apply(&voters);
        tracing::info!(?change, voters = ?new, "changing the Raft voter set");
        // Noted before the change, so that no `members list` answered while it commits
        // shows the replaced member without its reason; undone if the change fails.
        let noted = {
            let mut replaced = self.replaced.lock();
            match change {
                VoterChange::Replace { dead, .. } => {
                    let d = views
                        .iter()
                        .find(|m| m.id == dead)
                        .and_then(|m| m.unreachable_for)
                        .unwrap_or_default();
                    replaced.insert(dead, d);
                    Some(dead)
                }
                VoterChange::Promote(id) | VoterChange::Spread { to: id, .. } => {
                    replaced.remove(&id);
                    None
                }
                VoterChange::Demote(_) => None,
            }
        };
        if let Err(e) = self.raft.change_membership(new, true).await {
            if let Some(dead) = noted {
                self.replaced.lock().remove(&dead);
            }
            return Err(e.to_string());
        }
        Ok(Some(change))
    }
}

/// The leader's voter driver: checks the voter set every second while this node leads.
pub(crate) async fn run(inner: std::sync::Arc<NodeInner>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<(String, Instant)> = None;
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = inner.check_voters(None).await {
            // A refused change (leadership lost, another change pending) is retried on the
            // next tick; the same error is logged once a minute.
            let repeat = last_error
                .as_ref()
                .is_some_and(|(m, at)| *m == e && at.elapsed() < Duration::from_secs(60));
            if !repeat {
                tracing::warn!(error = %e, "changing the Raft voter set failed; retrying");
                last_error = Some((e, Instant::now()));
            }
        }
    }
}

#[cfg(test)]
#[path = "voters_tests.rs"]
mod tests;
