//! A running DCS member ([`RaftNode`]): opens the store, starts Raft, the peer server,
//! the lease reaper and discovery, and stops them; implements [`Dcs`] for the HA loop.
//! What the node does once running lives in the modules that add methods to its shared
//! state, `NodeInner` (in `inner.rs`).

use crate::command::{Command, CommandResult, KeyValue};
pub use crate::config::{NodeConfig, RaftTiming};
use crate::dcs::{Dcs, DcsError, Watch};
use crate::inner::NodeInner;
use crate::log_store::{SledStore, StoreError};
use crate::network::{NetworkFactory, PeerClients};
use crate::proposer::Proposer;
use crate::state_machine::StateMachineStore;
/// The peer protocol's messages, also reachable here (their former home) for the daemon
/// and the test harnesses that name them so.
pub use crate::wire;
use crate::wire::{AdminError, AdminReply, AdminRequest, ClusterStatus};
use crate::{Node, NodeId, Raft, StorageError};
use openraft::{RaftMetrics, SnapshotPolicy};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
            site: config.site.clone(),
        };
        let shutdown = CancellationToken::new();
        let (proposer, proposer_task) = Proposer::start(raft.clone(), shutdown.clone());
        let op_timeout_ms = (config.op_timeout.as_millis().min(u64::MAX as u128) as u64).into();
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
            candidacy: Arc::default(),
            op_timeout_ms,
            leases: crate::lease::SharedLeaseTable::default(),
            membership_lock: tokio::sync::Mutex::new(()),
            replaced: crate::voters::Replaced::default(),
        });
        tracing::info!(node_id = id, name = %inner.me.name, addr = %inner.me.addr, "Raft node started");

        let mut tasks = vec![proposer_task];
        let tls = inner.config.tls.as_ref().map(|t| t.server_config());
        tasks.push(crate::server::spawn(
            listener,
            tls,
            inner.clone(),
            shutdown.clone(),
        ));
        tasks.push(tokio::spawn(crate::lease::run(
            raft,
            id,
            read_floor,
            inner.leases.clone(),
            lease_rx,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(inner.clone().discover()));
        tasks.push(tokio::spawn(crate::candidacy::run(inner.clone())));
        tasks.push(tokio::spawn(crate::voters::run(inner.clone())));
        Ok(RaftNode {
            inner,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// Holds this node's candidacy (or lifts the hold): while held, it does not stand for
    /// election as long as a leader reached it within a few election timeouts. The HA loop
    /// holds it while its member holds the leader key; see [`crate::candidacy`].
    pub fn hold_candidacy(&self, hold: bool) {
        self.inner.candidacy.set_hold(hold);
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

    /// This node's own state (`dcs status`).
    pub fn report(&self) -> crate::wire::NodeReport {
        self.inner.report()
    }

    /// The own state of the node at peer address `addr` (this node's when it is its own),
    /// asked over the peer service within `timeout`.
    pub async fn report_at(&self, addr: &str, timeout: Duration) -> Result<crate::wire::NodeReport, String> {
        if addr == self.inner.me.addr {
            return Ok(self.inner.report());
        }
        let r: Result<Result<AdminReply, AdminError>, crate::network::CallError> = self
            .inner
            .peers
            .call(
                crate::network::Rpc::Admin,
                0,
                addr,
                &AdminRequest::Report,
                timeout,
            )
            .await;
        match r {
            Ok(Ok(AdminReply::Report(rep))) => Ok(rep),
            Ok(Ok(other)) => Err(format!("unexpected reply {other:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(crate::error_chain(&e)),
        }
    }

    /// Every key under `prefix` with the index the keyspace was read at: a linearizable
    /// read (confirmed through the Raft leader) of one consistent state, for backups.
    /// The index is read on both sides of the list: equal, no entry was applied between.
    pub async fn consistent_list(&self, prefix: &str) -> Result<(u64, Vec<KeyValue>), DcsError> {
        self.inner.linearize("snapshot").await?;
        for _ in 0..100 {
            let before = self.inner.sm.applied_index();
            let kvs = self.inner.sm.list(prefix);
            if self.inner.sm.applied_index() == before {
                return Ok((before, kvs));
            }
            tokio::task::yield_now().await;
        }
        Err(DcsError::Unavailable {
            op: "snapshot",
            reason: "the keyspace changed during every one of 100 reads".into(),
        })
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

    fn set_op_timeout(&self, limit: Duration) {
        let ms = limit.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.inner
            .op_timeout_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}
