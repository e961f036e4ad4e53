//! Synchronous replication end to end: real daemons and PostgreSQL 15, a client that records
//! every acknowledged commit (synchronous_commit = on, PostgreSQL's default), and SIGKILL of
//! whole primary nodes.

use crate::harness::{conns, Cluster, Options, Writer};
use pgwarden_testkit::wait_for;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

fn sync_options(extra: &str) -> Options {
    Options {
        dcs_extra: extra.to_string(),
        ..Options::default()
    }
}

/// Waits until the cluster is healthy and the primary has a synchronous standby in /sync.
async fn wait_sync_established(c: &Cluster, role: &str) -> (usize, BTreeSet<String>) {
    let p = c.wait_healthy(Duration::from_secs(90)).await;
    let sync = wait_for(
        Duration::from_secs(60),
        "a synchronous standby in /sync",
        || async {
            let s = c.members_with_role(p, role).await?;
            (!s.is_empty()).then_some(s)
        },
    )
    .await;
    (p, sync)
}

/// Every id in `acked` is a row on node `i`.
async fn assert_all_acked_on(c: &Cluster, i: usize, acked: &BTreeSet<i64>, round: usize) {
    let client = c.connect(i).await.expect("connect to the new primary");
    let rows = client
        .query("SELECT id FROM writes", &[])
        .await
        .expect("read the rows");
    let present: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
    let missing: Vec<&i64> = acked.difference(&present).take(10).collect();
    assert!(
        missing.is_empty(),
        "round {round}: {} acknowledged commits missing on the new primary pg{i}, e.g. {missing:?}",
        acked.difference(&present).count()
    );
}

/// synchronous_mode on: the primary node is SIGKILLed ten times in a row, each time after the
/// cluster has recovered and a synchronous standby is listed in /sync. Every acknowledged
/// commit is on the new primary every time, and the new primary was in /sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sync_mode_loses_no_acknowledged_commit_over_ten_primary_kills() {
    if !pgwarden_testkit::pg_available() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    let mut c = Cluster::new(sync_options("    synchronous_mode: true\n"));
    c.start_all();
    let w = Writer::start(conns(&c)).await;
    for round in 1..=10 {
        let (leader, sync) = wait_sync_established(&c, "sync_standby").await;
        w.wait_more(50, Duration::from_secs(60)).await;
        let killed_at = Instant::now();
        c.kill9(leader);
        let (first, node) = wait_for(
            Duration::from_secs(60),
            "a commit acknowledged by a new primary",
            || async { w.first_ack_after(killed_at, Some(leader)) },
        )
        .await;
        let name = format!("pg{node}");
        eprintln!(
            "round {round}: killed pg{leader}; pg{node} (sync standbys were {sync:?}) acknowledged a commit {:?} later",
            first - killed_at
        );
        assert!(
            sync.contains(&name),
            "round {round}: {name} was promoted but /sync listed {sync:?}"
        );
        let acked = w.acked.lock().unwrap().clone();
        assert_all_acked_on(&c, node, &acked, round).await;
        c.start(leader);
    }
    let acked = w.stop().await;
    let p = c.wait_healthy(Duration::from_secs(90)).await;
    assert_all_acked_on(&c, p, &acked, 11).await;
    eprintln!("{} acknowledged commits, none lost", acked.len());
}

