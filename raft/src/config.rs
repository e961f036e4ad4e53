//! How a node is started: its name, addresses, store, timers and optional TLS and fault
//! injection. Plain data, read by `RaftNode::start`.

use crate::network::LinkFilter;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Raft timers. The defaults re-elect a leader in about 1.5–2 s after the old one dies
/// (a follower waits the leader lease, `election_timeout_max`, plus a random election
/// timeout), which fits the 3 s budget with margin while tolerating 0.5 s stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
        }
    }
}

/// How a node is started.
#[derive(Clone)]
pub struct NodeConfig {
    /// The member name (Patroni's `name`), recorded in the Raft membership.
    pub name: String,
    /// Where the Raft store lives (`raft.data_dir`).
    pub data_dir: PathBuf,
    /// The address peers reach this node at, `host:port` (`raft.self_addr`).
    pub self_addr: String,
    /// The other members' addresses (`raft.partner_addrs`).
    pub partner_addrs: Vec<String>,
    /// Explicitly allow a one-voter cluster (no partners).
    pub single_node: bool,
    /// Raft timers.
    pub timing: RaftTiming,
    /// Time limit of one read or write at start (the HA loop passes `retry_timeout`, and sets
    /// it again when the dynamic value changes: `Dcs::set_op_timeout`).
    pub op_timeout: Duration,
    /// Fault injection for tests.
    pub link_filter: Option<Arc<dyn LinkFilter>>,
    /// Mutual TLS with the peers; plain gRPC when `None`.
    pub tls: Option<crate::tls::PeerTls>,
    /// This member's site (`raft.site`), sent to the leader that adds it.
    pub site: Option<String>,
    /// How many members vote and when an unreachable voter is replaced.
    pub voters: crate::voters::VoterPolicy,
}

impl NodeConfig {
    /// A config with default timing and a 5 s operation timeout.
    pub fn new(
        name: &str,
        data_dir: impl Into<PathBuf>,
        self_addr: &str,
        partner_addrs: Vec<String>,
    ) -> Self {
        NodeConfig {
            name: name.to_string(),
            data_dir: data_dir.into(),
            self_addr: self_addr.to_string(),
            partner_addrs,
            single_node: false,
            timing: RaftTiming::default(),
            op_timeout: Duration::from_secs(5),
            link_filter: None,
            tls: None,
            site: None,
            voters: crate::voters::VoterPolicy::default(),
        }
    }
}
