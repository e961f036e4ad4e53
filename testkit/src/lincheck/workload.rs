//! The client side of a linearizability test: clients that get, put and compare-and-swap a
//! few shared keys in synchronized bursts, recording each operation's invocation and
//! response on one clock, ready for [`super::check`].
//!
//! The store is behind [`Store`], so the same clients drive the Raft crate's own cluster
//! test and the chaos suite's DCS workload (both wrap `pgwarden_raft::client::RaftClient`;
//! this crate cannot name it, since the Raft crate's tests depend on this one).

use super::{Input, Op, Output, Prev};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The condition of a put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// Only if the key is absent.
    Absent,
    /// Only if the key holds this value.
    Value(String),
}

/// A put's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    /// Whether the condition held and the value was written.
    pub succeeded: bool,
    /// What the key held when the put was decided.
    pub prev: Option<String>,
}

/// Why a call returned no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Certainly not executed (no member took the call, or it was refused before being
    /// proposed): left out of the history.
    NotExecuted,
    /// A write that may take effect at any later time, or never; a read that failed.
    Unknown,
}

/// The key-value store under test.
pub trait Store: Clone + Send + Sync + 'static {
    /// A linearizable read of one key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, Failure>> + Send;
    /// A conditional put.
    fn put(
        &self,
        key: &str,
        value: &str,
        expect: Expect,
    ) -> impl Future<Output = Result<Put, Failure>> + Send;
}

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Keys are `{prefix}{generation}/{0..keys}`.
    pub prefix: String,
    /// Few keys, so that operations on each key overlap a lot.
    pub keys: usize,
    /// Each client's bound on operations.
    pub ops_per_client: u32,
    /// Operations issued back to back by every client at the start of each period: within
    /// a burst the clients contend on the keys, and overlapping operations are what a
    /// linearizability check is about.
    pub burst: u32,
    /// The time between bursts.
    pub period: Duration,
    /// A fresh set of keys every this long (`None`: the same keys for the whole run). Keeps
    /// each key's history, and so the checker's search, small over a long run.
    pub generation: Option<Duration>,
}

/// How one client's operations ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Returned an answer.
    pub ok: u32,
    /// Writes whose outcome is unknown: recorded as never returning.
    pub unknown: u32,
    /// Certainly not executed (unreachable) or reads that failed: left out.
    pub failed: u32,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.ok += o.ok;
        self.unknown += o.unknown;
        self.failed += o.failed;
    }
}

