//! The peer protocol's own messages (everything besides openraft's RPCs): discovery
//! (`Hello`), reads, forwarded writes and membership administration, with their typed
//! errors. They travel serde-encoded inside the `Envelope` of `raft.proto`.

use crate::command::CommandError;
use crate::error::DcsError;
use crate::NodeId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

/// Why a node did not serve a [`Read`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadError {
    /// The node is not (yet) part of a cluster: a client asks another member.
    #[error("this node is not a member of a Raft cluster (yet)")]
    NotAMember,
    /// No leader could confirm the read index with a quorum.
    #[error("read: the DCS is unavailable: {reason}")]
    Unavailable {
        /// Why, as the node saw it.
        reason: String,
    },
    /// The read was not linearized within the node's operation timeout.
    #[error("read: no answer from the DCS within {after:?}")]
    Timeout {
        /// The node's time limit.
        after: Duration,
    },
    /// The node is shutting down.
    #[error("read: the DCS node is shutting down")]
    ShuttingDown,
}

impl From<DcsError> for ReadError {
    fn from(e: DcsError) -> Self {
        match e {
            DcsError::Unavailable { reason, .. } => ReadError::Unavailable { reason },
            DcsError::Timeout { after, .. } => ReadError::Timeout { after },
            DcsError::ShuttingDown { .. } => ReadError::ShuttingDown,
            // A read has no command to refuse; should one appear, report it as it is.
            e @ DcsError::Invalid(_) => ReadError::Unavailable {
                reason: crate::error_chain(&e),
            },
        }
    }
}

/// Why a node did not answer a `ReadIndex` (a request only the leader serves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadIndexError {
    /// The receiver is not the leader (any more).
    #[error("not the Raft leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader the receiver knows of.
        leader: Option<NodeId>,
    },
    /// The leader could not confirm its leadership with a quorum.
    #[error("leadership not confirmed by a quorum: {reason}")]
    NoQuorum {
        /// openraft's account of the votes it got.
        reason: String,
    },
    /// Raft has stopped on the receiver.
    #[error("Raft has stopped on the leader: {reason}")]
    Stopped {
        /// openraft's reason.
        reason: String,
    },
}

/// Why a forwarded write was not done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteWriteError {
    /// The receiver is not the leader; the write was not proposed: safe to retry.
    NotLeader,
    /// The write may or may not commit.
    Unknown(WriteUnknown),
    /// Refused before proposing.
    Invalid(CommandError),
}

/// Why the outcome of a write is unknown: it was, or may have been, proposed, so it may
/// still commit and must not be retried blindly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteUnknown {
    /// The node stopped with the write pending.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The leader lost its leadership with the write pending.
    #[error("leadership changed while the write was pending")]
    LeaderChanged,
    /// The write was not committed within the node's operation timeout.
    #[error("not committed within {after:?}")]
    Timeout {
        /// The node's time limit.
        after: Duration,
    },
    /// The call that forwarded the write to the leader failed after it was sent.
    #[error("{0}")]
    Forward(String),
    /// The DCS was unavailable to the node that forwarded the write.
    #[error("{0}")]
    Unavailable(String),
    /// openraft failed the proposal (or returned no result for it).
    #[error("{0}")]
    Raft(String),
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
