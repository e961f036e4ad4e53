//! An in-process cluster of real nodes on loopback, with a per-link fault matrix.

use pgwarden_raft::network::LinkFilter;
use pgwarden_raft::{NodeConfig, NodeId, RaftNode};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

/// Which directed links are cut.
#[derive(Default)]
pub struct Links {
    cut: Mutex<HashSet<(NodeId, NodeId)>>,
}

impl Links {
    /// Cuts every link between `a` and each of `others`, both ways.
    pub fn isolate(&self, a: NodeId, others: &[NodeId]) {
        let mut cut = self.cut.lock().unwrap();
        for o in others {
            cut.insert((a, *o));
            cut.insert((*o, a));
        }
    }

    /// Cuts the directed links from `a` to each of `others`: `a` can still be reached.
    pub fn cut_from(&self, a: NodeId, others: &[NodeId]) {
        let mut cut = self.cut.lock().unwrap();
        for o in others {
            cut.insert((a, *o));
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }
}

impl LinkFilter for Links {
    fn allows(&self, from: NodeId, to: NodeId, _to_addr: &str) -> bool {
        !self.cut.lock().unwrap().contains(&(from, to))
    }
}

pub struct Cluster {
    pub nodes: Vec<Option<RaftNode>>,
    pub addrs: Vec<String>,
    pub links: Arc<Links>,
    pub dirs: Vec<TempDir>,
}

pub async fn free_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

pub fn config(
    name: &str,
    dir: &std::path::Path,
    addr: &str,
    partners: Vec<String>,
    links: &Arc<Links>,
) -> NodeConfig {
    let mut c = NodeConfig::new(name, dir, addr, partners);
    c.op_timeout = Duration::from_secs(3);
    c.link_filter = Some(links.clone() as Arc<dyn LinkFilter>);
    c
}

impl Cluster {
    /// Starts `n` nodes from empty directories and waits until one is leader and all
    /// three see the same membership.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// [`Cluster::start`] with each node's config changed by `tweak` (timers, timeouts).
    pub async fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let links = Arc::new(Links::default());
        let mut listeners = vec![];
        let mut addrs = vec![];
        for _ in 0..n {
            let (l, a) = free_listener().await;
            listeners.push(l);
            addrs.push(a);
        }
        let mut nodes = vec![];
        let mut dirs = vec![];
        for (i, l) in listeners.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let partners = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect();
            let mut cfg = config(&format!("n{i}"), dir.path(), &addrs[i], partners, &links);
            tweak(&mut cfg);
            nodes.push(Some(RaftNode::start(cfg, Some(l)).await.unwrap()));
            dirs.push(dir);
        }
        let c = Cluster {
            nodes,
            addrs,
            links,
            dirs,
        };
        c.wait_leader(Duration::from_secs(10), None).await;
        c
    }

    pub fn node(&self, i: usize) -> &RaftNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().flatten().map(|n| n.id()).collect()
    }

    /// Index of the node that all running nodes agree is leader.
    pub async fn wait_leader(&self, limit: Duration, not: Option<NodeId>) -> usize {
        wait_for(limit, "a leader recognised by every running node", || async {
            let running: Vec<(usize, &RaftNode)> = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
                .collect();
            let leaders: HashSet<Option<NodeId>> =
                running.iter().map(|(_, n)| n.metrics().current_leader).collect();
            if leaders.len() != 1 {
                return None;
            }
            let lid = leaders.into_iter().next().flatten()?;
            if Some(lid) == not {
                return None;
            }
            running.iter().find(|(_, n)| n.id() == lid).map(|(i, _)| *i)
        })
        .await
    }

    /// Index of a leader among the nodes `ids`, once those nodes agree on it (the others
    /// may be cut off and still believe in an old leader).
    pub async fn wait_leader_among(&self, ids: &[NodeId], limit: Duration) -> usize {
        wait_for(limit, "a leader recognised by the given nodes", || async {
            let leaders: HashSet<Option<NodeId>> = self
                .nodes
                .iter()
                .flatten()
                .filter(|n| ids.contains(&n.id()))
                .map(|n| n.metrics().current_leader)
                .collect();
            let lid = match leaders.into_iter().collect::<Vec<_>>()[..] {
                [Some(lid)] if ids.contains(&lid) => lid,
                _ => return None,
            };
            self.nodes
                .iter()
                .position(|n| n.as_ref().is_some_and(|n| n.id() == lid))
        })
        .await
    }

    pub async fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Starts a killed node again on its directory and address, with `tweak` applied to
    /// its config as at the start.
    #[allow(dead_code)] // used by the failover_speed_logs test binary
    pub async fn restart(&mut self, i: usize, tweak: impl Fn(&mut NodeConfig)) {
        let listener = TcpListener::bind(&self.addrs[i]).await.unwrap();
        let partners = self
            .addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        let mut cfg = config(
            &format!("n{i}"),
            self.dirs[i].path(),
            &self.addrs[i],
            partners,
            &self.links,
        );
        tweak(&mut cfg);
        self.nodes[i] = Some(RaftNode::start(cfg, Some(listener)).await.unwrap());
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i).await;
        }
    }
}

pub use crate::common::wait_for;
