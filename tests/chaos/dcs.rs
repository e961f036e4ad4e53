//! The DCS workload run alongside the faults: one client pinned to each member's Raft port
//! and one that may use any member get, put and compare-and-swap a few keys of the
//! cluster's own Raft group (under `/chaos-dcs/`, outside every scope's keyspace, so the HA
//! loop never reads them), through the same partitions, kills and stalls as PostgreSQL. At
//! the end the history must be linearizable per key (`pgwarden_testkit::lincheck`, the
//! checker the Raft crate's own test uses).

use pgwarden_raft::client::{ClientError, RaftClient};
use pgwarden_raft::Condition;
use pgwarden_testkit::lincheck::workload::{
    self, overlapping, run_client, Counts, Expect, Failure, Plan, Put, Store,
};
use pgwarden_testkit::lincheck::{check, Op, Options};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A call that gets no answer within this counts as unknown (a write) or failed (a read).
const CALL_LIMIT: Duration = Duration::from_secs(3);

/// Three keys, bursts of four operations per client every second (a load far below the
/// PostgreSQL writers', so that it does not change what the run measures), a fresh set of
/// keys every minute so that each key's history stays small over a 45-minute run, and a
/// bound of ops per client above what such a run makes.
fn plan() -> Plan {
    Plan {
        prefix: "/chaos-dcs/".into(),
        keys: 3,
        ops_per_client: 4 * 3600,
        burst: 4,
        period: Duration::from_secs(1),
        generation: Some(Duration::from_secs(60)),
    }
}

/// The DCS client as the checker's clients see it.
#[derive(Clone)]
struct Dcs(RaftClient);

impl Store for Dcs {
    async fn get(&self, key: &str) -> Result<Option<String>, Failure> {
        self.0
            .get(key)
            .await
            .map(|kv| kv.map(|kv| kv.value))
            .map_err(|_| Failure::Unknown)
    }

    async fn put(&self, key: &str, value: &str, expect: Expect) -> Result<Put, Failure> {
        let condition = match expect {
            Expect::Any => Condition::Always,
            Expect::Absent => Condition::Absent,
            Expect::Value(v) => Condition::ValueEquals(v),
        };
        match self.0.put(key, value, None, condition).await {
            Ok(r) => Ok(Put {
                succeeded: r.succeeded,
                prev: r.prev.map(|kv| kv.value),
            }),
            // No member took the call: certainly not executed.
            Err(ClientError::Unreachable { .. } | ClientError::Invalid(_)) => Err(Failure::NotExecuted),
            Err(_) => Err(Failure::Unknown),
        }
    }
}

/// The running workload.
pub struct DcsLoad {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<workload::ClientRun>>,
}

/// What the workload did and what the checker found.
#[derive(Debug, Default)]
pub struct DcsVerdict {
    pub counts: Counts,
    /// Answered operations that overlapped another on their key: the ones the check had
    /// to order.
    pub overlapping: usize,
    /// Keys the history touched.
    pub keys: usize,
    /// Keys whose history is not linearizable, each with the operations around the first
    /// one that cannot be placed.
    pub violations: Vec<String>,
    /// Keys the search gave up on (too many steps): neither passed nor failed.
    pub gave_up: Vec<String>,
    /// Answers the register model cannot express.
    pub anomalies: Vec<String>,
    /// The same history with one read made impossible was rejected: the check had teeth
    /// on this run (`None` when the history had no read to spoil).
    pub tampered_rejected: Option<bool>,
}

impl DcsLoad {
    /// Starts the clients on the members' Raft addresses (`host:port`).
    pub fn start(raft_addrs: &[String], seed: u64) -> DcsLoad {
        let start = Instant::now();
        let stop = CancellationToken::new();
        let mut clients: Vec<RaftClient> = raft_addrs
            .iter()
            .map(|a| RaftClient::new(vec![a.clone()], CALL_LIMIT))
            .collect();
        clients.push(RaftClient::new(raft_addrs.to_vec(), CALL_LIMIT));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(id, c)| tokio::spawn(run_client(id, Dcs(c), plan(), start, stop.clone(), seed)))
            .collect();
        DcsLoad { stop, tasks }
    }

    /// Stops the clients without checking (the run was interrupted).
    pub fn abandon(self) {
        self.stop.cancel();
    }

    /// Stops the clients and checks their history.
    pub async fn stop(self) -> DcsVerdict {
        self.stop.cancel();
        let mut history: Vec<Op> = vec![];
        let mut v = DcsVerdict::default();
        for t in self.tasks {
            // An op in flight ends within CALL_LIMIT; this limit only guards a hang.
            match tokio::time::timeout(CALL_LIMIT * 4, t).await {
                Ok(Ok(run)) => {
                    history.extend(run.ops);
                    v.counts += run.counts;
                    v.anomalies.extend(run.anomalies);
                }
                Ok(Err(e)) => v.anomalies.push(format!("a DCS client task failed: {e}")),
                Err(_) => v.anomalies.push("a DCS client did not stop".into()),
            }
        }
        v.overlapping = overlapping(&history);
        // The search is CPU work; keep it off the runtime's workers.
        let (report, teeth) = tokio::task::spawn_blocking(move || {
            let report = check(&history, Options::default());
            let teeth = workload::tampered(&history).map(|(_, bad)| !check(&bad, Options::default()).ok());
            (report, teeth)
        })
        .await
        .expect("the linearizability check panicked");
        v.keys = report.keys.len();
        v.violations = report.violations.iter().map(|x| x.to_string()).collect();
        v.gave_up = report.gave_up.clone();
        v.tampered_rejected = teeth;
        v
    }
}
