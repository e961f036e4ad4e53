//! The peer transport, client side: openraft's network over tonic, plus the calls nodes
//! make to each other (hello, forwarded writes, read index, admin).
//!
//! Every call carries the id of the node the sender means to reach; the receiver refuses
//! a call meant for another id, so an address that now belongs to a different node (a
//! wiped and re-created member, a config typo) cannot vote or append.

use crate::pb::raft_service_client::RaftServiceClient;
use crate::wire::{self, PayloadError};
use crate::{Node, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// Largest message a peer sends or accepts. Snapshots travel in chunks well below it.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long to wait for a TCP connection to a peer. A peer whose host drops the SYN (cut
/// off, not refusing) costs no more than this; a refused connection fails at once.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Consecutive failed calls after which a peer is reported unreachable (one failed call
/// is often a single lost heartbeat).
const DOWN_AFTER: u32 = 3;
/// How often a peer that stays unreachable is reported again.
const STILL_DOWN_EVERY: Duration = Duration::from_secs(60);

/// Fault injection for tests: decides whether a message from one node may reach another.
pub trait LinkFilter: Send + Sync + 'static {
    /// Whether `from` can currently reach node `to`, listening at `to_addr`.
    fn allows(&self, from: NodeId, to: NodeId, to_addr: &str) -> bool;
}

/// The peer RPCs, by name.
#[derive(Clone, Copy, Debug)]
pub enum Rpc {
    /// openraft AppendEntries.
    AppendEntries,
    /// openraft Vote.
    Vote,
    /// openraft InstallSnapshot.
    InstallSnapshot,
    /// Who are you.
    Hello,
    /// A keyspace write.
    Write,
    /// Leader-confirmed read index.
    ReadIndex,
    /// A linearizable read.
    Read,
    /// Membership administration and status.
    Admin,
}

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request was certainly not delivered (no connection, link cut by a test).
    #[error("{addr} is unreachable: {reason}")]
    NotSent {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The request may or may not have been processed.
    #[error("call to {addr} failed: {status}")]
    Failed {
        /// The peer.
        addr: String,
        /// What tonic said.
        status: Box<tonic::Status>,
    },
    /// The request could not be encoded; it was not sent.
    #[error("cannot encode the request to {addr}")]
    Encode {
        /// The peer.
        addr: String,
        /// The encode error.
        #[source]
        source: PayloadError,
    },
    /// The reply did not decode (or came in a payload format this node does not speak).
    #[error("bad reply from {addr}")]
    Decode {
        /// The peer.
        addr: String,
        /// The decode error.
        #[source]
        source: PayloadError,
    },
}

/// Cached gRPC channels to peers, shared by openraft's network and the node's own calls.
#[derive(Clone)]
pub struct PeerClients {
    my_id: NodeId,
    channels: Arc<Mutex<HashMap<String, RaftServiceClient<Channel>>>>,
    filter: Option<Arc<dyn LinkFilter>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Reachability of each member peer, by address, for the log.
    health: Arc<Mutex<HashMap<String, PeerHealth>>>,
}

/// Failed calls in a row to one peer, and what the log was told about them. A peer's
/// outage is logged when it starts (with its reason), once a minute while it lasts
/// (with the count of failed calls), and when it ends: a bounded number of lines however
/// often Raft retries.
#[derive(Default)]
struct PeerHealth {
    failures: u32,
    failing_since: Option<Instant>,
    reported_at: Option<Instant>,
    failures_since_report: u32,
}

impl PeerClients {
    /// Clients for node `my_id`, with optional fault injection.
    pub fn new(my_id: NodeId, filter: Option<Arc<dyn LinkFilter>>) -> Self {
        PeerClients {
            my_id,
            channels: Arc::default(),
            filter,
            tls: None,
            health: Arc::default(),
        }
    }

    /// Records the outcome of a call to a member peer and logs a change of its state.
    fn note(&self, target: NodeId, addr: &str, failure: Option<&CallError>) {
        // Calls to whoever answers at an address (clients, discovery) say nothing of a member.
        if target == 0 {
            return;
        }
        let mut map = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let Some(e) = failure else {
            if let Some(h) = map.remove(addr) {
                if let (Some(since), Some(_)) = (h.failing_since, h.reported_at) {
                    tracing::info!(peer = %addr, id = target, down_for = ?now.duration_since(since), "Raft peer reachable again");
                }
            }
            return;
        };
        let h = map.entry(addr.to_string()).or_default();
        h.failures += 1;
        h.failures_since_report += 1;
        let since = *h.failing_since.get_or_insert(now);
        match h.reported_at {
            None if h.failures >= DOWN_AFTER => {
                tracing::warn!(peer = %addr, id = target, reason = %e, "Raft peer unreachable");
            }
            Some(at) if now.duration_since(at) >= STILL_DOWN_EVERY => {
                tracing::warn!(
                    peer = %addr,
                    id = target,
                    down_for = ?now.duration_since(since),
                    failed_calls = h.failures_since_report,
                    last_error = %e,
                    "Raft peer still unreachable"
                );
            }
            _ => {
                tracing::debug!(peer = %addr, id = target, error = %e, "call to a Raft peer failed");
                return;
            }
        }
        h.reported_at = Some(now);
        h.failures_since_report = 0;
    }

