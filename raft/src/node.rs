//! A running DCS member: storage, Raft, the peer server, the lease reaper, discovery and
//! bootstrap, linearizable reads, forwarded writes and membership administration.

use crate::command::{Command, CommandError, CommandResult, KeyValue};
use crate::dcs::{Dcs, DcsError, Watch};
use crate::log_store::{SledStore, StoreError};
use crate::network::{CallError, LinkFilter, NetworkFactory, PeerClients, Rpc, MAX_MESSAGE_BYTES};
use crate::pb::raft_service_server::RaftServiceServer;
use crate::proposer::Proposer;
use crate::read_index::{self, ReadFloor};
use crate::server::PeerService;
use crate::state_machine::{SmShared, StateMachineStore};
use crate::{Node, NodeId, Raft, StorageError};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{RaftMetrics, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    /// Time limit of one read or write (the HA loop passes `retry_timeout`).
    pub op_timeout: Duration,
    /// Fault injection for tests.
    pub link_filter: Option<Arc<dyn LinkFilter>>,
    /// Mutual TLS with the peers; plain gRPC when `None`.
    pub tls: Option<crate::tls::PeerTls>,
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
        }
    }
}

/// Why a node could not start. Each one stops the daemon; none is retried by starting empty.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Two voters tolerate no failure, so pgwarden refuses them.
    #[error(
        "raft.partner_addrs lists {partners} partner(s), so the cluster would have {} voter(s); \
         pgwarden needs at least 3 (any one may then fail). Add a partner, for instance a witness \
         (`raft.witness: true`), or set `raft.single_node: true` with no partners for a deliberate single node",
        partners + 1
    )]
    TooFewVoters {
        /// How many partners were configured.
        partners: usize,
    },
    /// `single_node` was set together with partners.
    #[error("raft.single_node is true but raft.partner_addrs is not empty; choose one")]
    SingleNodeWithPartners,
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store opened but its contents are unusable.
    #[error("the Raft store in {dir} is unusable")]
    Storage {
        /// The data directory.
        dir: PathBuf,
        /// openraft's storage error.
        #[source]
        source: StorageError,
    },
    /// The timers are inconsistent.
    #[error("invalid Raft timing")]
    Timing(#[source] openraft::ConfigError),
    /// The peer address could not be bound.
    #[error("cannot listen for Raft peers on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// openraft refused to start.
    #[error("cannot start Raft")]
    Raft(#[source] openraft::error::Fatal<NodeId>),
}

/// Messages between nodes besides openraft's own.
pub mod wire {
    use super::*;
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
}

use wire::{AdminError, AdminReply, AdminRequest, ClusterStatus, HelloReply, MemberStatus, RemoteWriteError};

/// Everything one node shares between its tasks and its handle.
pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) me: Node,
    pub(crate) raft: Raft,
    sm: Arc<SmShared>,
    peers: PeerClients,
    store: SledStore,
    config: NodeConfig,
    shutdown: CancellationToken,
    /// Reads served as a leader restored in its old term wait for its startup log.
    read_floor: ReadFloor,
    /// Batches the leader's client writes (group commit).
    proposer: Proposer,
}

