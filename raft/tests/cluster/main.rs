//! In-process clusters of real nodes (real gRPC over loopback, real sled stores) with a
//! fault-injecting link matrix: elections, partitions, leases, CAS races, watches,
//! snapshots and membership.

#[path = "../common/mod.rs"]
mod common;
mod failover_speed;
mod harness;

use harness::{wait_for, Cluster};
use pgwarden_raft::wire::{AdminReply, AdminRequest};
use pgwarden_raft::{Condition, Dcs, DcsError, NodeConfig, RaftNode, WatchEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn ttl(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

/// Killing the Raft leader: a new leader accepts writes within 3 s at the default timing,
/// and what was acknowledged before is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_new_leader_accepts_writes_within_3s() {
    let mut c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let f = (l + 1) % 3;
    assert!(
        c.node(f)
            .put("/s/c/before", "1", None, Condition::Always)
            .await
            .unwrap()
            .succeeded
    );
    let old = c.node(l).id();
    c.kill(l).await;
    let t0 = Instant::now();
    let survivor = c.node(f).clone();
    let elapsed = wait_for(
        Duration::from_secs(10),
        "a write accepted after the leader died",
        || {
            let n = survivor.clone();
            async move {
                match n.put("/s/c/after", "2", None, Condition::Always).await {
                    Ok(r) if r.succeeded => Some(t0.elapsed()),
                    _ => None,
                }
            }
        },
    )
    .await;
    eprintln!("new leader accepted a write {elapsed:?} after the old one was killed");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let newl = c.wait_leader(Duration::from_secs(5), Some(old)).await;
    assert_ne!(c.node(newl).id(), old);
    assert_eq!(survivor.get("/s/c/before").await.unwrap().unwrap().value, "1");
    c.shutdown().await;
}

/// A partitioned minority (here the old leader) cannot commit and its linearizable reads
/// fail instead of returning stale data; the majority goes on; after healing the old
/// leader catches up and serves the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_cannot_commit_or_read_stale_and_heals() {
    let c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let minority = c.node(l).clone();
    assert!(
        minority
            .put("/s/c/k", "old", None, Condition::Always)
            .await
            .unwrap()
            .succeeded
    );
    let others: Vec<_> = c.ids().into_iter().filter(|i| *i != minority.id()).collect();
    c.links.isolate(minority.id(), &others);

    let w = minority.put("/s/c/k", "minority", None, Condition::Always).await;
    assert!(w.is_err(), "the isolated leader committed a write: {w:?}");
    let r = minority.get("/s/c/k").await;
    assert!(
        r.is_err(),
        "the isolated node answered a linearizable read: {r:?}"
    );

    let maj = c.node((l + 1) % 3).clone();
    wait_for(Duration::from_secs(10), "the majority to accept a write", || {
        let m = maj.clone();
        async move {
            m.put("/s/c/k", "new", None, Condition::Always)
                .await
                .ok()
                .filter(|r| r.succeeded)
        }
    })
    .await;
    assert_eq!(maj.get("/s/c/k").await.unwrap().unwrap().value, "new");
    // Still isolated: still no answer rather than the stale "old".
    assert!(minority.get("/s/c/k").await.is_err());

    c.links.heal();
    let v = wait_for(Duration::from_secs(10), "the healed node to serve reads", || {
        let m = minority.clone();
        async move { m.get("/s/c/k").await.ok().flatten() }
    })
    .await;
    assert_eq!(
        v.value, "new",
        "the minority's uncommitted write must not survive"
    );
    c.shutdown().await;
}

/// A TTL key whose holder stops refreshing is deleted no earlier than ttl after its last
/// refresh was sent and no later than ttl + 1 s after it was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_between_ttl_and_ttl_plus_one_second() {
    let c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let writer = c.node((l + 1) % 3).clone();
    let mut watch = c.node((l + 2) % 3).watch("/s/c/");
    let t = Duration::from_millis(1500);
    let mut sent = Instant::now();
    let mut acked = sent;
    for _ in 0..3 {
        sent = Instant::now();
        assert!(
            writer
                .put("/s/c/leader", "n1", Some(t), Condition::Always)
                .await
                .unwrap()
                .succeeded
        );
        acked = Instant::now();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let deleted_at = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                Some(WatchEvent::Delete { key, expired, .. }) if key == "/s/c/leader" => {
                    assert!(expired);
                    return Instant::now();
                }
                Some(_) => continue,
                None => panic!("watch closed"),
            }
        }
    })
    .await
    .expect("the lease expired");
    let after_sent = deleted_at - sent;
    let after_ack = deleted_at - acked;
    eprintln!("deleted {after_sent:?} after the last refresh was sent ({after_ack:?} after its ack)");
    assert!(after_sent >= t, "expired early: {after_sent:?} < {t:?}");
    assert!(
        after_ack <= t + Duration::from_secs(1),
        "expired late: {after_ack:?}"
    );
    c.shutdown().await;
}

