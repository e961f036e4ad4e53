//! The round trip to the Raft partners, measured, and checked against the Raft timers.
//!
//! A stretched cluster (members in several datacenters) must have Raft timers sized for the
//! inter-site round trip: a follower that waits fewer than a few round trips for a heartbeat
//! starts elections that only the network caused, and every election pauses DCS writes; and
//! openraft 0.9 gives up on an append (a heartbeat too) after `heartbeat_interval`, so a
//! heartbeat interval near the round trip makes every replication call time out. The
//! configuration cannot know the network, so the daemon measures it: the time of a TCP
//! handshake (SYN → SYN-ACK, one round trip) to each partner's Raft address, the best of a
//! few samples, at start-up and then every [`PROBE_EVERY`]. When
//! `raft.election_timeout_min_ms` is under [`WARN_FACTOR`] × the slowest partner's round
//! trip, or `raft.heartbeat_interval_ms` under [`HEARTBEAT_WARN_FACTOR`] ×, it logs a
//! warning naming the measured round trip, the configured timers and suggested ones
//! ([`HEARTBEAT_SUGGEST_FACTOR`] and [`SUGGEST_FACTOR`] round trips). The figures are also
//! kept for /metrics (`pgwarden_raft_peer_rtt_seconds{peer}`).
//!
//! With TLS between the peers (`raft.certfile`) only the TCP handshake is timed as well,
//! but the probe then completes a TLS handshake with this node's own peer certificate and
//! closes the session cleanly ([`Dialer::Tls`]): a connection that sent nothing would make
//! each partner log a refused TLS handshake at every probe.
//!
//! Why 5 and 10: openraft's followers campaign after `election_timeout_max` +
//! rand[min, max) without a heartbeat, and a heartbeat takes one one-way trip plus any
//! retransmission (one round trip more), so under 5 round trips a single lost packet and
//! some queueing already come close to an election; 10 leaves room for both, and at a
//! datacenter round trip (≤ 1 ms) it never rises above the shipped 500 ms.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Below this many round trips, `election_timeout_min` draws a warning.
pub const WARN_FACTOR: u32 = 5;
/// The suggested `election_timeout_min`, in round trips (rounded up to 100 ms).
pub const SUGGEST_FACTOR: u32 = 10;
/// Below this many round trips, `heartbeat_interval` draws a warning: openraft 0.9 also
/// uses it as the time the leader waits for a follower's answer to an append, so a
/// heartbeat interval near the round trip makes replication time out.
pub const HEARTBEAT_WARN_FACTOR: u32 = 2;
/// The suggested `heartbeat_interval`, in round trips (rounded up to 50 ms, at least the
/// shipped 100 ms).
pub const HEARTBEAT_SUGGEST_FACTOR: u32 = 3;
/// Samples per partner and probe; the smallest counts (queueing only adds).
const SAMPLES: usize = 3;
/// A handshake slower than this is not a round trip but a partner that is down.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The first probe waits for the partners to be started (they usually start together).
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(3);
/// Later probes: the network of a running cluster changes rarely.
pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// The Raft timers the check judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTimers {
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
}

/// What the check found wrong: timers too short for the measured round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutTooShort {
    pub peer: String,
    pub rtt: Duration,
    pub configured: RaftTimers,
    /// `election_timeout_min` is under [`WARN_FACTOR`] round trips.
    pub election_too_short: bool,
    /// `heartbeat_interval` is under [`HEARTBEAT_WARN_FACTOR`] round trips.
    pub heartbeat_too_short: bool,
    /// Suggested values (the max: twice the suggested min).
    pub suggested: RaftTimers,
}

fn round_up(d: Duration, step_ms: u64) -> Duration {
    Duration::from_millis((d.as_millis() as u64).div_ceil(step_ms) * step_ms)
}

