//! Keeps the log readable while a member is down.
//!
//! openraft logs WARN and ERROR lines on every failed try to reach a peer (replication,
//! heartbeats, votes, leadership checks of reads): four or five lines per try, forever.
//! [`QuietOpenraft`], a tracing layer, lets each of openraft's WARN/ERROR log statements
//! through [`BURST`] times and then once per [`REFILL`]; a first failure is still seen at
//! once, and a storage or fatal error still gets out. What an outage is (which peer, since
//! when, why, and when it is back) is reported by the peer transport
//! ([`crate::network::PeerClients`]), once per state change. Other crates' events and
//! openraft's INFO and below are not touched.
//!
//! The daemon installs it beside its `EnvFilter`:
//! `tracing_subscriber::fmt().with_env_filter(..).finish().with(QuietOpenraft::default())`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::callsite::Identifier;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many times each openraft WARN/ERROR statement may log before it is limited.
pub const BURST: u32 = 3;
/// Once limited, each statement logs at most once per this interval.
pub const REFILL: Duration = Duration::from_secs(60);

/// The tracing layer that rate-limits openraft's WARN and ERROR events per log statement.
#[derive(Default)]
pub struct QuietOpenraft {
    buckets: Mutex<HashMap<Identifier, Bucket>>,
}

/// A token bucket of one log statement.
struct Bucket {
    tokens: u32,
    refilled: Instant,
}

impl QuietOpenraft {
    fn admit(&self, callsite: Identifier, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(callsite).or_insert(Bucket {
            tokens: BURST,
            refilled: now,
        });
        let periods = now.saturating_duration_since(b.refilled).as_secs() / REFILL.as_secs();
        if periods > 0 {
            b.tokens = (b.tokens + periods as u32).min(BURST);
            b.refilled += REFILL * periods as u32;
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }
}

impl<S: Subscriber> Layer<S> for QuietOpenraft {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // In tracing's order the more verbose levels are the greater ones.
        if *meta.level() > Level::WARN || !meta.target().starts_with("openraft") {
            return true;
        }
        self.admit(meta.callsite(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement logs BURST times, then once per REFILL.
    #[test]
    fn each_statement_logs_a_burst_then_once_per_interval() {
        let q = QuietOpenraft::default();
        let site = tracing::callsite::Identifier(&CALLSITE);
        let t0 = Instant::now();
        let passed = (0..10).filter(|_| q.admit(site.clone(), t0)).count();
        assert_eq!(passed, BURST as usize);
        assert!(!q.admit(site.clone(), t0 + REFILL / 2));
        assert!(q.admit(site.clone(), t0 + REFILL));
        assert!(!q.admit(site.clone(), t0 + REFILL + REFILL / 2));
    }

    struct Site;
    static CALLSITE: Site = Site;
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("not registered")
        }
    }
}
