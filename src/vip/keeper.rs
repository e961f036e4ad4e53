//! The keeper: the task that adds and removes the VIP as this member's state changes.
//!
//! [`decide`] is the whole rule, a pure function of the published [`NodeStatus`]: hold the
//! address exactly while this member holds the leader key, its lease's deadline lies ahead and
//! PostgreSQL runs as a writable primary. The lease reports a lost, released or forgotten key
//! into that status the moment it happens, so the keeper, woken by every change, removes the
//! address then; a deadline that merely passes is caught by the keeper's tick, and, without
//! the runtime, by the fence thread's own removal (see `crate::ha::deadman`).

use super::Vip;
use crate::ha::status::NodeStatus;
use crate::types::{MemberState, Role};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the keeper looks even when nothing changed: a lease deadline passes without a
/// status change, and a failed add (a missing capability) is retried this often.
pub const TICK: Duration = Duration::from_millis(100);

/// How often a failed add is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What the member should do with the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Hold it.
    Hold,
    /// Not hold it, for this reason (logged with the removal).
    Release(&'static str),
}

/// The rule (see the module documentation), for `vip.on: primary`.
pub fn decide(s: &NodeStatus, now: Instant) -> Want {
    decide_on(s, now, Role::Primary)
}

/// The rule for the role the address follows: the writable primary, or (`vip.on:
/// standby_leader`) the standby leader of a standby cluster. Either way only the holder of a
/// live lease holds the address.
pub fn decide_on(s: &NodeStatus, now: Instant, on: Role) -> Want {
    if !s.holds_lock {
        return Want::Release("this member does not hold the leader key");
    }
    if s.lease_until.is_none_or(|u| now >= u) {
        return Want::Release("the leader lease ran out");
    }
    if s.role != on {
        return Want::Release(if on == Role::StandbyLeader {
            "this member is not the standby leader"
        } else {
            "PostgreSQL is not a writable primary"
        });
    }
    if s.state != MemberState::Running {
        return Want::Release("PostgreSQL is not running");
    }
    Want::Hold
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Keeps the address in line with [`decide`] until `shutdown`, then removes it. At start, an
/// address found on the interface while this member does not hold the lease is removed.
pub async fn keep(vip: Vip, mut status: watch::Receiver<NodeStatus>, shutdown: CancellationToken) {
    let v = vip.clone();
    if blocking(move || v.adopt()).await == Some(true) {
        tracing::info!("VIP found on the interface at start");
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_try: Option<Instant> = None;
    loop {
        let on = if vip.spec().is_some_and(|s| s.on_standby_leader) {
            Role::StandbyLeader
        } else {
            Role::Primary
        };
        let want = decide_on(&status.borrow_and_update(), Instant::now(), on);
        match want {
            Want::Hold if !vip.held() && vip.spec().is_some() => {
                let failed_lately = last_try.is_some_and(|t| t.elapsed() < RETRY);
                if !failed_lately {
                    let v = vip.clone();
                    let added = blocking(move || v.add("leader key held and PostgreSQL accepts writes"))
                        .await
                        == Some(true);
                    last_try = (!added).then(Instant::now);
                    if added {
                        tokio::spawn(announce(vip.clone()));
                    }
                }
            }
            Want::Release(why) if vip.held() => {
                let v = vip.clone();
                blocking(move || v.release(why)).await;
                last_try = None;
            }
            _ => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = status.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
        }
    }
    let v = vip.clone();
    blocking(move || v.remove("pgwarden is shutting down")).await;
}

/// Sends the configured number of announcements, spaced as configured, while the address is held.
async fn announce(vip: Vip) {
    let Some(spec) = vip.spec() else { return };
    for i in 0..spec.arp_count {
        if i > 0 {
            tokio::time::sleep(spec.arp_interval).await;
        }
        if !vip.held() {
            return;
        }
        let v = vip.clone();
        blocking(move || v.announce()).await;
    }
}

#[cfg(test)]
#[path = "keeper_tests.rs"]
mod tests;