/// A refresh racing the expiry either wins (the key stays, with the refresh's revision)
/// or loses (the key is gone and the refresh reports failure): never half of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_racing_expiry_wins_or_loses_atomically() {
    let c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let n = c.node(l).clone();
    let (mut won, mut lost) = (0, 0);
    for round in 0..12u64 {
        let key = format!("/s/c/race{round}");
        assert!(
            n.put(&key, "me", ttl(300), Condition::Absent)
                .await
                .unwrap()
                .succeeded
        );
        // Aim the refresh at the deadline, give or take the reaper's tick.
        tokio::time::sleep(Duration::from_millis(250 + (round % 6) * 20)).await;
        let r = n
            .put(&key, "me", ttl(2000), Condition::ValueEquals("me".into()))
            .await
            .unwrap();
        let now = n.get(&key).await.unwrap();
        if r.succeeded {
            won += 1;
            let kv = now.expect("a refreshed key must not be deleted by the old deadline");
            assert_eq!(kv.mod_revision, r.revision);
        } else {
            lost += 1;
            assert!(
                r.prev.is_none(),
                "the refresh failed although the key existed: {:?}",
                r.prev
            );
            assert!(now.is_none());
        }
    }
    eprintln!("refresh won {won} times, lost {lost} times");
    c.shutdown().await;
}

/// Across a Raft leader change a lease is never expired early: the new leader keeps the
/// deadline it armed when it applied the last refresh as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_never_expires_a_lease_early() {
    let mut c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let f = (l + 1) % 3;
    let reader = c.node(f).clone();
    let t = Duration::from_millis(3000);
    let sent = Instant::now();
    assert!(
        reader
            .put("/s/c/leader", "x", Some(t), Condition::Always)
            .await
            .unwrap()
            .succeeded
    );
    c.kill(l).await;
    let gone_at = wait_for(
        Duration::from_secs(15),
        "the lease to expire under the new leader",
        || {
            let r = reader.clone();
            async move {
                match r.get("/s/c/leader").await {
                    Ok(None) => Some(Instant::now()),
                    Ok(Some(_)) => None,
                    Err(_) => None,
                }
            }
        },
    )
    .await;
    let after = gone_at - sent;
    eprintln!("lease expired {after:?} after the refresh, across a leader change");
    assert!(after >= t, "expired early across a leader change: {after:?}");
    c.shutdown().await;
}

/// N concurrent acquirers of an absent key spread over all nodes: exactly one wins, every
/// round, and the key holds the winner's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_race_has_exactly_one_winner_every_round() {
    let c = Cluster::start(3).await;
    for round in 0..20 {
        let key = format!("/s/c/lock{round}");
        let mut tasks = vec![];
        for who in 0..9 {
            let n = c.node(who % 3).clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let r = n
                    .put(&key, &format!("c{who}"), ttl(30_000), Condition::Absent)
                    .await
                    .unwrap();
                (who, r.succeeded)
            }));
        }
        let mut winners = vec![];
        for t in tasks {
            let (who, ok) = t.await.unwrap();
            if ok {
                winners.push(who);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let v = c.node(round % 3).get(&key).await.unwrap().unwrap();
        assert_eq!(v.value, format!("c{}", winners[0]));
    }
    c.shutdown().await;
}

