//! Clusters forming: three data nodes from empty directories (and a switchover among
//! them), two data nodes and a witness, a refused duplicate member name, cascading
//! replication through `replicatefrom`.

use crate::harness::{conns, Cluster, Options, Writer};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

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
    // /metrics counts it: one promotion on the candidate, one demotion on the old primary.
    wait_for(Duration::from_secs(10), "the switchover in /metrics", || async {
        let promoted = c.metric(candidate, "pgwarden_promotions_total").await?;
        let demoted = c.metric(leader, "pgwarden_demotions_total").await?;
        (promoted == 1.0 && demoted == 1.0).then_some(())
    })
    .await;
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

/// Two data nodes and a witness: the witness runs no PostgreSQL and is never primary; the
/// primary node's loss promotes the replica; the witness's loss leaves the cluster serving
/// and able to switch over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_two_data_nodes_and_a_witness() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        ..Default::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let witness = 2;
    let ws = c.patroni(witness).await.unwrap();
    assert_eq!(ws["role"], "witness");
    assert!(
        !c.nodes[witness].pgdata().exists(),
        "the witness created a data directory"
    );
    assert_eq!(c.http_status(witness, "/primary").await, Some(503));

    c.kill9(leader);
    let other = 1 - leader;
    wait_for(Duration::from_secs(40), "the replica to be promoted", || async {
        (c.primary().await? == other).then_some(())
    })
    .await;
    c.start(leader);
    c.wait_healthy(Duration::from_secs(90)).await;

    c.kill9(witness);
    let w = Writer::start(conns(&c)).await;
    w.wait_more(50, Duration::from_secs(30)).await;
    let p = c.primary().await.unwrap();
    // If the witness led Raft, the two data nodes elect a new leader first (1.5–2 s at the
    // default timers, longer when the replica's log is behind the primary's node, whose
    // candidacy is held): until then the switchover is answered 503 "DCS is not accessible",
    // as Patroni does. It must succeed once they have.
    let (code, body) = wait_for(
        Duration::from_secs(20),
        "a switchover accepted without the witness",
        || async {
            let (code, body) = c
                .post(
                    p,
                    "/switchover",
                    json!({"leader": format!("pg{p}"), "candidate": format!("pg{}", 1 - p)}),
                )
                .await?;
            (code != 503).then_some((code, body))
        },
    )
    .await;
    assert_eq!(code, 200, "switchover without the witness: {body}");
    w.wait_more(50, Duration::from_secs(30)).await;
    w.stop().await;
}

/// A second daemon with a name already in use by a live member refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_duplicate_member_name_is_refused() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    c.wait_healthy(Duration::from_secs(90)).await;
    // A fourth process configured as pg1 (own ports and directories) with the real members
    // as partners: it reads the member key through them and refuses to start.
    let dir = c.nodes[1].dir.join("dup");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = std::fs::read_to_string(c.nodes[1].config_path()).unwrap();
    let free = pgwarden_testkit::free_port;
    let (raft, rest, pg) = (free(), free(), free());
    let cfg = cfg
        .replace(
            &format!("127.0.0.1:{}", c.nodes[1].spec.raft),
            &format!("127.0.0.1:{raft}"),
        )
        .replace(
            &format!("127.0.0.1:{}", c.nodes[1].spec.rest),
            &format!("127.0.0.1:{rest}"),
        )
        .replace(
            &format!("127.0.0.1:{}", c.nodes[1].spec.pg),
            &format!("127.0.0.1:{pg}"),
        )
        .replace(&c.nodes[1].dir.display().to_string(), &dir.display().to_string());
    std::fs::write(dir.join("pgwarden.yml"), cfg).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg(dir.join("pgwarden.yml"))
        .env("RUST_LOG", "info,openraft=error")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await;
    let out = out.expect("the duplicate daemon exits").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Can't start; there is already a node named 'pg1' running"),
        "{err}"
    );
}

/// Cascading replication: a member tagged `replicatefrom: pg1` streams from pg1 while pg1 is
/// a replica (pg1 keeping its slot), and is re-pointed at the leader when pg1 goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_replicatefrom_cascades_and_falls_back_to_the_leader() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    let path = c.nodes[2].config_path();
    let y = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{y}tags:\n  nofailover: true\n  replicatefrom: pg1\n"),
    )
    .unwrap();
    c.start_all();
    let mut leader = c.wait_healthy(Duration::from_secs(90)).await;
    if leader == 1 {
        let (code, body) = c
            .post(1, "/switchover", json!({"leader": "pg1", "candidate": "pg0"}))
            .await
            .expect("switchover answered");
        assert_eq!(code, 200, "{body}");
        leader = wait_for(Duration::from_secs(60), "pg0 to lead", || async {
            c.primary().await.filter(|p| *p == 0)
        })
        .await;
    }
    assert_eq!(leader, 0);
    async fn sender_port(c: &Cluster, i: usize) -> Option<u16> {
        let client = c.connect(i).await?;
        let row = client
            .query_opt(
                "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                &[],
            )
            .await
            .ok()??;
        row.get::<_, Option<i32>>(0).map(|p| p as u16)
    }
    let pg1_port = c.nodes[1].spec.pg;
    wait_for(Duration::from_secs(60), "pg2 streaming from pg1", || async {
        (sender_port(&c, 2).await? == pg1_port).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "pg1 keeping pg2's slot", || async {
        let client = c.connect(1).await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg2' AND active",
                &[],
            )
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await;
    c.kill9(1);
    let pg0_port = c.nodes[0].spec.pg;
    wait_for(
        Duration::from_secs(60),
        "pg2 re-pointed at the leader",
        || async { (sender_port(&c, 2).await? == pg0_port).then_some(()) },
    )
    .await;
    let primary = c.connect(0).await.unwrap();
    primary
        .batch_execute("CREATE TABLE cascade_check (id int); INSERT INTO cascade_check VALUES (42)")
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the row on pg2", || async {
        (c.query_i64(2, "SELECT count(*) FROM cascade_check").await? == 1).then_some(())
    })
    .await;
}
