//! End to end: real pgwarden daemons managing real PostgreSQL 15 on loopback, driven over
//! REST and SQL, with a client that records every acknowledged write.

mod harness;

use harness::{wait_for, Cluster, Options, Writer};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn conns(c: &Cluster) -> Vec<String> {
    (0..c.nodes.len())
        .filter(|i| !c.nodes[*i].spec.witness)
        .map(|i| c.conn_str(i))
        .collect()
}

/// Three nodes from empty data directories: one leader and two streaming replicas, rows
/// written on the leader are read back on both replicas; then a switchover to a named
/// member, with the write downtime measured, and the old leader streaming from the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bootstrap_replicate_and_switchover() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    let t0 = Instant::now();
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    eprintln!("bootstrap: 1 leader + 2 streaming after {:?}", t0.elapsed());

    let w = Writer::start(conns(&c)).await;
    w.wait_more(200, Duration::from_secs(30)).await;
    let max_id: i64 = *w.acked.lock().unwrap().iter().next_back().unwrap();
    for i in (0..3).filter(|i| *i != leader) {
        wait_for(Duration::from_secs(20), "rows to reach the replica", || async {
            let n = c
                .query_i64(i, &format!("SELECT count(*) FROM writes WHERE id <= {max_id}"))
                .await?;
            (n as usize >= 200).then_some(())
        })
        .await;
    }

    let candidate = (leader + 1) % 3;
    let before = Instant::now();
    let (code, body) = c
        .post(
            leader,
            "/switchover",
            json!({"leader": format!("pg{leader}"), "candidate": format!("pg{candidate}")}),
        )
        .await
        .expect("switchover answered");
    assert_eq!(code, 200, "switchover: {body}");
    assert!(
        body.contains(&format!("Successfully switched over to \"pg{candidate}\"")),
        "{body}"
    );
    w.wait_more(100, Duration::from_secs(30)).await;
    let gap = w.longest_gap_after(before);
    eprintln!("switchover write downtime: {gap:?}");
    let new_leader = c.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(new_leader, candidate);
    let acked = w.stop().await;
    let on_new = c
        .query_i64(candidate, "SELECT count(*) FROM writes")
        .await
        .unwrap();
    assert!(
        on_new as usize >= acked.len(),
        "a graceful switchover lost acknowledged writes: {on_new} < {}",
        acked.len()
    );
}

/// SIGKILL of the primary's daemon and postmaster together: a replica is promoted, writes
/// resume there, and the old node, restarted, comes back as a replica on the new timeline
/// (through pg_rewind when its WAL diverged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_primary_node_killed_fails_over_and_rejoins() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let tl_before = c.patroni(leader).await.unwrap()["timeline"].as_u64().unwrap();
    let w = Writer::start(conns(&c)).await;
    w.wait_more(200, Duration::from_secs(30)).await;

    let killed_at = Instant::now();
    c.kill9(leader);
    let (first, node) = wait_for(
        Duration::from_secs(60),
        "a write acknowledged by a new primary",
        || async { w.first_ack_after(killed_at, Some(leader)) },
    )
    .await;
    eprintln!(
        "failover: first acknowledged write on pg{node} {:?} after the kill",
        first - killed_at
    );
    let new_leader = c.wait_healthy(Duration::from_secs(60)).await;
    assert_ne!(new_leader, leader);
    let tl_after = c.patroni(new_leader).await.unwrap()["timeline"].as_u64().unwrap();
    assert!(tl_after > tl_before);

    c.start(leader);
    wait_for(
        Duration::from_secs(90),
        "the old primary to stream on the new timeline",
        || async {
            let s = c.patroni(leader).await?;
            (s["role"] == "replica"
                && s["replication_state"] == "streaming"
                && s["timeline"].as_u64()? == tl_after)
                .then_some(())
        },
    )
    .await;
    w.wait_more(50, Duration::from_secs(20)).await;
    let acked = w.stop().await;
    let max = *acked.iter().next_back().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the rejoined node to have the latest row",
        || async {
            (c.query_i64(leader, &format!("SELECT count(*) FROM writes WHERE id = {max}"))
                .await?
                == 1)
                .then_some(())
        },
    )
    .await;
}
