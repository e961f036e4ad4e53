//! `ha-bench`: failover as a client sees it, pgwarden against Patroni + etcd on one machine.
//!
//! Starts a 3-node pgwarden cluster on loopback at its shipped defaults, with two writers
//! (one behind an HAProxy-style `GET /primary` check, one through a multi-host libpq
//! string; see `clients`), and measures:
//! - node loss: SIGKILL of the primary's daemon, postmaster and backends at a random point
//!   of the HA loop, to the first write acknowledged by another member; the killed node is
//!   restarted and must stream again before the next round;
//! - the longest write gap of a switchover, of a SIGTERM of the primary's daemon and of a
//!   PostgreSQL crash on the primary (SIGKILL of the postmaster, daemon alive).
//!
//! Then, unless told not to, the node-loss rounds again with three Patroni daemons on a
//! 3-member etcd at Patroni's default timing. Prints markdown tables. Every process it
//! starts is killed by PID on every exit path, and its temp dir is removed.
//!
//! The command recorded with the results is `scripts/bench-ha.sh`.

mod clients;
mod nodes;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use clients::{longest_gap, Clients, Endpoints, Via};
use nodes::{healthy, Cluster, Kind, RunAs, Setup};
use rand::Rng;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// Limits of one wait: a cluster coming up, a failover, a node rejoining.
const UP_LIMIT: Duration = Duration::from_secs(180);
const FAILOVER_LIMIT: Duration = Duration::from_secs(120);
const REJOIN_LIMIT: Duration = Duration::from_secs(180);
const MAX_ROUNDS: usize = 100;

#[derive(Parser, Debug)]
#[command(about = "Failover as HAProxy sees it: pgwarden, and Patroni + etcd beside it")]
struct Args {
    /// The pgwarden binary (copied into the work dir, so the postgres user can run it).
    #[arg(long, default_value = "target/release/pgwarden")]
    pgwarden: PathBuf,
    /// Patroni's `patroni` executable, in a venv the postgres user can read.
    #[arg(long)]
    patroni: Option<PathBuf>,
    /// etcd 3.4, for Patroni.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Skip the Patroni + etcd row.
    #[arg(long)]
    no_patroni: bool,
    /// Node-loss rounds per system.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Rounds of each write-gap event (switchover, SIGTERM, PostgreSQL crash).
    #[arg(long, default_value_t = 3)]
    gap_rounds: usize,
    /// Total time limit, seconds: no round starts after it (a round under way finishes,
    /// within its own limits).
    #[arg(long, default_value_t = 1800)]
    time_limit: u64,
    /// Where the temp dir goes (it must be reachable by the postgres user); default: the
    /// system's temp dir.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// PostgreSQL's binaries, for Patroni.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// The OS user the daemons and PostgreSQL run as.
    #[arg(long, default_value = "postgres")]
    run_as: String,
    /// pgwarden's `loop_wait`, seconds, for the random kill delay in [0, 2*loop_wait], used
    /// when GET /config does not show it (pgwarden's shows only what was stored: with the
    /// shipped defaults, no timing). 2 is the shipped default.
    #[arg(long, default_value_t = 2.0)]
    pgwarden_loop_wait: f64,
    /// The same for Patroni (its default: 10).
    #[arg(long, default_value_t = 10.0)]
    patroni_loop_wait: f64,
}

/// What a round measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    NodeLoss,
    Switchover,
    Sigterm,
    PgCrash,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::NodeLoss => "node loss (SIGKILL of daemon, postmaster, backends): kill to first write",
            Event::Switchover => "switchover (POST /switchover): longest write gap",
            Event::Sigterm => "SIGTERM of the primary's daemon: longest write gap",
            Event::PgCrash => {
                "PostgreSQL crash on the primary (SIGKILL of the postmaster): longest write gap"
            }
        })
    }
}

