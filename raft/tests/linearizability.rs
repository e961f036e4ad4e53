//! Linearizability of the DCS under leader failure: concurrent clients put, swap and get
//! a few keys on a 3-member cluster of real processes while the Raft leader is SIGKILLed
//! and restarted, twice; the recorded history must pass the checker in `lincheck`.

mod common;
mod lincheck;

use common::ProcCluster;
use lincheck::{check, Input, Op, Options, Output, Prev};
use pgwarden_raft::client::{ClientError, RaftClient};
use pgwarden_raft::Condition;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Keys the clients share; few, so that operations on each key overlap a lot.
const KEYS: usize = 4;
const CLIENTS: usize = 6;
/// Each client issues at most this many operations, in bursts of `BURST` back-to-back
/// operations that all clients start together every `PERIOD`: within a burst the clients
/// contend on the keys (overlapping operations are what a linearizability check is
/// about), and the bursts span the whole fault schedule.
const OPS_PER_CLIENT: u32 = 300;
const BURST: u32 = 8;
const PERIOD: Duration = Duration::from_millis(400);
/// How long the killed leader stays down. Failover takes 1.6-2.9 s here (election timeout
/// 0.5-1 s, openraft's leader lease, clients backing off), so a shorter outage would
/// often end before the survivors commit anything, and the restarted member would have
/// nothing to catch up on.
const DOWN: Duration = Duration::from_millis(3000);
/// Time for the restarted member to catch up before the next kill.
const UP: Duration = Duration::from_millis(2500);

/// How one client's operations ended.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Returned an answer.
    ok: u32,
    /// Writes whose outcome is unknown: recorded as never returning.
    unknown: u32,
    /// Certainly not executed (unreachable) or reads that failed: left out.
    failed: u32,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.ok += o.ok;
        self.unknown += o.unknown;
        self.failed += o.failed;
    }
}

/// What one client did.
struct ClientRun {
    ops: Vec<Op>,
    counts: Counts,
    /// Answers the register model cannot express (an unconditional put that says it did
    /// not take effect); each is a failure by itself.
    anomalies: Vec<String>,
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Completed operations whose interval overlaps another operation's on the same key (a
/// pending one extends to the end): the ones whose order the checker had to work out.
fn overlapping(history: &[Op]) -> usize {
    let end = |o: &Op| o.ret.as_ref().map_or(u64::MAX, |r| r.0);
    history
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            a.ret.is_some()
                && history
                    .iter()
                    .enumerate()
                    .any(|(j, b)| j != *i && a.key == b.key && b.call <= end(a) && a.call <= end(b))
        })
        .count()
}

/// The longest stretches without any answered write, as (from, to) in seconds: where the
/// cluster could not commit (for the log; failovers show up here).
fn write_gaps(history: &[Op], n: usize) -> Vec<(f64, f64)> {
    let mut acks: Vec<u64> = history
        .iter()
        .filter(|o| o.input != Input::Read)
        .filter_map(|o| o.ret.as_ref().map(|r| r.0))
        .collect();
    acks.sort_unstable();
    let mut gaps: Vec<(u64, u64)> = acks.windows(2).map(|w| (w[0], w[1])).collect();
    gaps.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
    let mut top: Vec<(f64, f64)> = gaps
        .into_iter()
        .take(n)
        .map(|(a, b)| (a as f64 / 1e9, b as f64 / 1e9))
        .collect();
    top.sort_by(|x, y| x.0.total_cmp(&y.0));
    top
}

/// One client: a random mix of get, put and compare-and-swap on the shared keys until
/// `stop`, recording each operation's invocation and response on the shared clock.
async fn run_client(
    id: usize,
    client: RaftClient,
    start: Instant,
    stop: CancellationToken,
    seed: u64,
) -> ClientRun {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut run = ClientRun {
        ops: Vec::new(),
        counts: Counts::default(),
        anomalies: Vec::new(),
    };
    // The last value this client saw per key: what its swaps expect, so that many succeed.
    let mut last_seen: HashMap<String, Option<String>> = HashMap::new();
    for i in 0..OPS_PER_CLIENT {
        if stop.is_cancelled() {
            break;
        }
        if i % BURST == 0 {
            // A client that fell behind (an op stalled by a failover) starts at once.
            let burst = start + PERIOD * (i / BURST);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(burst.into()) => {}
            }
        }
        let key = format!("/lin/{}", rng.gen_range(0..KEYS));
        // Unique per write, so a read names the write it saw.
        let value = format!("c{id}-{i}");
        let input = match rng.gen_range(0..10) {
            0..=3 => Input::Read,
            4..=6 => Input::Write(value.clone()),
            _ => Input::Cas {
                expected: if rng.gen_bool(0.25) {
                    None
                } else {
                    last_seen.get(&key).cloned().flatten()
                },
                new: value.clone(),
            },
        };
        let call = nanos_since(start);
        let (ret, pause) = match &input {
            Input::Read => match client.get(&key).await {
                Ok(kv) => {
                    let v = kv.map(|kv| kv.value);
                    last_seen.insert(key.clone(), v.clone());
                    (Some(Output::Read(v)), false)
                }
                // A read that failed observed nothing and changed nothing: leave it out.
                Err(_) => {
                    run.counts.failed += 1;
                    continue;
                }
            },
            Input::Write(v) | Input::Cas { new: v, .. } => {
                let condition = match &input {
                    Input::Cas { expected: None, .. } => Condition::Absent,
                    Input::Cas {
                        expected: Some(e), ..
                    } => Condition::ValueEquals(e.clone()),
                    _ => Condition::Always,
                };
                match client.put(&key, v, None, condition).await {
                    Ok(r) => {
                        let prev = r.prev.map(|kv| kv.value);
                        let out = if let Input::Cas { .. } = input {
                            Output::Swapped {
                                ok: r.succeeded,
                                prev: Prev::Was(prev.clone()),
                            }
                        } else {
                            if !r.succeeded {
                                run.anomalies
                                    .push(format!("unconditional put {key}={v} did not take effect"));
                            }
                            Output::Written {
                                prev: Prev::Was(prev.clone()),
                            }
                        };
                        last_seen.insert(key.clone(), if r.succeeded { Some(v.clone()) } else { prev });
                        (Some(out), false)
                    }
                    // No member took the call (refused connections): certainly not executed.
                    Err(ClientError::Unreachable { .. } | ClientError::Invalid(_)) => {
                        run.counts.failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    // May commit at any later time, or never: an op without a response.
                    Err(_) => (None, true),
                }
            }
        };
        let at = nanos_since(start);
        match &ret {
            Some(_) => run.counts.ok += 1,
            None => run.counts.unknown += 1,
        }
        run.ops.push(Op {
            client: id,
            key,
            input,
            call,
            ret: ret.map(|o| (at, o)),
        });
        if pause {
            // Do not hammer a cluster that is electing.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    run
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
        tasks.push(tokio::spawn(run_client(id, client, start, stop.clone(), seed)));
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
    let written_by = |key: &str| {
        history
            .iter()
            .filter(|o| o.key == key && matches!(o.ret, Some((_, Output::Written { .. }))))
            .filter_map(|o| o.ret.as_ref().map(|r| r.0))
            .min()
    };
    let victim = history
        .iter()
        .rposition(|o| {
            matches!(o.ret, Some((_, Output::Read(_)))) && written_by(&o.key).is_some_and(|t| t < o.call)
        })
        .expect("a read after a completed write");
    let mut tampered = history.clone();
    tampered[victim].ret.as_mut().expect("a read with an answer").1 = Output::Read(None);
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
