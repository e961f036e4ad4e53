//! Soak: does a 3-node cluster at pgwarden's shipped timing stay put under load and the
//! faults its lease is meant to cover? The nodes run in network namespaces (the testkit's
//! `NetLab`); pgbench, in the client namespace, saturates the primary while every 20 s one
//! fault is injected, in turn:
//! (a) one daemon frozen with SIGSTOP for a random 0.5 s – ttl/2;
//! (b) the primary's host cut off from the other members for a random 0.5 s – ttl/2 (the
//!     client still reaches it);
//! (c) disk pressure: a writer doing fdatasync in a loop in one node's directory (beside its
//!     Raft and PostgreSQL data) for 10 s;
//! (d) CPU starvation: one node's daemon and PostgreSQL processes throttled to 5 % of a CPU
//!     (a cgroup v1 `cpu` quota) for 10 s.
//!
//! It counts false failovers (timeline changes: nothing here kills a primary), fence stops
//! ("leader lease ran out" in a log) and failed transactions (pgbench's failed ones and
//! aborted clients), and passes on 0/0/0. The node, the durations and the fault order within
//! each round of four are drawn from `SOAK_SEED` (printed, for a re-run).
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
use pgwarden_testkit::{wait_for, NetLab};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn pgbench() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    p.is_file().then_some(p)
}

/// The cgroup v1 `cpu` hierarchy the starvation fault uses.
const CPU_CGROUP_ROOT: &str = "/sys/fs/cgroup/cpu";

#[test]
#[ignore = "minutes long: run through scripts/soak.sh"]
fn soak_no_false_failover_under_load_and_faults() {
    assert!(
        pgbench().is_some() && pgwarden_testkit::pg_available(),
        "PostgreSQL 15 with pgbench is needed"
    );
    assert!(
        pgwarden_testkit::netns_available(),
        "network namespaces are needed: run as root with iproute2"
    );
    assert!(
        Path::new(CPU_CGROUP_ROOT).join("cgroup.procs").exists(),
        "the cgroup v1 cpu controller is needed at {CPU_CGROUP_ROOT}"
    );
    let lab = Arc::new(NetLab::new("pgw-soak", 3).expect("build the test network"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || soak(for_body));
}

/// The kinds of fault, one of each per round of four.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Stall,
    Cut,
    Disk,
    Cpu,
}

/// What the run saw, printed at the end.
#[derive(Default)]
struct Tally {
    stalls: Vec<Duration>,
    cuts: Vec<Duration>,
    disk: usize,
    cpu: usize,
}

async fn soak(lab: Arc<NetLab>) {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10)
        .clamp(1, 120);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Cluster::new(Options {
        netns: Some(lab),
        ..Options::default()
    });
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let tl = c.patroni(p).await.unwrap()["timeline"].as_u64().unwrap();
    let ttl = c.ttl(p).await;
    let host = c.nodes[p].spec.host.clone();
    let port = c.nodes[p].spec.pg.to_string();
    let bench = pgbench().unwrap();
    let base = |cmd: &mut Command| {
        cmd.env("PGPASSWORD", SUPERUSER_PASSWORD)
            .args(["-h", &host, "-p", &port, "-U", "postgres"]);
    };
    // pgbench runs from this thread's namespace: the client's.
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
    .stderr(Stdio::piped());
    let child = run.spawn().expect("pgbench");
    let started = Instant::now();
    let max_fault = (ttl / 2).max(Duration::from_millis(600));
    let mut tally = Tally::default();
    let mut round: Vec<Fault> = vec![];
    // Bounded: one fault every 20 s for the run's length.
    while started.elapsed() + Duration::from_secs(30) < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(20)).await;
        if round.is_empty() {
            round = vec![Fault::Stall, Fault::Cut, Fault::Disk, Fault::Cpu];
            round.shuffle(&mut rng);
        }
        let fault = round.pop().unwrap();
        let node = rng.gen_range(0..3usize);
        let length = Duration::from_millis(rng.gen_range(500..=max_fault.as_millis() as u64));
        let at = started.elapsed().as_secs();
        match fault {
            Fault::Stall => {
                let Some(pid) = c.nodes[node].child.as_ref().map(|ch| ch.id() as i32) else {
                    continue;
                };
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                tokio::time::sleep(length).await;
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                tally.stalls.push(length);
                eprintln!("[{at:>4}s] (a) pg{node}'s daemon frozen for {length:?}");
            }
            Fault::Cut => {
                c.isolate(p);
                tokio::time::sleep(length).await;
                c.heal();
                tally.cuts.push(length);
                eprintln!("[{at:>4}s] (b) primary pg{p}'s host cut off for {length:?}");
            }
            Fault::Disk => {
                let dir = c.nodes[node].dir.clone();
                tokio::task::spawn_blocking(move || disk_pressure(&dir, Duration::from_secs(10)))
                    .await
                    .unwrap();
                tally.disk += 1;
                eprintln!("[{at:>4}s] (c) fdatasync loop in pg{node}'s directory for 10 s");
            }
            Fault::Cpu => {
                let Some(pid) = c.nodes[node].child.as_ref().map(|ch| ch.id() as i32) else {
                    continue;
                };
                let starved = Starved::start(pid, c.nodes[node].postmaster_pid());
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = starved.stop();
                tally.cpu += 1;
                eprintln!("[{at:>4}s] (d) pg{node}'s {n} processes throttled to 5 % of a CPU for 10 s");
            }
        }
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("pgbench output");
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .unwrap_or("tps = ?")
        .to_string();
    let failed_tx: u64 = text
        .lines()
        .find(|l| l.contains("number of failed transactions"))
        .and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let aborted = errors
        .lines()
        .filter(|l| l.contains("error: client ") && l.contains(" aborted"))
        .count() as u64;
    let bench_failed = u64::from(!out.status.success());
    let p_after = wait_for(Duration::from_secs(30), "the primary", || c.primary()).await;
    let tl_after = c.patroni(p_after).await.unwrap()["timeline"].as_u64().unwrap();
    let fence_stops: usize = (0..3).map(|i| fence_stops(&c.log(i))).sum();
    let false_failovers = tl_after - tl;
    let failed = failed_tx + aborted + bench_failed;
    let longest = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!("soak: {minutes} min, seed {seed}, ttl {ttl:?}, pgbench -c 4 -j 2; {tps}");
    println!(
        "soak: faults every 20 s: {} daemon stalls (longest {:?}), {} cuts of the primary's host \
         (longest {:?}), {} disk-pressure and {} CPU-starvation periods of 10 s",
        tally.stalls.len(),
        longest(&tally.stalls),
        tally.cuts.len(),
        longest(&tally.cuts),
        tally.disk,
        tally.cpu
    );
    println!(
        "soak: primary pg{p} -> pg{p_after}, timeline {tl} -> {tl_after}; false failovers \
         {false_failovers}, fence stops {fence_stops}, failed transactions {failed} \
         ({failed_tx} failed, {aborted} clients aborted, pgbench exit {})",
        out.status
    );
    if failed > 0 {
        for l in errors.lines().rev().take(10) {
            println!("soak: pgbench: {l}");
        }
    }
    assert_eq!(false_failovers, 0, "a failover happened");
    assert_eq!(fence_stops, 0, "a lease ran out");
    assert_eq!(failed, 0, "transactions failed");
    assert_eq!(p_after, p, "the primary changed");
}

