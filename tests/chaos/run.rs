//! One chaos run: build the cluster in network namespaces, start the clients, inject faults
//! from a seeded schedule (inject, hold, heal, wait for the cluster to settle, sample the
//! members' timelines), then stop the clients, read the final primary and check the history.
//! Every loop is bounded in count and time, and a SIGINT or SIGTERM stops the schedule
//! early and lets the normal cleanup (clients, daemons, namespaces, directories) run.

use crate::clients::{self, Clients};
use crate::dcs::{DcsLoad, DcsVerdict};
use crate::harness::{Cluster, Options};
use crate::history::{self, FaultRecord, History, Member, Timeline, TimelineSample, Verdict};
use crate::nemesis::{self, Kind, Scene};
use pgwarden_testkit::NetLab;
use rand::{seq::SliceRandom, Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long the cluster gets to settle after a heal before the member counts as not
/// rejoined (a debug build restarting PostgreSQL, rewinding and catching up takes a while).
const SETTLE_LIMIT: Duration = Duration::from_secs(90);
/// The first formation of the cluster.
const BOOT_LIMIT: Duration = Duration::from_secs(180);
/// Quiet time between a settle and the next fault, so that writes land between faults.
const BETWEEN_FAULTS: Duration = Duration::from_secs(2);

/// Set by SIGINT/SIGTERM: the schedule stops at its next step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`] instead of killing the process, so that
/// the run's drops remove what it made.
pub fn install_interrupt_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.expect("install the interrupt handler");
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps `d`, waking early on an interrupt.
async fn pause(d: Duration) {
    let until = Instant::now() + d;
    // Bounded by `d`.
    while Instant::now() < until && !interrupted() {
        tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Three data nodes.
    Three,
    /// Two data nodes and a witness.
    TwoWitness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Async,
    Sync,
    Quorum,
}

impl Mode {
    fn dcs_extra(self) -> &'static str {
        match self {
            Mode::Async => "",
            Mode::Sync => "    synchronous_mode: true\n",
            Mode::Quorum => "    synchronous_mode: quorum\n",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub faults: usize,
    pub topology: Topology,
    pub mode: Mode,
    /// The schedule stops injecting once this much of the run has passed.
    pub limit: Duration,
    /// Draw two faults at a time.
    pub combine: bool,
    pub kinds: Vec<Kind>,
    /// Namespace prefix, unique to the test.
    pub prefix: String,
}

impl RunConfig {
    /// From CHAOS_SEED, CHAOS_FAULTS, CHAOS_TOPOLOGY (`3` or `2+w`), CHAOS_MODE (`async`,
    /// `sync`, `quorum`), CHAOS_MINUTES, CHAOS_COMBINE (`1`) and CHAOS_KINDS (a comma list
    /// of fault names).
    pub fn from_env() -> RunConfig {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let kinds = match var("CHAOS_KINDS") {
            Some(list) => list
                .split(',')
                .map(|k| Kind::parse(k).unwrap_or_else(|| panic!("unknown fault kind {k:?}")))
                .collect(),
            None => Kind::ALL.to_vec(),
        };
        RunConfig {
            seed: var("CHAOS_SEED")
                .map(|s| s.parse().expect("CHAOS_SEED: a number"))
                .unwrap_or_else(|| rand::thread_rng().gen()),
            faults: var("CHAOS_FAULTS")
                .map_or(30, |s| s.parse().expect("CHAOS_FAULTS: a number"))
                .clamp(1, 1000),
            topology: match var("CHAOS_TOPOLOGY").as_deref() {
                None | Some("3") => Topology::Three,
                Some("2+w") | Some("2w") => Topology::TwoWitness,
                Some(t) => panic!("CHAOS_TOPOLOGY: 3 or 2+w, not {t:?}"),
            },
            mode: match var("CHAOS_MODE").as_deref() {
                None | Some("sync") => Mode::Sync,
                Some("async") => Mode::Async,
                Some("quorum") => Mode::Quorum,
                Some(m) => panic!("CHAOS_MODE: async, sync or quorum, not {m:?}"),
            },
            limit: Duration::from_secs(
                60 * var("CHAOS_MINUTES")
                    .map_or(45, |s| s.parse().expect("CHAOS_MINUTES: a number"))
                    .clamp(1, 600),
            ),
            combine: var("CHAOS_COMBINE").is_some_and(|v| v == "1"),
            kinds,
            prefix: "pgw-chaos".into(),
        }
    }
}

/// What a run produced.
pub struct Report {
    /// A signal stopped the run: nothing was checked (the cluster was torn down with it).
    pub interrupted: bool,
    pub history: History,
    pub verdict: Verdict,
    /// The DCS workload's counts and its linearizability check (default when interrupted).
    pub dcs: DcsVerdict,
    pub table: String,
    pub elapsed: Duration,
}

/// How far node `i`'s daemon's wall clock is from the harness's, in whole seconds: its
/// `dcs_last_seen` in GET /patroni is its wall-clock time of its last DCS contact (at most a
/// loop_wait old). PostgreSQL does not see the step: the daemon starts it with a clean
/// environment, which the preload does not survive.
async fn clock_skew(c: &Cluster, i: usize) -> Option<i64> {
    let theirs = c.patroni(i).await?.get("dcs_last_seen")?.as_i64()?;
    let ours = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(theirs - ours)
}

/// libfaketime's preload library, where Debian installs it for this machine's architecture.
fn faketime_library() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/faketime/libfaketime.so.1",
        std::env::consts::ARCH
    ));
    p.exists().then_some(p)
}