    /// How long calls to the member peer at `addr` have been failing without a success in
    /// between (`None`: the last call succeeded, or none was made). The voter driver reads
    /// it on the leader, whose heartbeats reach every member several times a second, so a
    /// peer that answers slowly but answers is never counted as gone.
    pub(crate) fn failing_for(&self, addr: &str) -> Option<Duration> {
        let map = self.health.lock().unwrap_or_else(|p| p.into_inner());
        map.get(addr)
            .and_then(|h| h.failing_since)
            .map(|since| since.elapsed())
    }

    /// Dials peers over TLS with `config` (the server must present a certificate the
    /// config trusts, for the IP or name in its address).
    pub fn with_tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = config;
        self
    }

    fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, CallError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| CallError::NotSent {
                addr: addr.into(),
                reason: format!("bad address: {e}"),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        // Lazy: connecting happens on first use, so creating a client never blocks Raft.
        // With TLS the handshake is done by our connector (the URI stays http://), which
        // logs why a peer's certificate was not trusted.
        let channel = match &self.tls {
            Some(cfg) => {
                endpoint.connect_with_connector_lazy(crate::tls::connector(cfg.clone(), "Raft peer"))
            }
            None => endpoint.connect_lazy(),
        };
        let client = RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        map.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drops the channel to `addr` after a failed call: the next call opens a new connection.
    ///
    /// A peer whose packets are dropped silently (a partition, not a refusal) leaves the TCP
    /// connection in retransmission back-off: after the heal it carries data again only at its
    /// next retransmission, which after a 2 s cut is about a second away (200 ms, 400, 800...),
    /// and the primary's lease cannot wait that long. A new connection is tried at once and
    /// costs one round trip; while the cut lasts, each try ends at the connect timeout.
    fn forget_channel(&self, addr: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(addr);
    }

    /// Calls `rpc` on the node `target` (0: whoever answers at `addr`), with `req` and the
    /// reply in the envelope's payload format ([`wire::encode`], [`wire::decode`]).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        target: NodeId,
        addr: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.call_with_chunk(rpc, target, addr, req, Vec::new(), timeout)
            .await
    }

    /// [`Self::call`] with a snapshot chunk carried as raw bytes beside the payload.
    async fn call_with_chunk<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        target: NodeId,
        addr: &str,
        req: &Req,
        snapshot_chunk: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let res = self
            .call_once(rpc, target, addr, req, snapshot_chunk, timeout)
            .await;
        match &res {
            Ok(_) | Err(CallError::Decode { .. }) => self.note(target, addr, None),
            Err(e @ (CallError::NotSent { .. } | CallError::Failed { .. })) => {
                self.forget_channel(addr);
                self.note(target, addr, Some(e))
            }
            Err(CallError::Encode { .. }) => {}
        }
        res
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        target: NodeId,
        addr: &str,
        req: &Req,
        snapshot_chunk: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        if let Some(f) = &self.filter {
            if target != 0 && !f.allows(self.my_id, target, addr) {
                return Err(CallError::NotSent {
                    addr: addr.into(),
                    reason: "link cut by fault injection".into(),
                });
            }
        }
        let mut envelope = wire::encode(target, req).map_err(|source| CallError::Encode {
            addr: addr.into(),
            source,
        })?;
        envelope.snapshot_chunk = snapshot_chunk;
        let mut client = self.client(addr)?;
        let mut request = tonic::Request::new(envelope);
        request.set_timeout(timeout);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
            Rpc::Hello => client.hello(request).await,
            Rpc::Write => client.write(request).await,
            Rpc::ReadIndex => client.read_index(request).await,
            Rpc::Read => client.read(request).await,
            Rpc::Admin => client.admin(request).await,
        };
        let reply = reply.map_err(|status| classify(addr, status))?.into_inner();
        wire::decode(&reply).map_err(|source| CallError::Decode {
            addr: addr.into(),
            source,
        })
    }
}

