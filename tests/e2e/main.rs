//! End to end: real pgwarden daemons managing real PostgreSQL 15 on loopback, driven over
//! REST and SQL, with a client that records every acknowledged write.

mod harness;
mod slots;

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
    assert!(
        c.log(leader).contains("primary_start_timeout is 0"),
        "the old primary says why it gave up the key"
    );
}

/// In maintenance mode (pause) the primary's death promotes nobody; after resume the
/// cluster elects a leader and serves writes again.
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
    let (code, body) = c
        .post(
            p,
            "/switchover",
            json!({"leader": format!("pg{p}"), "candidate": format!("pg{}", 1 - p)}),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "switchover without the witness: {body}");
    w.wait_more(50, Duration::from_secs(30)).await;
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
    let free = harness::free_port;
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

/// Restart and reinitialize through the REST API act on the member: a replica restarts
/// (new postmaster), the leader refuses to reinitialize, a replica reinitializes (its old
/// data directory moved aside, never deleted) and streams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_restart_and_reinitialize_through_rest() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let replica = (leader + 1) % 3;
    let pid = c.nodes[replica].postmaster_pid().unwrap();
    let (code, body) = c.post(replica, "/restart", json!({})).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "restarted successfully"));
    assert_ne!(c.nodes[replica].postmaster_pid(), Some(pid));
    let (code, body) = c
        .post(replica, "/restart", json!({"role": "primary"}))
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (503, "restart conditions are not satisfied")
    );

    let (code, body) = c.post(leader, "/reinitialize", json!({})).await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("I am the leader, can not reinitialize"), "{body}");
    let (code, body) = c
        .post(replica, "/reinitialize", json!({"force": true}))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    c.wait_healthy(Duration::from_secs(90)).await;
    let aside = std::fs::read_dir(&c.nodes[replica].dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("pgdata.") && e.path().is_dir());
    assert!(aside, "the old data directory was not kept");
}

/// The configuration file is re-read on SIGHUP (and POST /reload): a local PostgreSQL
/// parameter and a tag take effect on a running replica without a restart; a broken file
/// is refused with a clear log line and the running configuration is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sighup_rereads_the_configuration_file() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let r = (leader + 1) % 3;
    let path = c.nodes[r].config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    // The file ends inside `postgresql:`; the tags section is new.
    std::fs::write(
        &path,
        format!("{original}  parameters:\n    work_mem: 7MB\ntags:\n  nofailover: true\n"),
    )
    .unwrap();
    let pid = c.nodes[r].child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        Duration::from_secs(30),
        "work_mem reloaded on the replica",
        || async {
            let client = c.connect(r).await?;
            let row = client.query_one("SHOW work_mem", &[]).await.ok()?;
            (row.get::<_, String>(0) == "7MB").then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "the nofailover tag published",
        || async {
            let s = c.patroni(r).await?;
            s.get("tags")?.get("nofailover")?.as_bool()?.then_some(())
        },
    )
    .await;

    std::fs::write(&path, "scope: [this is not\n").unwrap();
    let (code, _) = c.post(r, "/reload", json!({})).await.expect("reload answered");
    assert_eq!(code, 202);
    wait_for(
        Duration::from_secs(30),
        "the broken file to be refused",
        || async {
            c.log(r)
                .contains("keeping the running configuration")
                .then_some(())
        },
    )
    .await;
    assert!(c.patroni(r).await.is_some(), "the daemon keeps running");
    std::fs::write(&path, original).unwrap();
}

/// Replication slots: the primary keeps one per member and the permanent ones of the
/// dynamic config; after a failover the new primary has them for the remaining members
/// and replication resumes; the slot of a member gone longer than member_slots_ttl (0
/// here) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_slots_follow_the_members() {
    require_pg!();
    let mut c = Cluster::new(Options {
        dcs_extra: "    member_slots_ttl: 0\n    slots:\n      archiver: {type: physical}\n".into(),
        ..Options::default()
    });
    c.start_all();
    async fn slots(c: &Cluster, i: usize) -> Option<Vec<String>> {
        let client = c.connect(i).await?;
        let rows = client
            .query("SELECT slot_name::text FROM pg_replication_slots ORDER BY 1", &[])
            .await
            .ok()?;
        Some(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut expect = vec!["archiver".to_string()];
    expect.extend(others.iter().map(|i| format!("pg{i}")));
    expect.sort();
    wait_for(
        Duration::from_secs(30),
        "member and permanent slots on the primary",
        || async { (slots(&c, leader).await? == expect).then_some(()) },
    )
    .await;

    // A replica goes away: its key expires (ttl), then its slot goes (member_slots_ttl 0).
    let gone = others[0];
    let stays = others[1];
    c.kill9(gone);
    wait_for(
        Duration::from_secs(60),
        "the dead member's slot dropped, the others kept",
        || async {
            let got = slots(&c, leader).await?;
            (got == vec!["archiver".to_string(), format!("pg{stays}")]).then_some(())
        },
    )
    .await;
    assert!(c.log(leader).contains("dropped the replication slot"));
    // It comes back: slot recreated, streaming again.
    c.start(gone);
    c.wait_healthy(Duration::from_secs(90)).await;
    wait_for(
        Duration::from_secs(30),
        "the returning member's slot recreated",
        || async {
            slots(&c, leader)
                .await?
                .contains(&format!("pg{gone}"))
                .then_some(())
        },
    )
    .await;
    // Failover: the new primary has the permanent slot and one for each remaining member.
    // (Whether the other replica then streams is the failover tests' business. With no
    // writes at all, a replica whose replay stopped at the very start of the switchpoint's
    // WAL segment was once seen stuck there; that case is tracked separately.)
    c.kill9(leader);
    let new_leader = wait_for(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|p| *p != leader)
    })
    .await;
    let other = others.iter().copied().find(|i| *i != new_leader).unwrap();
    wait_for(Duration::from_secs(60), "slots on the new primary", || async {
        let got = slots(&c, new_leader).await?;
        (got.contains(&"archiver".to_string()) && got.contains(&format!("pg{other}"))).then_some(())
    })
    .await;
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
