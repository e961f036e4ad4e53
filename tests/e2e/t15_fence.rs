//! The fence without its daemon: the primary's daemon is SIGKILLed (PostgreSQL is not, and
//! nothing supervises either), so only the fence guard beside the postmaster can stop it. A
//! client writing straight to that PostgreSQL must get its last acknowledgement by the lease's
//! deadline, and a replica must be promoted only after that.

use crate::harness::{Cluster, Options, Writer};
use pgwarden_testkit::{require_pg, wait_for};
use std::time::Duration;
use tokio::time::Instant;

/// The default lease: ttl 4 s, and the fence margin ttl / 8 (at most 2 s).
const TTL: Duration = Duration::from_secs(4);
const MARGIN: Duration = Duration::from_millis(500);
/// The guard polls every 50 ms; then SIGQUIT, and the client's last answer in flight.
const TOLERANCE: Duration = Duration::from_millis(500);

async fn daemon_death(opts: Options) {
    let sync = opts.dcs_extra.contains("synchronous_mode: true");
    let mut c = Cluster::new(opts);
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    // In synchronous mode no member may be promoted until the sync key names a standby that
    // holds every acknowledged commit: a kill before that leaves the cluster, rightly, with
    // no primary.
    if sync {
        wait_for(
            Duration::from_secs(30),
            "the sync key to name a synchronous standby",
            || async {
                let sync = c.members_with_role(leader, "sync_standby").await?;
                (!sync.is_empty()).then_some(())
            },
        )
        .await;
    }
    // The table, and a guard beside the primary's postmaster, before the kill.
    let setup = c.connect(leader).await.expect("connect to the primary");
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS writes (id bigint primary key)")
        .await
        .unwrap();
    let guard_pids = c.nodes[leader].state_dir().join("fence-guard.pid");
    wait_for(Duration::from_secs(20), "the fence guard to run", || async {
        guard_pids.exists().then_some(())
    })
    .await;
    let old_pm = c.nodes[leader].postmaster_pid().expect("postmaster pid");

    let (old_acks, stop_old) = crate::harness::write_to_one(&c, leader, 1_000_000_000);
    let others: Vec<String> = (0..c.nodes.len())
        .filter(|i| *i != leader)
        .map(|i| c.conn_str(i))
        .collect();
    let new_writer = Writer::start(others).await;
    wait_for(Duration::from_secs(30), "writes on the primary", || async {
        (old_acks.lock().unwrap().len() >= 200).then_some(())
    })
    .await;

    let killed_at = Instant::now();
    c.kill9_daemon(leader);
    let (first_new, _) = wait_for(
        Duration::from_secs(60),
        "a write acknowledged by a new primary",
        || async { new_writer.first_ack_after(killed_at, None) },
    )
    .await;
    // Writes to the old primary go on a while: without a fence they would still succeed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_old.cancel();
    let last_old = *old_acks.lock().unwrap().last().unwrap();
    eprintln!(
        "daemon killed: last write on the old primary {:?} after the kill, first on the new one {:?} after",
        last_old.saturating_duration_since(killed_at),
        first_new - killed_at
    );
    assert!(
        last_old <= killed_at + TTL - MARGIN + TOLERANCE,
        "the orphaned primary acknowledged a write {:?} after the kill, past the lease's deadline",
        last_old - killed_at
    );
    assert!(
        first_new > last_old,
        "a new primary acknowledged a write ({:?} after the kill) before the old one stopped ({:?})",
        first_new - killed_at,
        last_old - killed_at
    );
    // The old postmaster was stopped by the guard (immediate shutdown), not left running.
    let pm_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pm), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{old_pm}/comm")).is_ok_and(|c| c.trim() == "postgres");
    assert!(!pm_alive, "the old postmaster {old_pm} still runs");
    assert!(
        c.log(leader).contains("fence-guard: the leader lease ran out"),
        "the guard did not say it fired"
    );
    new_writer.stop().await;
}

/// Asynchronous replication: the orphaned primary stops accepting writes by kill + ttl −
/// margin, and the first write on the new primary comes after its last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_daemon_death_the_orphaned_primary_stops_by_its_lease_deadline_async() {
    require_pg!();
    daemon_death(Options::default()).await;
}

/// The same with synchronous_mode: true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_daemon_death_the_orphaned_primary_stops_by_its_lease_deadline_sync() {
    require_pg!();
    daemon_death(Options {
        dcs_extra: "    synchronous_mode: true\n".into(),
        ..Options::default()
    })
    .await;
}

/// A daemon restarted at once after its SIGKILL takes over the running primary and its
/// guard: the same postmaster keeps running as the primary, well past the old deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_daemon_death_a_restarted_daemon_keeps_the_healthy_primary() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let guard_pids = c.nodes[leader].state_dir().join("fence-guard.pid");
    wait_for(Duration::from_secs(20), "the fence guard to run", || async {
        guard_pids.exists().then_some(())
    })
    .await;
    let guard = std::fs::read_to_string(&guard_pids).unwrap();
    let pm = c.nodes[leader].postmaster_pid().expect("postmaster pid");

    c.kill9_daemon(leader);
    c.start(leader);
    // Past the old deadline (kill + ttl − margin) and a few refreshes more.
    tokio::time::sleep(TTL + Duration::from_secs(5)).await;
    assert_eq!(c.primary().await, Some(leader), "the primary changed");
    assert_eq!(
        c.nodes[leader].postmaster_pid(),
        Some(pm),
        "PostgreSQL was restarted"
    );
    assert!(
        !c.log(leader).contains("fence-guard: the leader lease ran out"),
        "the guard fired"
    );
    assert_eq!(
        std::fs::read_to_string(&guard_pids).unwrap(),
        guard,
        "the restarted daemon replaced the guard instead of keeping it"
    );
    let client = c.connect(leader).await.expect("connect to the primary");
    client.batch_execute("CREATE TABLE t15 (x int)").await.unwrap();
}
