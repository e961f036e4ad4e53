//! GET /metrics: Patroni's Prometheus metrics (same names, help texts and `{scope,name}`
//! labels, so existing dashboards and alerts work), plus pgwarden's own: the embedded Raft
//! member's state and the primary's remaining lease.

use super::cluster::Snapshot;
use crate::ha::status::NodeStatus;
use crate::types::MemberState;
use crate::types::Role;
use serde_json::Value;
use std::fmt::Write;
use tokio::time::Instant;

/// The embedded Raft member as /metrics shows it; the daemon refreshes it from
/// `RaftNode::metrics()` (see [`raft_info_watch`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftInfo {
    /// This node's Raft id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// The Raft leader's id, if one is known.
    pub leader_id: Option<u64>,
    /// The Raft leader's member name, if known.
    pub leader_name: Option<String>,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last entry applied to the keyspace (committed entries only are applied).
    pub applied_index: u64,
    /// Voting members.
    pub voters: u64,
    /// Non-voting members (learners).
    pub learners: u64,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

impl RaftInfo {
    /// Reads openraft's metrics of `node`.
    pub fn from_node(node: &pgwarden_raft::node::RaftNode) -> RaftInfo {
        let m = node.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let leader_name = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.name.clone()));
        RaftInfo {
            id: m.id,
            term: m.current_term,
            leader_id: m.current_leader,
            leader_name,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            voters: voters.len() as u64,
            learners: membership.learner_ids().count() as u64,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }
}

