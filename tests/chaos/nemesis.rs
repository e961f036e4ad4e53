//! The faults (nemeses) a chaos run injects: what each does to the cluster, how long it
//! holds, and how it is healed. A fault is chosen by [`Kind`]; [`inject`] picks its target
//! from the cluster's state at that moment and returns an [`Active`] fault that [`heal`]
//! undoes. Nothing here waits for the cluster to settle: the run does that after a heal.

use crate::harness::Cluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup v1 blkio hierarchy the slow-disk fault throttles in.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";
/// The slow disk: writes per second and bytes per second allowed to the throttled node.
const SLOW_DISK_IOPS: u32 = 10;
const SLOW_DISK_BPS: u32 = 1 << 20;

/// Every fault the suite knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL of a node's daemon and PostgreSQL; both restarted after the hold.
    KillNode,
    /// SIGKILL of a daemon only (its PostgreSQL keeps running unsupervised); restarted.
    KillDaemon,
    /// SIGSTOP of a daemon for longer than ttl, then SIGCONT.
    StopDaemon,
    /// The primary's node cut off from everyone (peers and clients).
    PartitionPrimary,
    /// The Raft leader's node cut off from its peers, when it is not the primary's.
    PartitionRaftLeader,
    /// Packets from one node to another dropped, one way only.
    OneWay,
    /// A node cut off from its peers; the clients still reach it.
    IsolatePeers,
    /// A share of one node's packets dropped at random.
    Loss,
    /// Every packet towards one node delayed (needs sch_netem).
    Delay,
    /// Every node SIGKILLed and restarted at once.
    RestartAll,
    /// One data node's disk writes throttled (fsync latency).
    SlowDisk,
    /// One node's wall clock stepped minutes to an hour forward or back, then back again
    /// (needs libfaketime; the lease runs on the monotonic clock and must not care).
    ClockStep,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::KillNode,
        Kind::KillDaemon,
        Kind::StopDaemon,
        Kind::PartitionPrimary,
        Kind::PartitionRaftLeader,
        Kind::OneWay,
        Kind::IsolatePeers,
        Kind::Loss,
        Kind::Delay,
        Kind::RestartAll,
        Kind::SlowDisk,
        Kind::ClockStep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillNode => "kill-node",
            Kind::KillDaemon => "kill-daemon",
            Kind::StopDaemon => "stop-daemon",
            Kind::PartitionPrimary => "partition-primary",
            Kind::PartitionRaftLeader => "partition-raft-leader",
            Kind::OneWay => "one-way",
            Kind::IsolatePeers => "isolate-peers",
            Kind::Loss => "loss",
            Kind::Delay => "delay",
            Kind::RestartAll => "restart-all",
            Kind::SlowDisk => "slow-disk",
            Kind::ClockStep => "clock-step",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s.trim())
    }
}

/// What the cluster looked like when a fault was drawn.
pub struct Scene {
    pub primary: Option<usize>,
    pub raft_leader: Option<usize>,
    pub ttl: Duration,
}

/// An injected fault, to be healed.
pub enum Active {
    /// Nodes whose daemon (and PostgreSQL, when `all`) were killed: restart them.
    Killed {
        nodes: Vec<usize>,
    },
    /// A daemon stopped with SIGSTOP.
    Stopped {
        pid: i32,
    },
    /// Network cuts: healed all at once.
    Cut,
    Loss {
        node: usize,
    },
    Delay {
        node: usize,
    },
    /// A blkio cgroup holding a node's PostgreSQL.
    Throttled(Throttle),
    /// The fallback slow disk: an fdatasync loop in a thread until the flag is set.
    Storm {
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    },
    /// A node whose wall clock was stepped: stepped back to the real time.
    ClockStepped {
        node: usize,
    },
    /// Nothing was done (no target fit).
    Nothing,
}

/// One injected fault: its kind as recorded (a raft-leader partition that found the leader
/// on the primary's node is recorded as what was done instead), a description and how long
/// to hold it before the heal.
pub struct Injected {
    pub kind: Kind,
    pub detail: String,
    pub hold: Duration,
    pub active: Active,
}

/// A node to hurt: the primary's half the time (the interesting case), else any other.
fn pick(rng: &mut impl Rng, among: &[usize], primary: Option<usize>) -> usize {
    match primary {
        Some(p) if among.contains(&p) && rng.gen_bool(0.5) => p,
        _ => among[rng.gen_range(0..among.len())],
    }
}

/// Longer than the lease: the faults that should cause a failover hold ttl + 2–6 s.
fn beyond_ttl(rng: &mut impl Rng, ttl: Duration) -> Duration {
    ttl + Duration::from_millis(rng.gen_range(2000..6000))
}