/// Concurrent writes through the leader share log entries (group commit), yet each gets
/// its own result, and writes to one key are never batched together: of 8 racing creates
/// of one key exactly one wins, and every mod revision names exactly one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed_with_their_own_results() {
    let c = Cluster::start(3).await;
    let l = c.wait_leader(Duration::from_secs(10), None).await;
    let leader = c.node(l).clone();
    let before = leader.metrics().last_log_index.unwrap_or(0);
    let mut tasks = vec![];
    for i in 0..48 {
        let n = leader.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i < 40 {
                format!("/g/k{i}")
            } else {
                "/g/same".to_string()
            };
            let r = n
                .put(&key, &format!("v{i}"), None, Condition::Absent)
                .await
                .unwrap();
            (i, key, r)
        }));
    }
    let mut same_winners = 0;
    let mut revisions = std::collections::BTreeMap::new();
    for t in tasks {
        let (i, key, r) = t.await.unwrap();
        if i < 40 {
            assert!(r.succeeded, "write {i} to its own key failed: {r:?}");
        } else if r.succeeded {
            same_winners += 1;
        }
        if r.succeeded {
            assert!(
                revisions.insert((key, r.revision), i).is_none(),
                "two writes to one key at one revision"
            );
        }
    }
    assert_eq!(same_winners, 1);
    let after = leader.metrics().last_log_index.unwrap_or(0);
    assert!(
        after - before < 48,
        "48 concurrent writes used {} log entries: none were batched",
        after - before
    );
    for ((key, rev), i) in &revisions {
        let kv = c.node((l + 1) % 3).get(key).await.unwrap().unwrap();
        if key != "/g/same" || kv.value == format!("v{i}") {
            assert_eq!(kv.mod_revision, *rev);
            assert_eq!(kv.value, format!("v{i}"));
        }
    }
    c.shutdown().await;
}

/// Watches deliver puts and deletes under their prefix only, on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_deliver_prefix_events_on_every_node() {
    let c = Cluster::start(3).await;
    let mut watches: Vec<_> = (0..3).map(|i| c.node(i).watch("/s/a/")).collect();
    c.node(0)
        .put("/s/b/other", "x", None, Condition::Always)
        .await
        .unwrap();
    c.node(1)
        .put("/s/a/k", "v", None, Condition::Always)
        .await
        .unwrap();
    c.node(2)
        .delete("/s/a/k", Condition::ValueEquals("v".into()))
        .await
        .unwrap();
    for w in watches.iter_mut() {
        let e1 = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&e1, WatchEvent::Put(kv) if kv.key == "/s/a/k" && kv.value == "v"),
            "{e1:?}"
        );
        let e2 = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&e2, WatchEvent::Delete { key, expired: false, .. } if key == "/s/a/k"),
            "{e2:?}"
        );
    }
    c.shutdown().await;
}

