//! Discovery and bootstrap of a node with no Raft state: it joins the cluster its
//! partners report, or, when every partner answered uninitialised and it has the lowest
//! id, initialises a new one with the full membership.

use crate::inner::NodeInner;
use crate::network::{CallError, Rpc};
use crate::wire::{self, HelloReply};
use crate::Node;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl NodeInner {
    /// Discovery and bootstrap. Only a node with no Raft state takes part; a node that
    /// belongs to a cluster simply runs Raft.
    pub(crate) async fn discover(self: Arc<Self>) {
        if self.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        if self.config.single_node {
            let members = BTreeMap::from([(self.id, self.me.clone())]);
            match self.raft.initialize(members).await {
                Ok(()) => tracing::info!("initialised a single-node cluster"),
                Err(e) => tracing::warn!(error = %e, "single-node initialise"),
            }
            return;
        }
        let mut said_waiting = false;
        let mut interval = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            if self.raft.is_initialized().await.unwrap_or(true) {
                tracing::info!("joined the Raft cluster");
                return;
            }
            let mut replies = Vec::new();
            for addr in &self.config.partner_addrs {
                let r: Result<HelloReply, CallError> = self
                    .peers
                    .call(
                        Rpc::Hello,
                        0,
                        addr,
                        &wire::Hello::default(),
                        Duration::from_secs(1),
                    )
                    .await;
                if let Ok(r) = r {
                    replies.push(r);
                }
            }
            if let Some(existing) = replies.iter().find(|r| r.initialized) {
                if !said_waiting {
                    tracing::warn!(
                        partner = %existing.name,
                        "a Raft cluster already exists but this node is not a member of it (new or wiped data \
                         directory); waiting to be added: on any member run `pgwardenctl members add {}` \
                         (a new member) or `pgwardenctl members replace {}` (a member that lost its data)",
                        self.me.addr,
                        self.me.addr
                    );
                    said_waiting = true;
                }
                continue;
            }
            if replies.len() < self.config.partner_addrs.len() {
                continue;
            }
            if let Some(dup) = replies.iter().find(|r| r.node_id == self.id) {
                tracing::error!(addr = %dup.addr, "a partner has this node's Raft id: was a data directory copied?");
                continue;
            }
            // Every partner answered and none is initialised: the lowest id initialises,
            // with the full membership, so no two nodes can initialise different clusters.
            // All of them vote at first; the leader's voter driver then demotes the ones
            // above the target (see `crate::voters`).
            let lowest = replies.iter().map(|r| r.node_id).min().unwrap_or(u64::MAX);
            if self.id < lowest {
                let mut members = BTreeMap::from([(self.id, self.me.clone())]);
                for r in &replies {
                    members.insert(
                        r.node_id,
                        Node {
                            name: r.name.clone(),
                            addr: r.addr.clone(),
                            site: r.site.clone(),
                        },
                    );
                }
                match self.raft.initialize(members.clone()).await {
                    Ok(()) => {
                        tracing::info!(voters = members.len(), "initialised a new Raft cluster");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "initialise"),
                }
            }
        }
    }
}
