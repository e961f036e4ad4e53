//! The peer service, server side: serves it on the node's listener, decodes envelopes,
//! refuses calls meant for another node id, and hands each request to openraft or to
//! the node's handlers.

use crate::inner::NodeInner;
use crate::network::MAX_MESSAGE_BYTES;
use crate::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::pb::Envelope;
use crate::wire;
use crate::TypeConfig;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Serves the peer service of `node` on `listener` (over TLS with `tls`) until `shutdown`.
pub(crate) fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    node: Arc<NodeInner>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let svc = RaftServiceServer::new(PeerService::new(node))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tokio::spawn(async move {
        // Nagle must be off on accepted sockets, or every reply waits for the peer's
        // delayed ACK (~40 ms on Linux). `Server::tcp_nodelay` does not apply to an
        // incoming stream we supply, so it is set on the stream itself.
        let server = tonic::transport::Server::builder().add_service(svc);
        let res = match tls {
            // Handshakes are done (and refusals logged) by tls::incoming.
            Some(cfg) => {
                let incoming = crate::tls::incoming(listener, cfg, "Raft peer");
                server
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                    .await
            }
            None => {
                let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                server
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                    .await
            }
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "Raft peer server stopped");
        }
    })
}

/// The tonic service of one node.
pub struct PeerService {
    node: Arc<NodeInner>,
}

impl PeerService {
    pub(crate) fn new(node: Arc<NodeInner>) -> Self {
        PeerService { node }
    }

    /// The envelope, after checking that the call is meant for this node.
    fn check_target(&self, req: Request<Envelope>, any_target: bool) -> Result<Envelope, Status> {
        let env = req.into_inner();
        if env.target != self.node.id && !(any_target && env.target == 0) {
            tracing::warn!(
                expected = env.target,
                me = self.node.id,
                "refused a peer call meant for another node id: check partner_addrs"
            );
            return Err(Status::failed_precondition(format!(
                "this is node {} ({}), not node {}",
                self.node.id, self.node.me.name, env.target
            )));
        }
        Ok(env)
    }

    /// Decodes the payload after checking that the call is meant for this node; a payload
    /// format this node does not speak is refused (see [`wire::decode`]).
    fn accept<T: DeserializeOwned>(&self, req: Request<Envelope>, any_target: bool) -> Result<T, Status> {
        let env = self.check_target(req, any_target)?;
        Ok(wire::decode(&env)?)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Envelope>, Status> {
    Ok(Response::new(wire::encode(0, value)?))
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.accept(req, false)?;
        self.node.candidacy.heard_from_leader();
        reply(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: VoteRequest<crate::NodeId> = self.accept(req, false)?;
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let env = self.check_target(req, false)?;
        let mut rpc: InstallSnapshotRequest<TypeConfig> = wire::decode(&env)?;
        // The chunk's bytes travel beside the JSON (see raft.proto).
        rpc.data = env.snapshot_chunk;
        reply(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn hello(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let _: wire::Hello = self.accept(req, true)?;
        reply(&self.node.hello().await)
    }

    async fn write(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let cmd: crate::Command = self.accept(req, true)?;
        reply(&self.node.serve_write(cmd).await)
    }

    async fn read_index(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let _: () = self.accept(req, false)?;
        reply(&self.node.serve_read_index().await)
    }

    async fn read(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let r: wire::Read = self.accept(req, true)?;
        reply(&self.node.serve_read(r).await)
    }

    async fn admin(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let r: wire::AdminRequest = self.accept(req, true)?;
        reply(&self.node.serve_admin(r).await)
    }
}
