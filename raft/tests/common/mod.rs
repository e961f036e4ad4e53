//! Real `pgwarden-dcs` processes on loopback, for tests that kill and restart members.
// Each test binary of this crate includes this module and uses a different part of it.
#![allow(dead_code)]

use pgwarden_raft::client::RaftClient;
use pgwarden_raft::node::wire::{AdminReply, AdminRequest};
use pgwarden_raft::Condition;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

// The same allocator as pgwarden's end-to-end tests: ports below the ephemeral range, in
// blocks claimed per process, so a member restarted after a kill finds its port still free.
pub use pgwarden_testkit::free_addr;

/// One member process.
pub struct DcsProc {
    child: Child,
}

impl DcsProc {
    pub fn spawn(name: &str, data_dir: &Path, log: &Path, addr: &str, partners: &[String]) -> DcsProc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_pgwarden-dcs"))
            .args(["--name", name, "--self-addr", addr])
            .arg("--data-dir")
            .arg(data_dir)
            .arg(format!("--partners={}", partners.join(",")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pgwarden-dcs");
        DcsProc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DcsProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of member processes, each with its own directory under one temp dir.
pub struct ProcCluster {
    pub procs: Vec<Option<DcsProc>>,
    pub addrs: Vec<String>,
    pub root: TempDir,
}

impl ProcCluster {
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("n{i}/data"))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("n{i}.log"))
    }

    /// Starts `n` members from empty directories and waits until a write succeeds.
    pub async fn start(n: usize) -> ProcCluster {
        let root = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<String> = (0..n).map(|_| free_addr()).collect();
        let mut c = ProcCluster {
            procs: (0..n).map(|_| None).collect(),
            addrs,
            root,
        };
        for i in 0..n {
            c.start_member(i);
        }
        let client = c.client();
        wait_for(
            Duration::from_secs(20),
            "the new cluster to accept a write",
            || {
                let cl = client.clone();
                async move {
                    cl.put("/ready", "1", None, Condition::Always)
                        .await
                        .ok()
                        .filter(|r| r.succeeded)
                }
            },
        )
        .await;
        c
    }

    pub fn start_member(&mut self, i: usize) {
        let partners: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        let dir = self.data_dir(i);
        std::fs::create_dir_all(&dir).expect("mkdir");
        self.procs[i] = Some(DcsProc::spawn(
            &format!("n{i}"),
            &dir,
            &self.log(i),
            &self.addrs[i],
            &partners,
        ));
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(p) = self.procs[i].take() {
            p.kill9();
        }
    }

    /// A client over every member.
    pub fn client(&self) -> RaftClient {
        RaftClient::new(self.addrs.clone(), Duration::from_secs(3))
    }

    /// A client of one member only.
    pub fn client_of(&self, i: usize) -> RaftClient {
        RaftClient::new(vec![self.addrs[i].clone()], Duration::from_secs(3))
    }

    /// Index of the current Raft leader, as the leader reports it.
    pub async fn leader(&self) -> usize {
        let client = self.client();
        let addrs = self.addrs.clone();
        wait_for(Duration::from_secs(15), "a Raft leader", || {
            let cl = client.clone();
            let addrs = addrs.clone();
            async move {
                let AdminReply::Status(s) = cl.admin(AdminRequest::Status).await.ok()? else {
                    return None;
                };
                let lid = s.leader?;
                let m = s.members.iter().find(|m| m.id == lid)?;
                addrs.iter().position(|a| *a == m.addr)
            }
        })
        .await
    }

    /// Prints every member's log (on failure, for post-mortem).
    pub fn dump_logs(&self) {
        for i in 0..self.addrs.len() {
            if let Ok(s) = std::fs::read_to_string(self.log(i)) {
                let tail: Vec<&str> = s.lines().rev().take(40).collect();
                eprintln!("---- n{i} log tail ----");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Polls `cond` every 20 ms (these conditions are cheap and the timings short) until it
/// returns Some, or panics after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    pgwarden_testkit::wait_for_every(Duration::from_millis(20), limit, what, cond).await
}
