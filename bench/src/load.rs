//! The workload: closed-loop compare-and-swap clients, one key each, and their statistics.
//!
//! Every client owns one key and rewrites it on the condition that its mod revision is
//! the one the client last wrote, as Patroni refreshes its leader key; every operation is
//! therefore a real CAS that goes through consensus, never a no-op.

use crate::cluster::System;
use crate::etcd;
use anyhow::{anyhow, Context, Result};
use pgwarden_raft::client::RaftClient;
use pgwarden_raft::Condition;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Time limit of one client call.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed call, so a broken cluster is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// One client of one system, with its key and the revision it last wrote.
enum CasClient {
    Pgwarden {
        client: RaftClient,
        key: String,
        rev: u64,
    },
    Etcd {
        kv: etcd::KvClient<Channel>,
        key: Vec<u8>,
        rev: i64,
    },
}

impl CasClient {
    /// A client with its own connection to `endpoint`: every client is a separate
    /// connection, like separate Patroni processes.
    async fn connect(system: System, endpoint: &str, key: String) -> Result<CasClient> {
        Ok(match system {
            System::Pgwarden => CasClient::Pgwarden {
                client: RaftClient::new(vec![endpoint.to_string()], OP_TIMEOUT),
                key,
                rev: 0,
            },
            System::Etcd => CasClient::Etcd {
                kv: etcd::KvClient::new(etcd::channel(endpoint).await?),
                key: key.into_bytes(),
                rev: 0,
            },
        })
    }

    /// One conditional put. `Ok(false)`: the condition did not hold (the client's
    /// revision was stale); the current revision has been learnt for the next try.
    async fn cas(&mut self, value: &str) -> Result<bool> {
        match self {
            CasClient::Pgwarden { client, key, rev } => {
                let r = client
                    .put(key, value, None, Condition::ModRevisionEquals(*rev))
                    .await?;
                if r.succeeded {
                    *rev = r.revision;
                } else {
                    *rev = r.prev.map_or(0, |kv| kv.mod_revision);
                }
                Ok(r.succeeded)
            }
            CasClient::Etcd { kv, key, rev } => {
                let (succeeded, new_rev) = etcd::cas(kv, key, *rev, value.as_bytes()).await?;
                *rev = new_rev;
                Ok(succeeded)
            }
        }
    }

    /// Re-reads the key's revision after a call whose outcome is unknown.
    async fn resync(&mut self) -> Result<()> {
        match self {
            CasClient::Pgwarden { client, key, rev } => {
                *rev = client.get(key).await?.map_or(0, |kv| kv.mod_revision);
            }
            CasClient::Etcd { kv, key, rev } => {
                *rev = etcd::mod_revision(kv, key).await?;
            }
        }
        Ok(())
    }
}

/// What one load run is.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// The member every client talks to.
    pub endpoint: String,
    /// Untimed lead-in (connections, key creation, caches).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Size of each written value.
    pub value_bytes: usize,
    /// Distinguishes this run's keys from earlier runs'.
    pub key_prefix: String,
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u32>,
    errors: u64,
    lost: u64,
    last_error: Option<String>,
}

/// The result of one load run.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Latencies of the successful CAS operations completed in the window, in µs, sorted.
    pub latencies_us: Vec<u32>,
    /// Failed calls (timeouts, transport errors, no leader), over the whole run.
    pub errors: u64,
    /// Conditional puts whose condition did not hold (expected: 0).
    pub lost: u64,
    /// One of the errors, for the report.
    pub last_error: Option<String>,
    /// The measured window.
    pub duration: Duration,
}

impl LoadResult {
    /// Completed CAS operations per second in the window.
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies_us.len() as f64 / self.duration.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of latency, in ms, by nearest rank.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_us, q) as f64 / 1000.0
    }
}

/// Nearest-rank quantile of sorted values; 0 for none.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `spec.clients` closed-loop CAS clients against one member until the window ends.
pub async fn run(system: System, spec: &LoadSpec) -> Result<LoadResult> {
    let mut clients = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        let key = format!("{}/c{i}", spec.key_prefix);
        clients.push(
            CasClient::connect(system, &spec.endpoint, key)
                .await
                .with_context(|| format!("connecting client {i} to {system} at {}", spec.endpoint))?,
        );
    }
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(client_loop(c, i, spec.value_bytes, measure_from, end)))
        .collect();
    let mut result = LoadResult {
        duration: spec.duration,
        ..Default::default()
    };
    for t in tasks {
        let s = t.await.map_err(|e| anyhow!("a client task failed: {e}"))?;
        result.latencies_us.extend(s.latencies_us);
        result.errors += s.errors;
        result.lost += s.lost;
        if s.last_error.is_some() {
            result.last_error = s.last_error;
        }
    }
    result.latencies_us.sort_unstable();
    Ok(result)
}

/// One client: CAS in a loop until `end`. Only operations that start after `measure_from`
/// and finish by `end` are timed, so the warm-up and an operation cut by the end of the
/// window do not count.
async fn client_loop(
    mut c: CasClient,
    id: usize,
    value_bytes: usize,
    measure_from: Instant,
    end: Instant,
) -> ClientStats {
    let mut st = ClientStats::default();
    let mut seq = 0u64;
    let mut value = String::with_capacity(value_bytes);
    while Instant::now() < end {
        fill_value(&mut value, id, seq, value_bytes);
        seq += 1;
        let t0 = Instant::now();
        let r = c.cas(&value).await;
        let t1 = Instant::now();
        match r {
            Ok(true) => {
                if t0 >= measure_from && t1 <= end {
                    let us = (t1 - t0).as_micros().min(u32::MAX as u128) as u32;
                    st.latencies_us.push(us);
                }
            }
            Ok(false) => st.lost += 1,
            Err(e) => {
                st.errors += 1;
                st.last_error = Some(format!("{e:#}"));
                tokio::time::sleep(ERROR_BACKOFF).await;
                // The failed write may have committed: learn the key's revision again.
                if let Err(e) = c.resync().await {
                    st.last_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    st
}

/// A value of exactly `len` bytes that differs on every write (client id, sequence).
fn fill_value(buf: &mut String, id: usize, seq: u64, len: usize) {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{{\"client\":{id},\"seq\":{seq},\"pad\":\"");
    while buf.len() + 2 < len {
        buf.push('x');
    }
    buf.push_str("\"}");
    buf.truncate(len.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 0.999), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn values_have_the_requested_size_and_differ() {
        let mut a = String::new();
        let mut b = String::new();
        fill_value(&mut a, 3, 1, 128);
        fill_value(&mut b, 3, 2, 128);
        assert_eq!(a.len(), 128);
        assert_ne!(a, b);
        fill_value(&mut a, 3, 1, 10);
        assert_eq!(a.len(), 10);
    }
}
