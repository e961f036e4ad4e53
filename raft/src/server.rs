//! The peer service, server side: decodes envelopes, refuses calls meant for another
//! node id, and hands each request to openraft or to the node.

use crate::node::{wire, NodeInner};
use crate::pb::raft_service_server::RaftService;
use crate::pb::Envelope;
use crate::TypeConfig;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The tonic service of one node.
pub struct PeerService {
    node: Arc<NodeInner>,
}

impl PeerService {
    pub(crate) fn new(node: Arc<NodeInner>) -> Self {
        PeerService { node }
    }

    /// Decodes the payload after checking that the call is meant for this node.
    fn accept<T: DeserializeOwned>(&self, req: Request<Envelope>, any_target: bool) -> Result<T, Status> {
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
        serde_json::from_slice(&env.payload)
            .map_err(|e| Status::invalid_argument(format!("bad payload: {e}")))
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Envelope>, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(Envelope { target: 0, payload }))
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.accept(req, false)?;
        reply(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: VoteRequest<crate::NodeId> = self.accept(req, false)?;
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.accept(req, false)?;
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
