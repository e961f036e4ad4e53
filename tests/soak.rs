//! Soak: does a 3-node cluster at pgwarden's default timing (ttl 10, loop_wait 2,
//! retry_timeout 3) stay put under load and short stalls? pgbench saturates the primary
//! while, every 20 s, one daemon in turn (the primary's included) is frozen with SIGSTOP for
//! 2 to 4 s. A false failover shows as a new timeline.
//!
//! Not part of the test suite (it runs for minutes): `scripts/soak.sh [MINUTES]`.

// The end-to-end harness, included: the soak test is its own opt-in binary, and uses only
// part of the harness.
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;

use harness::{Cluster, Options, SUPERUSER_PASSWORD};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgwarden_testkit::wait_for;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

fn pgbench() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    p.is_file().then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run through scripts/soak.sh"]
async fn soak_no_false_failover_under_load_and_stalls() {
    let (Some(bench), true) = (pgbench(), pgwarden_testkit::pg_available()) else {
        panic!("PostgreSQL 15 with pgbench is needed");
    };
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10)
        .clamp(1, 120);
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(90)).await;
    let tl = c.patroni(p).await.unwrap()["timeline"].as_u64().unwrap();
    let port = c.nodes[p].spec.pg.to_string();
    let base = |cmd: &mut Command| {
        cmd.env("PGPASSWORD", SUPERUSER_PASSWORD)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"]);
    };
    let mut init = Command::new(&bench);
    base(&mut init);
    let ok = init
        .args(["-i", "-s", "10", "-q", "postgres"])
        .stdout(Stdio::null())
        .status()
        .expect("pgbench -i");
    assert!(ok.success(), "pgbench -i failed");

    let secs = minutes * 60;
    let mut run = Command::new(&bench);
    base(&mut run);
    run.args([
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        &secs.to_string(),
        "-P",
        "60",
        "postgres",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let child = run.spawn().expect("pgbench");
    let bench_pid = child.id();
    let started = Instant::now();
    let mut stalls = 0;
    let mut longest = Duration::ZERO;
    // Bounded: one stall every 20 s for the run's length.
    let mut k = 0usize;
    while started.elapsed() < Duration::from_secs(secs.saturating_sub(20)) {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let i = k % 3;
        let stall = Duration::from_secs(2 + (k % 3) as u64);
        k += 1;
        let Some(pid) = c.nodes[i].child.as_ref().map(|ch| ch.id() as i32) else {
            continue;
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        tokio::time::sleep(stall).await;
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        stalls += 1;
        longest = longest.max(stall);
        eprintln!("stall {stalls}: pg{i}'s daemon frozen for {stall:?}");
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("pgbench output");
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .unwrap_or("tps = ?")
        .to_string();
    let failed = text
        .lines()
        .find(|l| l.contains("number of failed transactions"))
        .unwrap_or("")
        .to_string();
    let p_after = wait_for(Duration::from_secs(30), "the primary", || c.primary()).await;
    let tl_after = c.patroni(p_after).await.unwrap()["timeline"].as_u64().unwrap();
    let fence_logs: usize = (0..3).map(|i| c.log(i).matches("lease ran out").count()).sum();
    println!("soak: {minutes} min, pgbench -c 4 -j 2 (pid {bench_pid}); {tps}; {failed}");
    println!("soak: {stalls} daemon stalls of 2-4 s (longest {longest:?}), one every 20 s, rotating over the 3 nodes");
    println!(
        "soak: primary pg{p} -> pg{p_after}, timeline {tl} -> {tl_after}, fence stops {fence_logs}; false failovers: {}",
        tl_after - tl
    );
    assert_eq!(p_after, p, "the primary changed");
    assert_eq!(tl_after, tl, "a failover happened");
    assert_eq!(fence_logs, 0, "a lease ran out");
}