/// A running DCS member. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<NodeInner>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl RaftNode {
    /// Opens the store, starts Raft and the peer server, and begins discovery: a node
    /// with no cluster joins the one its partners report, or (if it has the lowest id
    /// and every partner answered uninitialised) initialises a new one.
    ///
    /// `listener` is an already-bound socket for the peer service (tests bind port 0);
    /// without it `self_addr` is bound.
    pub async fn start(config: NodeConfig, listener: Option<TcpListener>) -> Result<Self, StartError> {
        if config.single_node && !config.partner_addrs.is_empty() {
            return Err(StartError::SingleNodeWithPartners);
        }
        if !config.single_node && config.partner_addrs.len() < 2 {
            return Err(StartError::TooFewVoters {
                partners: config.partner_addrs.len(),
            });
        }
        let store = SledStore::open(&config.data_dir)?;
        let id = store.node_id()?;
        let read_floor = store.read_floor(id)?;
        let (lease_tx, lease_rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = StateMachineStore::open(store.snapshot_store(), lease_tx).map_err(|source| {
            StartError::Storage {
                dir: config.data_dir.clone(),
                source,
            }
        })?;
        let shared = sm.shared();
        let t = config.timing;
        let raft_config = openraft::Config {
            cluster_name: "pgwarden".into(),
            heartbeat_interval: t.heartbeat_interval.as_millis() as u64,
            election_timeout_min: t.election_timeout_min.as_millis() as u64,
            election_timeout_max: t.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: 10_000,
            // The keyspace is tiny: snapshot often and keep the log short, so the store
            // stays bounded however long the cluster runs.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 500,
            purge_batch_size: 64,
            snapshot_max_chunk_size: 256 * 1024,
            replication_lag_threshold: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(StartError::Timing)?;
        let peers = PeerClients::new(id, config.link_filter.clone())
            .with_tls(config.tls.as_ref().map(|t| t.client_config()));
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            NetworkFactory { peers: peers.clone() },
            store.log_store(),
            sm,
        )
        .await
        .map_err(StartError::Raft)?;
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(&config.self_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.self_addr.clone(),
                    source,
                })?,
        };
        let me = Node {
            name: config.name.clone(),
            addr: config.self_addr.clone(),
        };
        let shutdown = CancellationToken::new();
        let (proposer, proposer_task) = Proposer::start(raft.clone(), shutdown.clone());
        let inner = Arc::new(NodeInner {
            id,
            me,
            raft: raft.clone(),
            sm: shared,
            peers,
            store,
            config,
            shutdown: shutdown.clone(),
            read_floor,
            proposer,
        });
        tracing::info!(node_id = id, name = %inner.me.name, addr = %inner.me.addr, "Raft node started");

        let mut tasks = vec![proposer_task];
        let svc = RaftServiceServer::new(PeerService::new(inner.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let token = shutdown.clone();
        let tls = inner.config.tls.as_ref().map(|t| t.server_config());
        tasks.push(tokio::spawn(async move {
            // Nagle must be off on accepted sockets, or every reply waits for the peer's
            // delayed ACK (~40 ms on Linux). `Server::tcp_nodelay` does not apply to an
            // incoming stream we supply, so it is set on the stream itself.
            let server = tonic::transport::Server::builder().add_service(svc);
            let res = match tls {
                // Handshakes are done (and refusals logged) by tls::incoming.
                Some(cfg) => {
                    let incoming = crate::tls::incoming(listener, cfg, "Raft peer");
                    server
                        .serve_with_incoming_shutdown(incoming, token.cancelled())
                        .await
                }
                None => {
                    let incoming =
                        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                    server
                        .serve_with_incoming_shutdown(incoming, token.cancelled())
                        .await
                }
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "Raft peer server stopped");
            }
        }));
        tasks.push(tokio::spawn(crate::lease::run(
            raft,
            id,
            read_floor,
            lease_rx,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(inner.clone().discover()));
        Ok(RaftNode {
            inner,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.inner.me.name
    }

    /// The openraft handle (metrics, tests).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// A snapshot of openraft's metrics.
    pub fn metrics(&self) -> RaftMetrics<NodeId, Node> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Whether this node currently believes it is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.id)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.store.size_on_disk()
    }

    /// A channel holding the last applied index.
    pub fn revision(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.sm.revision()
    }

    /// Membership administration and status, run on the leader (forwarded if needed).
    pub async fn admin(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        self.inner.serve_admin(req).await
    }

    /// The cluster as this node sees it (no forwarding).
    pub fn local_status(&self) -> ClusterStatus {
        self.inner.status()
    }

    /// Stops the server, the reaper and Raft. Tasks get a short grace period and are then
    /// aborted: tonic's graceful shutdown would otherwise wait for peers to close their
    /// long-lived HTTP/2 connections, which they never do while they run.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft shutdown");
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for mut t in tasks {
            if tokio::time::timeout(Duration::from_millis(500), &mut t)
                .await
                .is_err()
            {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

impl Dcs for RaftNode {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DcsError> {
        self.inner.linearize("get").await?;
        Ok(self.inner.sm.get(key))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, DcsError> {
        self.inner.linearize("list").await?;
        Ok(self.inner.sm.list(prefix))
    }

    fn list_stale(&self, prefix: &str) -> Vec<KeyValue> {
        self.inner.sm.list(prefix)
    }

    async fn write(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        self.inner.write(cmd).await
    }

    fn watch(&self, prefix: &str) -> Watch {
        Watch::new(self.inner.sm.subscribe(), prefix)
    }
}

/// The answer of a node that is not (yet) part of a cluster.
pub const NOT_A_MEMBER: &str = "this node is not a member of a Raft cluster (yet)";

/// Shortest and longest pause between retries while no leader is known.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(100);

impl NodeInner {
    fn leader(&self) -> Option<(NodeId, Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let lid = m.current_leader?;
        let node = m.membership_config.membership().get_node(&lid)?.clone();
        Some((lid, node))
    }

    /// Proposes on this node if it is the leader. A write that was proposed and then lost
    /// its leader may still commit, so it is reported as unknown, never retried blindly.
    async fn write_local(&self, cmd: Command) -> Result<CommandResult, RemoteWriteError> {
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(RemoteWriteError::NotLeader);
        }
        self.proposer.propose(cmd).await
    }

    /// Whether this node belongs to a cluster; a node waiting to be added answers client
    /// calls at once so the caller tries another member. Read from the metrics (openraft's
    /// `is_initialized` test: a log or a vote), not through `Raft::is_initialized`, which
    /// queues behind the log flushes in openraft's core on every client call.
    async fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.last_log_index.is_some() || m.vote != openraft::Vote::default()
    }

    pub(crate) async fn serve_write(&self, cmd: Command) -> Result<CommandResult, RemoteWriteError> {
        cmd.validate().map_err(RemoteWriteError::Invalid)?;
        if !self.is_member().await {
            return Err(RemoteWriteError::NotLeader);
        }
        let limit = self.config.op_timeout;
        match tokio::time::timeout(limit, self.write_inner(cmd)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(DcsError::Invalid(e))) => Err(RemoteWriteError::Invalid(e)),
            Ok(Err(e)) => Err(RemoteWriteError::Unknown(e.to_string())),
            Err(_) => Err(RemoteWriteError::Unknown(format!(
                "not committed within {limit:?}"
            ))),
        }
    }

    async fn write(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        cmd.validate().map_err(DcsError::Invalid)?;
        let limit = self.config.op_timeout;
        tokio::time::timeout(limit, self.write_inner(cmd))
            .await
            .map_err(|_| DcsError::Timeout {
                op: "write",
                after: limit,
            })?
    }

    async fn write_inner(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        let mut pause = RETRY_MIN;
        loop {
            if self.shutdown.is_cancelled() {
                return Err(DcsError::ShuttingDown { op: "write" });
            }
            let res = match self.leader() {
                Some((lid, _)) if lid == self.id => self.write_local(cmd.clone()).await,
                Some((lid, node)) => {
                    let r: Result<Result<CommandResult, RemoteWriteError>, CallError> = self
                        .peers
                        .call(Rpc::Write, lid, &node.addr, &cmd, self.config.op_timeout)
                        .await;
                    match r {
                        Ok(r) => r,
                        Err(CallError::NotSent { .. }) => Err(RemoteWriteError::NotLeader),
                        Err(e) => Err(RemoteWriteError::Unknown(e.to_string())),
                    }
                }
                None => Err(RemoteWriteError::NotLeader),
            };
            match res {
                Ok(r) => return Ok(r),
                Err(RemoteWriteError::NotLeader) => {}
                Err(RemoteWriteError::Unknown(why)) => {
                    return Err(DcsError::Unavailable {
                        op: "write",
                        reason: format!("outcome unknown: {why}"),
                    })
                }
                Err(RemoteWriteError::Invalid(e)) => return Err(DcsError::Invalid(e)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// Waits until this node has applied everything the leader had committed when it
    /// confirmed its leadership with a quorum (read index). After that a local read is
    /// linearizable. Fails instead of answering from a partitioned minority.
    async fn linearize(&self, op: &'static str) -> Result<(), DcsError> {
        let limit = self.config.op_timeout;
        let deadline = Instant::now() + limit;
        tokio::time::timeout(limit, async {
            let mut pause = RETRY_MIN;
            loop {
                if self.shutdown.is_cancelled() {
                    return Err(DcsError::ShuttingDown { op });
                }
                match self.leader() {
                    Some((lid, _)) if lid == self.id => {
                        match read_index::ensure_linearizable(&self.raft, self.read_floor).await {
                            Ok(_) => return Ok(()),
                            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                                return Err(DcsError::Unavailable {
                                    op,
                                    reason: e.to_string(),
                                })
                            }
                            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {}
                            Err(RaftError::Fatal(_)) => return Err(DcsError::ShuttingDown { op }),
                        }
                    }
                    Some((lid, node)) => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let r: Result<Result<u64, String>, CallError> = self
                            .peers
                            .call(Rpc::ReadIndex, lid, &node.addr, &(), remaining)
                            .await;
                        if let Ok(Ok(index)) = r {
                            let remaining = deadline.saturating_duration_since(Instant::now());
                            return match self
                                .raft
                                .wait(Some(remaining))
                                .applied_index_at_least(Some(index), "linearizable read")
                                .await
                            {
                                Ok(_) => Ok(()),
                                Err(e) => Err(DcsError::Unavailable {
                                    op,
                                    reason: e.to_string(),
                                }),
                            };
                        }
                    }
                    None => {}
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        })
        .await
        .map_err(|_| DcsError::Timeout { op, after: limit })?
    }

    pub(crate) async fn serve_read_index(&self) -> Result<u64, String> {
        read_index::read_index(&self.raft, self.read_floor)
            .await
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn serve_read(&self, r: wire::Read) -> Result<Vec<KeyValue>, String> {
        if !self.is_member().await {
            return Err(NOT_A_MEMBER.into());
        }
        self.linearize("read").await.map_err(|e| e.to_string())?;
        Ok(if r.prefix {
            self.sm.list(&r.key)
        } else {
            self.sm.get(&r.key).into_iter().collect()
        })
    }

    pub(crate) async fn hello(&self) -> HelloReply {
        HelloReply {
            node_id: self.id,
            name: self.me.name.clone(),
            addr: self.me.addr.clone(),
            initialized: self.raft.is_initialized().await.unwrap_or(false),
            leader: self.raft.metrics().borrow().current_leader,
        }
    }

    fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                name: node.name.clone(),
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index),
            })
            .collect();
        ClusterStatus {
            me: self.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied: m.last_applied.map_or(0, |l| l.index),
            members,
        }
    }

    pub(crate) async fn serve_admin(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        if !self.is_member().await {
            return Err(AdminError::NoLeader);
        }
        // With no leader known, a node's own status is still worth answering.
        if matches!(req, AdminRequest::Status) && self.leader().is_none() {
            return Ok(AdminReply::Status(self.status()));
        }
        match self.leader() {
            Some((lid, _)) if lid == self.id => self.admin_local(req).await,
            Some((lid, node)) => {
                let r: Result<Result<AdminReply, AdminError>, CallError> = self
                    .peers
                    .call(Rpc::Admin, lid, &node.addr, &req, Duration::from_secs(120))
                    .await;
                r.map_err(|e| AdminError::Raft(format!("forwarding to the leader: {e}")))?
            }
            None => Err(AdminError::NoLeader),
        }
    }

    async fn admin_local(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        match req {
            AdminRequest::Status => Ok(AdminReply::Status(self.status())),
            AdminRequest::AddMember { addr, replace } => {
                let hello: HelloReply = self
                    .peers
                    .call(
                        Rpc::Hello,
                        0,
                        &addr,
                        &wire::Hello::default(),
                        Duration::from_secs(2),
                    )
                    .await
                    .map_err(|e| AdminError::Unreachable {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })?;
                let membership = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
                if voters.contains(&hello.node_id) {
                    return Err(AdminError::AlreadyMember(hello.node_id));
                }
                let same_name: Vec<NodeId> = membership
                    .nodes()
                    .filter(|(id, n)| n.name == hello.name && **id != hello.node_id)
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(old) = same_name.first() {
                    if !replace {
                        return Err(AdminError::NameTaken {
                            name: hello.name,
                            id: *old,
                        });
                    }
                }
                let node = Node {
                    name: hello.name.clone(),
                    addr: hello.addr.clone(),
                };
                tracing::info!(node_id = hello.node_id, node = %node, "adding member as learner");
                // Blocking: returns once the learner has caught up (by log or snapshot),
                // so promoting it to voter cannot stall the quorum.
                self.raft
                    .add_learner(hello.node_id, node, true)
                    .await
                    .map_err(|e| AdminError::Raft(e.to_string()))?;
                for old in &same_name {
                    voters.remove(old);
                }
                voters.insert(hello.node_id);
                // One joint-consensus change swaps the dead member for the new one, so the
                // voter count never drops below three on the way.
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(|e| AdminError::Raft(e.to_string()))?;
                tracing::info!(node_id = hello.node_id, replaced = ?same_name, "member is now a voter");
                Ok(AdminReply::Added(MemberStatus {
                    id: hello.node_id,
                    name: hello.name,
                    addr: hello.addr,
                    voter: true,
                    matched: None,
                }))
            }
            AdminRequest::RemoveMember { member } => {
                let membership = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                let id = membership
                    .nodes()
                    .find(|(id, n)| n.name == member || id.to_string() == member)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| AdminError::UnknownMember(member.clone()))?;
                let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
                self.raft
                    .change_membership(voters, false)
                    .await
                    .map_err(|e| AdminError::Raft(e.to_string()))?;
                tracing::info!(node_id = id, member = %member, "member removed");
                Ok(AdminReply::Removed(id))
            }
        }
    }

    /// Discovery and bootstrap. Only a node with no Raft state takes part; a node that
    /// belongs to a cluster simply runs Raft.
    async fn discover(self: Arc<Self>) {
        if self.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        if self.config.single_node {
            let members = BTreeMap::from([(self.id, self.me.clone())]);
            match self.raft.initialize(members).await {
                Ok(()) => tracing::info!("initialised a single-node cluster"),
                Err(e) => tracing::warn!(error = %e, "single-node initialise"),
            }
            return;
        }
        let mut said_waiting = false;
        let mut interval = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            if self.raft.is_initialized().await.unwrap_or(true) {
                tracing::info!("joined the Raft cluster");
                return;
            }
            let mut replies = Vec::new();
            for addr in &self.config.partner_addrs {
                let r: Result<HelloReply, CallError> = self
                    .peers
                    .call(
                        Rpc::Hello,
                        0,
                        addr,
                        &wire::Hello::default(),
                        Duration::from_secs(1),
                    )
                    .await;
                if let Ok(r) = r {
                    replies.push(r);
                }
            }
            if let Some(existing) = replies.iter().find(|r| r.initialized) {
                if !said_waiting {
                    tracing::warn!(
                        partner = %existing.name,
                        "a Raft cluster already exists but this node is not a member of it (new or wiped data \
                         directory); waiting to be added: on any member run `pgwardenctl members add {}` \
                         (a new member) or `pgwardenctl members replace {}` (a member that lost its data)",
                        self.me.addr,
                        self.me.addr
                    );
                    said_waiting = true;
                }
                continue;
            }
            if replies.len() < self.config.partner_addrs.len() {
                continue;
            }
            if let Some(dup) = replies.iter().find(|r| r.node_id == self.id) {
                tracing::error!(addr = %dup.addr, "a partner has this node's Raft id: was a data directory copied?");
                continue;
            }
            // Every partner answered and none is initialised: the lowest id initialises,
            // with the full membership, so no two nodes can initialise different clusters.
            let lowest = replies.iter().map(|r| r.node_id).min().unwrap_or(u64::MAX);
            if self.id < lowest {
                let mut members = BTreeMap::from([(self.id, self.me.clone())]);
                for r in &replies {
                    members.insert(
                        r.node_id,
                        Node {
                            name: r.name.clone(),
                            addr: r.addr.clone(),
                        },
                    );
                }
                match self.raft.initialize(members.clone()).await {
                    Ok(()) => {
                        tracing::info!(voters = members.len(), "initialised a new Raft cluster");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "initialise"),
                }
            }
        }
    }
}
