//! The peer protocol across one version step. During a rolling upgrade old and new members
//! share one Raft group, so every payload one version sends must decode on the other. The
//! payloads are serde JSON inside the protobuf `Envelope` (raft.proto); this test keeps, per
//! released version, a fixture of each message kind as that version encodes it
//! (`tests/fixtures/wire/<version>/raft/<kind>.json` at the workspace root) and checks that
//! the current code:
//! - decodes it (a new member reads an old one), and
//! - encodes the decoded value with every field the old version wrote, with the same value
//!   (an old member reads a new one: serde ignores fields it does not know, but a field it
//!   expects must be there). A field added since must therefore be optional on the old side,
//!   i.e. `#[serde(default)]` from its first release.
//!
//! The fixtures of a version are written once, by [`wire_compat_generate_fixtures`] run on
//! that version's code, and never rewritten:
//! `PGWARDEN_WIRE_FIXTURES=<version> cargo nextest run -p pgwarden-raft --run-ignored only -E
//! 'test(wire_compat_generate_fixtures)'`.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, SnapshotMeta, Vote};
use pgwarden_raft::wire::{
    AdminReply, AdminRequest, Hello, HelloReply, Read, ReadError, ReadIndexError, RemoteWriteError,
    WriteUnknown,
};
use pgwarden_raft::{
    Command, CommandResult, Condition, KeyValue, LogId, Node, NodeId, Proposal, StoredMembership, TypeConfig,
};
use pgwarden_testkit::compat::covers;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type RaftError = openraft::error::RaftError<NodeId>;
type SnapshotError = openraft::error::RaftError<NodeId, openraft::error::InstallSnapshotError>;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/wire")
}

fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership() -> Membership<NodeId, Node> {
    let nodes: BTreeMap<NodeId, Node> = (1..=3u64)
        .map(|i| {
            (
                i,
                Node {
                    name: format!("host{i}"),
                    addr: format!("10.0.0.{i}:5010"),
                    // 0.2.0's sites: optional, and not written when unset.
                    site: (i == 3).then(|| "dc3".to_string()),
                },
            )
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn put(key: &str, value: &str, ttl_ms: Option<u64>, condition: Condition) -> Command {
    Command::Put {
        key: key.into(),
        value: value.into(),
        ttl_ms,
        condition,
    }
}

fn kv(key: &str, value: &str, ttl_ms: Option<u64>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: 7,
        mod_revision: 42,
        ttl_ms,
    }
}

/// Every message kind with a representative value, as this version encodes it.
fn samples() -> Vec<(&'static str, Value)> {
    fn j<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).expect("encodes")
    }
    let leader_put = put(
        "/service/field/leader",
        "host1",
        Some(4000),
        Condition::ValueEquals("host1".into()),
    );
    let entries: Vec<Entry<TypeConfig>> = vec![
        Entry {
            log_id: log_id(3, 1, 40),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 1, 41),
            payload: EntryPayload::Membership(membership()),
        },
        Entry {
            log_id: log_id(3, 1, 42),
            payload: EntryPayload::Normal(Proposal::One(leader_put.clone())),
        },
        Entry {
            log_id: log_id(3, 1, 43),
            payload: EntryPayload::Normal(Proposal::Batch(vec![
                put(
                    "/service/field/members/host2",
                    r#"{"role":"replica","state":"running"}"#,
                    Some(4000),
                    Condition::Always,
                ),
                put("/service/field/initialize", "7312", None, Condition::Absent),
                put(
                    "/service/field/config",
                    r#"{"ttl":4}"#,
                    None,
                    Condition::ModRevisionEquals(12),
                ),
            ])),
        },
        Entry {
            log_id: log_id(3, 1, 44),
            payload: EntryPayload::Normal(Proposal::One(Command::Delete {
                key: "/service/field/failover".into(),
                prefix: false,
                condition: Condition::Always,
            })),
        },
        Entry {
            log_id: log_id(3, 1, 45),
            payload: EntryPayload::Normal(Proposal::One(Command::Expire {
                key: "/service/field/members/host3".into(),
                mod_revision: 39,
            })),
        },
    ];
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(2, 2, 39)),
        entries,
        leader_commit: Some(log_id(3, 1, 39)),
    };
    // The reply as the server sends it: openraft's Result, encoded whole.
    let ok = |v: AppendEntriesResponse<NodeId>| j(&Ok::<_, RaftError>(v));
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 1, 45)),
            last_membership: StoredMembership::new(Some(log_id(3, 1, 41)), membership()),
            snapshot_id: "3-1-45-7".into(),
        },
        offset: 0,
        // The chunk travels beside the JSON in the envelope, never in it.
        data: Vec::new(),
        done: true,
    };
    let result = CommandResult {
        succeeded: false,
        revision: 42,
        prev: Some(kv("/service/field/leader", "host2", Some(4000))),
        deleted: 0,
    };
    let hello_reply = HelloReply {
        node_id: 2,
        name: "host2".into(),
        addr: "10.0.0.2:5010".into(),
        initialized: true,
        leader: Some(1),
        leads: false,
        leader_contact_ms: Some(120),
        last_log: Some(log_id(3, 1, 45)),
        site: None,
    };
    vec![
        ("append_entries_request", j(&append)),
        ("append_entries_reply_success", ok(AppendEntriesResponse::Success)),
        (
            "append_entries_reply_partial",
            ok(AppendEntriesResponse::PartialSuccess(Some(log_id(3, 1, 43)))),
        ),
        (
            "append_entries_reply_conflict",
            ok(AppendEntriesResponse::Conflict),
        ),
        (
            "append_entries_reply_higher_vote",
            ok(AppendEntriesResponse::HigherVote(Vote::new(4, 2))),
        ),
        (
            "vote_request",
            j(&VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 1, 45)))),
        ),
        (
            "vote_reply",
            j(&Ok::<_, RaftError>(VoteResponse {
                vote: Vote::new(4, 2),
                vote_granted: true,
                last_log_id: Some(log_id(3, 1, 45)),
            })),
        ),
        ("install_snapshot_request", j(&snapshot)),
        (
            "install_snapshot_reply",
            j(&Ok::<_, SnapshotError>(InstallSnapshotResponse {
                vote: Vote::new_committed(3, 1),
            })),
        ),
        ("hello", j(&Hello::default())),
        ("hello_reply", j(&hello_reply)),
        ("write", j(&leader_put)),
        ("write_reply", j(&Ok::<_, RemoteWriteError>(result))),
        (
            "write_reply_unknown",
            j(&Err::<CommandResult, _>(RemoteWriteError::Unknown(
                WriteUnknown::LeaderChanged,
            ))),
        ),
        ("read_index_reply", j(&Ok::<u64, ReadIndexError>(45))),
        (
            "read_index_reply_not_leader",
            j(&Err::<u64, _>(ReadIndexError::NotLeader { leader: Some(1) })),
        ),
        (
            "read",
            j(&Read {
                key: "/service/field/".into(),
                prefix: true,
            }),
        ),
        (
            "read_reply",
            j(&Ok::<_, ReadError>(vec![
                kv("/service/field/leader", "host1", Some(4000)),
                kv("/service/field/initialize", "7312", None),
            ])),
        ),
        (
            "admin_add_member",
            j(&AdminRequest::AddMember {
                addr: "10.0.0.3:5010".into(),
                replace: false,
            }),
        ),
        (
            "admin_lease_left",
            j(&AdminRequest::LeaseLeft {
                keys: vec![("/service/field/leader".into(), 42)],
            }),
        ),
        (
            "admin_reply_lease_left",
            j(&AdminReply::LeaseLeft(vec![Some(3100), None])),
        ),
    ]
}

