//! Failures of the primary: its node killed, its PostgreSQL crashed, a paused cluster that
//! must not fail over, and a primary cut off from the Raft group.

use crate::harness::{conns, Cluster, Options, Writer};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

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

/// PostgreSQL crashes on the primary while its daemon lives: it is restarted in place as
/// primary on the same timeline, and no other member is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_postgres_crash_on_primary_restarts_in_place() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let tl = c.patroni(leader).await.unwrap()["timeline"].as_u64().unwrap();
    let old_pid = c.kill9_postmaster(leader).expect("postmaster pid");
    wait_for(
        Duration::from_secs(60),
        "a new postmaster on the same node",
        || async { c.nodes[leader].postmaster_pid().filter(|p| *p != old_pid) },
    )
    .await;
    let back = c.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(back, leader, "a crash of PostgreSQL alone must not fail over");
    let s = c.patroni(leader).await.unwrap();
    assert_eq!(s["timeline"].as_u64().unwrap(), tl);
    assert_ne!(c.nodes[leader].postmaster_pid(), Some(old_pid));
    assert!(
        c.log(leader).contains("starting it as primary"),
        "the daemon did not restart PostgreSQL as primary"
    );
}

/// With `primary_start_timeout: 0` a crash of PostgreSQL on the primary is not repaired in
/// place: the leader key is released at once and a replica takes over (Patroni's rule), and
/// the old primary comes back as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_primary_start_timeout_zero_fails_over_on_a_crash() {
    require_pg!();
    let mut c = Cluster::new(Options {
        dcs_extra: "    primary_start_timeout: 0\n".into(),
        ..Options::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let tl = c.patroni(leader).await.unwrap()["timeline"].as_u64().unwrap();
    c.kill9_postmaster(leader).expect("postmaster pid");
    let new_leader = wait_for(Duration::from_secs(60), "another member promoted", || async {
        c.primary().await.filter(|p| *p != leader)
    })
    .await;
    let back = c.wait_healthy(Duration::from_secs(90)).await;
    assert_eq!(back, new_leader);
    assert!(c.patroni(back).await.unwrap()["timeline"].as_u64().unwrap() > tl);
    // The decision table releases the key once the start is overdue (at once for 0), or the
    // start itself gives up: either way the log names primary_start_timeout.
    assert!(
        c.log(leader).contains("within primary_start_timeout")
            || c.log(leader).contains("primary_start_timeout is 0"),
        "the old primary says why it gave up the key"
    );
}

/// In maintenance mode (pause) a switchover to a named candidate is carried out, the
/// primary's death promotes nobody; after resume the cluster elects a leader and serves
/// writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_paused_cluster_does_not_fail_over() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let dcs = pgwarden_raft::client::RaftClient::new(
        c.nodes.iter().map(|n| n.raft_addr()).collect(),
        Duration::from_secs(3),
    );
    let key = "/service/e2e/config";
    let set_pause = |pause: bool| {
        let dcs = dcs.clone();
        async move {
            let cur = dcs.get(key).await.unwrap().expect("config key");
            let mut v: serde_json::Value = serde_json::from_str(&cur.value).unwrap();
            if pause {
                v["pause"] = json!(true);
            } else {
                v.as_object_mut().unwrap().remove("pause");
            }
            let r = dcs
                .put(
                    key,
                    &v.to_string(),
                    None,
                    pgwarden_raft::Condition::ModRevisionEquals(cur.mod_revision),
                )
                .await
                .unwrap();
            assert!(r.succeeded);
        }
    };
    set_pause(true).await;
    wait_for(
        Duration::from_secs(20),
        "every member to report pause",
        || async {
            for i in 0..3 {
                if c.patroni(i).await?.get("pause")? != &json!(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // A switchover to a named candidate is carried out in pause, as Patroni does; the old
    // primary comes back as a streaming replica, and the cluster stays paused.
    let cand = (0..3).find(|i| *i != leader).unwrap();
    let body = json!({"leader": c.nodes[leader].spec.name, "candidate": c.nodes[cand].spec.name});
    let (code, text) = c
        .post(leader, "/switchover", body)
        .await
        .expect("POST /switchover");
    assert_eq!(code, 200, "switchover in pause: {text}");
    wait_for(
        Duration::from_secs(60),
        "the candidate primary and the old primary a streaming replica, still paused",
        || async {
            (c.primary().await? == cand).then_some(())?;
            let s = c.patroni(leader).await?;
            (s["role"] == "replica" && s["replication_state"] == "streaming" && s["pause"] == json!(true))
                .then_some(())
        },
    )
    .await;
    let leader = cand;
    c.kill9(leader);
    // Watch for twice the ttl: nobody may become primary while paused.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        for i in (0..3).filter(|i| *i != leader) {
            let s = c.patroni(i).await;
            assert!(
                s.as_ref().is_none_or(|s| s["role"] != "primary"),
                "pg{i} was promoted while paused: {s:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_pause(false).await;
    let new_leader = wait_for(Duration::from_secs(60), "a new primary after resume", || async {
        c.primary().await
    })
    .await;
    assert_ne!(new_leader, leader);
    let w = Writer::start(conns(&c)).await;
    w.wait_more(20, Duration::from_secs(30)).await;
    w.stop().await;
}

/// The primary's Raft traffic is cut: it stops accepting writes before any other member
/// is promoted. Every 100 ms each member is asked to take a write; no two ever do in the
/// same round, and the old primary's last accepted write precedes the new one's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_isolated_primary_stops_writes_before_another_is_promoted() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let mut clients = vec![];
    for i in 0..3 {
        let cl = c.connect(i).await.unwrap();
        cl.batch_execute("SET statement_timeout = '500ms'").await.unwrap();
        clients.push(cl);
    }
    clients[leader]
        .batch_execute("CREATE TABLE IF NOT EXISTS probe (node int, at timestamptz default now())")
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the probe table on the replicas",
        || async {
            for i in 0..3 {
                c.query_i64(i, "SELECT count(*) FROM pg_tables WHERE tablename = 'probe'")
                    .await
                    .filter(|n| *n == 1)?;
            }
            Some(())
        },
    )
    .await;
    c.isolate(leader);
    let cut = Instant::now();
    let mut last_old: Option<Instant> = None;
    let mut first_new: Option<(Instant, usize)> = None;
    // Bounded: at most 60 s of probing.
    while cut.elapsed() < Duration::from_secs(60) {
        let mut accepted = vec![];
        for (i, cl) in clients.iter().enumerate() {
            let r = tokio::time::timeout(
                Duration::from_millis(700),
                cl.execute("INSERT INTO probe (node) VALUES ($1)", &[&(i as i32)]),
            )
            .await;
            if matches!(r, Ok(Ok(_))) {
                accepted.push(i);
            }
        }
        let now = Instant::now();
        assert!(
            accepted.len() <= 1,
            "two members accepted writes at once: {accepted:?}"
        );
        if accepted.contains(&leader) {
            last_old = Some(now);
        }
        if let Some(&n) = accepted.iter().find(|n| **n != leader) {
            first_new.get_or_insert((now, n));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (t_new, new) = first_new.expect("another member was promoted");
    if let Some(t_old) = last_old {
        assert!(t_old < t_new);
        eprintln!("isolated primary stopped writes {:?} after the cut; pg{new} accepted its first write {:?} after the cut", t_old - cut, t_new - cut);
    }
    c.heal();
    drop(clients);
    let back = c.wait_healthy(Duration::from_secs(90)).await;
    assert_eq!(back, new);
}
