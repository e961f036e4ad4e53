//! The round trip to the Raft partners, measured, and checked against the election timeout.
//!
//! A stretched cluster (members in several datacenters) must have Raft timers sized for the
//! inter-site round trip: a follower that waits fewer than a few round trips for a heartbeat
//! starts elections that only the network caused, and every election pauses DCS writes. The
//! configuration cannot know the network, so the daemon measures it: the time of a TCP
//! handshake (SYN → SYN-ACK, one round trip) to each partner's Raft address, the best of a
//! few samples, at start-up and then every [`PROBE_EVERY`]. When
//! `raft.election_timeout_min_ms` is under [`WARN_FACTOR`] × the worst partner's round trip,
//! it logs a warning naming the measured round trip, the configured timeout and a suggested
//! one ([`SUGGEST_FACTOR`] × the round trip). The figures are also kept for /metrics
//! (`pgwarden_raft_peer_rtt_seconds{peer}`).
//!
//! Not with TLS between the peers (`raft.certfile`): a TCP handshake that sends nothing
//! would make each partner log a failed TLS handshake at every probe.
//!
//! Why 5 and 10: openraft's followers campaign after `election_timeout_max` +
//! rand[min, max) without a heartbeat, and a heartbeat takes one one-way trip plus any
//! retransmission (one round trip more), so under 5 round trips a single lost packet and
//! some queueing already come close to an election; 10 leaves room for both, and at a
//! datacenter round trip (≤ 1 ms) it never rises above the shipped 500 ms.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Below this many round trips, `election_timeout_min` draws a warning.
pub const WARN_FACTOR: u32 = 5;
/// The suggested `election_timeout_min`, in round trips (rounded up to 100 ms).
pub const SUGGEST_FACTOR: u32 = 10;
/// Samples per partner and probe; the smallest counts (queueing only adds).
const SAMPLES: usize = 3;
/// A handshake slower than this is not a round trip but a partner that is down.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The first probe waits for the partners to be started (they usually start together).
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(3);
/// Later probes: the network of a running cluster changes rarely.
pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// What the check found wrong: the timeout is too short for the measured round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutTooShort {
    pub peer: String,
    pub rtt: Duration,
    pub election_timeout_min: Duration,
    /// A suggested `raft.election_timeout_min_ms` (and twice that for the max).
    pub suggested_min: Duration,
}

/// The pure rule: `election_timeout_min` against the slowest partner of `rtts`. `None` when
/// it is at least [`WARN_FACTOR`] round trips (or nothing was measured).
pub fn check(election_timeout_min: Duration, rtts: &BTreeMap<String, Duration>) -> Option<TimeoutTooShort> {
    let (peer, rtt) = rtts.iter().max_by_key(|(_, r)| **r)?;
    if election_timeout_min >= *rtt * WARN_FACTOR {
        return None;
    }
    let want_ms = (*rtt * SUGGEST_FACTOR).as_millis() as u64;
    let suggested_min = Duration::from_millis(want_ms.div_ceil(100) * 100);
    Some(TimeoutTooShort {
        peer: peer.clone(),
        rtt: *rtt,
        election_timeout_min,
        suggested_min,
    })
}

/// The last measured round trip per partner address, for /metrics.
fn measured() -> &'static Mutex<BTreeMap<String, Duration>> {
    static M: OnceLock<Mutex<BTreeMap<String, Duration>>> = OnceLock::new();
    M.get_or_init(Mutex::default)
}

/// The last measured round trip of every partner that answered (address → round trip).
pub fn last_measured() -> BTreeMap<String, Duration> {
    measured().lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The best of [`SAMPLES`] TCP handshakes with `addr`, `None` if none completed in time.
async fn probe(addr: &str) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..SAMPLES {
        let t = tokio::time::Instant::now();
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_LIMIT, tokio::net::TcpStream::connect(addr)).await {
            let took = t.elapsed();
            drop(s);
            best = Some(best.map_or(took, |b| b.min(took)));
        }
    }
    best
}

/// Probes every partner now and then, until `shutdown`, and warns when the election
/// timeout is too short for what was measured (once per change of the advice, not at every
/// probe).
pub async fn watch(partners: Vec<String>, election_timeout_min: Duration, shutdown: CancellationToken) {
    if partners.is_empty() {
        return;
    }
    let mut wait = FIRST_PROBE_AFTER;
    let mut last_warned: Option<Duration> = None;
    // Bounded by the shutdown token.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = PROBE_EVERY;
        let mut rtts = BTreeMap::new();
        for p in &partners {
            if let Some(r) = probe(p).await {
                rtts.insert(p.clone(), r);
            }
        }
        tracing::debug!(?rtts, "round trips to the Raft partners");
        {
            let mut m = measured().lock().unwrap_or_else(|e| e.into_inner());
            m.extend(rtts.iter().map(|(k, v)| (k.clone(), *v)));
        }
        match check(election_timeout_min, &rtts) {
            Some(w) if last_warned != Some(w.suggested_min) => {
                tracing::warn!(
                    peer = %w.peer,
                    "raft.election_timeout_min_ms ({} ms) is under {WARN_FACTOR} round trips to the Raft partners \
                     (measured round trip to {}: {:.1} ms): a lost packet or a short stall can start an election; \
                     set raft.election_timeout_min_ms to {} and raft.election_timeout_max_ms to {} or more",
                    w.election_timeout_min.as_millis(),
                    w.peer,
                    w.rtt.as_secs_f64() * 1000.0,
                    w.suggested_min.as_millis(),
                    w.suggested_min.as_millis() * 2,
                );
                last_warned = Some(w.suggested_min);
            }
            Some(_) => {}
            None => last_warned = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtts(v: &[(&str, u64)]) -> BTreeMap<String, Duration> {
        v.iter()
            .map(|(k, ms)| (k.to_string(), Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn rtt_check_passes_at_five_round_trips_and_more() {
        let ms = Duration::from_millis;
        assert_eq!(check(ms(500), &rtts(&[("a:1", 1), ("b:1", 2)])), None);
        assert_eq!(
            check(ms(500), &rtts(&[("a:1", 100)])),
            None,
            "exactly 5 round trips"
        );
        assert_eq!(check(ms(500), &rtts(&[])), None, "nothing measured");
    }

    #[test]
    fn rtt_check_names_the_slowest_partner_and_suggests_ten_round_trips() {
        let ms = Duration::from_millis;
        let w = check(ms(150), &rtts(&[("a:1", 1), ("far:1", 40)])).expect("150 ms < 5 × 40 ms");
        assert_eq!(w.peer, "far:1");
        assert_eq!(w.rtt, ms(40));
        assert_eq!(w.election_timeout_min, ms(150));
        assert_eq!(w.suggested_min, ms(400));
        // Rounded up to 100 ms.
        let w = check(ms(500), &rtts(&[("far:1", 101)])).expect("500 ms < 5 × 101 ms");
        assert_eq!(w.suggested_min, ms(1100));
    }
}