/// Strict mode: with no standby streaming, a commit on the primary waits instead of
/// completing asynchronously, and completes once a standby is back. Then, non-strict: the
/// same loss of standbys lets commits through and /sync lists nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_strict_mode_blocks_commits_without_a_standby_and_non_strict_degrades() {
    if !pgwarden_testkit::pg_available() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    // Two data nodes and a witness: the primary has exactly one standby to lose.
    let mut c = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        ..sync_options("    synchronous_mode: true\n    synchronous_mode_strict: true\n")
    });
    c.start_all();
    let (p, sync) = wait_sync_established(&c, "sync_standby").await;
    let standby = 1 - p;
    assert_eq!(sync, BTreeSet::from([format!("pg{standby}")]));
    let client = c.connect(p).await.unwrap();
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS t (id int)")
        .await
        .unwrap();
    c.stop(standby).await;
    // The key may still list the stopped standby, or SSN may be `*`: either way the commit
    // must not complete while no standby runs.
    let r = tokio::time::timeout(
        Duration::from_secs(8),
        client.execute("INSERT INTO t VALUES (1)", &[]),
    )
    .await;
    assert!(
        r.is_err(),
        "a commit completed in strict synchronous mode with no standby running: {r:?}"
    );
    // The commit of a fresh session waits too, and completes once the standby is back.
    let client2 = c.connect(p).await.unwrap();
    let pending = tokio::spawn(async move {
        let started = Instant::now();
        let r = client2.execute("INSERT INTO t VALUES (2)", &[]).await;
        (r.map_err(|e| e.to_string()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "commit 2 did not wait");
    c.start(standby);
    let (r, waited) = tokio::time::timeout(Duration::from_secs(90), pending)
        .await
        .expect("commit 2 completes once the standby streams again")
        .unwrap();
    r.unwrap();
    eprintln!("strict: commit waited {waited:?} for the standby to come back");

    // Non-strict: the same loss lets commits through, and the primary says so.
    let (code, body) = c
        .patch_config(p, serde_json::json!({"synchronous_mode_strict": false}))
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "{body}");
    wait_sync_established(&c, "sync_standby").await;
    c.stop(standby).await;
    let client = c.connect(p).await.unwrap();
    wait_for(
        Duration::from_secs(30),
        "commits to go through without a standby",
        || async {
            tokio::time::timeout(
                Duration::from_secs(2),
                client.execute("INSERT INTO t VALUES (3)", &[]),
            )
            .await
            .ok()?
            .ok()
        },
    )
    .await;
    wait_for(Duration::from_secs(30), "/sync to list nobody", || async {
        c.members_with_role(p, "sync_standby")
            .await
            .filter(BTreeSet::is_empty)
    })
    .await;
    assert!(
        c.log(p).contains("no synchronous standby is available"),
        "the primary logs that it runs without a synchronous standby"
    );
}

/// Quorum commit with three nodes: `ANY 1 (pg_a,pg_b)` on the primary, both replicas voters
/// with quorum 1 in /sync; a killed primary is replaced by a member holding every
/// acknowledged commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_quorum_mode_fails_over_without_loss() {
    if !pgwarden_testkit::pg_available() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    let mut c = Cluster::new(sync_options("    synchronous_mode: quorum\n"));
    c.start_all();
    let w = Writer::start(conns(&c)).await;
    for round in 1..=2 {
        let (leader, voters) = wait_for(Duration::from_secs(90), "two quorum voters", || async {
            let (p, v) = wait_sync_established(&c, "quorum_standby").await;
            (v.len() == 2).then_some((p, v))
        })
        .await;
        // The key lists both voters from the start, with a quorum of 2 until both have
        // provably received every earlier commit; only then is it 1.
        let names: Vec<&str> = voters.iter().map(String::as_str).collect();
        let final_key = format!("sync_standby=Some(\"{}\") quorum=Some(1)", names.join(","));
        wait_for(
            Duration::from_secs(60),
            "the sync key to settle at quorum 1",
            || async { c.log(leader).contains(&final_key).then_some(()) },
        )
        .await;
        let ssn = c
            .connect(leader)
            .await
            .unwrap()
            .query_one("SHOW synchronous_standby_names", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        assert_eq!(ssn, format!("ANY 1 ({})", names.join(",")));
        w.wait_more(50, Duration::from_secs(60)).await;
        let killed_at = Instant::now();
        c.kill9(leader);
        let (first, node) = wait_for(
            Duration::from_secs(60),
            "a commit acknowledged by a new primary",
            || async { w.first_ack_after(killed_at, Some(leader)) },
        )
        .await;
        eprintln!(
            "quorum round {round}: pg{node} took over {:?} after the kill",
            first - killed_at
        );
        let acked = w.acked.lock().unwrap().clone();
        assert_all_acked_on(&c, node, &acked, round).await;
        c.start(leader);
    }
    w.stop().await;
}
