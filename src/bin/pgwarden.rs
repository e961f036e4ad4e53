//! The pgwarden daemon: `pgwarden CONFIG` runs a node (data node or witness);
//! `pgwarden --validate-config CONFIG` checks a configuration file and exits;
//! `pgwarden fence-guard …` (hidden) is the dead-man's switch the daemon starts next to a
//! postmaster (see `pgwarden::ha::deadman`);
//! `pgwarden force-new-cluster CONFIG` rewrites a stopped node's Raft membership to itself
//! alone after the loss of the majority, and `pgwarden restore-dcs FILE CONFIG` creates a
//! node's Raft store from a `pgwardenctl dcs snapshot save` backup (see `pgwarden_raft::dr`).

use clap::{CommandFactory, Parser};
use pgwarden::config::{Config, Strictness};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "PostgreSQL high availability with an embedded Raft DCS")]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The configuration file (Patroni's layout with a `raft:` section).
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    config_flag: Option<PathBuf>,
    /// The configuration file, positional as in `patroni config.yml`.
    config: Option<PathBuf>,
    /// Check the configuration (unknown keys are errors) and exit.
    #[arg(long)]
    validate_config: bool,
    /// With --validate-config: check the file only, not this host (the TLS files, the data
    /// directory and the PostgreSQL binaries it names). For a file written for another host.
    #[arg(long, requires = "validate_config")]
    skip_host_checks: bool,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Start a local cluster on loopback in a temporary directory and show how to use it.
    Demo {
        /// Two data nodes and a witness instead of three data nodes.
        #[arg(long)]
        witness: bool,
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        duration: Option<u64>,
        /// Keep the demo directory afterwards.
        #[arg(long)]
        keep: bool,
        /// First of the twelve consecutive ports the demo uses.
        #[arg(long, default_value_t = 15400)]
        base_port: u16,
        /// Once up, kill the primary and narrate the failover with timings, then switch back.
        #[arg(long)]
        failover_drill: bool,
    },
    /// The dead-man's switch of a primary (started by the daemon next to each postmaster):
    /// SIGQUITs the postmaster when the lease deadline the daemon publishes passes.
    #[command(hide = true)]
    FenceGuard {
        /// The postmaster.pid of the instance to guard.
        #[arg(long)]
        pid_file: PathBuf,
        /// The deadline file the daemon writes.
        #[arg(long)]
        deadline_file: PathBuf,
        /// Where the guard writes its own pid.
        #[arg(long)]
        guard_pid_file: PathBuf,
        /// The VIP (`address/prefix`) to remove when the guard fires.
        #[arg(long, requires = "vip_interface")]
        vip_address: Option<String>,
        /// The VIP's interface.
        #[arg(long, requires = "vip_address")]
        vip_interface: Option<String>,
    },
    /// After the permanent loss of the Raft majority: make this stopped node a one-voter cluster.
    ///
    /// With this node's daemon stopped, rewrite its Raft membership to itself alone, keeping
    /// the keyspace. Refused
    /// while any other member answers. PostgreSQL is not touched: promote with
    /// `pgwardenctl failover` if needed, then add new members with `pgwardenctl members add`.
    ForceNewCluster {
        /// The node's configuration file.
        #[arg(short = 'c', long = "config", value_name = "CONFIG")]
        config_flag: Option<PathBuf>,
        /// The node's configuration file, positional.
        config: Option<PathBuf>,
    },
    /// Restore a `pgwardenctl dcs snapshot save` backup into this stopped node's Raft store.
    ///
    /// The backup is written into this node's Raft data directory, before the daemon starts,
    /// as a cluster of which this node is the only
    /// voter; then start it and add the other members with `pgwardenctl members add`.
    /// Refuses a backup of another scope, a damaged file, and an existing store (unless
    /// --force, which renames it aside).
    RestoreDcs {
        /// The backup file.
        file: PathBuf,
        /// The node's configuration file.
        #[arg(short = 'c', long = "config", value_name = "CONFIG")]
        config_flag: Option<PathBuf>,
        /// The node's configuration file, positional.
        config: Option<PathBuf>,
        /// Move an existing Raft store aside (renamed, never deleted) instead of refusing.
        #[arg(long)]
        force: bool,
    },
    /// On the first host: write this node's configuration, the cluster's CA and certificate,
    /// the database passwords, and print a join token for the other hosts.
    ///
    /// Raft mutual TLS and TLS on the admin API are on. Key and credential files are 0600 and,
    /// run as root, owned by `postgres` (the packaged unit's user). Credentials are never
    /// printed. The daemon of this node then serves joins on --join-port.
    Init {
        /// Cluster name, the same on every member.
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        node: NodeArgs,
        /// The port the daemon serves joins on (`pgwarden join --token`).
        #[arg(long, default_value_t = pgwarden::join::DEFAULT_JOIN_PORT)]
        join_port: u16,
        /// How long the printed token is valid (e.g. 3600, 90s, 30m, 1h).
        #[arg(long, default_value = "1h", value_parser = pgwarden::join::init::parse_ttl)]
        token_ttl: std::time::Duration,
    },
    /// On another host: fetch a certificate, the shared settings and the credentials from the
    /// first host with a token, and write this node's configuration.
    ///
    /// The token pins the cluster's CA and is valid once. Nothing is written when the join is
    /// refused. Then start the daemon (`systemctl enable --now pgwarden`); the first host adds
    /// it to the Raft group once it answers.
    Join {
        /// The token `pgwarden init` or `pgwarden token create` printed.
        #[arg(long)]
        token: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Write a pgwarden configuration from a Patroni one (for taking a Patroni cluster over).
    ///
    /// The DCS section (etcd3, etcd, consul, ..., or Patroni's raft) is replaced by a `raft:`
    /// section; every other key is carried over. The result is then validated like
    /// `--validate-config` (without this host's checks) and every key pgwarden does not apply is
    /// listed. Exit status 1 when it does not validate (the file is still written, to be fixed).
    ConvertPatroniConfig {
        /// The Patroni configuration file.
        patroni_config: PathBuf,
        /// Where to write the pgwarden file (mode 0600: it holds the passwords); default stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// The port of the embedded Raft on every member.
        #[arg(long, default_value_t = 5010)]
        raft_port: u16,
        /// `raft.data_dir` to write.
        #[arg(long, default_value = "/var/lib/pgwarden/raft")]
        raft_data_dir: PathBuf,
        /// This node's Raft address (default: the host of restapi.connect_address, --raft-port).
        #[arg(long, value_parser = parse_host_port)]
        self_addr: Option<pgwarden::config::HostPort>,
        /// Another member's Raft address, once per member (default: the DCS hosts of the file,
        /// when it runs on the database hosts).
        #[arg(long = "partner", value_parser = parse_host_port)]
        partners: Vec<pgwarden::config::HostPort>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Join tokens, on the host that ran `pgwarden init`.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Man pages and shell completions, for packaging.
    #[command(hide = true, subcommand)]
    Generate(pgwarden::generate::Generate),
}

/// The flags `init` and `join` share: this node's identity, addresses and files.
#[derive(clap::Args)]
struct NodeArgs {
    /// This member's name, unique in the cluster (`join`: default the host name).
    #[arg(long)]
    name: Option<String>,
    /// The address the other members reach this host at (`join`: default the local address
    /// of the route to the first host).
    #[arg(long)]
    address: Option<String>,
    /// A witness: a Raft voter without PostgreSQL.
    #[arg(long)]
    witness: bool,
    /// The configuration file to write; the TLS files go to `tls/` beside it.
    #[arg(short = 'c', long, default_value = "/etc/pgwarden/pgwarden.yml")]
    config: std::path::PathBuf,
    /// The state directory: Raft data (`raft/`), PostgreSQL data (`pgdata/`), pgpass, join state.
    #[arg(long, default_value = "/var/lib/pgwarden")]
    data_dir: std::path::PathBuf,
    #[arg(long, default_value_t = 5010)]
    raft_port: u16,
    #[arg(long, default_value_t = 8008)]
    restapi_port: u16,
    /// The admin API's port (on loopback).
    #[arg(long, default_value_t = 8009)]
    ctl_port: u16,
    #[arg(long, default_value_t = 5432)]
    pg_port: u16,
    /// PostgreSQL's bin directory (default: searched at start).
    #[arg(long)]
    bin_dir: Option<std::path::PathBuf>,
    /// `watchdog.mode` to write (off, automatic, required); default: not written (automatic).
    #[arg(long)]
    watchdog: Option<String>,
    /// Replace existing configuration, certificate and key files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Subcommand)]
enum TokenCmd {
    /// Issue a new join token (valid once).
    Create {
        /// This node's configuration file (written by `pgwarden init`).
        #[arg(short = 'c', long, default_value = "/etc/pgwarden/pgwarden.yml")]
        config: std::path::PathBuf,
        /// How long the token is valid (e.g. 3600, 90s, 30m, 1h).
        #[arg(long, default_value = "1h", value_parser = pgwarden::join::init::parse_ttl)]
        ttl: std::time::Duration,
    },
}

/// `pgwarden init`.
fn init(scope: String, n: NodeArgs, join_port: u16, token_ttl: std::time::Duration) -> ExitCode {
    let (Some(name), Some(address)) = (n.name, n.address) else {
        eprintln!("pgwarden init: --name and --address are required");
        return ExitCode::from(2);
    };
    let o = pgwarden::join::init::InitOptions {
        scope,
        name: name.clone(),
        address: address.clone(),
        witness: n.witness,
        config: n.config.clone(),
        state_dir: n.data_dir,
        raft_port: n.raft_port,
        restapi_port: n.restapi_port,
        pg_port: n.pg_port,
        ctl_port: n.ctl_port,
        join_port,
        bin_dir: n.bin_dir,
        watchdog: n.watchdog,
        token_ttl,
        force: n.force,
    };
    match pgwarden::join::init::init(&o) {
        Ok(done) => {
            for p in &done.written {
                println!("wrote {}", p.display());
            }
            println!(
                "\nStart this node:  systemctl enable --now pgwarden   (or: pgwarden {})",
                n.config.display()
            );
            println!(
                "Join token (valid {} s, once; another: pgwarden token create):\n\n    {}\n",
                token_ttl.as_secs(),
                done.token
            );
            println!(
                "On each other host, once this node runs:\n\n    pgwarden join --token {}\n",
                done.token
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgwarden init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pgwarden join`.
fn join(token: String, n: NodeArgs) -> ExitCode {
    let o = pgwarden::join::client::JoinOptions {
        token,
        name: n.name,
        address: n.address,
        witness: n.witness,
        config: n.config.clone(),
        state_dir: n.data_dir,
        raft_port: n.raft_port,
        restapi_port: n.restapi_port,
        pg_port: n.pg_port,
        ctl_port: n.ctl_port,
        bin_dir: n.bin_dir,
        watchdog: n.watchdog,
        force: n.force,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgwarden join: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = |m: &str| eprintln!("pgwarden join: {m}");
    match rt.block_on(pgwarden::join::client::join(&o, &progress)) {
        Ok(written) => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            println!(
                "\nStart this node:  systemctl enable --now pgwarden   (or: pgwarden {})",
                n.config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgwarden join: {e}; nothing was written");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // Before any thread exists: it edits the environment.
    pgwarden::sd_notify::take_socket_from_env();
    let args = Args::parse();
    if let Some(Sub::Generate(g)) = &args.command {
        return match g.run(Args::command()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pgwarden generate: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Sub::FenceGuard {
        pid_file,
        deadline_file,
        guard_pid_file,
        vip_address,
        vip_interface,
    }) = &args.command
    {
        // No runtime and no log subscriber: a plain loop on one thread (see ha::deadman).
        let guard = pgwarden::ha::deadman::GuardArgs {
            pid_file: pid_file.clone(),
            deadline_file: deadline_file.clone(),
            guard_pid_file: guard_pid_file.clone(),
            vip: vip_address.clone().zip(vip_interface.clone()),
        };
        return match pgwarden::ha::deadman::run_guard(&guard) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pgwarden fence-guard: {}", pgwarden_raft::error_chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    match args.command {
        Some(Sub::Init {
            scope,
            node,
            join_port,
            token_ttl,
        }) => return init(scope, node, join_port, token_ttl),
        Some(Sub::Join { token, node }) => return join(token, node),
        Some(Sub::Token(TokenCmd::Create { config, ttl })) => {
            return match pgwarden::join::init::create_token(&config, ttl) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pgwarden token create: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Sub::ConvertPatroniConfig {
            patroni_config,
            output,
            raft_port,
            raft_data_dir,
            self_addr,
            partners,
            force,
        }) => {
            let opts = pgwarden::config::convert::ConvertOptions {
                raft_port,
                raft_data_dir,
                self_addr,
                partners: (!partners.is_empty()).then_some(partners),
            };
            return convert_patroni_config(&patroni_config, output.as_deref(), &opts, force);
        }
        _ => {}
    }
    if let Some(Sub::ForceNewCluster { config_flag, config }) = &args.command {
        let Some(path) = config_flag.as_ref().or(config.as_ref()) else {
            eprintln!("pgwarden force-new-cluster: no configuration file given");
            return ExitCode::from(2);
        };
        return force_new_cluster(path);
    }
    if let Some(Sub::RestoreDcs {
        file,
        config_flag,
        config,
        force,
    }) = &args.command
    {
        let Some(path) = config_flag.as_ref().or(config.as_ref()) else {
            eprintln!("pgwarden restore-dcs: no configuration file given");
            return ExitCode::from(2);
        };
        return restore_dcs(file, path, *force);
    }
    if let Some(Sub::Demo {
        witness,
        duration,
        keep,
        base_port,
        failover_drill,
    }) = args.command
    {
        let rt = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("pgwarden: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let opts = pgwarden::demo::DemoOptions {
            witness,
            duration: duration.map(std::time::Duration::from_secs),
            keep,
            base_port,
            failover_drill,
        };
        return match rt.block_on(pgwarden::demo::run(opts)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pgwarden demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = args.config_flag.or(args.config) else {
        eprintln!(
            "pgwarden: no configuration file given (pgwarden CONFIG, or pgwarden --validate-config CONFIG)"
        );
        return ExitCode::from(2);
    };
    let strictness = if args.validate_config {
        Strictness::Strict
    } else {
        Strictness::Lenient
    };
    let loaded = match Config::load(&path, strictness) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgwarden: {}: {}", path.display(), pgwarden_raft::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if args.validate_config {
        for w in &loaded.warnings {
            eprintln!("pgwarden: warning: {w}");
        }
        // The same host checks the daemon makes at start (files readable, PGDATA, binaries).
        if !args.skip_host_checks {
            if let Err(e) = loaded.config.check_host() {
                eprintln!("pgwarden: {}: {}", path.display(), pgwarden_raft::error_chain(&e));
                return ExitCode::FAILURE;
            }
        }
        if let Err(e) = pgwarden::daemon::check(&loaded.config) {
            eprintln!("pgwarden: {}: {e:#}", path.display());
            return ExitCode::FAILURE;
        }
        match pgwarden::logging::check(&loaded.config.log) {
            Ok(ws) => ws.iter().for_each(|w| eprintln!("pgwarden: warning: {w}")),
            Err(e) => {
                eprintln!("pgwarden: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    let log_warnings = match pgwarden::logging::init(&loaded.config.log) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("pgwarden: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    for w in &log_warnings {
        tracing::warn!("{w}");
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut config = loaded.config;
    // The first host's file says `single_node: true` (as `init` wrote it); once members have
    // joined, the daemon starts with them as partners instead (see join::server::joined_partners).
    match pgwarden::join::server::apply_joined_partners(&mut config) {
        Ok(Some(partners)) => tracing::info!(
            partners = %partners.join(", "),
            "Raft partners from the join state: the members that joined through this host"
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("join state: {e}; keeping raft.single_node"),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgwarden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let s2 = shutdown.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown requested");
            pgwarden::sd_notify::notify("STOPPING=1");
            s2.cancel();
        });
        // The join listener, on the host that ran `pgwarden init` (see pgwarden::join::server).
        pgwarden::join::server::spawn_if_configured(
            &config.raft.data_dir(),
            config.raft.single_node,
            shutdown.clone(),
        )
        .await;
        pgwarden::daemon::run(config, Some(path), shutdown).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pgwarden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pgwarden force-new-cluster CONFIG`: see [`pgwarden_raft::dr`].
fn force_new_cluster(path: &std::path::Path) -> ExitCode {
    let fail = |e: String| {
        eprintln!("pgwarden force-new-cluster: {e}");
        ExitCode::FAILURE
    };
    let cfg = match Config::load(path, Strictness::Lenient) {
        Ok(l) => l.config,
        Err(e) => return fail(format!("{}: {}", path.display(), pgwarden_raft::error_chain(&e))),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,openraft=warn"))
        .with_writer(std::io::stderr)
        .init();
    let tls = match cfg.raft.peer_tls() {
        Ok(t) => t,
        Err(e) => return fail(format!("raft: TLS settings: {}", pgwarden_raft::error_chain(&e))),
    };
    let partners: Vec<String> = cfg.raft.partner_addrs.iter().map(|a| a.to_string()).collect();
    let dir = cfg.raft.data_dir();
    // The survivor starts paused: it must never promote on its own (see dr::force_new_cluster).
    let config_key = format!("{}/{}/config", cfg.namespace.trim_end_matches('/'), cfg.scope);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let res = rt.block_on(async {
        let peers = pgwarden_raft::network::PeerClients::new(0, None)
            .with_tls(tls.as_ref().map(|t| t.client_config()));
        pgwarden_raft::dr::force_new_cluster(&dir, &partners, &peers, Some(&config_key)).await
    });
    match res {
        Ok(r) => {
            println!(
                "Success: the Raft membership in {} is now {} (id {}) alone, at index {} in term {}",
                dir.display(),
                r.me,
                r.node_id,
                r.index,
                r.term
            );
            for n in &r.removed {
                println!("  removed {n}");
            }
            println!(
                "  kept {} keys ({} with a TTL: they expire by their TTL once the node leads)",
                r.keys, r.ttl_keys
            );
            if r.paused {
                println!("  the cluster is paused (maintenance mode): nothing is promoted on its own");
            }
            println!(
                "Next: start the daemon; if its PostgreSQL is a replica, promote it with \
                 `pgwardenctl failover --candidate {}`; then `pgwardenctl resume`, and add new \
                 members with `pgwardenctl members add` or `members replace`.",
                r.me.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(pgwarden_raft::error_chain(&e)),
    }
}

/// `pgwarden restore-dcs FILE CONFIG`: see [`pgwarden_raft::dr::restore`].
fn restore_dcs(file: &std::path::Path, path: &std::path::Path, force: bool) -> ExitCode {
    let fail = |e: String| {
        eprintln!("pgwarden restore-dcs: {e}");
        ExitCode::FAILURE
    };
    let cfg = match Config::load(path, Strictness::Lenient) {
        Ok(l) => l.config,
        Err(e) => return fail(format!("{}: {}", path.display(), pgwarden_raft::error_chain(&e))),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,openraft=warn"))
        .with_writer(std::io::stderr)
        .init();
    let backup = match pgwarden_raft::backup::DcsBackup::read(file) {
        Ok(b) => b,
        Err(e) => return fail(pgwarden_raft::error_chain(&e)),
    };
    let prefix = format!("{}/{}/", cfg.namespace.trim_end_matches('/'), cfg.scope);
    if let Err(e) = pgwarden_raft::dr::check_backup(file, &backup, &cfg.scope, &prefix) {
        return fail(pgwarden_raft::error_chain(&e));
    }
    let me = pgwarden_raft::Node {
        name: cfg.name.to_string(),
        addr: cfg.raft.self_addr.to_string(),
        site: cfg.raft.site.clone(),
    };
    let dir = cfg.raft.data_dir();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(pgwarden_raft::dr::restore(&dir, file, &backup, me, force)) {
        Ok(r) => {
            if let Some(old) = &r.moved_aside {
                println!("Moved the existing Raft store to {}", old.display());
            }
            println!(
                "Success: restored {} keys of cluster {} (revision {}, taken {}) into {} as a one-voter \
                 cluster (node id {})",
                r.keys,
                backup.scope,
                backup.revision,
                backup.taken_at,
                dir.display(),
                r.node_id
            );
            println!(
                "Next: start this node's daemon; start the others with empty Raft data directories and add \
                 each with `pgwardenctl members add HOST:PORT`."
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(pgwarden_raft::error_chain(&e)),
    }
}

fn parse_host_port(s: &str) -> Result<pgwarden::config::HostPort, String> {
    pgwarden::config::HostPort::parse(s)
}

/// `pgwarden convert-patroni-config`.
fn convert_patroni_config(
    input: &Path,
    output: Option<&Path>,
    opts: &pgwarden::config::convert::ConvertOptions,
    force: bool,
) -> ExitCode {
    use pgwarden::config::convert;
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pgwarden convert-patroni-config: {}: {e}", input.display());
            return ExitCode::FAILURE;
        }
    };
    let c = match convert::convert(&text, input, opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgwarden convert-patroni-config: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("pgwarden: removed the DCS section(s): {}", c.removed.join(", "));
    eprintln!(
        "pgwarden: raft.self_addr {} (from {})",
        c.self_addr.addr, c.self_addr.from
    );
    for p in &c.partners {
        eprintln!("pgwarden: raft.partner_addrs {} (from {})", p.addr, p.from);
    }
    match output {
        None => print!("{}", c.yaml),
        Some(path) => {
            if let Err(e) = write_private(path, &c.yaml, force) {
                eprintln!("pgwarden convert-patroni-config: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("pgwarden: wrote {}", path.display());
        }
    }
    let shown = output.unwrap_or(Path::new("(converted)"));
    match Config::from_yaml_str(&c.yaml, shown, Strictness::Strict, Vec::<(String, String)>::new()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("pgwarden: warning: {w}");
            }
            eprintln!(
                "pgwarden: the converted configuration is valid; check it on its host with `pgwarden --validate-config`"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "pgwarden: the converted configuration does not validate: {}",
                pgwarden_raft::error_chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to a new file of mode 0600 (it holds passwords); an existing file only with `force`.
fn write_private(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(e.kind(), "exists; pass --force to replace it")
        } else {
            e
        }
    })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
