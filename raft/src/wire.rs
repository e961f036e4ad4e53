//! The peer protocol: the envelope codec every peer call goes through, and pgwarden's
//! own messages (everything besides openraft's RPCs): discovery (`Hello`), reads,
//! forwarded writes and membership administration, with their typed errors.
//!
//! Every message travels serde-encoded in the `Envelope` of `raft.proto`, which names
//! its [`PayloadFormat`]. A receiver decodes only the format it knows and refuses any
//! other with an error naming it, so a change of encoding can never be mis-parsed.

use crate::command::CommandError;
use crate::error::DcsError;
use crate::pb::{Envelope, PayloadFormat};
use crate::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The payload format this node sends, and the only one it accepts.
pub const PAYLOAD_FORMAT: PayloadFormat = PayloadFormat::Json;

/// An envelope whose payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The envelope names a payload format this node does not speak.
    #[error(
        "unsupported peer payload format {format} ({}); this node speaks format {} ({})",
        format_name(*.format),
        PAYLOAD_FORMAT as i32,
        PAYLOAD_FORMAT.as_str_name()
    )]
    UnsupportedFormat {
        /// The format number received.
        format: i32,
    },
    /// The payload is in our format but is not the type the call expects.
    #[error("the payload does not decode as {ty}")]
    Decode {
        /// The expected type.
        ty: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The value could not be encoded.
    #[error("cannot encode {ty}")]
    Encode {
        /// The type.
        ty: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

fn format_name(format: i32) -> &'static str {
    PayloadFormat::try_from(format).map_or("unknown", |f| f.as_str_name())
}

/// The refusal a peer gets: an unsupported format means the call was not processed
/// (`failed_precondition`, which a sender reads as "not delivered"); a payload that does
/// not decode is the sender's mistake (`invalid_argument`).
impl From<PayloadError> for tonic::Status {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::UnsupportedFormat { .. } => tonic::Status::failed_precondition(e.to_string()),
            PayloadError::Decode { .. } => {
                tonic::Status::invalid_argument(format!("bad payload: {}", crate::error_chain(&e)))
            }
            PayloadError::Encode { .. } => tonic::Status::internal(crate::error_chain(&e)),
        }
    }
}

/// `value` in an envelope for node `target` (0: any), in [`PAYLOAD_FORMAT`].
pub fn encode<T: Serialize>(target: NodeId, value: &T) -> Result<Envelope, PayloadError> {
    let payload = serde_json::to_vec(value).map_err(|source| PayloadError::Encode {
        ty: std::any::type_name::<T>(),
        source,
    })?;
    Ok(Envelope {
        target,
        payload,
        payload_format: PAYLOAD_FORMAT as i32,
        snapshot_chunk: Vec::new(),
    })
}

/// The value in `env`, after checking that its payload is in [`PAYLOAD_FORMAT`].
pub fn decode<T: DeserializeOwned>(env: &Envelope) -> Result<T, PayloadError> {
    if env.payload_format != PAYLOAD_FORMAT as i32 {
        return Err(PayloadError::UnsupportedFormat {
            format: env.payload_format,
        });
    }
    serde_json::from_slice(&env.payload).map_err(|source| PayloadError::Decode {
        ty: std::any::type_name::<T>(),
        source,
    })
}

/// Hello request: empty.
#[derive(Debug, Serialize, Deserialize, Default)]
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
    /// Whether it is the Raft leader now.
    #[serde(default)]
    pub leads: bool,
    /// Milliseconds since a leader's AppendEntries last reached it (`None`: never since it
    /// started). A node about to stand for election early asks its peers for it: a peer that
    /// still hears from the leader means that the leader lives and only this node lost it.
    #[serde(default)]
    pub leader_contact_ms: Option<u64>,
    /// The last entry of its Raft log, which decides whom it would vote for.
    #[serde(default)]
    pub last_log: Option<crate::LogId>,
    /// Its site (`raft.site`); the leader records it in the membership when it adds the
    /// node. A node of the previous version sends none (serde default): it joins siteless.
    #[serde(default)]
    pub site: Option<String>,
}