/// The pure rule: the timers against the slowest partner of `rtts`. `None` when the
/// election timeout is at least [`WARN_FACTOR`] round trips and the heartbeat at least
/// [`HEARTBEAT_WARN_FACTOR`] (or nothing was measured).
pub fn check(t: RaftTimers, rtts: &BTreeMap<String, Duration>) -> Option<TimeoutTooShort> {
    let (peer, rtt) = rtts.iter().max_by_key(|(_, r)| **r)?;
    let election_too_short = t.election_timeout_min < *rtt * WARN_FACTOR;
    let heartbeat_too_short = t.heartbeat_interval < *rtt * HEARTBEAT_WARN_FACTOR;
    if !election_too_short && !heartbeat_too_short {
        return None;
    }
    let heartbeat = round_up(*rtt * HEARTBEAT_SUGGEST_FACTOR, 50).max(Duration::from_millis(100));
    // At least 5 heartbeats, so that a follower rides out a few lost ones.
    let election = round_up(
        (*rtt * SUGGEST_FACTOR)
            .max(t.election_timeout_min)
            .max(heartbeat * 5),
        100,
    );
    Some(TimeoutTooShort {
        peer: peer.clone(),
        rtt: *rtt,
        configured: t,
        election_too_short,
        heartbeat_too_short,
        suggested: RaftTimers {
            heartbeat_interval: heartbeat.max(t.heartbeat_interval),
            election_timeout_min: election,
        },
    })
}

impl std::fmt::Display for TimeoutTooShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_millis();
        write!(
            f,
            "Raft timers too short for the measured round trip to {} ({:.1} ms):",
            self.peer,
            self.rtt.as_secs_f64() * 1000.0
        )?;
        if self.election_too_short {
            write!(
                f,
                " raft.election_timeout_min_ms ({} ms) is under {WARN_FACTOR} round trips, so a lost packet or a short stall can start an election;",
                ms(self.configured.election_timeout_min)
            )?;
        }
        if self.heartbeat_too_short {
            write!(
                f,
                " raft.heartbeat_interval_ms ({} ms) is under {HEARTBEAT_WARN_FACTOR} round trips, and it is also how long the Raft leader waits for a follower's answer, so replication times out;",
                ms(self.configured.heartbeat_interval)
            )?;
        }
        write!(
            f,
            " set raft.heartbeat_interval_ms to {}, raft.election_timeout_min_ms to {} and raft.election_timeout_max_ms to {} or more",
            ms(self.suggested.heartbeat_interval),
            ms(self.suggested.election_timeout_min),
            ms(self.suggested.election_timeout_min) * 2
        )
    }
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

/// How a probe talks to a partner once the TCP handshake it times is done.
#[derive(Clone)]
pub enum Dialer {
    /// Plain Raft transport: close the socket at once.
    Plain,
    /// Mutual TLS between peers: finish a TLS handshake with this node's own peer
    /// certificate (the partner accepts it as it accepts this node's Raft calls), then send
    /// close_notify, so that the partner sees an ordinary short connection and logs nothing.
    Tls(Arc<rustls::ClientConfig>),
}

impl Dialer {
    /// The dialer for the Raft transport's TLS settings.
    pub fn for_peers(tls: Option<&pgwarden_raft::tls::PeerTls>) -> Self {
        tls.map_or(Dialer::Plain, |t| Dialer::Tls(t.client_config()))
    }

    /// Ends a probe connection as the transport expects it ended.
    async fn finish(&self, addr: &str, tcp: tokio::net::TcpStream) {
        let Dialer::Tls(config) = self else {
            return;
        };
        // The partner's certificate names its address: the host part of `addr`, an IP
        // address or a DNS name (bracketed IPv6 addresses lose their brackets).
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let Ok(name) = rustls::pki_types::ServerName::try_from(host) else {
            return;
        };
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        match tokio::time::timeout(CONNECT_LIMIT, connector.connect(name, tcp)).await {
            Ok(Ok(mut s)) => {
                let _ = tokio::time::timeout(CONNECT_LIMIT, s.shutdown()).await;
            }
            // The Raft transport's own connector logs a failing handshake (throttled); the
            // round trip measured before it still counts.
            Ok(Err(e)) => tracing::debug!(peer = addr, error = %e, "round-trip probe: TLS handshake failed"),
            Err(_) => tracing::debug!(peer = addr, "round-trip probe: TLS handshake timed out"),
        }
    }
}

/// The best of [`SAMPLES`] TCP handshakes with `addr`, `None` if none completed in time.
async fn probe(addr: &str, dialer: &Dialer) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..SAMPLES {
        let t = tokio::time::Instant::now();
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_LIMIT, tokio::net::TcpStream::connect(addr)).await {
            let took = t.elapsed();
            dialer.finish(addr, s).await;
            best = Some(best.map_or(took, |b| b.min(took)));
        }
    }
    best
}

