//! What the HA loop publishes after every iteration, for the REST API and the CLI:
//! Patroni's GET /patroni document plus the facts the health checks need.

use crate::types::{MemberState, Role};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The `patroni` sub-object of GET /patroni.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DaemonInfo {
    /// pgwarden's version.
    pub version: String,
    /// Cluster scope.
    pub scope: String,
    /// Member name.
    pub name: String,
}

/// One row of `replication` in GET /patroni.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplicationInfo {
    /// Replication user.
    pub usename: Option<String>,
    /// The standby's application_name (its member name).
    pub application_name: String,
    /// Its address.
    pub client_addr: Option<String>,
    /// walsender state.
    pub state: Option<String>,
    /// sync, async, potential, quorum.
    pub sync_state: Option<String>,
    /// Priority in synchronous_standby_names.
    pub sync_priority: i32,
}

/// The member's state, as GET /patroni shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NodeStatus {
    /// PostgreSQL state string (Patroni's: running, stopped, starting, creating replica, ...).
    pub state: MemberState,
    /// When the postmaster started (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postmaster_start_time: Option<String>,
    /// primary | replica | standby_leader | uninitialized.
    pub role: Role,
    /// PostgreSQL's server_version_num.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    /// WAL positions (primary: `{location}`; replica: received/replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlog: Option<Value>,
    /// Timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// streaming | in archive recovery (replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// Connected standbys (primary).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<ReplicationInfo>,
    /// Maintenance mode.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Nobody holds the leader key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_unlocked: bool,
    /// Failsafe mode kept this primary running, or this member accepted a primary's
    /// failsafe notice, within the last ttl (filled in by the REST API at request time).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failsafe_mode_is_active: bool,
    /// Unix time of the last successful DCS read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dcs_last_seen: Option<i64>,
    /// Non-default tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Value>,
    /// PostgreSQL's system identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// A parameter change waits for a restart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// Per parameter: old and new value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    /// Why this member's custom bootstrap failed (pgwarden's own): it does not try again until
    /// its daemon is restarted, and the data directory it made was moved aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_failure: Option<String>,
    /// `watchdog.mode` is required and the watchdog cannot be used: this member will not
    /// be promoted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub watchdog_failed: bool,
    /// The VIP, when one is configured: its address, interface, whether this member holds it
    /// and why it cannot be managed (filled in by the REST API at request time; pgwarden's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<crate::vip::VipReport>,
    /// Daemon identity.
    pub patroni: DaemonInfo,

    /// This member holds the leader key (not serialised; for the health checks).
    #[serde(skip)]
    pub holds_lock: bool,
    /// Until when this member's lease is valid, measured from the send time of its last
    /// successful refresh minus the safety margin. /primary answers 200 only before it.
    #[serde(skip)]
    pub lease_until: Option<Instant>,
    /// The leader key's holder.
    #[serde(skip)]
    pub leader: Option<String>,
    /// When the last iteration finished (liveness).
    #[serde(skip)]
    pub last_loop: Option<Instant>,
    /// This process is a witness (no PostgreSQL).
    #[serde(skip)]
    pub witness: bool,
    /// The member's replica lag in bytes behind the leader's last optime, if known.
    #[serde(skip)]
    pub lag: Option<u64>,
    /// WAL each local replication slot retains, in bytes (current position − restart_lsn;
    /// a replica's replay position), for /metrics. Not in GET /patroni (not Patroni's).
    #[serde(skip)]
    pub slot_retained_bytes: BTreeMap<String, u64>,
}

impl NodeStatus {
    /// The state before the first iteration.
    pub fn initial(info: DaemonInfo, witness: bool) -> Self {
        NodeStatus {
            state: if witness {
                MemberState::Running
            } else {
                MemberState::Stopped
            },
            postmaster_start_time: None,
            role: if witness {
                Role::Witness
            } else {
                Role::Uninitialized
            },
            server_version: None,
            xlog: None,
            timeline: None,
            replication_state: None,
            replication: vec![],
            pause: false,
            cluster_unlocked: false,
            failsafe_mode_is_active: false,
            dcs_last_seen: None,
            tags: BTreeMap::new(),
            database_system_identifier: None,
            pending_restart: false,
            pending_restart_reason: None,
            bootstrap_failure: None,
            watchdog_failed: false,
            vip: None,
            patroni: info,
            holds_lock: false,
            lease_until: None,
            leader: None,
            last_loop: None,
            witness,
            lag: None,
            slot_retained_bytes: BTreeMap::new(),
        }
    }

    /// The WAL position GET /patroni shows: the write location on a primary,
    /// max(received, replayed) on a replica.
    pub fn wal_position(&self) -> Option<u64> {
        let x = self.xlog.as_ref()?;
        let get = |k: &str| x.get(k).and_then(Value::as_u64);
        get("location").or_else(|| match (get("received_location"), get("replayed_location")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
        })
    }

    /// Whether this member may currently act as a writable primary: it holds the key, its
    /// lease has not run out, and PostgreSQL runs as primary.
    pub fn is_writable_leader(&self, now: Instant) -> bool {
        self.holds_lock
            && self.role == Role::Primary
            && self.state == MemberState::Running
            && self.lease_until.is_some_and(|u| now < u)
    }
}
