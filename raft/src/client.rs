//! A client of the DCS over the peer service, for processes that are not members (the
//! admin CLI, tests, benchmarks). It tries the given endpoints in turn; any member
//! forwards writes to the Raft leader and serves linearizable reads.

use crate::command::{Command, CommandError, CommandResult, Condition, KeyValue};
use crate::network::{CallError, PeerClients, Rpc};
use crate::wire::{self, AdminError, AdminReply, AdminRequest, HelloReply, ReadError, RemoteWriteError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No endpoint accepted the call.
    #[error("no DCS member reachable; tried {}", tried.join(", "))]
    Unreachable {
        /// Every endpoint tried, with its error.
        tried: Vec<String>,
    },
    /// The call reached a member but its outcome is unknown (a write may still commit).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The member could not serve a linearizable read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The command was refused before it was proposed.
    #[error("invalid command")]
    Invalid(#[source] CommandError),
    /// An admin operation failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// A DCS client over a list of member endpoints.
#[derive(Clone)]
pub struct RaftClient {
    peers: PeerClients,
    endpoints: Arc<Vec<String>>,
    preferred: Arc<AtomicUsize>,
    timeout: Duration,
}

impl RaftClient {
    /// A client of the members at `endpoints` (`host:port` of their peer service); each
    /// call is limited to `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        RaftClient {
            peers: PeerClients::new(0, None),
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Dials the members over TLS: `config` must trust their certificates and, when the
    /// cluster uses mutual TLS, present a certificate signed by the cluster's CA.
    pub fn with_tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.peers = self.peers.with_tls(config);
        self
    }

    /// Calls the first endpoint that takes the call, starting with the last one that did;
    /// an answer for which `elsewhere` is true (the member is not part of
    /// a cluster, or knows no leader) sends the call on to the next endpoint.
    async fn call_until<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        rpc: Rpc,
        req: &Req,
        elsewhere: impl Fn(&Resp) -> bool,
    ) -> Result<Resp, ClientError> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut tried = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let addr = &self.endpoints[i];
            match self.peers.call(rpc, 0, addr, req, self.timeout).await {
                Ok(r) if elsewhere(&r) && k + 1 < n => tried.push(format!("{addr} (no leader there)")),
                Ok(r) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(e @ CallError::NotSent { .. }) => tried.push(format!("{addr} ({e})")),
                Err(e) => return Err(ClientError::Unknown(e.to_string())),
            }
        }
        Err(ClientError::Unreachable { tried })
    }

    /// Proposes a command through any member.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ClientError> {
        cmd.validate().map_err(ClientError::Invalid)?;
        let r: Result<CommandResult, RemoteWriteError> = self
            .call_until(Rpc::Write, &cmd, |r| {
                matches!(r, Err(RemoteWriteError::NotLeader))
            })
            .await?;
        r.map_err(|e| match e {
            RemoteWriteError::Invalid(e) => ClientError::Invalid(e),
            RemoteWriteError::NotLeader => ClientError::Unknown("no leader".into()),
            RemoteWriteError::Unknown(w) => ClientError::Unknown(w.to_string()),
        })
    }

    /// Puts a key.
    pub async fn put(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<CommandResult, ClientError> {
        self.write(Command::Put {
            key: key.into(),
            value: value.into(),
            ttl_ms: ttl.map(|t| t.as_millis() as u64),
            condition,
        })
        .await
    }

    /// Linearizable read of one key.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, ClientError> {
        let r: Result<Vec<KeyValue>, ReadError> = self
            .call_until(
                Rpc::Read,
                &wire::Read {
                    key: key.into(),
                    prefix: false,
                },
                not_member,
            )
            .await?;
        Ok(r?.into_iter().next())
    }

    /// Linearizable read of a prefix.
    pub async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, ClientError> {
        let r: Result<Vec<KeyValue>, ReadError> = self
            .call_until(
                Rpc::Read,
                &wire::Read {
                    key: prefix.into(),
                    prefix: true,
                },
                not_member,
            )
            .await?;
        Ok(r?)
    }

    /// Membership administration (run on the leader).
    pub async fn admin(&self, req: AdminRequest) -> Result<AdminReply, ClientError> {
        let r: Result<AdminReply, AdminError> = self
            .call_until(Rpc::Admin, &req, |r| matches!(r, Err(AdminError::NoLeader)))
            .await?;
        Ok(r?)
    }

    /// Who answers at one address.
    pub async fn hello(&self, addr: &str) -> Result<HelloReply, ClientError> {
        self.peers
            .call(Rpc::Hello, 0, addr, &wire::Hello::default(), self.timeout)
            .await
            .map_err(|e| ClientError::Unreachable {
                tried: vec![format!("{addr} ({e})")],
            })
    }
}

fn not_member(r: &Result<Vec<KeyValue>, ReadError>) -> bool {
    matches!(r, Err(ReadError::NotAMember))
}