/// Decodes `old` as the type its kind names and encodes it again with the current code.
fn reencode(kind: &str, old: &Value) -> Result<Value, String> {
    fn rt<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, String> {
        let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&t).map_err(|e| e.to_string())
    }
    match kind {
        "append_entries_request" => rt::<AppendEntriesRequest<TypeConfig>>(old),
        k if k.starts_with("append_entries_reply") => {
            rt::<Result<AppendEntriesResponse<NodeId>, RaftError>>(old)
        }
        "vote_request" => rt::<VoteRequest<NodeId>>(old),
        "vote_reply" => rt::<Result<VoteResponse<NodeId>, RaftError>>(old),
        "install_snapshot_request" => rt::<InstallSnapshotRequest<TypeConfig>>(old),
        "install_snapshot_reply" => rt::<Result<InstallSnapshotResponse<NodeId>, SnapshotError>>(old),
        "hello" => rt::<Hello>(old),
        "hello_reply" => rt::<HelloReply>(old),
        "write" => rt::<Command>(old),
        k if k.starts_with("write_reply") => rt::<Result<CommandResult, RemoteWriteError>>(old),
        k if k.starts_with("read_index_reply") => rt::<Result<u64, ReadIndexError>>(old),
        "read" => rt::<Read>(old),
        "read_reply" => rt::<Result<Vec<KeyValue>, ReadError>>(old),
        k if k.starts_with("admin_reply") => rt::<AdminReply>(old),
        k if k.starts_with("admin_") => rt::<AdminRequest>(old),
        other => Err(format!("no decoder for the message kind {other:?}: add one")),
    }
}

/// The versions with fixtures, and each one's files.
fn fixture_sets() -> Vec<(String, Vec<PathBuf>)> {
    let mut sets = vec![];
    for e in std::fs::read_dir(fixtures_root())
        .expect("tests/fixtures/wire")
        .flatten()
    {
        let dir = e.path().join("raft");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .flatten()
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        sets.push((e.file_name().to_string_lossy().into_owned(), files));
    }
    sets
}

/// Every message of every earlier version decodes, and re-encodes with all its old fields.
#[test]
fn wire_compat_raft_messages_of_earlier_versions() {
    let sets = fixture_sets();
    assert!(
        !sets.is_empty(),
        "no fixtures under {}",
        fixtures_root().display()
    );
    for (version, files) in sets {
        // A release's set has the kinds that release knew; kinds added later are checked
        // from the next release's set on.
        assert!(!files.is_empty(), "version {version}: no messages");
        for f in files {
            let kind = f.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&f).unwrap();
            let old: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let new = reencode(&kind, &old)
                .unwrap_or_else(|e| panic!("version {version}'s {kind} does not decode: {e}"));
            covers(&old, &new, &kind).unwrap_or_else(|e| {
                panic!("version {version}'s {kind}: an old member could not read ours: {e}")
            });
        }
    }
}

/// Today's messages decode and cover themselves: the samples and the decoders agree.
#[test]
fn wire_compat_current_messages_round_trip() {
    for (kind, v) in samples() {
        let again = reencode(kind, &v).unwrap_or_else(|e| panic!("{kind}: {e}"));
        covers(&v, &again, kind).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

/// Writes this version's fixtures into `tests/fixtures/wire/$PGWARDEN_WIRE_FIXTURES/raft/`,
/// which must not exist yet: a released version's fixtures are never rewritten.
#[test]
#[ignore = "run once per release, on that release's code"]
fn wire_compat_generate_fixtures() {
    let version = std::env::var("PGWARDEN_WIRE_FIXTURES")
        .expect("PGWARDEN_WIRE_FIXTURES=<the version these fixtures are of>");
    let dir = fixtures_root().join(&version).join("raft");
    assert!(
        !dir.exists(),
        "{} exists: fixtures are never rewritten",
        dir.display()
    );
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, v) in samples() {
        let mut text = serde_json::to_string_pretty(&v).unwrap();
        text.push('\n');
        std::fs::write(dir.join(format!("{kind}.json")), text).unwrap();
    }
}