pub fn inject(c: &mut Cluster, kind: Kind, scene: &Scene, rng: &mut impl Rng) -> Injected {
    let members: Vec<usize> = (0..c.nodes.len()).collect();
    let data: Vec<usize> = members
        .iter()
        .copied()
        .filter(|i| !c.nodes[*i].spec.witness)
        .collect();
    let net = c.net().expect("chaos runs in network namespaces");
    let name = |i: usize| c.nodes[i].spec.name.clone();
    let done = |kind, detail: String, hold, active| Injected {
        kind,
        detail,
        hold,
        active,
    };
    match kind {
        Kind::KillNode | Kind::KillDaemon => {
            let i = pick(rng, &members, scene.primary);
            let hold = Duration::from_millis(rng.gen_range(1000..5000));
            let detail = format!("{} SIGKILLed, restarted after {hold:?}", name(i));
            if kind == Kind::KillNode {
                c.kill9(i);
            } else {
                c.kill9_daemon(i);
            }
            done(kind, detail, hold, Active::Killed { nodes: vec![i] })
        }
        Kind::StopDaemon => {
            let i = pick(rng, &members, scene.primary);
            let hold = beyond_ttl(rng, scene.ttl);
            let Some(pid) = c.nodes[i].child.as_ref().map(|ch| ch.id() as i32) else {
                return done(
                    kind,
                    format!("{} not running", name(i)),
                    Duration::ZERO,
                    Active::Nothing,
                );
            };
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            done(
                kind,
                format!("{}'s daemon stopped for {hold:?}", name(i)),
                hold,
                Active::Stopped { pid },
            )
        }
        Kind::PartitionPrimary => {
            let i = scene.primary.unwrap_or(data[0]);
            let hold = beyond_ttl(rng, scene.ttl);
            net.isolate_from_all(i).expect("cut the primary off");
            done(
                kind,
                format!("{} cut off from everyone for {hold:?}", name(i)),
                hold,
                Active::Cut,
            )
        }
        Kind::PartitionRaftLeader => {
            match (scene.raft_leader, scene.primary) {
                (Some(l), p) if Some(l) != p => {
                    let hold = beyond_ttl(rng, scene.ttl);
                    net.isolate(l).expect("cut the Raft leader off");
                    done(
                        kind,
                        format!("Raft leader {} cut off from its peers for {hold:?}", name(l)),
                        hold,
                        Active::Cut,
                    )
                }
                _ => {
                    // The leader is on the primary's node (or unknown): cut a non-primary node
                    // from its peers instead, which the table records as such.
                    let others: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|i| Some(*i) != scene.primary)
                        .collect();
                    let i = others[rng.gen_range(0..others.len())];
                    let hold = beyond_ttl(rng, scene.ttl);
                    net.isolate(i).expect("cut a node off");
                    done(
                    Kind::IsolatePeers,
                    format!("{} cut off from its peers for {hold:?} (the Raft leader was on the primary's node)", name(i)),
                    hold,
                    Active::Cut,
                )
                }
            }
        }
        Kind::OneWay => {
            let a = pick(rng, &members, scene.primary);
            let others: Vec<usize> = members.iter().copied().filter(|i| *i != a).collect();
            let b = others[rng.gen_range(0..others.len())];
            let (from, to) = if rng.gen_bool(0.5) { (a, b) } else { (b, a) };
            let hold = beyond_ttl(rng, scene.ttl);
            net.cut_one_way(from, to).expect("one-way cut");
            done(
                kind,
                format!("{} -> {} dropped for {hold:?}", name(from), name(to)),
                hold,
                Active::Cut,
            )
        }
        Kind::IsolatePeers => {
            let i = pick(rng, &members, scene.primary);
            let hold = beyond_ttl(rng, scene.ttl);
            net.isolate(i).expect("cut a node off");
            done(
                kind,
                format!(
                    "{} cut off from its peers (not the clients) for {hold:?}",
                    name(i)
                ),
                hold,
                Active::Cut,
            )
        }
        Kind::ClockStep => {
            let i = pick(rng, &members, scene.primary);
            let secs = rng.gen_range(60..3600) * if rng.gen_bool(0.5) { 1 } else { -1 };
            // Longer than ttl, so that a lease measured on the wall clock would show it.
            let hold = beyond_ttl(rng, scene.ttl);
            if !c.step_clock(i, secs) {
                return done(kind, "no libfaketime".into(), Duration::ZERO, Active::Nothing);
            }
            done(
                kind,
                format!(
                    "{}'s wall clock stepped {secs:+} s for {hold:?}, then back",
                    name(i)
                ),
                hold,
                Active::ClockStepped { node: i },
            )
        }
        Kind::Loss => {
            let i = pick(rng, &members, scene.primary);
            let pct = rng.gen_range(20..50);
            let hold = Duration::from_secs(10);
            net.loss(i, pct as f64).expect("loss rule");
            done(
                kind,
                format!("{pct} % of {}'s packets dropped for {hold:?}", name(i)),
                hold,
                Active::Loss { node: i },
            )
        }
        Kind::Delay => {
            let i = pick(rng, &members, scene.primary);
            let ms = rng.gen_range(100..400);
            let hold = Duration::from_secs(10);
            match net.delay(i, Duration::from_millis(ms)) {
                Ok(()) => done(
                    kind,
                    format!("packets to {} delayed {ms} ms for {hold:?}", name(i)),
                    hold,
                    Active::Delay { node: i },
                ),
                Err(e) => done(kind, format!("no delay: {e}"), Duration::ZERO, Active::Nothing),
            }
        }
        Kind::RestartAll => {
            for i in &members {
                c.kill9(*i);
            }
            let hold = Duration::from_millis(rng.gen_range(500..2000));
            done(
                kind,
                format!("every node SIGKILLed, all restarted after {hold:?}"),
                hold,
                Active::Killed { nodes: members },
            )
        }
        Kind::SlowDisk => {
            let i = pick(rng, &data, scene.primary);
            let hold = Duration::from_secs(10);
            let pids = c.nodes[i].postmaster_pid().map(descendants).unwrap_or_default();
            match Throttle::start(&c.nodes[i].dir, &pids) {
                Ok(t) => done(
                    kind,
                    format!(
                        "{}'s PostgreSQL ({} processes) throttled to {SLOW_DISK_IOPS} writes/s for {hold:?}",
                        name(i),
                        pids.len()
                    ),
                    hold,
                    Active::Throttled(t),
                ),
                Err(why) => {
                    let dir = c.nodes[i].dir.clone();
                    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let s = stop.clone();
                    let thread = std::thread::spawn(move || fsync_storm(&dir, &s, Duration::from_secs(60)));
                    done(
                        kind,
                        format!(
                            "fdatasync loop on {}'s disk for {hold:?} (no blkio throttle: {why})",
                            name(i)
                        ),
                        hold,
                        Active::Storm { stop, thread },
                    )
                }
            }
        }
    }
}

