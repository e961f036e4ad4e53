//! Patroni's health checks, as pure functions of the published [`NodeStatus`], the local DCS
//! snapshot and the clock, so every rule is table-tested without sockets.
//!
//! Patroni picks the rule by substring of the whole path (`/replica`, `/foo/replica` and
//! `/replica?lag=1MB` are the same check) and answers GET with the status document and
//! HEAD/OPTIONS with the code only (HAProxy reads nothing else).
//!
//! The one deliberate difference: the leader rules need a lease that has not run out
//! ([`NodeStatus::is_writable_leader`]), not just the flag from the last iteration, so a
//! primary cut off from the DCS stops taking traffic when its lease ends, not a loop later.

use super::cluster::Snapshot;
use crate::ha::status::NodeStatus;
use crate::types::{MemberState, Role};
use axum::http::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Query parameters, first value of each name, in order (Patroni's `parse_qs(...)[k][0]`).
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Patroni's size values for `lag`: bytes, or with a unit (16kB, 10MB, 1GB).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn ok(b: bool) -> StatusCode {
    if b {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The member holds the leader key and its lease is still valid (Patroni's `ha.is_leader()`).
pub fn holds_valid_lock(s: &NodeStatus, now: Instant) -> bool {
    s.holds_lock && s.lease_until.is_some_and(|u| now < u)
}

/// A WAL position from the `xlog` document.
fn xlog_pos(s: &NodeStatus, field: &str) -> Option<u64> {
    s.xlog.as_ref().and_then(|x| x.get(field)).and_then(Value::as_u64)
}

/// Bytes this replica is behind the cluster's last optime at `field` (Patroni compares
/// `replayed_location`; readiness in write mode `received_location`). Without a DCS
/// optime, the lag the loop measured.
pub fn lag_bytes(s: &NodeStatus, snap: &Snapshot, field: &str) -> u64 {
    match snap.view.optime {
        Some(opt) => opt.saturating_sub(xlog_pos(s, field).unwrap_or(0)),
        None => s.lag.unwrap_or(0),
    }
}

/// `noloadbalance` set to a true value.
fn noloadbalance(s: &NodeStatus) -> bool {
    s.tags.get("noloadbalance").is_some_and(crate::config::flag)
}

/// Patroni's `replica_status_code`: a running replica that takes load, within `?lag`, in
/// the `?replication_state` asked for.
fn replica_ok(s: &NodeStatus, snap: &Snapshot, q: &Params) -> bool {
    // An unparsable lag means "no limit", as Patroni's `sys.maxsize` fallback.
    let max_lag = q.get("lag").and_then(parse_size).unwrap_or(u64::MAX);
    let lagging = lag_bytes(s, snap, "replayed_location") > max_lag;
    let state_ok = q
        .get("replication_state")
        .is_none_or(|want| s.replication_state.as_deref() == Some(want));
    s.role == Role::Replica && s.state == MemberState::Running && !noloadbalance(s) && !lagging && state_ok
}

/// `tag_<k>=<v>` filters: every named tag must exist and equal the value (non-strings
/// compared lower-cased, as Python's `str(v).lower()`).
fn tags_match(s: &NodeStatus, q: &Params) -> bool {
    q.0.iter()
        .filter_map(|(k, v)| k.strip_prefix("tag_").map(|k| (k, v)))
        .all(|(k, want)| match s.tags.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::String(have)) => have == want,
            Some(Value::Bool(b)) => (if *b { "true" } else { "false" }) == want,
            Some(other) => other.to_string().to_lowercase() == *want,
        })
}

/// The code of a GET/HEAD/OPTIONS health check on `path` (liveness and readiness excluded).
pub fn health_code(path: &str, q: &Params, s: &NodeStatus, snap: &Snapshot, now: Instant) -> StatusCode {
    let path = if path == "/" || path.is_empty() {
        "/primary"
    } else {
        path
    };
    let leader = holds_valid_lock(s, now) && s.state == MemberState::Running;
    let replica = replica_ok(s, snap, q);
    let has = |p: &str| path.contains(p);
    let mut ignore_tags = false;
    let ok_now = if has("standby_leader") || has("standby-leader") {
        ignore_tags = true;
        leader && s.role == Role::StandbyLeader
    } else if has("leader") {
        ignore_tags = true;
        leader
    } else if has("primary") || has("master") || has("read-write") {
        ignore_tags = true;
        // The standby leader of a standby cluster is a replica: 503, as on every member of a
        // standby cluster (Patroni).
        s.is_writable_leader(now)
    } else if has("replica") {
        replica
    } else if has("read-only") && !has("sync") && !has("quorum") {
        replica || leader
    } else if has("health") {
        s.state == MemberState::Running
    } else if snap.empty {
        // These rules need the sync key; without any DCS data Patroni answers 503.
        false
    } else {
        let me = s.patroni.name.as_str();
        let in_sync = snap.is_sync(me);
        let quorum = snap.quorum_mode();
        let is_sync = in_sync && !quorum;
        let is_quorum = in_sync && quorum;
        match path {
            "/sync" | "/synchronous" => is_sync && replica,
            "/quorum" => is_quorum && replica,
            "/async" | "/asynchronous" => !is_sync && !is_quorum && replica,
            "/read-only-sync" => leader || (is_sync && replica),
            "/read-only-quorum" => leader || (is_quorum && replica),
            _ => false,
        }
    };
    ok(ok_now && (ignore_tags || tags_match(s, q)))
}

/// GET /liveness: the loop ran recently (ttl on a primary, 2×ttl on a replica, which can
/// tolerate a stuck loop longer), or the cluster is paused.
pub fn liveness_code(s: &NodeStatus, ttl: Duration, now: Instant) -> StatusCode {
    let primary = s.role == Role::Primary && s.state == MemberState::Running;
    let limit = if primary { ttl } else { ttl * 2 };
    ok(s.pause
        || s.last_loop
            .is_some_and(|t| now.saturating_duration_since(t) < limit))
}

/// GET /readiness: the lock holder, or a streaming replica within `?lag` (default
/// `maximum_lag_on_failover`) at `?mode=apply` (replayed, default) or `write` (received).
pub fn readiness_code(q: &Params, s: &NodeStatus, snap: &Snapshot, now: Instant) -> StatusCode {
    if holds_valid_lock(s, now) && s.state == MemberState::Running {
        return StatusCode::OK;
    }
    if s.state != MemberState::Running || s.replication_state.as_deref() != Some("streaming") {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let max_lag = q
        .get("lag")
        .and_then(parse_size)
        .unwrap_or_else(|| snap.maximum_lag_on_failover());
    let field = match q.get("mode") {
        Some("write") => "received_location",
        _ => "replayed_location",
    };
    ok(lag_bytes(s, snap, field) <= max_lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patroni's lag units.
    #[test]
    fn sizes_parse_like_patroni() {
        assert_eq!(parse_size("16kB"), Some(16384));
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1XB"), None);
        assert_eq!(parse_size("99999999999999999999GB"), None);
    }
}