/// A long run of writes triggers snapshots and log purging, so the log and the store on
/// disk stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_purging_keep_the_store_bounded() {
    let c = Cluster::start(3).await;
    let write_batch = |from: usize| {
        let nodes: Vec<RaftNode> = (0..3).map(|i| c.node(i).clone()).collect();
        async move {
            let mut tasks = vec![];
            for w in 0..8usize {
                let n = nodes[w % 3].clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..200usize {
                        let v = format!("{:0>200}", from + i);
                        n.put(&format!("/s/c/members/m{w}"), &v, ttl(60_000), Condition::Always)
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    write_batch(0).await;
    let size1 = c.node(0).size_on_disk();
    write_batch(1000).await;
    write_batch(2000).await;
    let size2 = c.node(0).size_on_disk();
    let m = c.node(0).metrics();
    eprintln!(
        "after 4800 writes: last log {:?}, snapshot {:?}, purged {:?}; disk {size1} -> {size2} bytes",
        m.last_log_index, m.snapshot, m.purged
    );
    let purged = m.purged.expect("the log was purged").index;
    assert!(m.snapshot.is_some());
    assert!(
        m.last_log_index.unwrap() - purged <= 2000,
        "log not bounded: {m:?}"
    );
    assert!(
        size2 < size1 * 3 + 4 * 1024 * 1024,
        "store grew from {size1} to {size2}"
    );
    c.shutdown().await;
}

/// Two voters tolerate no failure: refused, with a message that says so and names the
/// key; one node with partners and single_node is also refused.
#[tokio::test]
async fn two_voters_are_refused_and_single_node_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig::new("a", dir.path(), "127.0.0.1:1", vec!["127.0.0.1:2".into()]);
    let err = RaftNode::start(cfg, None)
        .await
        .err()
        .expect("2 voters refused")
        .to_string();
    assert!(
        err.contains("raft.partner_addrs") && err.contains("2 voter"),
        "{err}"
    );

    let (l, addr) = harness::free_listener().await;
    let mut cfg = NodeConfig::new("solo", dir.path(), &addr, vec![]);
    cfg.single_node = true;
    let n = RaftNode::start(cfg, Some(l)).await.unwrap();
    wait_for(Duration::from_secs(5), "the single node to lead", || {
        let n = n.clone();
        async move { n.is_leader().then_some(()) }
    })
    .await;
    assert!(n.put("/k", "v", None, Condition::Absent).await.unwrap().succeeded);
    n.shutdown().await;
}

/// A member whose data directory was wiped comes back with a new identity, does not
/// initialise anything, waits; the admin operation replaces the old member with it in one
/// step and it catches up by snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_rejoins_under_a_new_identity_by_snapshot() {
    let mut c = Cluster::start(3).await;
    for i in 0..1300 {
        c.node(i % 3)
            .put(
                &format!("/s/c/k{}", i % 50),
                &i.to_string(),
                None,
                Condition::Always,
            )
            .await
            .unwrap();
    }
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let victim = (l + 1) % 3;
    let old_id = c.node(victim).id();
    c.kill(victim).await;
    let dir = &c.dirs[victim];
    std::fs::remove_dir_all(dir.path()).unwrap();
    let addr = c.addrs[victim].clone();
    let partners: Vec<String> = c.addrs.iter().filter(|a| **a != addr).cloned().collect();
    let cfg = harness::config(&format!("n{victim}"), dir.path(), &addr, partners, &c.links);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let fresh = RaftNode::start(cfg, Some(listener)).await.unwrap();
    assert_ne!(fresh.id(), old_id);
    c.nodes[victim] = Some(fresh.clone());

    // It must not initialise a cluster of its own, nor be let in by itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!fresh.raft().is_initialized().await.unwrap());
    assert!(matches!(
        fresh.get("/s/c/k1").await,
        Err(DcsError::Timeout { .. } | DcsError::Unavailable { .. })
    ));

    let survivor = c.node(l).clone();
    let reply = survivor
        .admin(AdminRequest::AddMember {
            addr: addr.clone(),
            replace: false,
        })
        .await;
    assert!(
        reply.is_err(),
        "adding a second member with the same name must need replace: {reply:?}"
    );
    let reply = survivor
        .admin(AdminRequest::AddMember {
            addr: addr.clone(),
            replace: true,
        })
        .await
        .unwrap();
    assert!(
        matches!(reply, AdminReply::Added(ref m) if m.id == fresh.id()),
        "{reply:?}"
    );

    let status = survivor.local_status();
    let voters: Vec<_> = status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    assert_eq!(voters.len(), 3);
    assert!(voters.contains(&fresh.id()) && !voters.contains(&old_id));
    let v = wait_for(Duration::from_secs(10), "the new member to serve reads", || {
        let f = fresh.clone();
        async move { f.get("/s/c/k49").await.ok().flatten() }
    })
    .await;
    assert_eq!(v.value, "1299");
    assert!(
        fresh.metrics().snapshot.is_some(),
        "caught up without a snapshot: {:?}",
        fresh.metrics()
    );
    let _ = Arc::new(());
    c.shutdown().await;
}

/// The time limit of a read or write can be changed on a running node (the HA loop sets it
/// from the dynamic `retry_timeout`): an isolated node's write then fails after the new limit,
/// not after the one it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_timeout_set_at_run_time_bounds_the_next_calls() {
    let c = Cluster::start(3).await; // started with a 3 s limit
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let isolated = c.node((l + 1) % 3).clone();
    let others: Vec<_> = c.ids().into_iter().filter(|i| *i != isolated.id()).collect();
    c.links.isolate(isolated.id(), &others);

    let t0 = std::time::Instant::now();
    assert!(isolated
        .put("/s/c/k", "v", None, Condition::Always)
        .await
        .is_err());
    let with_start_limit = t0.elapsed();
    assert!(
        with_start_limit >= Duration::from_millis(2500),
        "an isolated write gave up after {with_start_limit:?}, before the 3 s limit"
    );

    isolated.set_op_timeout(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    assert!(isolated
        .put("/s/c/k", "v", None, Condition::Always)
        .await
        .is_err());
    assert!(isolated.get("/s/c/k").await.is_err());
    let with_new_limit = t0.elapsed();
    assert!(
        with_new_limit < Duration::from_millis(2000),
        "a write and a read took {with_new_limit:?} with a 0.3 s limit each"
    );
    c.links.heal();
    c.shutdown().await;
}
