//! Group commit on the leader: client writes that arrive while earlier proposals are in
//! flight are proposed together, as one log entry ([`Proposal::Batch`]).
//!
//! openraft 0.9 appends every proposal with its own log flush (its core awaits each
//! append before it handles the next message), so one entry per client write caps a
//! leader at one write per flush. Here at most [`MAX_IN_FLIGHT`] proposals are pending
//! at a time; the writes that queue up meanwhile go out together in the next one, and so
//! share its append, its fsync on every member and its replication round. A lone write
//! on an idle leader is proposed at once, alone, so it waits for nothing.
//!
//! A batch holds commands on distinct keys only, and never a prefix delete (see
//! [`Proposal`]); a command that would conflict waits for the next proposal.

use crate::command::{Command, CommandResult, Proposal};
use crate::wire::{RemoteWriteError, WriteUnknown};
use crate::Raft;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

/// Most commands in one proposal.
pub const MAX_BATCH: usize = 256;
/// Proposals pending at once. One: every write that arrives while a proposal is pending
/// joins the next one. On the 2-core benchmark machine (docs/benchmarks.md) 2 pending
/// proposals gave lower latency with exactly 2 writers (the second need not wait for the
/// first's commit) but, in most runs, less throughput and higher latency with 8 and 64,
/// where the CPU spent per log entry (append, replication, apply on three members) is
/// what limits; with more cores, overlapping the next proposal's append with the previous
/// one's replication could make 2 the better choice.
pub const MAX_IN_FLIGHT: usize = 1;

type Reply = oneshot::Sender<Result<CommandResult, RemoteWriteError>>;

/// The handle writes are proposed through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the batching task; it ends at `shutdown`.
    pub(crate) fn start(raft: Raft, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(raft, rx, shutdown));
        (Proposer { tx }, task)
    }

    /// Proposes `cmd` (alone or with others) and returns its result once applied here.
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResult, RemoteWriteError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((cmd, tx)).is_err() {
            return Err(RemoteWriteError::Unknown(WriteUnknown::ShuttingDown));
        }
        rx.await
            .unwrap_or(Err(RemoteWriteError::Unknown(WriteUnknown::ShuttingDown)))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut held: Option<(Command, Reply)> = None;
    loop {
        let first = match held.take() {
            Some(p) => p,
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            },
        };
        // Writes arriving while we wait for a slot join this proposal.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        if let Some(k) = batch[0].0.batch_key() {
            let mut keys: HashSet<String> = HashSet::from([k.to_string()]);
            while batch.len() < MAX_BATCH {
                let Ok(p) = rx.try_recv() else { break };
                match p.0.batch_key() {
                    Some(k) if !keys.contains(k) => {
                        keys.insert(k.to_string());
                        batch.push(p);
                    }
                    _ => {
                        held = Some(p);
                        break;
                    }
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft, batch: Vec<(Command, Reply)>) {
    let (mut cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let proposal = match cmds.len() {
        1 => Proposal::One(cmds.remove(0)),
        _ => Proposal::Batch(cmds),
    };
    match raft.client_write(proposal).await {
        Ok(resp) => {
            let mut results = resp.data.into_iter();
            for reply in replies {
                let r = results.next().ok_or_else(|| {
                    RemoteWriteError::Unknown(WriteUnknown::Raft("no result for the write".into()))
                });
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            let why = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => WriteUnknown::LeaderChanged,
                e => WriteUnknown::Raft(e.to_string()),
            };
            for reply in replies {
                let _ = reply.send(Err(RemoteWriteError::Unknown(why.clone())));
            }
        }
    }
}
