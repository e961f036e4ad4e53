//! Candidacy hold: the node of the PostgreSQL primary does not stand for election while a
//! Raft leader reached it recently, unless its peers confirm that the leader is gone, in
//! which case it stands at once.
//!
//! openraft 0.9 has no pre-vote. A follower cut off from its peers for longer than its
//! election timeout stands as a candidate, with a term above the leader's, again and again.
//! When the cut heals, its first answer to the leader carries that higher term and the leader
//! steps down: the whole group is without a leader for another election (1.5–2 s). For the
//! node of the primary that is the worst moment to cost anything: it has just spent most of
//! its lease unable to refresh, and the election after the heal is what lets the lease run
//! out (seen in network namespaces: a 2 s cut of the primary's host fenced it in 4 of 4
//! tries). Its candidacy brings nothing while the others still have a leader, so the HA loop
//! asks for a hold while it holds the leader key ([`crate::RaftNode::hold_candidacy`]).
//!
//! The hold alone made the opposite case slow: when the Raft leader is on another host and
//! that host is cut off, the primary's node waited while the third node stood, and the
//! primary's node refused that node's vote request whenever its own log was longer (an entry
//! the old leader sent to it and not yet to the third). The group then had no leader until the
//! hold lapsed, and the primary lost its lease (seen in CI: the election ended 3.7 s after the
//! cut, at ttl 4). So the hold carries its own pre-vote: once no AppendEntries has arrived for
//! longer than openraft's leader lease, the node asks its peers (the `Hello` call) whether
//! they still hear from a leader and how long their logs are. If a majority, itself included,
//! lost the leader, the hold is lifted until the next AppendEntries; if no peer that answered
//! has a longer log, the node also stands at once, before the other nodes' randomised timers
//! fire, and wins (their leader lease has run out and its log is at least as long as theirs).
//! A node that is cut off itself gets no answers and keeps holding, which is the point.
//!
//! The hold also ends when no leader reached the node within [`HOLD_WINDOW_FACTOR`] election
//! timeouts, whatever the peers say: if the other voters' logs are behind this one's, it may
//! be the only node that can win an election, and a group without a leader for good would be
//! worse than a disruption.

use crate::inner::NodeInner;
use crate::network::Rpc;
use crate::wire::{self, HelloReply};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hold ends this many maximum election timeouts after the last AppendEntries received.
pub const HOLD_WINDOW_FACTOR: u32 = 3;

/// How often the hold is re-evaluated.
const TICK: Duration = Duration::from_millis(100);

/// How long past openraft's leader lease (`election_timeout_max`) a node waits before it
/// asks whether the leader is gone; a peer counts as having lost the leader only past the
/// same point, so that its lease, which would make it refuse our vote request, has run out.
const PROBE_MARGIN: Duration = Duration::from_millis(100);

/// How long a peer has to answer the probe; a peer that is cut off costs no more.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether a hold is asked, and when a leader last reached this node.
#[derive(Debug)]
pub(crate) struct Candidacy {
    base: Instant,
    /// Milliseconds since `base` of the last AppendEntries received, plus one (0: never).
    last_contact: AtomicU64,
    /// The `last_contact` for which a majority confirmed that the leader is gone: the hold
    /// is lifted until another AppendEntries arrives (0: none).
    lifted_for: AtomicU64,
    hold: AtomicBool,
}

impl Default for Candidacy {
    fn default() -> Self {
        Candidacy {
            base: Instant::now(),
            last_contact: AtomicU64::new(0),
            lifted_for: AtomicU64::new(0),
            hold: AtomicBool::new(false),
        }
    }
}

impl Candidacy {
    /// A leader's AppendEntries (heartbeat or entries) arrived.
    pub(crate) fn heard_from_leader(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_contact.store(ms + 1, Ordering::Release);
    }