/// A connection refused or not established means the request never left; anything else
/// (deadline, reset mid-call) leaves the outcome unknown.
fn classify(addr: &str, status: tonic::Status) -> CallError {
    let not_connected = status.code() == tonic::Code::Unavailable
        && (status.message().contains("connect") || status.message().contains("transport"));
    if not_connected || status.code() == tonic::Code::FailedPrecondition {
        CallError::NotSent {
            addr: addr.into(),
            reason: status.message().to_string(),
        }
    } else {
        CallError::Failed {
            addr: addr.into(),
            status: Box::new(status),
        }
    }
}

/// openraft's network factory.
pub struct NetworkFactory {
    /// Shared peer channels.
    pub peers: PeerClients,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        PeerConnection {
            peers: self.peers.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerConnection {
    peers: PeerClients,
    target: NodeId,
    addr: String,
}

impl PeerConnection {
    async fn raft_call<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        rpc: Rpc,
        req: &Req,
        snapshot_chunk: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
        let res: Result<Result<Resp, RaftError<NodeId, E>>, CallError> = self
            .peers
            .call_with_chunk(
                rpc,
                self.target,
                &self.addr,
                req,
                snapshot_chunk,
                option.hard_ttl(),
            )
            .await;
        match res {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            // openraft backs off from an unreachable peer instead of hammering it.
            Err(e @ CallError::NotSent { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.raft_call(Rpc::AppendEntries, &rpc, Vec::new(), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // The chunk travels as raw bytes beside the JSON, not as a JSON array of numbers.
        let chunk = std::mem::take(&mut rpc.data);
        self.raft_call(Rpc::InstallSnapshot, &rpc, chunk, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.raft_call(Rpc::Vote, &rpc, Vec::new(), &option).await
    }

    /// How long replication to an unreachable peer waits between tries (openraft's default:
    /// 500 ms forever). A member cut off for a moment must be caught up right after the
    /// heal: its reads wait for its own log, and the primary's lease refresh needs them.
    /// So a peer is retried every 100 ms for its first [`FAST_RETRIES`] tries, and only a
    /// peer down for longer is retried less and less often, up to every 8 s. openraft
    /// ends the back-off at the first success. What those failed tries log is bounded by
    /// [`crate::quiet_log`] and the per-peer reports of [`PeerClients`], not by their rate.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(unreachable_backoff())
    }
}

/// How many tries of an unreachable peer are 100 ms apart: 5 s, beyond the lease of a
/// primary cut off for a moment, so that such a cut never waits on the back-off.
pub const FAST_RETRIES: usize = 50;

/// The waits between replication tries to an unreachable peer: 100 ms [`FAST_RETRIES`]
/// times, then 0.2, 0.4, ... doubling up to 8 s.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    let fast = Duration::from_millis(100);
    let cap = Duration::from_secs(8);
    std::iter::repeat_n(fast, FAST_RETRIES).chain(std::iter::successors(Some(fast * 2), move |d| {
        Some((*d * 2).min(cap))
    }))
}

#[cfg(test)]
mod backoff_tests {
    use super::FAST_RETRIES;

    /// A peer is retried every 100 ms for 5 s (a short cut is healed at once), then every
    /// 0.2, 0.4, ... s up to every 8 s.
    #[test]
    fn unreachable_peers_are_retried_fast_then_with_a_growing_backoff() {
        let waits: Vec<u128> = super::unreachable_backoff()
            .take(FAST_RETRIES + 8)
            .map(|d| d.as_millis())
            .collect();
        assert!(waits[..FAST_RETRIES].iter().all(|w| *w == 100));
        assert_eq!(
            waits[FAST_RETRIES..],
            [200, 400, 800, 1600, 3200, 6400, 8000, 8000]
        );
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    /// A peer whose host drops our SYN (here: a listener whose accept queue is full, so
    /// the kernel drops further SYNs) costs at most the connect timeout, and the call is
    /// known not to have been sent, not a call that hangs until its own time limit.
    #[tokio::test]
    async fn a_peer_that_does_not_answer_the_syn_fails_within_the_connect_timeout() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Fill the accept queue (never accepted); later SYNs are dropped.
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(&addr)).await
            {
                held.push(s);
            }
        }
        let peers = PeerClients::new(1, None);
        let t0 = Instant::now();
        let r: Result<(), CallError> = peers
            .call(
                Rpc::Hello,
                2,
                &addr,
                &wire::Hello::default(),
                Duration::from_secs(5),
            )
            .await;
        let took = t0.elapsed();
        eprintln!(
            "held {} connections; the call failed after {took:?}: {r:?}",
            held.len()
        );
        assert!(
            took < CONNECT_TIMEOUT + Duration::from_millis(300),
            "took {took:?}: {r:?}"
        );
        assert!(matches!(r, Err(CallError::NotSent { .. })), "{r:?}");
        drop(held);
    }
}
