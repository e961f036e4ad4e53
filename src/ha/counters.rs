//! Process-wide event counters that /metrics exports as Prometheus counters: how often the fence
//! stopped PostgreSQL, how often this member was promoted and how often it stopped being a primary.
//!
//! They are plain atomics rather than fields of the loop's status because the fence thread, which
//! must not wait on the runtime or on a lock, is one of the writers. A daemon process runs one
//! member, so process-wide is per member; they start at 0 with the process, as Prometheus
//! counters may (`increase()` handles the reset).

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters, one set per process: [`COUNTERS`].
#[derive(Debug, Default)]
pub struct Counters {
    fence_stops: AtomicU64,
    promotions: AtomicU64,
    demotions: AtomicU64,
}

/// This process's counters.
pub static COUNTERS: Counters = Counters {
    fence_stops: AtomicU64::new(0),
    promotions: AtomicU64::new(0),
    demotions: AtomicU64::new(0),
};

impl Counters {
    /// The fence (the lease deadline passed) sent SIGQUIT to a postmaster.
    pub fn fence_stop(&self) {
        self.fence_stops.fetch_add(1, Ordering::Relaxed);
    }

    /// This member's PostgreSQL was promoted to a primary.
    pub fn promotion(&self) {
        self.promotions.fetch_add(1, Ordering::Relaxed);
    }

    /// This member's primary was stopped because it must not stay one (lease lost, switchover,
    /// demotion).
    pub fn demotion(&self) {
        self.demotions.fetch_add(1, Ordering::Relaxed);
    }

    /// Fence stops so far.
    pub fn fence_stops(&self) -> u64 {
        self.fence_stops.load(Ordering::Relaxed)
    }

    /// Promotions so far.
    pub fn promotions(&self) -> u64 {
        self.promotions.load(Ordering::Relaxed)
    }

    /// Demotions so far.
    pub fn demotions(&self) -> u64 {
        self.demotions.load(Ordering::Relaxed)
    }
}