/// What one client did.
#[derive(Debug, Default)]
pub struct ClientRun {
    /// Its operations, in the order it issued them.
    pub ops: Vec<Op>,
    /// How they ended.
    pub counts: Counts,
    /// Answers the register model cannot express (an unconditional put that says it did
    /// not take effect); each is a failure by itself.
    pub anomalies: Vec<String>,
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// One client: a random mix of get (40 %), put (30 %) and compare-and-swap (30 %) on the
/// plan's keys until `stop` or its bound, each operation timed on the clock that started at
/// `start`. Values are unique per write, so a read names the write it saw.
pub async fn run_client<S: Store>(
    id: usize,
    store: S,
    plan: Plan,
    start: Instant,
    stop: CancellationToken,
    seed: u64,
) -> ClientRun {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut run = ClientRun::default();
    // The last value this client saw per key: what its swaps expect, so that many succeed.
    let mut last_seen: HashMap<String, Option<String>> = HashMap::new();
    let burst = plan.burst.max(1);
    for i in 0..plan.ops_per_client {
        if stop.is_cancelled() {
            break;
        }
        if i % burst == 0 {
            // A client that fell behind (an op stalled by a failover) starts at once.
            let at = start + plan.period * (i / burst);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
        }
        let generation = plan
            .generation
            .map_or(0, |g| start.elapsed().as_nanos() / g.as_nanos().max(1));
        let key = format!(
            "{}{generation}/{}",
            plan.prefix,
            rng.gen_range(0..plan.keys.max(1))
        );
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
            Input::Read => match store.get(&key).await {
                Ok(v) => {
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
                let expect = match &input {
                    Input::Cas { expected: None, .. } => Expect::Absent,
                    Input::Cas {
                        expected: Some(e), ..
                    } => Expect::Value(e.clone()),
                    _ => Expect::Any,
                };
                match store.put(&key, v, expect).await {
                    Ok(r) => {
                        let out = if let Input::Cas { .. } = input {
                            Output::Swapped {
                                ok: r.succeeded,
                                prev: Prev::Was(r.prev.clone()),
                            }
                        } else {
                            if !r.succeeded {
                                run.anomalies
                                    .push(format!("unconditional put {key}={v} did not take effect"));
                            }
                            Output::Written {
                                prev: Prev::Was(r.prev.clone()),
                            }
                        };
                        last_seen.insert(key.clone(), if r.succeeded { Some(v.clone()) } else { r.prev });
                        (Some(out), false)
                    }
                    Err(Failure::NotExecuted) => {
                        run.counts.failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    // May commit at any later time, or never: an op without a response.
                    Err(Failure::Unknown) => (None, true),
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

/// Completed operations whose interval overlaps another operation's on the same key (a
/// pending one extends to the end): the ones whose order the checker had to work out.
pub fn overlapping(history: &[Op]) -> usize {
    let end = |o: &Op| o.ret.as_ref().map_or(u64::MAX, |r| r.0);
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for o in history {
        by_key.entry(o.key.as_str()).or_default().push(o);
    }
    by_key
        .values()
        .map(|ops| {
            ops.iter()
                .enumerate()
                .filter(|(i, a)| {
                    a.ret.is_some()
                        && ops
                            .iter()
                            .enumerate()
                            .any(|(j, b)| j != *i && b.call <= end(a) && a.call <= end(b))
                })
                .count()
        })
        .sum()
}

/// The longest stretches without any answered write, as (from, to) in seconds, in time
/// order: where the store could not commit (failovers show up here).
pub fn write_gaps(history: &[Op], n: usize) -> Vec<(f64, f64)> {
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

/// A history with one read made wrong: the last read of a key that a completed write had
/// set before the read was invoked now answers "absent", which no linearization allows
/// when nothing deletes keys. `None` when the history has no such read. Feeding it to the
/// checker shows that the check has teeth on the very history it passed.
pub fn tampered(history: &[Op]) -> Option<(usize, Vec<Op>)> {
    let written_by = |key: &str| {
        history
            .iter()
            .filter(|o| o.key == key && matches!(o.ret, Some((_, Output::Written { .. }))))
            .filter_map(|o| o.ret.as_ref().map(|r| r.0))
            .min()
    };
    let victim = history.iter().rposition(|o| {
        matches!(o.ret, Some((_, Output::Read(_)))) && written_by(&o.key).is_some_and(|t| t < o.call)
    })?;
    let mut t = history.to_vec();
    t[victim].ret.as_mut()?.1 = Output::Read(None);
    Some((victim, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An in-memory register store: every history it produces is linearizable.
    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<HashMap<String, String>>>);

    impl Store for Mem {
        async fn get(&self, key: &str) -> Result<Option<String>, Failure> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, key: &str, value: &str, expect: Expect) -> Result<Put, Failure> {
            let mut m = self.0.lock().unwrap();
            let prev = m.get(key).cloned();
            let ok = match &expect {
                Expect::Any => true,
                Expect::Absent => prev.is_none(),
                Expect::Value(v) => prev.as_ref() == Some(v),
            };
            if ok {
                m.insert(key.to_string(), value.to_string());
            }
            Ok(Put { succeeded: ok, prev })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lincheck_workload_on_a_correct_store_passes_and_its_tampered_copy_fails() {
        let store = Mem::default();
        let plan = Plan {
            prefix: "/t/".into(),
            keys: 2,
            ops_per_client: 40,
            burst: 8,
            period: Duration::from_millis(5),
            generation: Some(Duration::from_millis(20)),
        };
        let start = Instant::now();
        let stop = CancellationToken::new();
        let tasks: Vec<_> = (0..4)
            .map(|id| {
                tokio::spawn(run_client(
                    id,
                    store.clone(),
                    plan.clone(),
                    start,
                    stop.clone(),
                    7,
                ))
            })
            .collect();
        let mut history = vec![];
        for t in tasks {
            let run = t.await.unwrap();
            assert!(run.anomalies.is_empty());
            history.extend(run.ops);
        }
        assert_eq!(history.len(), 160);
        let report = super::super::check(&history, super::super::Options::default());
        assert!(report.ok(), "{:?}", report.violations);
        // A generation of keys every 20 ms: more than the two keys of one.
        let keys: std::collections::BTreeSet<_> = history.iter().map(|o| o.key.as_str()).collect();
        assert!(keys.len() > 2, "{keys:?}");
        let (_, bad) = tampered(&history).expect("a read after a write");
        assert!(!super::super::check(&bad, super::super::Options::default()).ok());
    }
}
