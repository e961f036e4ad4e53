//! The DCS as the HA loop sees it: linearizable reads, conditional writes with TTL, and
//! prefix watches. [`crate::RaftNode`] is the real implementation; [`MemDcs`] is an
//! in-memory fake with the same semantics for unit tests of the HA decision logic.

use crate::command::{Command, Condition, KeyValue};
use crate::keyspace::{Change, Keyspace};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub use crate::command::CommandResult as WriteOutcome;
pub use crate::error::DcsError;

/// A change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or replaced.
    Put(KeyValue),
    /// A key was deleted (`expired` when its lease ran out).
    Delete {
        /// The key.
        key: String,
        /// The log index of the deletion.
        revision: u64,
        /// Whether the lease reaper deleted it.
        expired: bool,
    },
    /// Events were missed (snapshot install, slow subscriber): re-read the prefix.
    Reset,
}

impl WatchEvent {
    fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put(kv) => Some(&kv.key),
            WatchEvent::Delete { key, .. } => Some(key),
            WatchEvent::Reset => None,
        }
    }
}

/// A subscription to the changes under a prefix, applied on this node.
pub struct Watch {
    rx: broadcast::Receiver<WatchEvent>,
    prefix: String,
}

impl Watch {
    pub(crate) fn new(rx: broadcast::Receiver<WatchEvent>, prefix: &str) -> Self {
        Watch {
            rx,
            prefix: prefix.to_string(),
        }
    }

    /// The next event under the prefix; `None` once the DCS has shut down. A subscriber
    /// that fell behind gets [`WatchEvent::Reset`] rather than a silent gap.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            match self.rx.recv().await {
                Ok(ev) => match ev.key() {
                    Some(k) if !k.starts_with(&self.prefix) => continue,
                    _ => return Some(ev),
                },
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(WatchEvent::Reset),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The DCS operations the HA loop needs.
pub trait Dcs: Send + Sync + 'static {
    /// Linearizable read of one key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, DcsError>> + Send;

    /// Linearizable read of every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<KeyValue>, DcsError>> + Send;

    /// Local read that may be stale (diagnostics: `list`, REST on a partitioned node).
    fn list_stale(&self, prefix: &str) -> Vec<KeyValue>;

    /// Proposes a command and waits until it is committed and applied.
    fn write(&self, cmd: Command) -> impl Future<Output = Result<WriteOutcome, DcsError>> + Send;

    /// Subscribes to changes under `prefix` from now on.
    fn watch(&self, prefix: &str) -> Watch;

    /// Sets the time limit of each later read and write (the HA loop passes the dynamic
    /// `retry_timeout` whenever it changes). An implementation without time limits ignores it.
    fn set_op_timeout(&self, _limit: Duration) {}

