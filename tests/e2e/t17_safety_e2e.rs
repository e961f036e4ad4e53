//! Issue 14's findings F1, F3, F4 and F5 end to end: each scenario is built the way the
//! safety review describes it (a replay backlog, a slow shutdown, a non-voter candidate, a
//! stale primary), with real PostgreSQL, so that the pre-fix behaviour fails the test.
//!
//! Long actions are made long by holding a PostgreSQL process of the test's own cluster: a
//! session whose lock blocks replay on a standby (F1), or a standby's WAL receiver stopped
//! with SIGSTOP, which a primary's shutdown waits for (F3). [`Held`] resumes such a process
//! when it is dropped, so a failing test never leaves one stopped.

use crate::harness::{conns, Cluster, Options, Writer};
use pgwarden_testkit::{http, require_pg, wait_for};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// A process held with SIGSTOP, resumed (SIGCONT) when dropped.
struct Held(i32);

impl Held {
    fn stop(pid: i32) -> Held {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP)
            .expect("SIGSTOP");
        Held(pid)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

fn name(c: &Cluster, i: usize) -> String {
    c.nodes[i].spec.name.clone()
}

async fn timeline(c: &Cluster, i: usize) -> Option<u64> {
    c.patroni(i).await?.get("timeline")?.as_u64()
}

/// The pid of node `i`'s WAL receiver.
async fn walreceiver_pid(c: &Cluster, i: usize) -> i32 {
    wait_for(Duration::from_secs(30), "the replica's WAL receiver", || async {
        let cl = c.connect(i).await?;
        let row = cl
            .query_opt(
                "SELECT pid FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                &[],
            )
            .await
            .ok()??;
        Some(row.get::<_, i32>(0))
    })
    .await
}

/// F1: the primary is lost while the only other data member has received everything but
/// cannot replay it (a session on it holds a lock that the replay of a DROP TABLE needs, and
/// max_standby_streaming_delay = -1 lets replay wait for it). That member looks fully caught
/// up, takes the key and calls pg_promote(), which waits for the replay, for longer than the
/// lease. Before the fix the fence stopped it at the lease's deadline and the next iteration
/// started it as a primary from its standby data directory, on the old timeline. Now the
/// lease is kept alive while the promotion waits: the same postmaster is promoted, on a new
/// timeline, with everything it had received replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f1_a_promotion_held_by_a_replay_backlog_keeps_its_lease_and_opens_a_new_timeline() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        dcs_parameters: vec![("max_standby_streaming_delay", "-1")],
        ..Options::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let replica = 1 - leader;
    let ttl = c.ttl(leader).await;
    let primary = c.connect(leader).await.expect("connect to the primary");
    primary
        .batch_execute("CREATE TABLE f1_held AS SELECT generate_series(1, 1000) AS x")
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the table on the replica", || async {
        (c.query_i64(replica, "SELECT count(*) FROM f1_held").await? == 1000).then_some(())
    })
    .await;
    // The session whose lock holds replay back, until the test ends it.
    let blocker = c.connect(replica).await.expect("connect to the replica");
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM f1_held")
        .await
        .unwrap();
    primary
        .batch_execute("DROP TABLE f1_held; CREATE TABLE f1_after AS SELECT generate_series(1, 100) AS x")
        .await
        .unwrap();
    let target = c
        .query_i64(leader, "SELECT (pg_current_wal_flush_lsn() - '0/0')::bigint")
        .await
        .expect("the primary's flush position");
    wait_for(
        Duration::from_secs(30),
        "the replica to receive everything and replay less",
        || async {
            let r = c.connect(replica).await?;
            let row = r
                .query_one(
                    "SELECT (pg_last_wal_receive_lsn() - '0/0')::bigint, (pg_last_wal_replay_lsn() - '0/0')::bigint",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) >= target && row.get::<_, i64>(1) < target).then_some(())
        },
    )
    .await;
    let pm = c.nodes[replica]
        .postmaster_pid()
        .expect("the replica's postmaster");

    c.kill9(leader);
    wait_for(Duration::from_secs(60), "the replica to take the key", || async {
        (c.lease_remaining(replica).await? > 0.0).then_some(())
    })
    .await;
    let acquired = Instant::now();
    // The promotion waits on the replay, which waits on the session: for well past the lease
    // (its deadline is ttl − margin after the acquire). Meanwhile the lock holder keeps its
    // key, and its PostgreSQL is neither fenced nor restarted.
    while acquired.elapsed() < ttl + Duration::from_secs(4) {
        assert_eq!(
            c.nodes[replica].postmaster_pid(),
            Some(pm),
            "PostgreSQL on the lock holder was stopped or restarted while its promotion waited ({:?} after the acquire)",
            acquired.elapsed()
        );
        if let Some(left) = c.lease_remaining(replica).await {
            assert!(
                left > 0.0,
                "the lock holder's lease ran out while its promotion waited ({:?} after the acquire)",
                acquired.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The scenario held: the promotion is still waiting on the replay, past the lease.
    let in_recovery = c
        .connect(replica)
        .await
        .expect("connect to the replica")
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    assert!(
        in_recovery,
        "the promotion did not wait for the replay: the scenario did not hold"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    drop(blocker);

    wait_for(
        Duration::from_secs(60),
        "the replica to be the primary",
        || async { (c.http_status(replica, "/primary").await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(
        c.nodes[replica].postmaster_pid(),
        Some(pm),
        "the new primary was restarted instead of promoted"
    );
    assert_eq!(timeline(&c, replica).await, Some(2), "no new timeline");
    let sql_tl = c
        .query_i64(replica, "SELECT timeline_id::bigint FROM pg_control_checkpoint()")
        .await;
    assert_eq!(sql_tl, Some(2), "pg_control is not on the new timeline");
    assert_eq!(
        c.query_i64(replica, "SELECT count(*) FROM f1_after").await,
        Some(100),
        "what the replica had received was not replayed before it opened"
    );
    assert_eq!(
        c.query_i64(replica, "SELECT count(*) FROM pg_class WHERE relname = 'f1_held'")
            .await,
        Some(0)
    );
    let log = c.log(replica);
    assert!(
        !log.contains("lease ran out"),
        "the fence fired on the promoting member"
    );
    eprintln!(
        "promotion held {:?} past the acquire, promoted on timeline 2 without a restart",
        acquired.elapsed()
    );
}

/// The shared part of the F3 tests: a three-member cluster whose primary's shutdown will wait
/// on a replica's stopped WAL receiver (wal_sender_timeout is long). That replica is tagged
/// nofailover: its promotion would wait on the stopped receiver too.
async fn f3_cluster() -> (Cluster, usize, usize, usize, Duration) {
    let mut c = Cluster::new(Options {
        dcs_parameters: vec![("wal_sender_timeout", "120s")],
        ..Options::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (slow, other) = (others[0], others[1]);
    c.append_config(slow, "tags:\n  nofailover: true\n");
    let (code, body) = c.post(slow, "/reload", json!({})).await.expect("POST /reload");
    assert!(code < 300, "{code} {body}");
    wait_for(
        Duration::from_secs(30),
        "the nofailover tag published",
        || async { (c.patroni(slow).await?["tags"]["nofailover"] == true).then_some(()) },
    )
    .await;
    let ttl = c.ttl(leader).await;
    (c, leader, slow, other, ttl)
}

fn post_restart(c: &Cluster, i: usize) -> tokio::task::JoinHandle<Option<(u16, String)>> {
    let (client, url) = (c.http.clone(), format!("{}/restart", c.rest_url(i)));
    tokio::spawn(async move {
        http::send_json(
            &client,
            reqwest::Method::POST,
            &url,
            &json!({}),
            Duration::from_secs(180),
        )
        .await
    })
}

/// F3: POST /restart on a busy primary whose shutdown takes longer than the lease (it waits
/// for a replica whose WAL receiver is stopped to confirm the shutdown checkpoint). The lease
/// is kept alive across the restart: no other member takes the key or is promoted, and the
/// same primary comes back on the same timeline. Before the fix the restart ran with one
/// refresh: the fence fired at the deadline, the key expired and a replica was promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f3_a_restart_longer_than_the_lease_keeps_the_lease() {
    require_pg!();
    let (c, leader, slow, other, ttl) = f3_cluster().await;
    let writer = Writer::start(conns(&c)).await;
    writer.wait_more(200, Duration::from_secs(30)).await;
    let tl = timeline(&c, leader).await.expect("timeline");
    let pm = c.nodes[leader].postmaster_pid().expect("postmaster");
    let held = Held::stop(walreceiver_pid(&c, slow).await);
    let restart = post_restart(&c, leader);
    let started = Instant::now();
    while started.elapsed() < ttl + Duration::from_secs(4) {
        for i in [slow, other] {
            assert_ne!(
                c.http_status(i, "/primary").await,
                Some(200),
                "{} became a primary during the restart ({:?} in)",
                name(&c, i),
                started.elapsed()
            );
        }
        if let Some(left) = c.lease_remaining(leader).await {
            assert!(
                left > 0.0,
                "the primary's lease ran out during the restart ({:?} in)",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !restart.is_finished(),
        "the restart finished within the lease: the scenario did not hold"
    );
    drop(held);
    let (code, body) = tokio::time::timeout(Duration::from_secs(120), restart)
        .await
        .expect("the restart to answer")
        .unwrap()
        .expect("POST /restart answered");
    let took = started.elapsed();
    assert_eq!(code, 200, "{body}");
    assert_ne!(
        c.nodes[leader].postmaster_pid(),
        Some(pm),
        "PostgreSQL was not restarted"
    );
    assert_eq!(
        c.wait_healthy(Duration::from_secs(60)).await,
        leader,
        "the primary changed"
    );
    assert_eq!(
        timeline(&c, leader).await,
        Some(tl),
        "the timeline changed: a failover happened"
    );
    writer.wait_more(50, Duration::from_secs(30)).await;
    writer.stop().await;
    assert!(
        !c.log(leader).contains("lease ran out"),
        "the fence fired during the restart"
    );
    eprintln!("restart of the primary took {took:?} (ttl {ttl:?}): same primary, same timeline");
}

/// F3, the lease lost: the same slow restart, but the primary's Raft links are cut once it has
/// begun, so the lease cannot be kept. Another member is promoted after the lease has run out,
/// and the old primary must never run writable again: its restart is stopped with the lease.
/// Before the fix the one-shot fence fired once, the restart went on, and the restarted
/// instance accepted writes after its lease had run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f3_a_restart_that_loses_the_lease_never_runs_writable_after_it() {
    require_pg!();
    let (c, leader, slow, _other, ttl) = f3_cluster().await;
    let setup = c.connect(leader).await.expect("connect to the primary");
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS writes (id bigint primary key)")
        .await
        .unwrap();
    let (acks, stop_writes) = crate::harness::write_to_one(&c, leader, 2_000_000_000);
    wait_for(Duration::from_secs(30), "writes on the primary", || async {
        (acks.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    let held = Held::stop(walreceiver_pid(&c, slow).await);
    let restart = post_restart(&c, leader);
    // The restart has begun once the primary stops answering writes.
    wait_for(
        Duration::from_secs(30),
        "the primary's shutdown to begin",
        || async {
            let last = *acks.lock().unwrap().last()?;
            (last.elapsed() > Duration::from_secs(1)).then_some(())
        },
    )
    .await;
    c.isolate(leader);
    let cut = Instant::now();
    let new_primary = wait_for(Duration::from_secs(90), "another member promoted", || async {
        c.primary().await.filter(|p| *p != leader)
    })
    .await;
    // The held shutdown may now finish: a restart that went on would start PostgreSQL again.
    drop(held);
    let _ = tokio::time::timeout(Duration::from_secs(60), restart).await;
    // Past the lease, and long enough for a restarted instance to accept a write.
    let watch_until = Instant::now() + ttl;
    while Instant::now() < watch_until {
        if let Some(cl) = c.connect(leader).await {
            if let Ok(row) = cl.query_one("SELECT pg_is_in_recovery()", &[]).await {
                assert!(
                    row.get::<_, bool>(0),
                    "the old primary runs writable {:?} after its Raft links were cut",
                    cut.elapsed()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_writes.cancel();
    let late: Vec<Duration> = acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| **a > cut + ttl)
        .map(|a| *a - cut)
        .collect();
    assert!(
        late.is_empty(),
        "the old primary acknowledged writes after its lease ran out: {late:?} after the cut"
    );
    eprintln!(
        "lease lost during the restart: {} promoted, the old primary never writable again",
        name(&c, new_primary)
    );
}

/// F4: quorum mode, and a replica tagged nosync (so never in /sync): a switchover to it is
/// refused with Patroni's 412, the primary stays; when the primary is lost, the member listed
/// in /sync is promoted and the non-voter never holds the key. Before the fix the switchover
/// was accepted in quorum mode and the non-voter took the key at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f4_a_non_voter_is_never_the_candidate_in_quorum_mode() {
    require_pg!();
    let mut c = Cluster::new(Options {
        dcs_extra: "    synchronous_mode: quorum\n".into(),
        ..Options::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (voter, outsider) = (others[0], others[1]);
    c.append_config(outsider, "tags:\n  nosync: true\n");
    let (code, body) = c
        .post(outsider, "/reload", json!({}))
        .await
        .expect("POST /reload");
    assert!(code < 300, "{code} {body}");
    let (vn, on, ln) = (name(&c, voter), name(&c, outsider), name(&c, leader));
    wait_for(
        Duration::from_secs(60),
        "only the voter in /sync and in synchronous_standby_names",
        || async {
            let cl = http::get_json(&c.http, &format!("{}/cluster", c.rest_url(leader))).await?;
            let role = |n: &str| {
                cl["members"]
                    .as_array()?
                    .iter()
                    .find(|m| m["name"] == n)
                    .map(|m| m["role"].as_str().unwrap_or_default().to_string())
            };
            let ssn = c
                .connect(leader)
                .await?
                .query_one("SHOW synchronous_standby_names", &[])
                .await
                .ok()?
                .get::<_, String>(0);
            (role(&vn)? == "quorum_standby"
                && role(&on)? == "replica"
                && ssn.contains(&vn)
                && !ssn.contains(&on))
            .then_some(())
        },
    )
    .await;
    // And the sync key narrowed to its steady state (quorum 0 for one voter): a primary lost
    // between the widening write (quorum 1) and this one leaves no member with enough votes.
    let settled = format!("sync key written sync_standby=Some(\"{vn}\") quorum=Some(0)");
    wait_for(Duration::from_secs(30), "the sync key's steady state", || async {
        c.log(leader).contains(&settled).then_some(())
    })
    .await;

    let (code, body) = c
        .post(leader, "/switchover", json!({"leader": ln, "candidate": on}))
        .await
        .expect("POST /switchover answered");
    assert_eq!(code, 412, "a switchover to a non-voter was not refused: {body}");
    assert!(body.contains("sync_standby"), "{body}");
    assert_eq!(c.primary().await, Some(leader));

    let writer = Writer::start(conns(&c)).await;
    writer.wait_more(100, Duration::from_secs(30)).await;
    c.kill9(leader);
    let killed = Instant::now();
    let new_primary = loop {
        if let Some(left) = c.lease_remaining(outsider).await {
            assert_eq!(left, 0.0, "the non-voter took the key while a voter could");
        }
        if let Some(p) = c.primary().await {
            break p;
        }
        assert!(killed.elapsed() < Duration::from_secs(90), "no new primary");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(new_primary, voter, "the member in /sync was not the one promoted");
    writer.wait_more(50, Duration::from_secs(30)).await;
    let acked = writer.stop().await;
    let lost = c
        .query_i64(voter, "SELECT count(*) FROM writes")
        .await
        .map(|n| acked.len() as i64 - n);
    eprintln!("failover in quorum mode: {vn} promoted; acknowledged rows missing: {lost:?}");
}

/// F5: a stale primary racing for a free key. The primary's daemon dies with nothing to stop
/// its PostgreSQL (its fence guard is killed too), a replica is promoted on timeline 2, then
/// that new primary is lost as well and the key becomes free. The old primary's daemon comes
/// back to its PostgreSQL still running as a primary on timeline 1: it must not take the key
/// (that would throw away everything acknowledged on timeline 2). The two other members are
/// tagged nofailover, so nobody else races, and a witness keeps a Raft majority throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f5_a_primary_on_an_older_timeline_never_takes_a_free_key() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 4,
        witness: true,
        ..Options::default()
    });
    c.start_all();
    let old = c.wait_healthy(Duration::from_secs(120)).await;
    let ttl = c.ttl(old).await;
    let others: Vec<usize> = (0..4).filter(|i| *i != old).collect();
    let (next, bystanders) = (others[0], [others[1], others[2]]);
    for b in bystanders {
        c.append_config(b, "tags:\n  nofailover: true\n");
        let (code, body) = c.post(b, "/reload", json!({})).await.expect("POST /reload");
        assert!(code < 300, "{code} {body}");
    }
    wait_for(
        Duration::from_secs(30),
        "the nofailover tags published",
        || async {
            for b in bystanders {
                let p = c.patroni(b).await?;
                if p["tags"]["nofailover"] != true {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let guard_pids = c.nodes[old].state_dir().join("fence-guard.pid");
    wait_for(Duration::from_secs(20), "the fence guard to run", || async {
        guard_pids.exists().then_some(())
    })
    .await;

    // The old primary's daemon dies; its guard is killed too (an orphan nothing stops).
    c.kill9_daemon(old);
    let guard: i32 = std::fs::read_to_string(&guard_pids)
        .unwrap()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the guard's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the guard");
    wait_for(Duration::from_secs(60), "the replica promoted", || async {
        (c.primary().await == Some(next) && timeline(&c, next).await == Some(2)).then_some(())
    })
    .await;
    let stale_tl = c
        .query_i64(old, "SELECT timeline_id::bigint FROM pg_control_checkpoint()")
        .await;
    let stale_primary = c
        .connect(old)
        .await
        .expect("the orphaned primary runs")
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    assert!(
        stale_primary && stale_tl == Some(1),
        "no stale primary on timeline 1"
    );

    // The new primary is lost as well: its key expires and nobody may take it.
    c.kill9(next);
    wait_for(ttl * 3, "the leader key to be free", || async {
        (c.metric(bystanders[0], "patroni_cluster_unlocked").await? == 1.0).then_some(())
    })
    .await;
    // The old daemon comes back. Its guard's deadline file still holds the dead lease's
    // deadline, which would stop the orphan at once: clear it, as a daemon of a version
    // without the guard would have found it.
    std::fs::write(c.nodes[old].state_dir().join("fence-deadline"), "none\n").unwrap();
    c.start(old);
    let check = |left: Option<f64>| {
        assert!(
            left.unwrap_or(0.0) == 0.0,
            "the primary on the older timeline took the free key"
        );
    };
    wait_for(
        Duration::from_secs(60),
        "the old daemon to refuse the race",
        || async {
            check(c.lease_remaining(old).await);
            c.log(old).contains("a newer primary was promoted").then_some(())
        },
    )
    .await;
    // And it keeps refusing.
    let until = Instant::now() + ttl;
    while Instant::now() < until {
        check(c.lease_remaining(old).await);
        assert_ne!(c.http_status(old, "/primary").await, Some(200));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
