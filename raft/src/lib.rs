//! pgwarden-raft: the embedded DCS.
//!
//! One Raft group (openraft 0.9, log in sled) replicating Patroni's keyspace, with TTL
//! leases, compare-and-swap and watches. It knows nothing of PostgreSQL; the daemon uses
//! it through the [`dcs::Dcs`] trait.
//!
//! # Layout
//! Listed from the bottom up: a module uses only modules above it in this list (and the
//! crate root's types), so the imports form a strict stack.
//! - [`command`]: the replicated commands (put, delete, expire) and their conditions.
//! - [`keyspace`]: the in-memory keyspace and the pure apply function.
//! - [`error`]: [`DcsError`], the errors at the DCS boundary.
//! - [`dcs`]: the `Dcs` trait the HA loop uses, implemented by [`node::RaftNode`] and by an
//!   in-memory fake for unit tests.
//! - [`candidacy`]: the hold that keeps the primary's node from standing for election (no pre-vote in openraft 0.9).
//! - [`read_index`]: leader-confirmed read indexes (with the floor of a restored leader).
//! - [`lease`]: per-node lease deadlines and the leader-only reaper.
//! - [`log_store`]: openraft's log storage in sled and the persisted snapshot (a file with
//!   a pointer record in sled); the only module that knows sled.
//! - [`state_machine`]: openraft's state machine over the keyspace; snapshots; watch events.
//! - [`tls`]: TLS for gRPC (mutual TLS between peers), server and client side.
//! - [`wire`]: the peer protocol's own messages and typed errors, and the envelope codec
//!   (payload format) every peer call goes through.
//! - [`quiet_log`]: a tracing layer that rate-limits openraft's WARN/ERROR lines.
//! - [`network`]: the gRPC peer transport (client side) with optional fault injection,
//!   reporting each peer's reachability once per change.
//! - [`partition`]: a file-driven [`network::LinkFilter`] for partition tests of real
//!   processes.
//! - [`client`]: a DCS client for non-members (CLI, tests, benchmarks) over the peer service.
//! - `proposer`: group commit of the leader's client writes.
//! - [`config`]: how a node is started ([`NodeConfig`], [`RaftTiming`]).
//! - `inner`: the state a running node shares between its tasks and its peer service.
//! - `writes`, `reads`, `membership`, `discovery`: what a running node does (the write
//!   path, linearizable reads, membership administration, discovery and bootstrap),
//!   each adding methods to that shared state.
//! - [`server`]: the gRPC peer service, serving the node's handlers.
//! - [`node`]: a running DCS member: start and shutdown, and the [`Dcs`] implementation.
//! - [`backup`]: the DCS backup file (snapshot save / restore-dcs).
//! - [`dr`]: disaster recovery on a stopped node's store (force-new-cluster, restore).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]
// openraft's StorageError (its API type, which our storage traits must return) is 224
// bytes; boxing it at our call sites would only add conversions.
#![allow(clippy::result_large_err)]

pub mod backup;
pub mod candidacy;
pub mod client;
pub mod command;
pub mod config;
pub mod dcs;
mod discovery;
pub mod dr;
pub mod error;
mod inner;
pub mod keyspace;
pub mod lease;
pub mod log_store;
mod membership;
pub mod network;
pub mod node;
pub mod partition;
mod proposer;
pub mod quiet_log;
pub mod read_index;
mod reads;
pub mod server;
pub mod state_machine;
pub mod tls;
pub mod voters;
pub mod wire;
mod writes;

/// Generated protobuf types of `pgwarden.raft.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("pgwarden.raft.v1");
}

use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A Raft node id. Ids are random and persisted with the node's data, never assigned by
/// hand: a node that lost its data comes back as a new member with a new id.
pub type NodeId = u64;

/// What the Raft membership records about a node: the address book.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The member's name (Patroni's `name`).
    pub name: String,
    /// Where its peer service listens, `host:port`.
    pub addr: String,
    /// Its site or datacenter (`raft.site`), which spreads the voters.
    ///
    /// Added after the first release. Membership is stored (sled log entries, snapshot
    /// meta) and sent as JSON: a record without the field reads as `None` (serde default),
    /// and `None` is not written, so a member of the previous version, which ignores
    /// unknown fields anyway, reads exactly what it wrote before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for pgwarden.
    pub TypeConfig:
        D = command::Proposal,
        R = Vec<command::CommandResult>,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle type.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id in this cluster.
pub type LogId = openraft::LogId<NodeId>;
/// The membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;

pub use command::{Command, CommandResult, Condition, KeyValue, Proposal};
pub use config::{NodeConfig, RaftTiming};
pub use dcs::{Dcs, DcsError, MemDcs, WatchEvent, WriteOutcome};
pub use node::RaftNode;

/// An error with its causes, `a: b: c`, for a log line or a message to a person. Error
/// types here keep their cause in `source()` rather than in their own text, so this is
/// where a chain is rendered, once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