pub fn heal(c: &mut Cluster, a: Active) {
    match a {
        Active::Killed { nodes } => {
            for i in nodes {
                if c.nodes[i].child.is_none() {
                    c.start(i);
                }
            }
        }
        Active::Stopped { pid } => {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        Active::Cut => c.heal(),
        Active::ClockStepped { node } => {
            c.step_clock(node, 0);
        }
        Active::Loss { node } => c.net().unwrap().clear_loss(node).expect("clear the loss rule"),
        Active::Delay { node } => c.net().unwrap().clear_delay(node).expect("clear the delay"),
        Active::Throttled(t) => drop(t),
        Active::Storm { stop, thread } => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
        Active::Nothing => {}
    }
}

/// Writes 1 MiB and fdatasyncs, in a loop, in a 64 MiB file of `dir` until `stop` (or
/// `limit`); the file is removed afterwards.
fn fsync_storm(dir: &Path, stop: &std::sync::atomic::AtomicBool, limit: Duration) {
    let path = dir.join("chaos-fsync-storm");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    let chunk = vec![0x5au8; 1 << 20];
    let until = std::time::Instant::now() + limit;
    let mut i = 0u64;
    // Bounded by `limit`.
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < until {
        let _ = f.seek(SeekFrom::Start((i % 64) << 20));
        let _ = f.write_all(&chunk);
        let _ = f.sync_data();
        i += 1;
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
}

/// Processes moved into a blkio cgroup whose writes to the data directory's disk are
/// throttled; dropping it moves them back and removes the cgroup. Writes the kernel issues
/// for fsync in the caller's context are throttled there, which is what slows commits.
pub struct Throttle {
    group: PathBuf,
}

impl Throttle {
    fn start(dir: &Path, pids: &[i32]) -> Result<Throttle, String> {
        if pids.is_empty() {
            return Err("no PostgreSQL running".into());
        }
        let st = nix::sys::stat::stat(dir).map_err(|e| e.to_string())?;
        let dev = format!(
            "{}:{}",
            nix::sys::stat::major(st.st_dev),
            nix::sys::stat::minor(st.st_dev)
        );
        let group = Path::new(BLKIO_ROOT).join(format!("pgw-chaos-slow-{}", pids[0]));
        std::fs::create_dir(&group).map_err(|e| format!("{}: {e}", group.display()))?;
        let t = Throttle { group };
        let set =
            |file: &str, v: String| std::fs::write(t.group.join(file), v).map_err(|e| format!("{file}: {e}"));
        set(
            "blkio.throttle.write_iops_device",
            format!("{dev} {SLOW_DISK_IOPS}"),
        )?;
        set(
            "blkio.throttle.write_bps_device",
            format!("{dev} {SLOW_DISK_BPS}"),
        )?;
        for pid in pids {
            // A process that exited meanwhile cannot be moved: nothing to slow.
            let _ = std::fs::write(t.group.join("cgroup.procs"), pid.to_string());
        }
        Ok(t)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let root = Path::new(BLKIO_ROOT).join("cgroup.procs");
        let moved = std::fs::read_to_string(self.group.join("cgroup.procs")).unwrap_or_default();
        for pid in moved.lines() {
            let _ = std::fs::write(&root, pid);
        }
        let _ = std::fs::remove_dir(&self.group);
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
