//! Candidacy hold: the node of the PostgreSQL primary does not stand for election while a
//! Raft leader reached it recently.
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
//! The hold lasts only while some leader sent this node an AppendEntries within
//! [`HOLD_WINDOW_FACTOR`] election timeouts. After that the node stands again: if the other
//! voters' logs are behind this one's, it may be the only node that can win an election, and a
//! group without a leader for good would be worse than a disruption.

use crate::Raft;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The hold ends this many maximum election timeouts after the last AppendEntries received.
pub const HOLD_WINDOW_FACTOR: u32 = 3;

/// How often the hold is re-evaluated.
const TICK: Duration = Duration::from_millis(100);

/// Whether a hold is asked, and when a leader last reached this node.
#[derive(Debug)]
pub(crate) struct Candidacy {
    base: Instant,
    /// Milliseconds since `base` of the last AppendEntries received, plus one (0: never).
    last_contact: AtomicU64,
    hold: AtomicBool,
}

impl Default for Candidacy {
    fn default() -> Self {
        Candidacy {
            base: Instant::now(),
            last_contact: AtomicU64::new(0),
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

    /// Whether elections should be off now: a hold is asked and a leader reached us within
    /// `window`.
    pub(crate) fn holds(&self, window: Duration) -> bool {
        if !self.hold.load(Ordering::Acquire) {
            return false;
        }
        match self.last_contact.load(Ordering::Acquire) {
            0 => false,
            ms => {
                let since = self.base.elapsed().saturating_sub(Duration::from_millis(ms - 1));
                since < window
            }
        }
    }
}

/// Turns openraft's elections off and on as [`Candidacy::holds`] says, until `shutdown`.
pub(crate) async fn run(
    raft: Raft,
    candidacy: std::sync::Arc<Candidacy>,
    window: Duration,
    shutdown: CancellationToken,
) {
    let mut held = false;
    loop {
        let hold = candidacy.holds(window);
        if hold != held {
            raft.runtime_config().elect(!hold);
            if hold {
                tracing::debug!("Raft candidacy held: the primary's node does not stand for election while a leader reaches it");
            } else {
                tracing::debug!("Raft candidacy no longer held");
            }
            held = hold;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
}
