//! `dcs-bench`: pgwarden's embedded DCS against etcd, side by side, on one machine.
//!
//! Starts a 3-member `pgwarden-dcs` cluster and a 3-member etcd cluster on loopback (both
//! with their default settings: fsync on), measures each member's idle RSS and CPU, then
//! runs the same closed-loop CAS workload against both for every client count and target
//! (the Raft leader, or a follower that forwards), interleaved so that drift in a shared
//! VM hits both alike, and prints markdown tables. Every process it starts is killed and
//! reaped before it exits, and the data directories are removed.
//!
//! The command recorded with the results is `scripts/bench-dcs.sh`.

mod cluster;
mod etcd;
mod load;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cluster::{Cluster, Memory, System};
use load::{LoadResult, LoadSpec};
use pgwarden_raft::client::RaftClient;
use pgwarden_raft::Condition;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// Upper bounds on the arguments, so no invocation runs unbounded.
const MAX_SECS: u64 = 600;
const MAX_CLIENTS: usize = 512;
/// How long a fresh cluster may take to accept a write.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between start-up and the idle measurement, so elections, the first snapshot of
/// etcd's and sled's start-up flushes are not counted as idle work.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Parser, Debug)]
#[command(about = "Benchmark pgwarden's DCS against etcd: CAS latency, throughput, idle RSS and CPU")]
struct Args {
    /// The pgwarden-dcs binary (default: next to this one, i.e. the same target dir).
    #[arg(long)]
    pgwarden_dcs: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Systems to run.
    #[arg(long, value_delimiter = ',', default_value = "pgwarden,etcd")]
    systems: Vec<String>,
    /// Measured seconds per load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Untimed seconds before each load run's window.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Seconds of idle over which CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// Concurrent client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Which member the clients talk to: `leader`, `follower` (which forwards to the
    /// leader), or both.
    #[arg(long, value_delimiter = ',', default_value = "leader,follower")]
    targets: Vec<String>,
    /// Bytes per written value.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Parent of the temporary data directories (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Leader,
    Follower,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`, so width and alignment in format strings apply.
        f.pad(match self {
            Target::Leader => "leader",
            Target::Follower => "follower",
        })
    }
}

/// The validated plan of a run.
struct Plan {
    systems: Vec<System>,
    clients: Vec<usize>,
    targets: Vec<Target>,
    duration: Duration,
    warmup: Duration,
    idle: Duration,
    value_bytes: usize,
}

fn plan(args: &Args) -> Result<Plan> {
    let mut systems = Vec::new();
    for s in &args.systems {
        let sys = match s.as_str() {
            "pgwarden" => System::Pgwarden,
            "etcd" => System::Etcd,
            other => bail!("unknown system {other:?} (pgwarden, etcd)"),
        };
        if !systems.contains(&sys) {
            systems.push(sys);
        }
    }
    let mut targets = Vec::new();
    for t in &args.targets {
        let t = match t.as_str() {
            "leader" => Target::Leader,
            "follower" => Target::Follower,
            other => bail!("unknown target {other:?} (leader, follower)"),
        };
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if systems.is_empty() || targets.is_empty() || args.clients.is_empty() {
        bail!("--systems, --targets and --clients must not be empty");
    }
    if args.clients.iter().any(|&c| c == 0 || c > MAX_CLIENTS) {
        bail!("--clients must be between 1 and {MAX_CLIENTS}");
    }
    for (name, v) in [("duration", args.duration), ("idle", args.idle)] {
        if v == 0 || v > MAX_SECS {
            bail!("--{name} must be between 1 and {MAX_SECS} seconds");
        }
    }
    if args.warmup > MAX_SECS {
        bail!("--warmup must be at most {MAX_SECS} seconds");
    }
    if args.value_bytes == 0 || args.value_bytes > pgwarden_raft::command::MAX_VALUE_BYTES {
        bail!(
            "--value-bytes must be between 1 and {}",
            pgwarden_raft::command::MAX_VALUE_BYTES
        );
    }
    Ok(Plan {
        systems,
        clients: args.clients.clone(),
        targets,
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        idle: Duration::from_secs(args.idle),
        value_bytes: args.value_bytes,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dcs-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let plan = plan(args)?;
    let pg_bin = match &args.pgwarden_dcs {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating dcs-bench")?
            .with_file_name("pgwarden-dcs"),
    };
    if plan.systems.contains(&System::Pgwarden) && !pg_bin.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p pgwarden-raft) or pass --pgwarden-dcs",
            pg_bin.display()
        );
    }
    let etcd_version = if plan.systems.contains(&System::Etcd) {
        command_version(&args.etcd)?
    } else {
        String::new()
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("dcs-bench-")
        .tempdir_in(&work_dir)
        .with_context(|| format!("creating a temp dir in {}", work_dir.display()))?;

    // Members are spawned here, on the main thread, which lives until they are reaped:
    // PR_SET_PDEATHSIG fires when the spawning *thread* exits, so spawning from a tokio
    // worker or blocking thread could kill them mid-run.
    let mut clusters = Vec::new();
    let addrs = cluster::free_addrs(9)?;
    for &sys in &plan.systems {
        let c = match sys {
            System::Pgwarden => Cluster::start_pgwarden(&pg_bin, root.path(), &addrs[0..3])?,
            System::Etcd => Cluster::start_etcd(
                &args.etcd,
                root.path(),
                &addrs[3..6],
                &addrs[6..9],
                &format!("dcs-bench-{}", std::process::id()),
            )?,
        };
        clusters.push(c);
    }

    let header = RunHeader {
        data_fs: cluster::filesystem_of(root.path()),
        etcd_version,
        pg_bin: pg_bin.display().to_string(),
        load_at_start: load_average(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let (res, by_signal) = rt.block_on(async {
        tokio::select! {
            r = bench(&plan, &header, &mut clusters) => (r, false),
            sig = interrupted() => (Err(anyhow::anyhow!("interrupted by {sig}")), true),
        }
    });
    drop(rt);
    // The members' logs explain a failure, not an interruption.
    if res.is_err() && !by_signal {
        for c in &clusters {
            c.print_log_tails(15);
        }
    }
    for c in &mut clusters {
        c.stop();
    }
    drop(clusters);
    root.close().context("removing the temp dir")?;
    res
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // Without handlers the default action (exit) applies and PDEATHSIG cleans up.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn command_version(bin: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version (is etcd installed?)", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("unknown").trim().to_string())
}

struct RunHeader {
    data_fs: String,
    etcd_version: String,
    pg_bin: String,
    load_at_start: String,
}

/// /proc/loadavg's three averages: other work on the machine shows up in every figure,
/// so the report carries it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Idle figures of one member.
struct IdleFigures {
    system: System,
    member: String,
    idle: Memory,
    cpu_percent: f64,
    after_load: Option<Memory>,
}

/// One load run's figures.
struct LoadRow {
    system: System,
    target: Target,
    clients: usize,
    result: LoadResult,
    /// CPU seconds of the three members during the run.
    server_cpu_s: f64,
    /// CPU seconds of the bench process (the clients) during the run.
    client_cpu_s: f64,
}

impl LoadRow {
    fn cpu_us_per_op(&self, seconds: f64) -> f64 {
        let ops = self.result.latencies_us.len();
        if ops == 0 {
            return 0.0;
        }
        seconds * 1e6 / ops as f64
    }
}

async fn bench(plan: &Plan, header: &RunHeader, clusters: &mut [Cluster]) -> Result<()> {
    for c in clusters.iter_mut() {
        let t0 = Instant::now();
        wait_ready(c).await?;
        eprintln!(
            "{} cluster accepts writes after {:.1} s",
            c.system,
            t0.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(SETTLE).await;

    eprintln!("measuring idle RSS and CPU over {} s", plan.idle.as_secs());
    let mut idle = measure_idle(clusters, plan.idle).await?;

    let tick = cluster::ticks_per_second();
    let mut rows = Vec::new();
    let mut run_no = 0;
    for &target in &plan.targets {
        for &clients in &plan.clients {
            for c in clusters.iter_mut() {
                c.check_alive()?;
                run_no += 1;
                let endpoint = pick(c, target).await?;
                let spec = LoadSpec {
                    clients,
                    endpoint,
                    warmup: plan.warmup,
                    duration: plan.duration,
                    value_bytes: plan.value_bytes,
                    key_prefix: format!("/bench/run{run_no}"),
                };
                let pids: Vec<u32> = c.members.iter().map(|m| m.pid()).collect();
                let server0 = sum_ticks(&pids)?;
                let client0 = cluster::self_cpu_ticks()?;
                let result = load::run(c.system, &spec)
                    .await
                    .with_context(|| format!("{} load run, {clients} clients via the {target}", c.system))?;
                let server_cpu_s = (sum_ticks(&pids)? - server0) as f64 / tick;
                let client_cpu_s = (cluster::self_cpu_ticks()? - client0) as f64 / tick;
                let row = LoadRow {
                    system: c.system,
                    target,
                    clients,
                    result,
                    server_cpu_s,
                    client_cpu_s,
                };
                eprintln!(
                    "{:>8} {:>2} clients via {}: {:>7.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  lost {}",
                    row.system,
                    clients,
                    target,
                    row.result.ops_per_sec(),
                    row.result.quantile_ms(0.5),
                    row.result.quantile_ms(0.99),
                    row.result.errors,
                    row.result.lost,
                );
                if let Some(e) = &row.result.last_error {
                    eprintln!("         last error: {e}");
                }
                rows.push(row);
            }
        }
    }
    for (c, figures) in clusters.iter_mut().zip(idle.chunks_mut(3)) {
        c.check_alive()?;
        for (m, f) in c.members.iter().zip(figures) {
            f.after_load = Some(cluster::memory(m.pid())?);
        }
    }
    print!("{}", report(plan, header, &idle, &rows));
    Ok(())
}

/// Waits until the cluster commits a write and reports a leader.
async fn wait_ready(c: &mut Cluster) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addrs = c.client_addrs();
    let system = c.system;
    loop {
        c.check_alive()?;
        let attempt = async {
            match system {
                System::Pgwarden => {
                    let client = RaftClient::new(addrs.clone(), Duration::from_secs(2));
                    let r = client.put("/bench/ready", "1", None, Condition::Always).await?;
                    anyhow::ensure!(r.succeeded, "the ready write did not succeed");
                }
                System::Etcd => {
                    let mut kv = etcd::KvClient::new(etcd::channel(&addrs[0]).await?);
                    etcd::cas(&mut kv, b"/bench/ready", 0, b"1").await?;
                }
            }
            leader_index(system, &addrs).await.map(|_| ())
        };
        let Err(e) = attempt.await else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            bail!("the {system} cluster did not accept a write within {READY_TIMEOUT:?}; last error: {e:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Index of the member that says it is the leader.
async fn leader_index(system: System, addrs: &[String]) -> Result<usize> {
    for (i, addr) in addrs.iter().enumerate() {
        let leads = match system {
            System::Pgwarden => {
                let h = RaftClient::new(vec![addr.clone()], Duration::from_secs(2))
                    .hello(addr)
                    .await?;
                h.leader == Some(h.node_id)
            }
            System::Etcd => etcd::is_leader(addr).await?,
        };
        if leads {
            return Ok(i);
        }
    }
    bail!("no {system} member reports itself leader")
}

/// The client address of the leader, or of the first follower.
async fn pick(c: &Cluster, target: Target) -> Result<String> {
    let addrs = c.client_addrs();
    let leader = leader_index(c.system, &addrs).await?;
    let i = match target {
        Target::Leader => leader,
        Target::Follower => (leader + 1) % addrs.len(),
    };
    Ok(addrs[i].clone())
}

fn sum_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| cluster::cpu_ticks(p)).sum()
}

/// RSS of every member, then their CPU over `window` with nothing sent to them.
async fn measure_idle(clusters: &mut [Cluster], window: Duration) -> Result<Vec<IdleFigures>> {
    let mut out = Vec::new();
    let mut before = Vec::new();
    for c in clusters.iter_mut() {
        c.check_alive()?;
        for m in &c.members {
            before.push(cluster::cpu_ticks(m.pid())?);
        }
    }
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let tick = cluster::ticks_per_second();
    let mut k = 0;
    for c in clusters.iter_mut() {
        c.check_alive()?;
        for m in &c.members {
            let used = (cluster::cpu_ticks(m.pid())? - before[k]) as f64 / tick;
            k += 1;
            out.push(IdleFigures {
                system: c.system,
                member: m.name.clone(),
                idle: cluster::memory(m.pid())?,
                cpu_percent: used / secs * 100.0,
                after_load: None,
            });
        }
    }
    Ok(out)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(plan: &Plan, header: &RunHeader, idle: &[IdleFigures], rows: &[LoadRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Workload: closed-loop CAS (own key per client, condition: mod revision = last written), \
         {} B values, {} s measured after {} s warm-up per run; each client its own connection.",
        plan.value_bytes,
        plan.duration.as_secs(),
        plan.warmup.as_secs()
    );
    let _ = writeln!(s, "pgwarden-dcs: {}", header.pg_bin);
    if !header.etcd_version.is_empty() {
        let _ = writeln!(s, "etcd: {}", header.etcd_version);
    }
    let _ = writeln!(s, "Data directories: {}", header.data_fs);
    let _ = writeln!(
        s,
        "Load average (1, 5, 15 min): {} at start, {} at end",
        header.load_at_start,
        load_average()
    );
    let _ = writeln!(s);

    // Side by side, when both systems ran.
    if plan.systems.len() == 2 {
        let _ = writeln!(s, "### CAS latency and throughput, side by side\n");
        let _ = writeln!(
            s,
            "| clients | via | p50 pgwarden | p50 etcd | p99 pgwarden | p99 etcd | ops/s pgwarden | ops/s etcd |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for &target in &plan.targets {
            for &clients in &plan.clients {
                let find = |sys| {
                    rows.iter()
                        .find(|r| r.system == sys && r.target == target && r.clients == clients)
                };
                if let (Some(p), Some(e)) = (find(System::Pgwarden), find(System::Etcd)) {
                    let _ = writeln!(
                        s,
                        "| {clients} | {target} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.0} |",
                        p.result.quantile_ms(0.5),
                        e.result.quantile_ms(0.5),
                        p.result.quantile_ms(0.99),
                        e.result.quantile_ms(0.99),
                        p.result.ops_per_sec(),
                        e.result.ops_per_sec(),
                    );
                }
            }
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "### Every run\n");
    let _ = writeln!(
        s,
        "| system | clients | via | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU µs/op | client CPU µs/op | errors | CAS lost |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {} |",
            r.system,
            r.clients,
            r.target,
            r.result.ops_per_sec(),
            r.result.quantile_ms(0.5),
            r.result.quantile_ms(0.99),
            r.result.quantile_ms(0.999),
            r.result.quantile_ms(1.0),
            r.cpu_us_per_op(r.server_cpu_s),
            r.cpu_us_per_op(r.client_cpu_s),
            r.result.errors,
            r.result.lost,
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "### Idle members\n");
    let _ = writeln!(
        s,
        "| system | member | idle RSS MiB | idle CPU % of a core | RSS after load MiB | peak RSS MiB |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|");
    for f in idle {
        let after = f.after_load.unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.2} | {:.1} | {:.1} |",
            f.system,
            f.member,
            mib(f.idle.rss_kib),
            f.cpu_percent,
            mib(after.rss_kib),
            mib(after.hwm_kib),
        );
    }
    s
}