    /// Asks for the hold (the HA member holds the leader key) or lifts it.
    pub(crate) fn set_hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::Release);
    }

    /// How long ago a leader's AppendEntries last arrived (`None`: never).
    pub(crate) fn since_contact(&self) -> Option<Duration> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base.elapsed().saturating_sub(Duration::from_millis(ms - 1))),
        }
    }

    /// Lifts the hold until the next AppendEntries: a majority lost the leader.
    fn lift_until_next_contact(&self) {
        let contact = self.last_contact.load(Ordering::Acquire);
        self.lifted_for.store(contact, Ordering::Release);
    }

    /// Whether the hold was lifted since the last AppendEntries.
    fn lifted(&self) -> bool {
        let contact = self.last_contact.load(Ordering::Acquire);
        contact != 0 && self.lifted_for.load(Ordering::Acquire) == contact
    }

    /// Whether elections should be off now: a hold is asked, a leader reached us within
    /// `window`, and no majority has confirmed since that the leader is gone.
    pub(crate) fn holds(&self, window: Duration) -> bool {
        if !self.hold.load(Ordering::Acquire) || self.lifted() {
            return false;
        }
        self.since_contact().is_some_and(|since| since < window)
    }
}

/// What the probe concluded.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Fewer than a majority lost the leader (or too few answered): keep holding.
    LeaderAlive,
    /// A majority lost the leader; `stand_now` when no peer that answered has a longer log.
    LeaderLost { stand_now: bool },
}

/// Decides from the peers' answers (`None`: no answer) whether a majority of `voters`,
/// this node included, lost the leader. `lost_after`: how long without AppendEntries makes
/// a peer count as having lost it.
fn judge(
    voters: usize,
    my_log: Option<crate::LogId>,
    answers: &[Option<HelloReply>],
    lost_after: Duration,
) -> Probe {
    let lost_ms = u64::try_from(lost_after.as_millis()).unwrap_or(u64::MAX);
    let lost: Vec<&HelloReply> = answers
        .iter()
        .flatten()
        .filter(|a| !a.leads && a.leader_contact_ms.is_none_or(|ms| ms >= lost_ms))
        .collect();
    if 1 + lost.len() < voters / 2 + 1 {
        return Probe::LeaderAlive;
    }
    let stand_now = answers.iter().flatten().all(|a| a.last_log <= my_log);
    Probe::LeaderLost { stand_now }
}

/// Asks every other voter whether it still hears from a leader.
async fn probe(inner: &NodeInner) -> Probe {
    let (voters, peers): (usize, Vec<(crate::NodeId, String)>) = {
        let m = inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<crate::NodeId> = membership.voter_ids().collect();
        let peers = voters
            .iter()
            .filter(|id| **id != inner.id)
            .filter_map(|id| membership.get_node(id).map(|n| (*id, n.addr.clone())))
            .collect();
        (voters.len(), peers)
    };
    let mut calls = tokio::task::JoinSet::new();
    for (id, addr) in peers {
        let clients = inner.peers.clone();
        calls.spawn(async move {
            let hello = wire::Hello::default();
            let call = clients.call::<_, HelloReply>(Rpc::Hello, id, &addr, &hello, PROBE_TIMEOUT);
            match tokio::time::timeout(PROBE_TIMEOUT, call).await {
                Ok(Ok(reply)) if reply.node_id == id => Some(reply),
                _ => None,
            }
        });
    }
    let answers: Vec<Option<HelloReply>> = calls.join_all().await;
    let lost_after = inner.config.timing.election_timeout_max + PROBE_MARGIN;
    judge(voters, inner.store.last_log_id(), &answers, lost_after)
}

