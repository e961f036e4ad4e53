//! Linearizability of the DCS under leader failure: concurrent clients put, swap and get
//! a few keys on a 3-member cluster of real processes while the Raft leader is SIGKILLed
//! and restarted, twice; the recorded history must pass the checker in `pgwarden_testkit::lincheck`.

mod common;

use common::ProcCluster;
use pgwarden_raft::client::{ClientError, RaftClient};
use pgwarden_raft::Condition;
use pgwarden_testkit::lincheck::workload::{
    overlapping, run_client, tampered, write_gaps, Counts, Expect, Failure, Plan, Put, Store,
};
use pgwarden_testkit::lincheck::{check, Options, Output};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 6;
/// Four keys, each client at most 300 operations, in bursts of 8 back-to-back operations
/// that all clients start together every 400 ms: the bursts span the whole fault schedule.
fn plan() -> Plan {
    Plan {
        prefix: "/lin/".into(),
        keys: 4,
        ops_per_client: 300,
        burst: 8,
        period: Duration::from_millis(400),
        generation: None,
    }
}
/// How long the killed leader stays down. Failover takes 1.6-2.9 s here (election timeout
/// 0.5-1 s, openraft's leader lease, clients backing off), so a shorter outage would
/// often end before the survivors commit anything, and the restarted member would have
/// nothing to catch up on.
const DOWN: Duration = Duration::from_millis(3000);
/// Time for the restarted member to catch up before the next kill.
const UP: Duration = Duration::from_millis(2500);

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
            // No member took the call (refused connections): certainly not executed.
            Err(ClientError::Unreachable { .. } | ClientError::Invalid(_)) => Err(Failure::NotExecuted),
            Err(_) => Err(Failure::Unknown),
        }
    }
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Six clients (three pinned to one member each, three with every member) run a random
/// mix of put / compare-and-swap / get on four keys while the leader is SIGKILLed and
/// restarted twice. The history (writes of unknown outcome included as never returning)
/// must be linearizable per key. The test also requires hundreds of answered operations,
/// some of them after the last restart, so a stalled cluster cannot pass vacuously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_leader_kills_is_linearizable() {
    let mut c = ProcCluster::start(3).await;
    let seed: u64 = rand::random();
    eprintln!("seed {seed:#x}");
    let start = Instant::now();
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let client = if id < 3 { c.client_of(id) } else { c.client() };
        tasks.push(tokio::spawn(run_client(
            id,
            Dcs(client),
            plan(),
            start,
            stop.clone(),
            seed,
        )));
    }

    // The fault schedule: let traffic settle, then twice kill the leader, keep it down
    // long enough for the others to elect and commit, restart it and let it catch up.
    let mut outages = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..2 {
        let l = c.leader().await;
        let killed = nanos_since(start);
        eprintln!(
            "{:>7.3}s round {round}: SIGKILL leader n{l}",
            start.elapsed().as_secs_f64()
        );
        c.kill9(l);
        tokio::time::sleep(DOWN).await;
        c.start_member(l);
        outages.push((l, killed, nanos_since(start)));
        eprintln!(
            "{:>7.3}s round {round}: restarted n{l}",
            start.elapsed().as_secs_f64()
        );
        tokio::time::sleep(UP).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.cancel();

    let mut history = Vec::new();
    let mut counts = Counts::default();
    let mut anomalies = Vec::new();
    for t in tasks {
        // An op in flight ends within the client's timeout; this limit only guards a hang.
        let run = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("a client did not stop")
            .expect("client task panicked");
        history.extend(run.ops);
        counts += run.counts;
        anomalies.extend(run.anomalies);
    }
    let last_restart = outages.last().expect("two rounds").2;
    let ok_after_restart = history
        .iter()
        .filter(|o| o.ret.is_some() && o.call > last_restart)
        .count();
    let swaps = |ok: bool| {
        history
            .iter()
            .filter(|o| matches!(o.ret, Some((_, Output::Swapped { ok: k, .. })) if k == ok))
            .count()
    };
    let concurrent = overlapping(&history);
    eprintln!(
        "{:>7.3}s ops: {} ok, {} unknown, {} failed; {ok_after_restart} ok after the last restart; \
         {concurrent} ok overlapping another op on their key; swaps: {} succeeded, {} failed",
        start.elapsed().as_secs_f64(),
        counts.ok,
        counts.unknown,
        counts.failed,
        swaps(true),
        swaps(false),
    );

    for (l, from, to) in &outages {
        let n = history
            .iter()
            .filter(|o| o.call >= *from && o.ret.as_ref().is_some_and(|r| r.0 <= *to))
            .count();
        eprintln!("  {n} ops answered while n{l} was down");
    }
    for (from, to) in write_gaps(&history, 4) {
        eprintln!(
            "  no write answered from {from:.3}s to {to:.3}s ({:.3}s)",
            to - from
        );
    }

    let checking = Instant::now();
    let report = check(&history, Options::default());
    eprintln!("checked in {:?}", checking.elapsed());
    for (key, (n, pruned, steps)) in &report.keys {
        eprintln!("  {key}: {n} ops ({pruned} pending pruned), {steps} search steps");
    }
    if !report.ok() || !anomalies.is_empty() {
        for v in &report.violations {
            eprintln!("{v}");
        }
        c.dump_logs();
    }
    assert!(anomalies.is_empty(), "anomalies: {anomalies:?}");
    assert!(
        report.gave_up.is_empty(),
        "checker gave up on {:?}",
        report.gave_up
    );
    assert!(
        report.violations.is_empty(),
        "not linearizable: {:?} (seed {seed:#x}; histories above)",
        report.violations.iter().map(|v| &v.key).collect::<Vec<_>>()
    );
    // The check has teeth on this very history: no op deletes a key, so a read invoked
    // after a write to its key completed cannot return "absent". Make the last such read
    // say so, and the checker must reject the history.
    let (victim, tampered) = tampered(&history).expect("a read after a completed write");
    let report = check(&tampered, Options::default());
    assert_eq!(
        report.violations.len(),
        1,
        "a read of a written key that answers 'absent' went unnoticed: {}",
        tampered[victim]
    );

    // Not vacuous: the cluster served hundreds of ops, and kept serving after the faults.
    assert!(counts.ok > 200, "only {} operations answered", counts.ok);
    assert!(
        concurrent * 2 > counts.ok as usize,
        "only {concurrent} of {} answered operations overlapped another: too little contention",
        counts.ok
    );
    assert!(
        ok_after_restart > 30,
        "only {ok_after_restart} operations answered after the last restart"
    );
}