/// How many times a daemon's log says the lease ran out: the fence thread and the lease each
/// say it once per stop, so lines within the same second count once.
fn fence_stops(log: &str) -> usize {
    let mut seconds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lease ran out"))
        .filter_map(|l| l.get(..19))
        .collect();
    seconds.dedup();
    seconds.len()
}

/// Writes 1 MiB and fdatasyncs, in a loop, for `how_long`, in a 64 MiB file of `dir`
/// (removed afterwards).
fn disk_pressure(dir: &Path, how_long: Duration) {
    let path = dir.join("soak-disk-pressure");
    let mut f = std::fs::File::create(&path).expect("create the pressure file");
    let chunk = vec![0xa5u8; 1 << 20];
    let until = std::time::Instant::now() + how_long;
    let mut i = 0u64;
    // Bounded by `how_long`.
    while std::time::Instant::now() < until {
        let _ = f.seek(SeekFrom::Start((i % 64) << 20));
        let _ = f.write_all(&chunk);
        let _ = f.sync_data();
        i += 1;
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
}

/// A daemon and its PostgreSQL (every process under either) moved into a cgroup whose CPU quota
/// is 5 % of one CPU; [`Starved::stop`] moves them back and removes the cgroup (also on drop).
struct Starved {
    group: PathBuf,
    pids: Vec<i32>,
}

impl Starved {
    /// `postmaster`: counted apart, since a daemonised start may leave it outside the
    /// daemon's process tree.
    fn start(daemon: i32, postmaster: Option<i32>) -> Starved {
        let group = Path::new(CPU_CGROUP_ROOT).join(format!("pgw-soak-starve-{daemon}"));
        let _ = std::fs::create_dir(&group);
        std::fs::write(group.join("cpu.cfs_period_us"), "100000").expect("cpu.cfs_period_us");
        std::fs::write(group.join("cpu.cfs_quota_us"), "5000").expect("cpu.cfs_quota_us");
        let mut pids = descendants(daemon);
        for pid in postmaster.map(descendants).unwrap_or_default() {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        for pid in &pids {
            // A process that exited meanwhile cannot be moved: nothing to starve.
            let _ = std::fs::write(group.join("cgroup.procs"), pid.to_string());
        }
        Starved { group, pids }
    }

    /// Ends the starvation; returns how many processes were starved.
    fn stop(mut self) -> usize {
        self.release();
        self.pids.len()
    }

    fn release(&mut self) {
        let root = Path::new(CPU_CGROUP_ROOT).join("cgroup.procs");
        let moved = std::fs::read_to_string(self.group.join("cgroup.procs")).unwrap_or_default();
        for pid in moved.lines() {
            let _ = std::fs::write(&root, pid);
        }
        let _ = std::fs::remove_dir(&self.group);
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        if self.group.exists() {
            self.release();
        }
    }
}

/// `pid` and every process below it, from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The parent is the second field after the command, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    // Bounded by the number of processes.
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}