/// Turns openraft's elections off and on as the hold says, probes the peers once the
/// leader has been silent past its lease, and stands at once when they confirm it is gone.
/// Ends with the node's shutdown.
pub(crate) async fn run(inner: Arc<NodeInner>) {
    let window = inner.config.timing.election_timeout_max * HOLD_WINDOW_FACTOR;
    let probe_after = inner.config.timing.election_timeout_max + PROBE_MARGIN;
    let candidacy = inner.candidacy.clone();
    let mut held = false;
    loop {
        let mut hold = candidacy.holds(window);
        if hold && candidacy.since_contact().is_some_and(|s| s >= probe_after) {
            if let Probe::LeaderLost { stand_now } = probe(&inner).await {
                candidacy.lift_until_next_contact();
                hold = candidacy.holds(window);
                if !hold {
                    tracing::info!(
                        stand_now,
                        "the Raft leader is gone for a majority: the primary's node may stand for election"
                    );
                    inner.raft.runtime_config().elect(true);
                    held = false;
                    if stand_now {
                        if let Err(e) = inner.raft.trigger().elect().await {
                            tracing::debug!(error = %e, "could not start an election");
                        }
                    }
                }
            }
        }
        if hold != held {
            inner.raft.runtime_config().elect(!hold);
            if hold {
                tracing::debug!("Raft candidacy held: the primary's node does not stand for election while a leader reaches it");
            } else {
                tracing::debug!("Raft candidacy no longer held");
            }
            held = hold;
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_needs_both_the_request_and_a_recent_leader() {
        let c = Candidacy::default();
        let w = Duration::from_secs(3);
        assert!(!c.holds(w), "nothing asked, nobody heard");
        c.set_hold(true);
        assert!(!c.holds(w), "no leader ever reached us: stand");
        c.heard_from_leader();
        assert!(c.holds(w));
        assert!(!c.holds(Duration::ZERO), "the window has passed: stand");
        c.set_hold(false);
        assert!(!c.holds(w));
    }

    #[test]
    fn a_confirmed_loss_lifts_the_hold_until_the_next_append_entries() {
        let c = Candidacy::default();
        let w = Duration::from_secs(3);
        c.set_hold(true);
        c.heard_from_leader();
        assert!(c.holds(w));
        c.lift_until_next_contact();
        assert!(!c.holds(w), "lifted");
        std::thread::sleep(Duration::from_millis(2));
        c.heard_from_leader();
        assert!(c.holds(w), "a leader reached us again: hold again");
    }

    fn log(term: u64, index: u64) -> Option<crate::LogId> {
        Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(term, 1),
            index,
        ))
    }

    fn peer(
        id: u64,
        leads: bool,
        contact_ms: Option<u64>,
        last_log: Option<crate::LogId>,
    ) -> Option<HelloReply> {
        Some(HelloReply {
            node_id: id,
            name: format!("n{id}"),
            addr: String::new(),
            initialized: true,
            leader: Some(9),
            leads,
            leader_contact_ms: contact_ms,
            last_log,
            site: None,
        })
    }

    const LOST: Duration = Duration::from_millis(1100);

    #[test]
    fn a_peer_that_also_lost_the_leader_makes_a_majority_of_three() {
        let answers = [peer(2, false, Some(1500), log(3, 40)), None];
        assert_eq!(
            judge(3, log(3, 41), &answers, LOST),
            Probe::LeaderLost { stand_now: true }
        );
        assert_eq!(
            judge(3, log(3, 40), &answers, LOST),
            Probe::LeaderLost { stand_now: true },
            "an equal log wins the vote too"
        );
        assert_eq!(
            judge(3, log(3, 39), &answers, LOST),
            Probe::LeaderLost { stand_now: false },
            "the peer with the longer log should win: lift the hold, do not stand first"
        );
        assert_eq!(
            judge(3, log(2, 45), &answers, LOST),
            Probe::LeaderLost { stand_now: false },
            "a later term beats a longer log"
        );
    }

    #[test]
    fn a_peer_that_still_hears_the_leader_or_leads_keeps_the_hold() {
        let fresh = [peer(2, false, Some(200), log(3, 40)), None];
        assert_eq!(judge(3, log(3, 41), &fresh, LOST), Probe::LeaderAlive);
        let leader = [peer(2, true, None, log(3, 40)), None];
        assert_eq!(judge(3, log(3, 41), &leader, LOST), Probe::LeaderAlive);
        let just_under = [peer(2, false, Some(1099), log(3, 40)), None];
        assert_eq!(
            judge(3, log(3, 41), &just_under, LOST),
            Probe::LeaderAlive,
            "its leader lease may still refuse our vote"
        );
    }

    #[test]
    fn a_node_that_is_cut_off_gets_no_answers_and_keeps_the_hold() {
        assert_eq!(judge(3, log(3, 41), &[None, None], LOST), Probe::LeaderAlive);
        assert_eq!(
            judge(
                5,
                log(3, 41),
                &[peer(2, false, None, None), None, None, None],
                LOST
            ),
            Probe::LeaderAlive,
            "two of five is no majority"
        );
        assert_eq!(
            judge(
                5,
                log(3, 41),
                &[
                    peer(2, false, None, None),
                    peer(3, false, Some(5000), None),
                    None,
                    None
                ],
                LOST
            ),
            Probe::LeaderLost { stand_now: true }
        );
    }
}