    /// Puts `value` at `key` when `condition` holds; with a TTL the key is a lease.
    fn put(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> impl Future<Output = Result<WriteOutcome, DcsError>> + Send {
        self.write(Command::Put {
            key: key.to_string(),
            value: value.to_string(),
            ttl_ms: ttl.map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            condition,
        })
    }

    /// Deletes `key` when `condition` holds.
    fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> impl Future<Output = Result<WriteOutcome, DcsError>> + Send {
        self.write(Command::Delete {
            key: key.to_string(),
            prefix: false,
            condition,
        })
    }

    /// Deletes every key under `prefix`.
    fn delete_prefix(&self, prefix: &str) -> impl Future<Output = Result<WriteOutcome, DcsError>> + Send {
        self.write(Command::Delete {
            key: prefix.to_string(),
            prefix: true,
            condition: Condition::Always,
        })
    }
}

/// An in-memory DCS with the real one's semantics (conditions, revisions, TTL expiry,
/// watches) on tokio's clock, so tests can pause and advance time. It can be told to
/// fail, to test the HA loop's "DCS unavailable" paths.
pub struct MemDcs {
    state: Mutex<MemState>,
    events: broadcast::Sender<WatchEvent>,
    available: AtomicBool,
    /// How long every write waits (on tokio's clock) before it is applied and answered.
    write_delay: Mutex<Duration>,
}

#[derive(Default)]
struct MemState {
    keyspace: Keyspace,
    index: u64,
    deadlines: HashMap<String, (u64, Instant)>,
}

impl Default for MemDcs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemDcs {
    /// An empty keyspace.
    pub fn new() -> Self {
        MemDcs {
            state: Mutex::new(MemState::default()),
            events: broadcast::channel(1024).0,
            available: AtomicBool::new(true),
            write_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// Makes every later write wait this long before it is applied and answered, like a slow
    /// commit: to test what happens beside a write in flight.
    pub fn set_write_delay(&self, delay: Duration) {
        *self.write_delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Makes every later call fail with [`DcsError::Unavailable`] (or work again).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    fn check(&self, op: &'static str) -> Result<(), DcsError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(DcsError::Unavailable {
                op,
                reason: "made unavailable by the test".into(),
            })
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_locked(&self, st: &mut MemState, cmd: &Command) -> WriteOutcome {
        st.index += 1;
        let index = st.index;
        let mut changes = vec![];
        let res = st.keyspace.apply(index, cmd, &mut changes);
        let now = Instant::now();
        for ch in changes {
            match ch {
                Change::Put(kv) => {
                    match kv.ttl_ms {
                        Some(t) => st
                            .deadlines
                            .insert(kv.key.clone(), (kv.mod_revision, now + Duration::from_millis(t))),
                        None => st.deadlines.remove(&kv.key),
                    };
                    let _ = self.events.send(WatchEvent::Put(kv));
                }
                Change::Delete {
                    key,
                    revision,
                    expired,
                } => {
                    st.deadlines.remove(&key);
                    let _ = self.events.send(WatchEvent::Delete {
                        key,
                        revision,
                        expired,
                    });
                }
            }
        }
        res
    }

    /// Deletes keys whose lease has run out (lazily, at each operation).
    fn expire_locked(&self, st: &mut MemState) {
        let now = Instant::now();
        let mut due: Vec<(String, u64)> = st
            .deadlines
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(k, (r, _))| (k.clone(), *r))
            .collect();
        due.sort();
        for (key, mod_revision) in due {
            self.apply_locked(st, &Command::Expire { key, mod_revision });
        }
    }
}

impl Dcs for MemDcs {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DcsError> {
        self.check("get")?;
        let mut st = self.lock();
        self.expire_locked(&mut st);
        Ok(st.keyspace.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, DcsError> {
        self.check("list")?;
        let mut st = self.lock();
        self.expire_locked(&mut st);
        Ok(st.keyspace.list(prefix))
    }

    fn list_stale(&self, prefix: &str) -> Vec<KeyValue> {
        let mut st = self.lock();
        self.expire_locked(&mut st);
        st.keyspace.list(prefix)
    }

    async fn write(&self, cmd: Command) -> Result<WriteOutcome, DcsError> {
        self.check("write")?;
        cmd.validate().map_err(DcsError::Invalid)?;
        let delay = *self.write_delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.lock();
        self.expire_locked(&mut st);
        Ok(self.apply_locked(&mut st, &cmd))
    }

    fn watch(&self, prefix: &str) -> Watch {
        Watch::new(self.events.subscribe(), prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake honours TTLs on tokio's clock and reports expiry to watchers.
    #[tokio::test(start_paused = true)]
    async fn fake_expires_leases_on_paused_clock() {
        let dcs = MemDcs::new();
        let mut w = dcs.watch("/s/");
        let r = dcs
            .put("/s/leader", "a", Some(Duration::from_secs(10)), Condition::Absent)
            .await
            .unwrap();
        assert!(r.succeeded);
        assert!(matches!(w.next().await, Some(WatchEvent::Put(_))));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(dcs.get("/s/leader").await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(dcs.get("/s/leader").await.unwrap().is_none());
        assert!(matches!(
            w.next().await,
            Some(WatchEvent::Delete { expired: true, .. })
        ));
        dcs.set_available(false);
        assert!(matches!(dcs.list("/s/").await, Err(DcsError::Unavailable { .. })));
    }
}
