//! The state one running node shares between its tasks, its `RaftNode`
//! handle and its peer service ([`NodeInner`]), with the queries every path asks:
//! who leads (and when another node does), and whether this node belongs to a cluster.
//! The write path, the read path, membership administration and discovery add their
//! methods to `NodeInner` in their own modules (`writes`, `reads`, `membership`,
//! `discovery`).

use crate::config::NodeConfig;
use crate::log_store::SledStore;
use crate::network::PeerClients;
use crate::proposer::Proposer;
use crate::read_index::ReadFloor;
use crate::state_machine::SmShared;
use crate::{Node, NodeId, Raft};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything one node shares between its tasks and its handle.
pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) me: Node,
    pub(crate) raft: Raft,
    pub(crate) sm: Arc<SmShared>,
    pub(crate) peers: PeerClients,
    pub(crate) store: SledStore,
    pub(crate) config: NodeConfig,
    pub(crate) shutdown: CancellationToken,
    /// Reads served as a leader restored in its old term wait for its startup log.
    pub(crate) read_floor: ReadFloor,
    /// Batches the leader's client writes (group commit).
    pub(crate) proposer: Proposer,
    /// Whether this node may stand for election now (see [`crate::candidacy`]).
    pub(crate) candidacy: Arc<crate::candidacy::Candidacy>,
    /// The time limit of one client read or write, in milliseconds: `config.op_timeout` at
    /// start, then whatever the HA loop sets from the dynamic `retry_timeout`
    /// ([`crate::dcs::Dcs::set_op_timeout`]), so that a changed value applies without a restart.
    pub(crate) op_timeout_ms: std::sync::atomic::AtomicU64,
    /// The lease deadlines the reaper keeps (see [`crate::lease`]); read by `LeaseLeft`.
    pub(crate) leases: crate::lease::SharedLeaseTable,
    /// Serialises membership changes: `members add|remove` and the voter driver.
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// The voters this node replaced while leading (see [`crate::voters`]).
    pub(crate) replaced: crate::voters::Replaced,
}

/// Shortest and longest pause between retries while no leader is known.
pub(crate) const RETRY_MIN: Duration = Duration::from_millis(10);
pub(crate) const RETRY_MAX: Duration = Duration::from_millis(100);

impl NodeInner {
    /// The time limit of one client read or write now.
    pub(crate) fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The Raft leader this node knows of, with its address book entry.
    pub(crate) fn leader(&self) -> Option<(NodeId, Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let lid = m.current_leader?;
        let node = m.membership_config.membership().get_node(&lid)?.clone();
        Some((lid, node))
    }

    /// Whether this node belongs to a cluster; a node waiting to be added answers client
    /// calls at once so the caller tries another member. Read from the metrics (openraft's
    /// `is_initialized` test: a log or a vote), not through `Raft::is_initialized`, which
    /// queues behind the log flushes in openraft's core on every client call.
    pub(crate) async fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.last_log_index.is_some() || m.vote != openraft::Vote::default()
    }

    /// Returns once this node knows of a leader other than `old` (`None`: of any leader),
    /// from openraft's metrics watch, so a request waiting on the old leader is re-sent
    /// the moment an election ends rather than after its own time limit. Never returns
    /// once Raft has stopped (the caller's deadline and shutdown check end the wait).
    pub(crate) async fn leader_other_than(&self, old: Option<NodeId>) {
        let mut rx = self.raft.metrics();
        let changed = rx
            .wait_for(|m| m.current_leader.is_some() && m.current_leader != old)
            .await
            .is_ok();
        if !changed {
            std::future::pending::<()>().await;
        }
    }

    /// The index this node has applied: every write proposed from now on commits above it.
    pub(crate) fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
    }
}