/// The DCS workload's line under the per-kind table.
fn dcs_line(d: &DcsVerdict) -> String {
    format!(
        "\nDCS workload: {} operations answered ({} overlapping another on its key), {} of unknown outcome, \
         {} failed; {} keys; linearizability violations {}, keys given up {}, anomalies {}; \
         a spoiled copy of the history {}\n",
        d.counts.ok,
        d.overlapping,
        d.counts.unknown,
        d.counts.failed,
        d.keys,
        d.violations.len(),
        d.gave_up.len(),
        d.anomalies.len(),
        match d.tampered_rejected {
            Some(true) => "was rejected",
            Some(false) => "was NOT rejected",
            None => "could not be made",
        }
    )
}

/// Builds the network and runs; everything made is removed before it returns (or unwinds).
pub fn run(cfg: RunConfig) -> Report {
    let nodes = 3;
    let lab = Arc::new(NetLab::new(&cfg.prefix, nodes).expect("build the test network"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || run_in(for_body, cfg))
}

/// One primary and every other running data node streaming from it on its timeline, as
/// the members' REST APIs say, and caught up: each has replayed the WAL the primary had
/// written when asked (a receiver that still says "streaming" over a dead link has not).
async fn healthy(c: &Cluster) -> Option<usize> {
    let p = c.primary().await?;
    let tl = c.patroni(p).await?.get("timeline")?.as_u64()?;
    let replicas: Vec<usize> = (0..c.nodes.len())
        .filter(|i| *i != p && !c.nodes[*i].spec.witness && c.nodes[*i].child.is_some())
        .collect();
    for i in &replicas {
        let s = c.patroni(*i).await?;
        if s.get("replication_state")?.as_str()? != "streaming" || s.get("timeline")?.as_u64()? != tl {
            return None;
        }
    }
    let lsn = query_text(c, p, "SELECT pg_current_wal_lsn()::text", None).await?;
    for i in replicas {
        let caught_up = query_text(
            c,
            i,
            "SELECT (coalesce(pg_last_wal_replay_lsn(), '0/0') >= $1::text::pg_lsn)::text",
            Some(&lsn),
        )
        .await?;
        if caught_up != "true" {
            return None;
        }
    }
    Some(p)
}

/// One text value from member `i`, within 3 s.
async fn query_text(c: &Cluster, i: usize, sql: &str, arg: Option<&str>) -> Option<String> {
    let db = tokio::time::timeout(Duration::from_secs(3), c.connect(i))
        .await
        .ok()??;
    let row = match arg {
        Some(a) => tokio::time::timeout(Duration::from_secs(3), db.query_one(sql, &[&a])).await,
        None => tokio::time::timeout(Duration::from_secs(3), db.query_one(sql, &[])).await,
    };
    row.ok()?.ok()?.try_get::<_, String>(0).ok()
}

/// Polls [`healthy`] for up to `limit`; the time it took, or `None`.
async fn settle(c: &Cluster, limit: Duration) -> Option<(usize, Duration)> {
    let started = Instant::now();
    // Bounded by `limit`.
    while started.elapsed() < limit && !interrupted() {
        if let Some(p) = healthy(c).await {
            return Some((p, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Each data member's timeline and that timeline's history file.
async fn sample_timelines(c: &Cluster, at: Duration) -> Vec<TimelineSample> {
    let mut out = vec![];
    for i in (0..c.nodes.len()).filter(|i| !c.nodes[*i].spec.witness) {
        let Some(tl) = c.patroni(i).await.and_then(|s| s.get("timeline")?.as_u64()) else {
            continue;
        };
        let Some(db) = c.connect(i).await else { continue };
        let file = format!("pg_wal/{tl:08X}.history");
        let history = match tokio::time::timeout(
            Duration::from_secs(5),
            db.query_one(
                "SELECT coalesce(pg_read_file($1, 0, 1000000, true), '')",
                &[&file],
            ),
        )
        .await
        {
            Ok(Ok(row)) => row.get::<_, String>(0),
            _ => continue,
        };
        out.push(TimelineSample {
            member: Member(i),
            at,
            timeline: Timeline(tl as u32),
            history,
        });
    }
    out
}

/// The seeded schedule: rounds in which every kind comes once, in a shuffled order (so a
/// short run still meets each kind), `faults` draws in all.
pub fn schedule(seed: u64, kinds: &[Kind], faults: usize) -> Vec<Kind> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![];
    // Bounded by `faults`.
    while out.len() < faults && !kinds.is_empty() {
        let mut round = kinds.to_vec();
        round.shuffle(&mut rng);
        out.extend(round.into_iter().take(faults - out.len()));
    }
    out
}

async fn run_in(lab: Arc<NetLab>, cfg: RunConfig) -> Report {
    let started = Instant::now();
    let mut kinds = cfg.kinds.clone();
    // Packet delay needs sch_netem: try it once, drop the kind if this kernel lacks it.
    if kinds.contains(&Kind::Delay) {
        match lab.delay(0, Duration::from_millis(1)) {
            Ok(()) => lab.clear_delay(0).expect("clear the probe delay"),
            Err(e) => {
                println!("chaos: the delay fault is left out: {e}");
                kinds.retain(|k| *k != Kind::Delay);
            }
        }
    }
    // Clock steps need libfaketime preloaded into the daemons (Debian's libfaketime).
    let faketime = faketime_library();
    if kinds.contains(&Kind::ClockStep) && faketime.is_none() {
        println!("chaos: the clock-step fault is left out: libfaketime is not installed");
        kinds.retain(|k| *k != Kind::ClockStep);
    }
    let plan = schedule(cfg.seed, &kinds, cfg.faults);
    println!(
        "chaos: seed {} faults {} topology {:?} mode {:?} combine {} limit {:?}",
        cfg.seed, cfg.faults, cfg.topology, cfg.mode, cfg.combine, cfg.limit
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
    let mut c = Cluster::new(Options {
        data_nodes: if cfg.topology == Topology::Three { 3 } else { 2 },
        witness: cfg.topology == Topology::TwoWitness,
        dcs_extra: cfg.mode.dcs_extra().to_string(),
        netns: Some(lab),
        // As the packaged unit runs them: the daemons as `postgres`, not root.
        unprivileged: true,
        faketime: faketime.filter(|_| kinds.contains(&Kind::ClockStep)),
        ..Options::default()
    });
    c.start_all();
    let (p, boot) = settle(&c, BOOT_LIMIT).await.expect("the cluster did not form");
    println!(
        "chaos: cluster formed in {boot:?}, primary {}",
        c.nodes[p].spec.name
    );
    // The daemons run as `postgres` (see Options::unprivileged), as the packaged unit does.
    if nix::unistd::geteuid().is_root() {
        for node in &c.nodes {
            let pid = node
                .child
                .as_ref()
                .map(std::process::Child::id)
                .expect("a daemon");
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("");
            assert!(
                !uid.split_whitespace().any(|u| u == "0"),
                "{} runs as root (Uid:{uid})",
                node.spec.name
            );
        }
    }
    let ttl = c.ttl(p).await;
    let db = c.connect(p).await.expect("connect to the primary");
    db.batch_execute(clients::CREATE_TABLE)
        .await
        .expect("create the table");
    drop(db);
    let data: Vec<(Member, String)> = (0..c.nodes.len())
        .filter(|i| !c.nodes[*i].spec.witness)
        .map(|i| (Member(i), c.conn_str(i)))
        .collect();
    let writers = Clients::start(data, 2, started);
    let raft_addrs: Vec<String> = c.nodes.iter().map(|n| n.raft_addr()).collect();
    let dcs_load = DcsLoad::start(&raft_addrs, cfg.seed);
    let mut h = History::default();
    h.timelines.extend(sample_timelines(&c, started.elapsed()).await);
    // Bounded by the plan's length and cfg.limit.
    let mut draws = plan.into_iter();
    while let Some(first) = draws.next() {
        if interrupted() || started.elapsed() >= cfg.limit {
            break;
        }
        pause(BETWEEN_FAULTS).await;
        let scene = Scene {
            primary: c.primary().await,
            raft_leader: c.raft_leader().await,
            ttl,
        };
        let mut kinds_now = vec![first];
        if cfg.combine {
            if let Some(second) = draws.next() {
                kinds_now.push(second);
            }
        }
        let injected_at = started.elapsed();
        let mut actives = vec![];
        for k in kinds_now {
            actives.push(nemesis::inject(&mut c, k, &scene, &mut rng));
        }
        let hold = actives.iter().map(|a| a.hold).max().unwrap_or_default();
        pause(hold).await;
        // A stepped clock is checked where the lease lives: the node's daemon.
        for a in &mut actives {
            if let nemesis::Active::ClockStepped { node } = a.active {
                a.detail.push_str(&match clock_skew(&c, node).await {
                    Some(s) => format!(" (its daemon's clock read {s:+} s off)"),
                    None => " (its daemon's clock could not be read)".into(),
                });
            }
        }
        let kind = actives
            .iter()
            .map(|a| a.kind.name())
            .collect::<Vec<_>>()
            .join("+");
        let detail = actives
            .iter()
            .map(|a| a.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        // Healed in reverse order of injection.
        for a in actives.into_iter().rev() {
            nemesis::heal(&mut c, a.active);
        }
        let healed = started.elapsed();
        let settled = settle(&c, SETTLE_LIMIT).await;
        if interrupted() {
            // Not a failure to settle: the wait was cut short. The fault is not recorded.
            break;
        }
        let recovery = settled.map(|(_, d)| d);
        println!(
            "[{:>5.1}s] {kind}: {detail}; recovered {}",
            injected_at.as_secs_f64(),
            recovery.map_or("NOT within the limit".to_string(), |d| format!(
                "in {:.1} s",
                d.as_secs_f64()
            )),
        );
        h.faults.push(FaultRecord {
            kind,
            detail,
            injected: injected_at,
            healed,
            recovery,
        });
        h.timelines.extend(sample_timelines(&c, started.elapsed()).await);
        if recovery.is_none() {
            // The next fault would hit a cluster still broken: stop and report.
            println!("chaos: the cluster did not settle within {SETTLE_LIMIT:?}; the schedule stops");
            break;
        }
    }
    if interrupted() {
        // The daemons in this process group got the signal too: there is no cluster left
        // to read. Report the faults so far; the drops clean up.
        println!("chaos: interrupted after {} faults; cleaning up", h.faults.len());
        h.writes = writers.stop().await;
        dcs_load.abandon();
        let verdict = Verdict::default();
        let table = history::table(&h, &verdict);
        print!("{table}");
        return Report {
            interrupted: true,
            history: h,
            verdict,
            dcs: DcsVerdict::default(),
            table,
            elapsed: started.elapsed(),
        };
    }
    // Writes keep going for a few seconds after the last recovery, then the final read.
    pause(Duration::from_secs(3)).await;
    let final_primary = settle(&c, SETTLE_LIMIT).await.map(|(p, _)| p);
    let writes = writers.stop().await;
    h.writes = writes;
    let dcs = dcs_load.stop().await;
    h.timelines.extend(sample_timelines(&c, started.elapsed()).await);
    let p = final_primary.expect("no primary at the end of the run");
    h.final_rows = clients::read_all(&c.conn_str(p))
        .await
        .expect("read the final primary");
    let verdict = history::check(&h);
    let mut table = history::table(&h, &verdict);
    table.push_str(&dcs_line(&dcs));
    let elapsed = started.elapsed();
    println!(
        "chaos: {} faults in {:.0} s; {} writes acknowledged, {} unknown; final primary {} with {} rows",
        h.faults.len(),
        elapsed.as_secs_f64(),
        verdict.acked,
        verdict.unknown,
        c.nodes[p].spec.name,
        h.final_rows.len()
    );
    println!(
        "chaos: lost acknowledged commits {}, split-brain intervals {}, timeline forks {}, not rejoined {}",
        verdict.lost.len(),
        verdict.split_brain.len(),
        verdict.forks.len(),
        verdict.not_rejoined.len()
    );
    // Lost commits by the tenure that acknowledged them, with the span of their
    // acknowledgements (the individual writes would flood the log).
    let mut by_tenure: std::collections::BTreeMap<_, (usize, Duration, Duration)> = Default::default();
    for w in &verdict.lost {
        let e = by_tenure
            .entry((w.member, w.outcome))
            .or_insert((0, w.done, w.done));
        e.0 += 1;
        e.1 = e.1.min(w.done);
        e.2 = e.2.max(w.done);
    }
    for ((m, outcome), (n, first, last)) in by_tenure {
        println!(
            "chaos: lost {n} acknowledged by {} ({outcome:?}) between {:.1} s and {:.1} s",
            c.nodes[m.0].spec.name,
            first.as_secs_f64(),
            last.as_secs_f64()
        );
    }
    for s in &verdict.split_brain {
        println!("chaos: split brain {s:?}");
    }
    for f in &verdict.forks {
        println!("chaos: fork {f:?}");
    }
    for i in &verdict.not_rejoined {
        let f = &h.faults[*i];
        println!(
            "chaos: not rejoined after the fault injected at {:.1} s: {}",
            f.injected.as_secs_f64(),
            f.detail
        );
    }
    for v in &dcs.violations {
        println!("chaos: DCS {v}");
    }
    print!("{table}");
    Report {
        interrupted: false,
        history: h,
        verdict,
        dcs,
        table,
        elapsed,
    }
}
