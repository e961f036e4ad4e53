//! Standby clusters (issue #18): a second cluster, with its own scope directory, Raft group
//! and witness, replicating from a primary cluster through a permanent slot. Its leader is a
//! standby leader (a replica of the remote primary), the other member cascades from it, and
//! no member ever accepts a write until the cluster is promoted.

use crate::harness::{pgwardenctl, Cluster, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::time::Duration;

const SLOT: &str = "standby_dc2";

/// Rows of `t` on data node `i` (None while it cannot be read).
async fn rows(c: &Cluster, i: usize) -> Option<i64> {
    c.query_i64(i, "SELECT count(*) FROM t").await
}

/// Inserts rows `from..to` into `t` on data node `i` of the primary cluster.
async fn insert(c: &Cluster, i: usize, from: i64, to: i64) {
    let client = c
        .connect(i)
        .await
        .expect("connect to the primary cluster's primary");
    client
        .execute(
            "INSERT INTO t SELECT g, 'row ' || g FROM generate_series($1::int8, $2::int8) g",
            &[&from, &(to - 1)],
        )
        .await
        .expect("insert on the primary cluster");
}

/// A write on data node `i` of the standby cluster: the error PostgreSQL gave, or a panic if
/// it accepted the write.
async fn refuses_writes(c: &Cluster, i: usize) -> String {
    let client = c.connect(i).await.expect("connect to a standby cluster member");
    match client
        .execute("INSERT INTO t VALUES (-1, 'must not be written')", &[])
        .await
    {
        Ok(_) => panic!("pg{i} of the standby cluster accepted a write"),
        Err(e) => {
            let text = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string());
            assert!(text.contains("read-only transaction"), "pg{i}: {text}");
            text
        }
    }
}