/// A read served by the receiving node.
#[derive(Debug, Serialize, Deserialize)]
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
    /// Add the node listening at `addr` as a learner; it becomes a voter if the voter set
    /// is below its target. With `replace`, a member with the same name (a node that lost
    /// its data) is removed, and its vote, if it had one, goes to the new node in one step.
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
    /// The receiving node's own state ([`NodeReport`]); answered by that node, never
    /// forwarded, also when it is not (yet) a member. `dcs status` asks every member.
    Report,
    /// Time left on these leases (key, mod revision) by the Raft leader's reaper, the
    /// clock that expires them (`dcs get`).
    LeaseLeft {
        /// The keys with the revision read.
        keys: Vec<(String, u64)>,
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
    /// The answering node's own state.
    Report(NodeReport),
    /// Milliseconds left on each lease asked for, in order; `None` where the leader's
    /// deadline belongs to another write (the key changed since it was read) or to none.
    LeaseLeft(Vec<Option<u64>>),
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
    /// Its site, if it declared one (absent from a leader of the previous version).
    #[serde(default)]
    pub site: Option<String>,
    /// Why it votes or not, e.g. `learner: voter set full (3)` (empty from a leader of the
    /// previous version).
    #[serde(default)]
    pub why: String,
}

/// One node's own state as it reports it: the row of `pgwardenctl dcs status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeReport {
    /// Raft id.
    pub id: NodeId,
    /// Member name.
    pub name: String,
    /// Peer address.
    pub addr: String,
    /// Raft role: `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Index of its last log entry (0: none).
    pub last_log_index: u64,
    /// Index of its last applied entry.
    pub applied: u64,
    /// Bytes of its Raft store (sled: log, vote, pointers) on disk.
    pub store_bytes: u64,
    /// Bytes of its current snapshot file (0: none).
    pub snapshot_bytes: u64,
    /// Last index the current snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Keys with a TTL lease in its keyspace.
    pub lease_keys: u64,
    /// Whether its lease reaper expires keys now: only the Raft leader's does.
    pub reaper_active: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_in_the_current_format() {
        let env = encode(
            7,
            &Read {
                key: "/a".into(),
                prefix: true,
            },
        )
        .unwrap();
        assert_eq!(env.target, 7);
        assert_eq!(env.payload_format, PayloadFormat::Json as i32);
        let r: Read = decode(&env).unwrap();
        assert_eq!((r.key.as_str(), r.prefix), ("/a", true));
    }

    #[test]
    fn an_unknown_payload_format_is_refused_naming_it() {
        let mut env = encode(7, &Hello::default()).unwrap();
        env.payload_format = 9;
        let e = decode::<Hello>(&env).unwrap_err();
        assert!(
            matches!(e, PayloadError::UnsupportedFormat { format: 9 }),
            "{e:?}"
        );
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("format 9 (unknown)"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("format 1 (PAYLOAD_FORMAT_JSON)"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn an_envelope_without_a_format_is_refused() {
        let mut env = encode(7, &Hello::default()).unwrap();
        env.payload_format = PayloadFormat::Unspecified as i32;
        let status = tonic::Status::from(decode::<Hello>(&env).unwrap_err());
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("PAYLOAD_FORMAT_UNSPECIFIED"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_payload_of_the_wrong_type_is_an_invalid_argument() {
        let env = encode(7, &Hello::default()).unwrap();
        let status = tonic::Status::from(decode::<Read>(&env).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("bad payload: "),
            "{}",
            status.message()
        );
    }

    #[test]
    fn read_errors_are_typed_on_the_wire() {
        let r: Result<Vec<crate::KeyValue>, ReadError> = Err(ReadError::NotAMember);
        let env = encode(0, &r).unwrap();
        let back: Result<Vec<crate::KeyValue>, ReadError> = decode(&env).unwrap();
        assert_eq!(back, Err(ReadError::NotAMember));
        let timeout = ReadError::from(DcsError::Timeout {
            op: "read",
            after: Duration::from_secs(5),
        });
        assert_eq!(
            timeout,
            ReadError::Timeout {
                after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn read_index_and_write_errors_round_trip() {
        let r: Result<u64, ReadIndexError> = Err(ReadIndexError::NotLeader { leader: Some(3) });
        let back: Result<u64, ReadIndexError> = decode(&encode(0, &r).unwrap()).unwrap();
        assert_eq!(back, r);
        let w: Result<(), RemoteWriteError> = Err(RemoteWriteError::Unknown(WriteUnknown::LeaderChanged));
        let back: Result<(), RemoteWriteError> = decode(&encode(0, &w).unwrap()).unwrap();
        assert!(matches!(
            back,
            Err(RemoteWriteError::Unknown(WriteUnknown::LeaderChanged))
        ));
    }
}