/// A channel the daemon hands to [`super::rest::ApiState::with_raft`]: refreshed whenever
/// openraft publishes new metrics, until the node's metrics channel closes.
pub fn raft_info_watch(
    node: std::sync::Arc<pgwarden_raft::node::RaftNode>,
) -> tokio::sync::watch::Receiver<RaftInfo> {
    let (tx, rx) = tokio::sync::watch::channel(RaftInfo::from_node(&node));
    let mut changes = node.raft().metrics();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            if tx.send(RaftInfo::from_node(&node)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Label values escaped as the exposition format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// "4.1.4" → 040104, Patroni's zero-padded version; non-numeric parts count as 0.
fn padded_version(v: &str) -> String {
    v.split(['.', '-', '+'])
        .take(3)
        .map(|p| format!("{:02}", p.parse::<u64>().unwrap_or(0)))
        .collect()
}

fn epoch_seconds(iso: Option<&str>) -> f64 {
    // Also PostgreSQL's to_char text with a "UTC" zone name (replayed_timestamp).
    let iso = iso.map(|t| match t.strip_suffix(" UTC") {
        Some(b) => format!("{b}+00:00"),
        None => t.to_string(),
    });
    iso.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

struct Out {
    text: String,
    labels: String,
}

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let _ = writeln!(self.text, "{name}{} {value}", self.labels);
    }
}

/// The /metrics body.
pub fn render(s: &NodeStatus, snap: &Snapshot, raft: Option<&RaftInfo>, now: Instant) -> String {
    let mut o = Out {
        text: String::new(),
        labels: format!(
            "{{scope=\"{}\",name=\"{}\"}}",
            escape(&s.patroni.scope),
            escape(&s.patroni.name)
        ),
    };
    let xlog = |f: &str| {
        s.xlog
            .as_ref()
            .and_then(|x| x.get(f))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let b = |v: bool| u8::from(v);
    let in_sync = s.role == Role::Replica && snap.is_sync(&s.patroni.name);
    let quorum = snap.quorum_mode();

    o.metric(
        "patroni_version",
        "gauge",
        "Patroni semver without periods.",
        padded_version(super::PATRONI_COMPAT_VERSION),
    );
    o.metric(
        "patroni_postgres_running",
        "gauge",
        "Value is 1 if Postgres is running, 0 otherwise.",
        b(s.state == MemberState::Running),
    );
    o.metric(
        "patroni_postmaster_start_time",
        "gauge",
        "Epoch seconds since Postgres started.",
        epoch_seconds(s.postmaster_start_time.as_deref()),
    );
    o.metric(
        "patroni_primary",
        "gauge",
        "Value is 1 if this node is the leader, 0 otherwise.",
        b(s.role == Role::Primary),
    );
    o.metric(
        "patroni_xlog_location",
        "counter",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        xlog("location"),
    );
    o.metric(
        "patroni_standby_leader",
        "gauge",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        b(s.role == Role::StandbyLeader),
    );
    o.metric(
        "patroni_replica",
        "gauge",
        "Value is 1 if this node is a replica, 0 otherwise.",
        b(s.role == Role::Replica),
    );
    o.metric(
        "patroni_sync_standby",
        "gauge",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        b(in_sync && !quorum),
    );
    o.metric(
        "patroni_quorum_standby",
        "gauge",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        b(in_sync && quorum),
    );
    o.metric(
        "patroni_xlog_received_location",
        "counter",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        xlog("received_location"),
    );
    o.metric(
        "patroni_xlog_replayed_location",
        "counter",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        xlog("replayed_location"),
    );
    let replayed_ts = s
        .xlog
        .as_ref()
        .and_then(|x| x.get("replayed_timestamp"))
        .and_then(Value::as_str);
    o.metric(
        "patroni_xlog_replayed_timestamp",
        "gauge",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        epoch_seconds(replayed_ts),
    );
    let paused = s.xlog.as_ref().and_then(|x| x.get("paused")) == Some(&Value::Bool(true));
    o.metric(
        "patroni_xlog_paused",
        "gauge",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        b(paused),
    );
    if s.server_version.unwrap_or(0) >= 90600 {
        o.metric(
            "patroni_postgres_streaming",
            "gauge",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            b(s.replication_state.as_deref() == Some("streaming")),
        );
        o.metric(
            "patroni_postgres_in_archive_recovery",
            "gauge",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            b(s.replication_state.as_deref() == Some("in archive recovery")),
        );
    }
    o.metric(
        "patroni_postgres_server_version",
        "gauge",
        "Version of Postgres (if running), 0 otherwise.",
        s.server_version.unwrap_or(0),
    );
    o.metric(
        "patroni_cluster_unlocked",
        "gauge",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        b(s.cluster_unlocked),
    );
    o.metric(
        "patroni_failsafe_mode_is_active",
        "gauge",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        b(s.failsafe_mode_is_active),
    );
    o.metric(
        "patroni_postgres_timeline",
        "counter",
        "Postgres timeline of this node (if running), 0 otherwise.",
        s.timeline.unwrap_or(0),
    );
    o.metric(
        "patroni_dcs_last_seen",
        "gauge",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        s.dcs_last_seen.unwrap_or(0),
    );
    o.metric(
        "patroni_pending_restart",
        "gauge",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        b(s.pending_restart),
    );
    o.metric(
        "patroni_is_paused",
        "gauge",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        b(s.pause),
    );
    let state_index = MemberState::ALL
        .iter()
        .position(|x| *x == s.state)
        .map_or(-1, |i| i as i64);
    o.metric(
        "patroni_postgres_state",
        "gauge",
        "Numeric representation of Postgres state.",
        state_index,
    );
    o.metric(
        "patroni_failsafe_mode_enabled",
        "gauge",
        "Value is 1 if failsafe mode is enabled, 0 otherwise.",
        b(snap.failsafe_mode()),
    );

    // pgwarden's own.
    if let Some(v) = &s.vip {
        o.metric(
            "pgwarden_vip_held",
            "gauge",
            "Value is 1 if this member holds the VIP, 0 otherwise (only with a vip section).",
            b(v.held),
        );
        o.metric(
            "pgwarden_vip_error",
            "gauge",
            "Value is 1 if the VIP cannot be managed (missing capability, no interface), 0 otherwise.",
            b(v.error.is_some()),
        );
    }
    let lease = s
        .lease_until
        .filter(|_| s.holds_lock)
        .map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64());
    o.metric(
        "pgwarden_leader_lease_remaining_seconds",
        "gauge",
        "Seconds left on this member's leader lease, 0 if it does not hold the leader key.",
        format!("{lease:.3}"),
    );
    if s.role == Role::Replica {
        if let Some(lag) = s.lag {
            o.metric(
                "pgwarden_replication_lag_bytes",
                "gauge",
                "Bytes this replica is behind the leader's last published WAL position (the lag Patroni's /cluster shows); absent when unknown.",
                lag,
            );
        }
    }
    o.metric(
        "pgwarden_maximum_lag_on_failover_bytes",
        "gauge",
        "The cluster's maximum_lag_on_failover: a replica further behind is not promoted.",
        snap.maximum_lag_on_failover(),
    );
    let c = &crate::ha::counters::COUNTERS;
    o.metric(
        "pgwarden_fence_stops_total",
        "counter",
        "Times the fence stopped this member's PostgreSQL because the leader lease ran out.",
        c.fence_stops(),
    );
    o.metric(
        "pgwarden_promotions_total",
        "counter",
        "Times this member's PostgreSQL was promoted to a primary.",
        c.promotions(),
    );
    o.metric(
        "pgwarden_demotions_total",
        "counter",
        "Times this member's primary was stopped because it must not stay one (lease lost, switchover, demotion).",
        c.demotions(),
    );
    if let Some(r) = raft {
        o.metric(
            "pgwarden_raft_term",
            "counter",
            "Current Raft term of the embedded DCS.",
            r.term,
        );
        o.metric(
            "pgwarden_raft_is_leader",
            "gauge",
            "Value is 1 if this node is the Raft leader of the embedded DCS, 0 otherwise.",
            b(r.leader_id == Some(r.id)),
        );
        o.metric(
            "pgwarden_raft_has_leader",
            "gauge",
            "Value is 1 if this node knows a Raft leader, 0 otherwise.",
            b(r.leader_id.is_some()),
        );
        o.metric(
            "pgwarden_raft_leader_id",
            "gauge",
            "Raft id of the current Raft leader, -1 if none is known.",
            r.leader_id.map_or(-1, |l| l as i64),
        );
        o.metric(
            "pgwarden_raft_last_log_index",
            "counter",
            "Index of the last Raft log entry.",
            r.last_log_index,
        );
        o.metric(
            "pgwarden_raft_applied_index",
            "counter",
            "Index of the last committed Raft log entry applied to the keyspace.",
            r.applied_index,
        );
        o.metric(
            "pgwarden_raft_voters",
            "gauge",
            "Voting members of the Raft group.",
            r.voters,
        );
        o.metric(
            "pgwarden_raft_learners",
            "gauge",
            "Non-voting members of the Raft group.",
            r.learners,
        );
        if let Some(ms) = r.millis_since_quorum_ack {
            o.metric(
                "pgwarden_raft_quorum_ack_age_seconds",
                "gauge",
                "On the Raft leader: seconds since a quorum last acknowledged it.",
                format!("{:.3}", ms as f64 / 1000.0),
            );
        }
    }
    slot_retained_bytes(&mut o, s);
    peer_rtt(&mut o, &crate::rtt::last_measured());
    o.text
}

/// `pgwarden_raft_peer_rtt_seconds{peer=...}`: the round trip to each Raft partner, as
/// crate::rtt last measured it (a TCP handshake). Nothing before the first measurement.
fn peer_rtt(o: &mut Out, rtts: &std::collections::BTreeMap<String, std::time::Duration>) {
    if rtts.is_empty() {
        return;
    }
    let name = "pgwarden_raft_peer_rtt_seconds";
    let _ = writeln!(
        o.text,
        "# HELP {name} Round trip to each Raft partner (its address in label peer), measured by a TCP handshake at start-up and every 5 minutes."
    );
    let _ = writeln!(o.text, "# TYPE {name} gauge");
    let base = o.labels.trim_end_matches('}');
    for (peer, rtt) in rtts {
        let _ = writeln!(
            o.text,
            "{name}{base},peer=\"{}\"}} {:.6}",
            escape(peer),
            rtt.as_secs_f64()
        );
    }
}

/// `pgwarden_replication_slot_retained_bytes{slot_name=...}`: WAL each local slot holds back
/// (not a Patroni metric; Patroni has no per-slot figure). Nothing when there are no slots.
fn slot_retained_bytes(o: &mut Out, s: &NodeStatus) {
    if s.slot_retained_bytes.is_empty() {
        return;
    }
    let name = "pgwarden_replication_slot_retained_bytes";
    let _ = writeln!(
        o.text,
        "# HELP {name} WAL retained by each replication slot, in bytes: the current WAL position (a replica's replay position) minus the slot's restart_lsn."
    );
    let _ = writeln!(o.text, "# TYPE {name} gauge");
    let base = o.labels.trim_end_matches('}');
    for (slot, bytes) in &s.slot_retained_bytes {
        let _ = writeln!(o.text, "{name}{base},slot_name=\"{}\"}} {bytes}", escape(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patroni pads each version part to two digits.
    #[test]
    fn version_is_zero_padded() {
        assert_eq!(padded_version("4.1.4"), "040104");
        assert_eq!(padded_version("0.1.0"), "000100");
        assert_eq!(escape("a\"b"), "a\\\"b");
    }

    /// Both timestamp texts /patroni carries become epoch seconds.
    #[test]
    fn timestamps_become_epoch_seconds() {
        assert_eq!(
            epoch_seconds(Some("2023-11-14 22:13:20.123456+00:00")),
            1_700_000_000.123
        );
        assert_eq!(
            epoch_seconds(Some("2023-11-14 22:13:20.123 UTC")),
            1_700_000_000.123
        );
        assert_eq!(epoch_seconds(None), 0.0);
    }

    /// One labelled sample per slot, with the scope and name labels.
    #[test]
    fn slot_retained_bytes_per_slot() {
        let mut st = NodeStatus::initial(
            crate::ha::status::DaemonInfo {
                version: "0".into(),
                scope: "s".into(),
                name: "n".into(),
            },
            false,
        );
        let mut o = Out {
            text: String::new(),
            labels: "{scope=\"s\",name=\"n\"}".into(),
        };
        slot_retained_bytes(&mut o, &st);
        assert!(o.text.is_empty());
        st.slot_retained_bytes.insert("pg1".into(), 4096);
        slot_retained_bytes(&mut o, &st);
        assert!(
            o.text.contains(
                "pgwarden_replication_slot_retained_bytes{scope=\"s\",name=\"n\",slot_name=\"pg1\"} 4096\n"
            ),
            "{}",
            o.text
        );
    }
}