/// The data node of `c` answering /standby-leader with 200, if exactly one does.
async fn standby_leader(c: &Cluster) -> Option<usize> {
    let mut found = vec![];
    for i in 0..c.nodes.len() {
        if c.nodes[i].spec.witness || c.nodes[i].child.is_none() {
            continue;
        }
        if c.http_status(i, "/standby-leader").await == Some(200) {
            found.push(i);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// The scenario: a primary cluster (2 data nodes + witness) with a permanent slot, and
/// a standby cluster (2 data nodes + witness) following it through that slot. Rows written on
/// the primary reach both standby members; SIGKILL of the standby leader makes the other
/// member the standby leader, which keeps replicating; no member of the standby cluster
/// accepts a write; /primary is 503 on every one of them. Then the primary cluster is
/// stopped and the standby cluster promoted with `pgwardenctl promote-cluster`: it accepts
/// writes, with every row written before, and its history has the promotion. Last, the old
/// primary cluster comes back, takes writes of its own, and `pgwardenctl demote-cluster` makes
/// it a standby cluster of the new one: both its members are rewound onto the new history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_cluster_replicates_fails_over_and_is_promoted() {
    require_pg!();
    let mut a = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        dcs_extra: format!("    slots:\n      {SLOT}:\n        type: physical\n"),
        ..Options::default()
    });
    a.start_all();
    let pa = a.wait_healthy(Duration::from_secs(90)).await;
    {
        let client = a.connect(pa).await.expect("connect to the primary");
        client
            .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, v text)")
            .await
            .expect("create table");
    }
    insert(&a, pa, 0, 100).await;
    wait_for(
        Duration::from_secs(30),
        "the permanent slot on the primary",
        || async {
            let n = a
                .query_i64(
                    pa,
                    &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
                )
                .await?;
            (n == 1).then_some(())
        },
    )
    .await;

    let remote_port = a.nodes[pa].spec.pg;
    let mut b = Cluster::new(Options::standby_of(remote_port, SLOT));
    b.start_all();
    let sl = wait_for(
        Duration::from_secs(120),
        "a standby leader in the standby cluster",
        || async { standby_leader(&b).await },
    )
    .await;
    let other = 1 - sl;
    let st = b.patroni(sl).await.expect("GET /patroni");
    assert_eq!(st["role"], "standby_leader", "{st}");
    // The standby leader streams from the remote primary through the permanent slot.
    wait_for(
        Duration::from_secs(60),
        "the standby leader streaming through the slot",
        || async {
            let n = a
                .query_i64(
                    pa,
                    &format!(
                        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}' AND active"
                    ),
                )
                .await?;
            (n == 1).then_some(())
        },
    )
    .await;
    insert(&a, pa, 100, 200).await;
    for i in [sl, other] {
        wait_for(
            Duration::from_secs(90),
            &format!("200 rows on pg{i} of the standby cluster"),
            || async { (rows(&b, i).await? == 200).then_some(()) },
        )
        .await;
    }
    // The other member cascades from the standby leader (its status is published at the end
    // of the iteration that cloned and started it).
    wait_for(
        Duration::from_secs(30),
        "the other member published as a streaming replica",
        || async {
            let st = b.patroni(other).await?;
            (st["role"] == "replica" && st["replication_state"] == "streaming").then_some(())
        },
    )
    .await;
    for i in [sl, other] {
        refuses_writes(&b, i).await;
        assert_eq!(b.http_status(i, "/primary").await, Some(503), "pg{i}: /primary");
    }
    assert_eq!(b.http_status(sl, "/leader").await, Some(200));
    assert_eq!(b.http_status(sl, "/standby_leader").await, Some(200));
    assert_eq!(b.http_status(other, "/standby-leader").await, Some(503));
    assert_eq!(b.http_status(other, "/replica").await, Some(200));
    let cluster = pgwarden_testkit::http::get_json(&b.http, &format!("{}/cluster", b.rest_url(other)))
        .await
        .expect("GET /cluster");
    let roles: Vec<String> = cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(roles.iter().any(|r| r == "standby_leader"), "{cluster}");

    // SIGKILL of the standby leader: the other member takes over as standby leader, never as
    // a primary, and keeps replicating from the remote primary.
    let killed = std::time::Instant::now();
    b.kill9(sl);
    wait_for(
        Duration::from_secs(60),
        "the other member as the new standby leader",
        || async { (standby_leader(&b).await? == other).then_some(()) },
    )
    .await;
    let took_over = killed.elapsed();
    insert(&a, pa, 200, 300).await;
    let inserted = std::time::Instant::now();
    wait_for(
        Duration::from_secs(60),
        "300 rows on the new standby leader",
        || async { (rows(&b, other).await? == 300).then_some(()) },
    )
    .await;
    eprintln!(
        "standby failover: new standby leader {:.1} s after the SIGKILL; rows written on the \
         primary visible on it {:.1} s later",
        took_over.as_secs_f64(),
        inserted.elapsed().as_secs_f64()
    );
    refuses_writes(&b, other).await;
    assert_eq!(b.http_status(other, "/primary").await, Some(503));
    // The killed member comes back as a replica cascading from the new standby leader.
    b.start(sl);
    wait_for(
        Duration::from_secs(90),
        "the old standby leader back with 300 rows",
        || async {
            let st = b.patroni(sl).await?;
            (st["role"] == "replica" && rows(&b, sl).await? == 300).then_some(())
        },
    )
    .await;
    refuses_writes(&b, sl).await;

    // A switchover inside the standby cluster hands the standby leader role back to the
    // restarted member; nothing is promoted, and replication goes on.
    let body = json!({"leader": b.nodes[other].spec.name, "candidate": b.nodes[sl].spec.name});
    let (code, text) = b
        .post(other, "/switchover", body)
        .await
        .expect("POST /switchover in the standby cluster");
    assert_eq!(code, 200, "switchover in the standby cluster: {text}");
    wait_for(
        Duration::from_secs(60),
        "the candidate as standby leader, the old one cascading from it",
        || async {
            (standby_leader(&b).await? == sl).then_some(())?;
            let st = b.patroni(other).await?;
            (st["role"] == "replica" && st["replication_state"] == "streaming").then_some(())
        },
    )
    .await;
    insert(&a, pa, 300, 310).await;
    for i in [sl, other] {
        wait_for(
            Duration::from_secs(60),
            &format!("310 rows on pg{i} after the switchover"),
            || async { (rows(&b, i).await? == 310).then_some(()) },
        )
        .await;
        refuses_writes(&b, i).await;
    }
    // From here on `other` names the standby leader again.
    let (sl, other) = (other, sl);

    // Disaster recovery: the primary cluster is gone, the standby cluster is promoted.
    let old_postmasters: Vec<i32> = (0..a.nodes.len())
        .filter_map(|i| a.nodes[i].postmaster_pid())
        .collect();
    for i in 0..a.nodes.len() {
        a.kill9(i);
    }
    // `pgwardenctl list` shows the standby leader as patronictl does.
    let endpoint = format!("127.0.0.1:{}", b.nodes[other].spec.ctl);
    let o = pgwardenctl(&["--endpoints", &endpoint, "list"], Duration::from_secs(60)).await;
    assert!(o.ok && o.stdout.contains("| Standby Leader |"), "{o:?}");
    let o = pgwardenctl(
        &["--endpoints", &endpoint, "promote-cluster", "--force"],
        Duration::from_secs(120),
    )
    .await;
    assert!(o.ok, "{o:?}");
    assert!(o.stdout.contains("cluster is successfully promoted"), "{o:?}");
    let p = wait_for(
        Duration::from_secs(60),
        "a primary in the promoted cluster",
        || async { b.primary().await },
    )
    .await;
    assert_eq!(p, other, "the standby leader is the one promoted");
    assert_eq!(
        rows(&b, p).await,
        Some(310),
        "rows acknowledged before the primary cluster was lost"
    );
    let client = b.connect(p).await.expect("connect to the new primary");
    client
        .execute("INSERT INTO t VALUES (310, 'after promotion')", &[])
        .await
        .expect("the promoted cluster accepts writes");
    let history = pgwarden_testkit::http::get_json(&b.http, &format!("{}/history", b.rest_url(p)))
        .await
        .expect("GET /history");
    assert!(
        history.as_array().is_some_and(|h| !h.is_empty()),
        "no history row for the promotion: {history}"
    );
    wait_for(
        Duration::from_secs(60),
        "the other member replicating the new row",
        || async { (rows(&b, sl).await? == 311).then_some(()) },
    )
    .await;

    // The old primary cluster comes back and, before anyone fences it, accepts writes the new
    // one never saw: its primary restarts first (with its witness, for a quorum) and writes
    // rows 1000..1010, then its replica rejoins and receives them. As after a reboot, the
    // killed postmasters are gone first (until reaped, PostgreSQL takes one for a live
    // owner of its lock file and refuses to start).
    for pid in old_postmasters {
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        wait_for(
            Duration::from_secs(30),
            &format!("the killed postmaster {pid} reaped"),
            || async { (!proc_dir.exists()).then_some(()) },
        )
        .await;
    }
    let qa = 1 - pa;
    let witness_a = (0..a.nodes.len())
        .find(|&i| a.nodes[i].spec.witness)
        .expect("the witness of the primary cluster");
    a.start(witness_a);
    a.start(pa);
    wait_for(
        Duration::from_secs(90),
        "the old primary back as the primary of its cluster",
        || async { (a.primary().await? == pa).then_some(()) },
    )
    .await;
    insert(&a, pa, 1000, 1010).await;
    a.start(qa);
    wait_for(
        Duration::from_secs(90),
        "the old cluster's replica back with the diverging rows",
        || async { (rows(&a, qa).await? == 320).then_some(()) },
    )
    .await;
    // demote-cluster fences it: both members follow the promoted cluster, rewound (the
    // primary from the new primary, the replica from its standby leader), so the rows only
    // it had are gone and every row of the new cluster is there.
    let new_port = b.nodes[p].spec.pg.to_string();
    let endpoint_a = format!("127.0.0.1:{}", a.nodes[pa].spec.ctl);
    let o = pgwardenctl(
        &[
            "--endpoints",
            &endpoint_a,
            "demote-cluster",
            "--force",
            "--host",
            "127.0.0.1",
            "--port",
            &new_port,
        ],
        Duration::from_secs(120),
    )
    .await;
    assert!(
        o.ok && o.stdout.contains("cluster is successfully demoted"),
        "{o:?}"
    );
    wait_for(
        Duration::from_secs(90),
        "the old primary as the standby leader of the demoted cluster",
        || async { (standby_leader(&a).await? == pa).then_some(()) },
    )
    .await;
    let client = b.connect(p).await.expect("connect to the new primary");
    client
        .execute("INSERT INTO t VALUES (311, 'after the demotion')", &[])
        .await
        .expect("a write on the new primary");
    for i in [pa, qa] {
        wait_for(
            Duration::from_secs(120),
            &format!("pg{i} of the demoted cluster on the new cluster's history"),
            || async {
                let all = rows(&a, i).await?;
                let stray = a.query_i64(i, "SELECT count(*) FROM t WHERE id >= 1000").await?;
                (all == 312 && stray == 0).then_some(())
            },
        )
        .await;
        refuses_writes(&a, i).await;
        assert_eq!(a.http_status(i, "/primary").await, Some(503), "pg{i}: /primary");
    }
}