/// Probes every partner now and then, until `shutdown`, and warns when the election
/// timeout is too short for what was measured (once per change of the advice, not at every
/// probe).
pub async fn watch(partners: Vec<String>, dialer: Dialer, timers: RaftTimers, shutdown: CancellationToken) {
    if partners.is_empty() {
        return;
    }
    let mut wait = FIRST_PROBE_AFTER;
    let mut last_warned: Option<RaftTimers> = None;
    // Bounded by the shutdown token.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = PROBE_EVERY;
        let mut rtts = BTreeMap::new();
        for p in &partners {
            if let Some(r) = probe(p, &dialer).await {
                rtts.insert(p.clone(), r);
            }
        }
        tracing::debug!(?rtts, "round trips to the Raft partners");
        {
            let mut m = measured().lock().unwrap_or_else(|e| e.into_inner());
            m.extend(rtts.iter().map(|(k, v)| (k.clone(), *v)));
        }
        match check(timers, &rtts) {
            Some(w) if last_warned.as_ref() != Some(&w.suggested) => {
                tracing::warn!(peer = %w.peer, "{w}");
                last_warned = Some(w.suggested);
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

    fn timers(hb: u64, min: u64) -> RaftTimers {
        RaftTimers {
            heartbeat_interval: Duration::from_millis(hb),
            election_timeout_min: Duration::from_millis(min),
        }
    }

    #[test]
    fn rtt_check_passes_within_the_factors() {
        assert_eq!(check(timers(100, 500), &rtts(&[("a:1", 1), ("b:1", 2)])), None);
        // Exactly 5 round trips of election timeout and 2.5 of heartbeat.
        assert_eq!(check(timers(100, 500), &rtts(&[("a:1", 40)])), None);
        assert_eq!(
            check(timers(200, 500), &rtts(&[("a:1", 100)])),
            None,
            "exactly 5 and 2"
        );
        assert_eq!(check(timers(100, 500), &rtts(&[])), None, "nothing measured");
    }

    #[test]
    fn rtt_check_names_the_slowest_partner_and_suggests_ten_round_trips() {
        let ms = Duration::from_millis;
        let w = check(timers(100, 150), &rtts(&[("a:1", 1), ("far:1", 40)])).expect("150 ms < 5 × 40 ms");
        assert_eq!((w.peer.as_str(), w.rtt), ("far:1", ms(40)));
        assert!(w.election_too_short && !w.heartbeat_too_short);
        assert_eq!(
            w.suggested,
            timers(150, 800),
            "heartbeat 3 × 40 → 150; election 10 × 40, at least 5 heartbeats, rounded up"
        );
        let text = w.to_string();
        assert!(
            text.contains("raft.election_timeout_min_ms (150 ms) is under 5 round trips"),
            "{text}"
        );
        assert!(text.contains("(40.0 ms)"), "{text}");
        assert!(
            !text.contains("heartbeat_interval_ms (100 ms) is under"),
            "{text}"
        );
        // Rounded up to 100 ms, never below what is configured.
        let w = check(timers(250, 500), &rtts(&[("far:1", 101)])).expect("500 ms < 5 × 101 ms");
        assert_eq!(w.suggested, timers(350, 1800));
    }

    #[test]
    fn rtt_check_warns_about_a_heartbeat_near_the_round_trip() {
        // 50 ms one way: the shipped 100 ms heartbeat is one round trip, and openraft times
        // out an append after one heartbeat interval.
        let w = check(timers(100, 1000), &rtts(&[("far:1", 100)])).expect("100 ms < 2 × 100 ms");
        assert!(w.heartbeat_too_short && !w.election_too_short);
        assert_eq!(w.suggested, timers(300, 1500));
        let text = w.to_string();
        assert!(
            text.contains("raft.heartbeat_interval_ms (100 ms) is under 2 round trips"),
            "{text}"
        );
        assert!(
            text.contains("set raft.heartbeat_interval_ms to 300, raft.election_timeout_min_ms to 1500"),
            "{text}"
        );
    }
}
