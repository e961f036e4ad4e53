//! The peer protocol's own messages (everything besides openraft's RPCs): discovery
//! (`Hello`), reads, forwarded writes and membership administration, with their typed
//! errors. They travel serde-encoded inside the `Envelope` of `raft.proto`.

use crate::command::CommandError;
use crate::NodeId;
use serde::{Deserialize, Serialize};

/// Hello request: empty.
#[derive(Serialize, Deserialize, Default)]
pub struct Hello {}

/// Who a node is and whether it belongs to an initialised cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelloReply {
    /// Its Raft id.
    pub node_id: NodeId,
    /// Its member name.
    pub name: String,
    /// The address it advertises.
    pub addr: String,
    /// Whether it holds a membership (is part of a cluster).
    pub initialized: bool,
    /// The Raft leader it knows of.
    pub leader: Option<NodeId>,
}

/// A read served by the receiving node.
#[derive(Serialize, Deserialize)]
pub struct Read {
    /// The key, or the prefix.
    pub key: String,
    /// Whether `key` is a prefix.
    pub prefix: bool,
}

/// Why a forwarded write was not done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteWriteError {
    /// The receiver is not the leader; the write was not proposed: safe to retry.
    NotLeader,
    /// The write may or may not commit.
    Unknown(String),
    /// Refused before proposing.
    Invalid(CommandError),
}

/// Membership administration and status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    /// The cluster as the leader sees it.
    Status,
    /// Add the node listening at `addr` (learner, then voter). With `replace`, a voter
    /// with the same member name (a node that lost its data) is removed in the same step.
    AddMember {
        /// The new node's peer address.
        addr: String,
        /// Replace a voter with the same name.
        replace: bool,
    },
    /// Remove a member, by name or numeric id.
    RemoveMember {
        /// Name or id.
        member: String,
    },
}

/// A successful admin call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminReply {
    /// The cluster status.
    Status(ClusterStatus),
    /// The member added.
    Added(MemberStatus),
    /// The id removed.
    Removed(NodeId),
}

/// A failed admin call.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    /// No leader is known.
    #[error("no Raft leader is known; is a majority of the members up?")]
    NoLeader,
    /// The member named does not exist.
    #[error("no member named or numbered {0:?}")]
    UnknownMember(String),
    /// A voter already has that name.
    #[error("a member named {name:?} already exists (id {id}); to replace a member that lost its data, use replace")]
    NameTaken {
        /// The name.
        name: String,
        /// The existing member's id.
        id: NodeId,
    },
    /// The node to add did not answer.
    #[error("cannot reach the node at {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The node is a voter already.
    #[error("node {0} is already a voter")]
    AlreadyMember(NodeId),
    /// openraft refused the change.
    #[error("membership change failed: {0}")]
    Raft(String),
}

/// One member as the leader sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberStatus {
    /// Raft id.
    pub id: NodeId,
    /// Member name.
    pub name: String,
    /// Peer address.
    pub addr: String,
    /// Voter (or learner).
    pub voter: bool,
    /// Last log index known replicated to it (leader's view).
    pub matched: Option<u64>,
}

/// The Raft cluster's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub me: NodeId,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Last applied index.
    pub applied: u64,
    /// Members.
    pub members: Vec<MemberStatus>,
}

/// The answer of a node that is not (yet) part of a cluster.
pub const NOT_A_MEMBER: &str = "this node is not a member of a Raft cluster (yet)";