/// `pgwardenctl demote-cluster`, then promote-cluster through PATCH /config, on a one-node
/// cluster: with `standby_cluster` added the primary restarts as a standby leader of the (here unreachable)
/// remote host, refuses writes and answers /primary 503 and /standby-leader 200; with the
/// section removed it is promoted again and accepts writes, on a new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_cluster_demote_and_promote_by_patch() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 1,
        raft_extra: vec!["  single_node: true\n".into()],
        ..Options::default()
    });
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(60)).await;
    c.connect(p)
        .await
        .expect("connect")
        .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')")
        .await
        .expect("create table");
    let tl = c.patroni(p).await.expect("GET /patroni")["timeline"]
        .as_u64()
        .unwrap();
    // An address nothing listens on: the standby leader keeps trying, read-only.
    let endpoint = format!("127.0.0.1:{}", c.nodes[p].spec.ctl);
    let ctl = |args: &'static [&'static str]| {
        let endpoint = endpoint.clone();
        async move {
            let mut all = vec!["--endpoints", endpoint.as_str()];
            all.extend_from_slice(args);
            pgwardenctl(&all, Duration::from_secs(120)).await
        }
    };
    let o = ctl(&["demote-cluster", "--force"]).await;
    assert!(
        !o.ok && o.stderr.contains("At least --host, --port or --restore-command"),
        "{o:?}"
    );
    let o = ctl(&["demote-cluster", "--force", "--host", "127.0.0.1", "--port", "9"]).await;
    assert!(
        o.ok && o.stdout.contains("cluster is successfully demoted"),
        "{o:?}"
    );
    let o = ctl(&["demote-cluster", "--force", "--host", "127.0.0.1"]).await;
    assert!(
        !o.ok && o.stderr.contains("Cluster is already in the required state"),
        "{o:?}"
    );
    wait_for(
        Duration::from_secs(60),
        "the primary demoted to a standby leader",
        || async { (c.http_status(p, "/standby-leader").await? == 200).then_some(()) },
    )
    .await;
    assert_eq!(c.http_status(p, "/primary").await, Some(503));
    assert_eq!(c.http_status(p, "/leader").await, Some(200));
    refuses_writes(&c, p).await;
    assert_eq!(rows(&c, p).await, Some(1));
    let (code, body) = c
        .patch_config(p, json!({"standby_cluster": null}))
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "{body}");
    wait_for(Duration::from_secs(60), "the standby leader promoted", || async {
        (c.http_status(p, "/primary").await? == 200).then_some(())
    })
    .await;
    c.connect(p)
        .await
        .expect("connect")
        .execute("INSERT INTO t VALUES (2, 'two')", &[])
        .await
        .expect("the promoted member accepts writes");
    let now = c.patroni(p).await.expect("GET /patroni")["timeline"]
        .as_u64()
        .unwrap();
    assert!(now > tl, "promoted on timeline {now}, was {tl}");
}