/// One figure of one round; `None` when no write came within the round's limit.
struct Sample {
    kind: Kind,
    event: Event,
    via: Via,
    secs: Option<f64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.rounds > MAX_ROUNDS || args.gap_rounds > MAX_ROUNDS {
        eprintln!("ha-bench: at most {MAX_ROUNDS} rounds");
        return ExitCode::FAILURE;
    }
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        eprintln!("ha-bench: cannot handle SIGTERM");
        return ExitCode::FAILURE;
    };
    let mut samples = Vec::new();
    // Dropping `run` (on a signal) drops its clusters and temp dir: their Drop kills and
    // reaps every process and removes the files.
    let result = tokio::select! {
        r = run(&args, &mut samples) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (SIGINT)")),
        _ = term.recv() => Err(anyhow!("terminated (SIGTERM)")),
    };
    if !samples.is_empty() {
        println!();
        print_table(&samples);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, samples: &mut Vec<Sample>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let user = RunAs::lookup(&args.run_as)?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("ha-bench-")
        .tempdir_in(&work_dir)
        .with_context(|| format!("creating a temp dir in {}", work_dir.display()))?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let bin = root.path().join("pgwarden-bin");
    std::fs::copy(&args.pgwarden, &bin).with_context(|| format!("copying {}", args.pgwarden.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;

    let setup = Setup {
        root: &root.path().join("pgwarden"),
        user,
        daemon: &bin,
        etcd: &args.etcd,
        pg_bin: &args.pg_bin,
    };
    std::fs::create_dir(setup.root)?;
    std::fs::set_permissions(setup.root, std::fs::Permissions::from_mode(0o755))?;
    let events = [Event::NodeLoss, Event::Switchover, Event::Sigterm, Event::PgCrash];
    run_system(Kind::Pgwarden, &setup, args, &events, deadline, samples).await?;

    if !args.no_patroni {
        let patroni = args
            .patroni
            .as_deref()
            .context("--patroni is needed (or --no-patroni)")?;
        let proot = root.path().join("patroni");
        std::fs::create_dir(&proot)?;
        std::fs::set_permissions(&proot, std::fs::Permissions::from_mode(0o755))?;
        let setup = Setup {
            root: &proot,
            daemon: patroni,
            ..setup
        };
        run_system(Kind::Patroni, &setup, args, &[Event::NodeLoss], deadline, samples).await?;
    }
    Ok(())
}

fn elapsed(since: Instant) -> String {
    format!("{:>6.1}s", since.elapsed().as_secs_f64())
}

async fn run_system(
    kind: Kind,
    setup: &Setup<'_>,
    args: &Args,
    events: &[Event],
    deadline: Instant,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    let t0 = Instant::now();
    let http = reqwest::Client::new();
    println!("== {} ==", kind.label());
    let mut c = Cluster::start(kind, setup)?;
    let p = wait_healthy(&http, &mut c, UP_LIMIT)
        .await
        .context("the cluster did not come up")?;
    println!(
        "[{}] up: {} is the primary, 2 replicas stream",
        elapsed(t0),
        c.nodes[p].name
    );
    let config = nodes::dynamic_config(&http, &c)
        .await
        .context("no answer to GET /config")?;
    let timing = |k: &str| {
        config[k]
            .as_f64()
            .map_or("default".to_string(), |v| v.to_string())
    };
    println!(
        "timing in GET /config: ttl {}, loop_wait {}, retry_timeout {}",
        timing("ttl"),
        timing("loop_wait"),
        timing("retry_timeout")
    );
    let loop_wait = match (config["loop_wait"].as_f64(), kind) {
        (Some(lw), _) => lw,
        (None, Kind::Pgwarden) => args.pgwarden_loop_wait,
        (None, Kind::Patroni) => args.patroni_loop_wait,
    };
    println!(
        "kill delay: uniform in [0, {:.1}] s (2 * loop_wait)",
        2.0 * loop_wait
    );
    create_table(c.nodes[p].pg).await?;
    let clients = Clients::start(Endpoints {
        rest: c.nodes.iter().map(|n| n.rest).collect(),
        pg: c.nodes.iter().map(|n| n.pg).collect(),
        user: "postgres".into(),
        password: nodes::PASSWORD.into(),
    });
    settle(&http, &mut c, &clients).await?;

    for &event in events {
        let rounds = if event == Event::NodeLoss {
            args.rounds
        } else {
            args.gap_rounds
        };
        for r in 1..=rounds {
            if Instant::now() >= deadline {
                println!("time limit reached: {event} stopped after {} rounds", r - 1);
                break;
            }
            // A random point of the HA loop, not right after a refresh.
            let delay = rand::thread_rng().gen_range(0.0..=2.0 * loop_wait);
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            let p = settle(&http, &mut c, &clients).await?;
            let line = round(event, &http, &mut c, &clients, p).await?;
            let mut text = format!(
                "[{}] {event} round {r} ({} after {delay:.1}s):",
                elapsed(t0),
                c.nodes[p].name
            );
            for (via, secs) in Via::ALL.iter().zip(line.figures) {
                text.push_str(&match secs {
                    Some(s) => format!(" {} {s:.2}s", via.label()),
                    None => format!(" {} none", via.label()),
                });
                samples.push(Sample {
                    kind,
                    event,
                    via: *via,
                    secs,
                });
            }
            if let Some(note) = line.note {
                text.push_str(&format!(" ({note})"));
            }
            println!("{text}");
        }
    }
    drop(clients);
    c.stop();
    println!("[{}] {} stopped", elapsed(t0), kind.label());
    Ok(())
}

struct RoundResult {
    /// In `Via::ALL` order.
    figures: [Option<f64>; 2],
    note: Option<String>,
}

async fn round(
    event: Event,
    http: &reqwest::Client,
    c: &mut Cluster,
    clients: &Clients,
    p: usize,
) -> Result<RoundResult> {
    let t0 = Instant::now();
    let mut note = None;
    match event {
        Event::NodeLoss => {
            c.kill_node(p);
            let mut figures = [None, None];
            while t0.elapsed() < FAILOVER_LIMIT && figures.iter().any(Option::is_none) {
                for (f, via) in figures.iter_mut().zip(Via::ALL) {
                    if f.is_none() {
                        *f = clients
                            .first_ack_after(via, t0, Some(p))
                            .map(|at| (at - t0).as_secs_f64());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            c.start_node(p)?;
            settle(http, c, clients)
                .await
                .context("after the node-loss round")?;
            return Ok(RoundResult { figures, note: None });
        }
        Event::Switchover => {
            let candidate = (p + 1) % c.nodes.len();
            let body = serde_json::json!({"leader": c.nodes[p].name, "candidate": c.nodes[candidate].name});
            let reply = http
                .post(format!("http://127.0.0.1:{}/switchover", c.nodes[p].rest))
                .json(&body)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .context("POST /switchover")?;
            if !reply.status().is_success() {
                bail!(
                    "POST /switchover: {} {}",
                    reply.status(),
                    reply.text().await.unwrap_or_default()
                );
            }
        }
        Event::Sigterm => {
            let on_time = c.stop_daemon(p, Duration::from_secs(60));
            if !on_time {
                note = Some("the daemon did not exit within 60 s of SIGTERM; killed".into());
            }
            // Restart it only once the others took over, so the restart cannot shorten
            // the gap.
            while t0.elapsed() < FAILOVER_LIMIT
                && Via::ALL
                    .iter()
                    .any(|v| clients.first_ack_after(*v, t0, Some(p)).is_none())
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            c.start_node(p)?;
        }
        Event::PgCrash => {
            c.nodes[p].kill_postmaster();
        }
    }
    let after = settle(http, c, clients)
        .await
        .with_context(|| format!("after the {event} round"))?;
    if event == Event::PgCrash {
        note = Some(if after == p {
            "restarted in place".into()
        } else {
            format!("failed over to {}", c.nodes[after].name)
        });
    }
    let acks = clients.acks();
    let end = Instant::now();
    let figures = Via::ALL.map(|via| longest_gap(&acks, via, t0, end).map(|d| d.as_secs_f64()));
    Ok(RoundResult { figures, note })
}

/// Waits until the cluster is healthy (one primary, two streaming replicas); returns the
/// primary.
async fn wait_healthy(http: &reqwest::Client, c: &mut Cluster, limit: Duration) -> Result<usize> {
    let t0 = Instant::now();
    loop {
        c.check_alive()?;
        if let Some(p) = healthy(http, c).await {
            return Ok(p);
        }
        if t0.elapsed() > limit {
            for n in &c.nodes {
                eprintln!("---- {} log ----\n{}", n.name, n.log_tail(15));
            }
            bail!("no primary with 2 streaming replicas within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the cluster is healthy and both writers have written to its primary since;
/// returns the primary.
async fn settle(http: &reqwest::Client, c: &mut Cluster, clients: &Clients) -> Result<usize> {
    let t0 = Instant::now();
    loop {
        let p = wait_healthy(http, c, REJOIN_LIMIT).await?;
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(10) {
            let acks = clients.acks();
            if Via::ALL
                .iter()
                .all(|v| acks.iter().any(|a| a.via == *v && a.at > since && a.node == p))
            {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if t0.elapsed() > REJOIN_LIMIT {
            bail!(
                "the writers got no write through to {} within {REJOIN_LIMIT:?}",
                c.nodes[p].name
            );
        }
    }
}

async fn create_table(port: u16) -> Result<()> {
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres connect_timeout=2",
        nodes::PASSWORD
    );
    let t0 = Instant::now();
    loop {
        let r = async {
            let (c, task) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
            tokio::spawn(task);
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS ha_bench (client text, seq bigint, at timestamptz DEFAULT now())",
            )
            .await
        }
        .await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(30) => {
                return Err(e).context("creating the bench's table on the primary")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn percentile_row(v: &mut [f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

fn print_table(samples: &[Sample]) {
    println!("| system | event | client | rounds | median s | min s | max s |");
    println!("|---|---|---|---:|---:|---:|---:|");
    let mut keys: Vec<(Kind, Event, Via)> = Vec::new();
    for s in samples {
        if !keys.contains(&(s.kind, s.event, s.via)) {
            keys.push((s.kind, s.event, s.via));
        }
    }
    for (kind, event, via) in keys {
        let all: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.kind == kind && s.event == event && s.via == via)
            .collect();
        let mut v: Vec<f64> = all.iter().filter_map(|s| s.secs).collect();
        let missing = all.len() - v.len();
        let rounds = if missing > 0 {
            format!("{} ({missing} without a write)", all.len())
        } else {
            all.len().to_string()
        };
        let (m, lo, hi) = percentile_row(&mut v)
            .map_or(("-".into(), "-".into(), "-".into()), |(m, lo, hi)| {
                (format!("{m:.2}"), format!("{lo:.2}"), format!("{hi:.2}"))
            });
        println!(
            "| {} | {event} | {} | {rounds} | {m} | {lo} | {hi} |",
            kind.label(),
            via.label()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(percentile_row(&mut [3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(percentile_row(&mut [4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(percentile_row(&mut []), None);
    }
}
