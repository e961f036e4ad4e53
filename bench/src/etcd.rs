//! The etcd side: the generated v3 API subset and the few calls the bench makes.

use anyhow::{anyhow, Context, Result};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

#[allow(clippy::all, missing_docs)]
mod pb {
    tonic::include_proto!("etcdserverpb");
}

pub use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use pb::{compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// A connection to one member's client URL, configured like pgwarden's client channel
/// (HTTP/2, TCP_NODELAY, the same per-call limit) so the transports match.
pub async fn channel(addr: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .context("bad etcd address")?
        .connect_timeout(Duration::from_millis(500))
        .timeout(crate::load::OP_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to etcd at {addr}"))
}

/// `Txn(If(mod_revision(key) == rev) Then(Put(key, value)) Else(Range(key)))`: the etcd
/// form of a pgwarden `put` with `Condition::ModRevisionEquals(rev)` (rev 0: absent).
/// Returns whether it succeeded and the key's revision afterwards (on failure, read in
/// the same transaction, as pgwarden returns the current key with a failed CAS).
pub async fn cas(kv: &mut KvClient<Channel>, key: &[u8], rev: i64, value: &[u8]) -> Result<(bool, i64)> {
    let req = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: key.to_vec(),
            range_end: Vec::new(),
            target_union: Some(compare::TargetUnion::ModRevision(rev)),
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }],
    };
    let resp = kv.txn(req).await.context("etcd Txn")?.into_inner();
    if resp.succeeded {
        // The header carries the store revision after the transaction: the put's revision.
        let rev = resp.header.context("etcd Txn reply without a header")?.revision;
        return Ok((true, rev));
    }
    let current = resp
        .responses
        .into_iter()
        .find_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(rr)) => Some(rr),
            _ => None,
        })
        .and_then(|rr| rr.kvs.into_iter().next())
        .map_or(0, |kv| kv.mod_revision);
    Ok((false, current))
}

/// The key's mod revision (0: absent), by a linearizable read.
pub async fn mod_revision(kv: &mut KvClient<Channel>, key: &[u8]) -> Result<i64> {
    let resp = kv
        .range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await
        .context("etcd Range")?
        .into_inner();
    Ok(resp.kvs.first().map_or(0, |kv| kv.mod_revision))
}

/// Whether the member at `addr` is the Raft leader, by its own Status.
pub async fn is_leader(addr: &str) -> Result<bool> {
    let mut m = MaintenanceClient::new(channel(addr).await?);
    let s = m
        .status(pb::StatusRequest {})
        .await
        .context("etcd Status")?
        .into_inner();
    let me = s
        .header
        .ok_or_else(|| anyhow!("etcd Status reply without a header"))?
        .member_id;
    Ok(s.leader != 0 && s.leader == me)
}
