//! A DCS member on its own, without PostgreSQL or the HA loop: the Raft part of a
//! pgwarden node. Used by the DCS process tests and the benchmark; an operator runs the
//! `pgwarden` daemon instead (whose witness mode is this plus the REST API).

use clap::Parser;
use pgwarden_raft::{NodeConfig, RaftNode, RaftTiming};
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(about = "Run one pgwarden DCS member (Raft only)")]
struct Args {
    /// Member name.
    #[arg(long, default_value = "")]
    name: String,
    /// Print the store's contents (vote, log, snapshot metadata) and exit.
    #[arg(long)]
    dump: bool,
    /// Raft store directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on and advertise, host:port.
    #[arg(long, default_value = "")]
    self_addr: String,
    /// Partner addresses, comma separated.
    #[arg(long, value_delimiter = ',')]
    partners: Vec<String>,
    /// Allow a one-member cluster.
    #[arg(long)]
    single_node: bool,
    /// Heartbeat interval, ms.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Election timeout lower bound, ms.
    #[arg(long, default_value_t = 500)]
    election_min_ms: u64,
    /// Election timeout upper bound, ms.
    #[arg(long, default_value_t = 1000)]
    election_max_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // openraft's per-retry WARN/ERROR lines are rate-limited; peers' outages are logged
    // once per change by the transport (see pgwarden_raft::quiet_log).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .finish()
        .with(pgwarden_raft::quiet_log::QuietOpenraft::default())
        .init();
    let args = Args::parse();
    if args.dump {
        return match pgwarden_raft::log_store::SledStore::open(&args.data_dir) {
            Ok(s) => {
                print!("{}", s.dump());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pgwarden-dcs: {}", pgwarden_raft::error_chain(&e));
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut cfg = NodeConfig::new(&args.name, &args.data_dir, &args.self_addr, args.partners);
    cfg.single_node = args.single_node;
    cfg.timing = RaftTiming {
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        election_timeout_min: Duration::from_millis(args.election_min_ms),
        election_timeout_max: Duration::from_millis(args.election_max_ms),
    };
    let node = match RaftNode::start(cfg, None).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("pgwarden-dcs: {}", pgwarden_raft::error_chain(&e));
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pgwarden-dcs: cannot install SIGTERM handler: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    node.shutdown().await;
    std::process::ExitCode::SUCCESS
}
