//! Wiring of one pgwarden node: the Raft DCS member, the REST API and, unless this node
//! is a witness, the PostgreSQL manager and the HA loop.

use crate::api::metrics::raft_info_watch;
use crate::api::rest::{self, ApiState};
use crate::api::security::Security;
use crate::api::serve::{serve, TlsSettings};
use crate::config::{Config, Strictness};
use crate::dcs::Dcs;
use crate::grpc::{self, auth::AdminAuth, forward::Forwarder, service::Admin};
use crate::ha::callbacks::{CallbackCommands, ScriptCallbacks};
use crate::ha::deadman::{keep_guards, publish_deadlines, FenceFiles};
use crate::ha::runner::{HaSettings, Runner, Timing};
use crate::ha::status::{DaemonInfo, NodeStatus};
use crate::ha::watchdog::{LinuxDriver, Watchdog};
use crate::postgres::{
    default_pg_hba, Credentials, CustomBootstrap, DefaultHba, InitdbOption, PgControl, PgManager, PgSettings,
    ReplicaMethod,
};
use anyhow::{bail, Context};
use pgwarden_raft::{NodeConfig, RaftNode, RaftTiming};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Runs the node until `shutdown` is cancelled.
/// Runs the daemon until `shutdown`. `config_path` is re-read on SIGHUP and POST /reload.
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The host checks of `--validate-config`: a bad path stops the node before it joins.
    cfg.check_host()?;
    let (timing, _) = cfg.bootstrap.dcs.timing();
    let timing = Timing {
        ttl: Duration::from_secs(timing.ttl.into()),
        loop_wait: Duration::from_secs(timing.loop_wait.into()),
        retry_timeout: Duration::from_secs(timing.retry_timeout.into()),
    };
    let prefix = format!("{}/{}/", cfg.namespace.trim_end_matches('/'), cfg.scope);
    let witness = cfg.is_witness();

    let mut node_cfg = NodeConfig::new(
        cfg.name.as_str(),
        cfg.raft.data_dir(),
        &cfg.raft.self_addr.to_string(),
        cfg.raft.partner_addrs.iter().map(|a| a.to_string()).collect(),
    );
    node_cfg.single_node = cfg.raft.single_node;
    node_cfg.site = cfg.raft.site.clone();
    node_cfg.voters = pgwarden_raft::voters::VoterPolicy {
        target: usize::try_from(cfg.raft.voter_target()).unwrap_or(3),
        replace_after: cfg.raft.voter_replace_after(),
    };
    node_cfg.tls = cfg.raft.peer_tls().context("raft: TLS settings")?;
    node_cfg.op_timeout = timing.retry_timeout;
    node_cfg.timing = RaftTiming {
        heartbeat_interval: Duration::from_millis(cfg.raft.heartbeat_interval_ms()),
        election_timeout_min: Duration::from_millis(cfg.raft.election_timeout_min_ms()),
        election_timeout_max: Duration::from_millis(cfg.raft.election_timeout_max_ms()),
    };
    if let Some(p) = pgwarden_raft::partition::FilePartition::from_env(&cfg.raft.self_addr.to_string()) {
        tracing::warn!(
            env = pgwarden_raft::partition::ENV,
            "test partition hook active: Raft links can be cut by a file"
        );
        node_cfg.link_filter = Some(Arc::new(p));
    }
    // The round-trip probe speaks the transport's TLS, if any (see crate::rtt).
    let rtt_dialer = crate::rtt::Dialer::for_peers(node_cfg.tls.as_ref());
    let raft_listener = tokio::net::TcpListener::bind(cfg.raft.bind_addr().to_string())
        .await
        .with_context(|| {
            format!(
                "cannot listen for Raft peers on {} (raft.bind_addr / raft.self_addr)",
                cfg.raft.bind_addr()
            )
        })?;
    let node = Arc::new(
        RaftNode::start(node_cfg, Some(raft_listener))
            .await
            .context("starting the Raft DCS")?,
    );

    // A stretched cluster's timers must suit the inter-site round trip: measured, and
    // warned about when the election timeout is too short for it (see crate::rtt).
    tokio::spawn(crate::rtt::watch(
        cfg.raft.partner_addrs.iter().map(|a| a.to_string()).collect(),
        rtt_dialer,
        crate::rtt::RaftTimers {
            heartbeat_interval: Duration::from_millis(cfg.raft.heartbeat_interval_ms()),
            election_timeout_min: Duration::from_millis(cfg.raft.election_timeout_min_ms()),
        },
        shutdown.clone(),
    ));

    let info = DaemonInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        scope: cfg.scope.clone(),
        name: cfg.name.to_string(),
    };
    let (status_tx, status_rx) = watch::channel(NodeStatus::initial(info, witness));
    if !witness {
        refuse_duplicate_name(&node, &prefix, &cfg).await?;
    }
    let rest_listener = tokio::net::TcpListener::bind(cfg.restapi.listen.to_string())
        .await
        .with_context(|| {
            format!(
                "cannot listen for the REST API on {} (restapi.listen)",
                cfg.restapi.listen
            )
        })?;
    let security = Security::from_config(&cfg.restapi);
    let tls = TlsSettings::from_config(&cfg.restapi).context("restapi: TLS settings")?;
    if let Some(t) = &tls {
        // Fail at start, not in the serving task, on unreadable certificates or keys.
        t.server_config().context("restapi: TLS settings")?;
    }
    // Restart, reload and reinitialize go to the HA loop through this channel (see
    // api::actions for the contract); a witness has no loop and answers 503.
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(crate::api::actions::REQUEST_QUEUE);
    // POST /failsafe is answered by the API and read by the HA loop.
    let failsafe = crate::ha::failsafe::FailsafeState::new(timing.ttl);
    let mut state =
        ApiState::new(status_rx, node.clone(), prefix.clone(), timing.ttl).with_failsafe(failsafe.clone());
    if !witness {
        // `systemctl reload` / `kill -HUP`: the same as POST /reload.
        let tx = req_tx.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                if tx.send(crate::api::actions::ApiRequest::Reload).await.is_err() {
                    return;
                }
            }
        });
        state = state.with_requests(req_tx);
    } else {
        // SIGHUP's default action ends the process: a witness, with nothing to reload,
        // only says so (`systemctl reload` must not kill a Raft voter).
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: a witness has no HA or PostgreSQL settings to reload; restart it to change Raft or API settings");
            }
        });
    }
    // The VIP (see crate::vip): one handle shared by the keeper, the fence thread, the fence
    // guard's command line and the REST API.
    let vip = crate::vip::Vip::new(Arc::new(crate::vip::netlink::NetlinkDriver));
    if !witness {
        vip.configure(cfg.vip_spec()?);
    }
    state = state.with_vip(vip.clone());
    let admin_state = state.clone();
    let api = rest::router(
        state
            .with_raft(raft_info_watch(node.clone()))
            .with_security(security)
            .with_extra_headers(rest::extra_headers_from_config(&cfg.restapi, tls.is_some())),
    );
    let rest_shutdown = shutdown.clone();
    let rest_task = tokio::spawn(async move {
        if let Err(e) = serve(rest_listener, api, tls, rest_shutdown.cancelled_owned()).await {
            tracing::error!("REST API stopped: {:#}", anyhow::Error::from(e));
        }
    });

    let admin_task = start_admin(&cfg, admin_state, node.clone(), shutdown.clone()).await?;
    // Tell systemd (Type=notify) the service is up once the node serves: see `notify_ready`.
    tokio::spawn(notify_ready(
        node.clone(),
        status_tx.subscribe(),
        witness,
        cfg.restapi.listen.to_string(),
        shutdown.clone(),
    ));

    let result = if witness {
        tracing::info!("running as a witness: Raft voter and REST API, no PostgreSQL");
        status_tx.send_modify(|s| s.last_loop = Some(tokio::time::Instant::now()));
        // Keep liveness fresh while serving.
        let mut t = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = t.tick() => status_tx.send_modify(|s| s.last_loop = Some(tokio::time::Instant::now())),
            }
        }
    } else {
        let pg_cfg = cfg
            .postgresql
            .as_ref()
            .context("postgresql: section missing on a data node")?;
        let settings = pg_settings(&cfg)?;
        let data_dir = settings.data_dir.clone();
        let pid_file = data_dir.join("postmaster.pid");
        let pg = Arc::new(
            PgManager::new(settings)
                .await
                .context("preparing the PostgreSQL manager")?,
        );
        if let Ok(Some(pid)) = pg.adopt() {
            tracing::info!(pid, "adopted the running PostgreSQL instance");
        }
        // The dead-man's switch (see ha::deadman): a guard process next to the postmaster,
        // fed the lease's deadline through a file in our state directory. A guard left by
        // a previous daemon is adopted, not replaced.
        // The primary's Raft node does not stand for election while a leader reaches it
        // (openraft has no pre-vote): see pgwarden_raft::candidacy.
        tokio::spawn({
            let node = node.clone();
            let mut status = status_tx.subscribe();
            async move {
                loop {
                    let holds = status.borrow_and_update().holds_lock;
                    node.hold_candidacy(holds);
                    if status.changed().await.is_err() {
                        return;
                    }
                }
            }
        });
        let fence_files = FenceFiles::in_dir(&cfg.raft.data_dir());
        let deadlines = tokio::spawn(publish_deadlines(
            status_tx.subscribe(),
            pg.clone(),
            fence_files.deadline.clone(),
        ));
        match std::env::current_exe() {
            Ok(program) => {
                tokio::spawn(keep_guards(
                    pg.clone(),
                    program,
                    data_dir,
                    fence_files,
                    vip.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::warn!(error = %e, "cannot find our own program: no fence guard"),
        }
        let ha = ha_settings(&cfg, &prefix, timing, pg_cfg)?;
        let callbacks = ScriptCallbacks::new(
            CallbackCommands::from_config(pg_cfg)?,
            cfg.scope.clone(),
            run_as(pg_cfg).as_deref(),
        )
        .context("postgresql.callbacks")?;
        let watchdog = Watchdog::new(
            cfg.watchdog.mode,
            cfg.watchdog.device(),
            cfg.watchdog
                .safety_margin
                .unwrap_or(crate::config::defaults::WATCHDOG_SAFETY_MARGIN),
            Box::new(LinuxDriver),
        );
        // Stopped after the runner (its own token): the address goes after the release at
        // shutdown, never while the loop may still act as primary.
        let vip_stop = CancellationToken::new();
        let vip_task = tokio::spawn(crate::vip::keeper::keep(
            vip.clone(),
            status_tx.subscribe(),
            vip_stop.clone(),
        ));
        let fence_vip = vip.clone();
        let mut runner = Runner::new(node.clone(), pg, ha, status_tx)
            .with_fence_hook(Arc::new(move |why| fence_vip.release(why)))
            .with_pid_file(pid_file)
            .with_callbacks(Arc::new(callbacks))
            .with_watchdog(Arc::new(watchdog))
            .with_failsafe(failsafe.clone())
            .with_requests(req_rx);
        if let Some(path) = config_path {
            let prefix = prefix.clone();
            let vip = vip.clone();
            runner = runner.with_reloader(Arc::new(move || {
                let loaded = Config::load(&path, Strictness::Lenient)
                    .map_err(|e| format!("{}: {}", path.display(), pgwarden_raft::error_chain(&e)))?;
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                let mut c = loaded.config;
                // As at start: the first host's partners come from its join state.
                crate::join::server::apply_joined_partners(&mut c).map_err(|e| format!("join state: {e}"))?;
                // The VIP is checked and applied before the HA settings: a bad `vip` section
                // fails the reload and keeps the old one.
                let spec = c.vip_spec().map_err(|e| format!("{}: {e}", path.display()))?;
                vip.configure(spec);
                let p = c
                    .postgresql
                    .as_ref()
                    .ok_or_else(|| format!("{}: postgresql: section missing", path.display()))?;
                ha_settings(&c, &prefix, timing, p).map_err(|e| format!("{}: {e:#}", path.display()))
            }));
        }
        let result = runner.run(shutdown.clone()).await.map_err(anyhow::Error::from);
        vip_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), vip_task).await;
        // The last change (the release at shutdown) reaches the deadline file before we exit.
        let _ = tokio::time::timeout(Duration::from_secs(1), deadlines).await;
        result
    };
    shutdown.cancel();
    let _ = rest_task.await;
    stop_admin(admin_task).await;
    node.shutdown().await;
    result
}

/// How long `systemctl start` waits for "serving" before READY=1 is sent anyway: under the
/// unit's TimeoutStartSec=120, so that a node whose cluster is still forming (the other
/// hosts not started yet) or whose first iteration is slow is not killed as a failed start.
const READY_AT_MOST: Duration = Duration::from_secs(60);

/// READY=1 when the node serves. Raft, the REST and the admin API already accept when this
/// runs; "serves" adds what the node is for:
/// - a data node: the HA loop has completed an iteration (it read the DCS or found it
///   unreachable, and acted: the first host has bootstrapped or is bootstrapping, a joiner
///   knows the leader and runs or is creating its replica), so `systemctl start` returning
///   means the REST API answers with a real role, not the initial placeholder;
/// - a witness: it is a member of the Raft group (a joiner has been added by the first host).
///
/// Not "the cluster is formed": a node restarted while the others are down must start, so
/// after [`READY_AT_MOST`] READY=1 is sent with a STATUS saying what is still awaited.
async fn notify_ready(
    node: Arc<RaftNode>,
    mut status: watch::Receiver<NodeStatus>,
    witness: bool,
    rest: String,
    shutdown: CancellationToken,
) {
    let serving = async {
        if witness {
            while !node.raft().is_initialized().await.unwrap_or(false) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            while status.borrow_and_update().last_loop.is_none() {
                if status.changed().await.is_err() {
                    return;
                }
            }
        }
    };
    let what = if witness {
        "a member of the Raft group"
    } else {
        "the HA loop to complete an iteration"
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        r = tokio::time::timeout(READY_AT_MOST, serving) => {
            let state = match r {
                Ok(()) => format!("READY=1\nSTATUS=serving REST on {rest}"),
                Err(_) => {
                    tracing::warn!("not serving after {READY_AT_MOST:?} (waiting for {what}); telling systemd the start is done");
                    format!("READY=1\nSTATUS=REST on {rest}; still waiting for {what}")
                }
            };
            crate::sd_notify::notify(&state);
        }
    }
}

/// The checks `run` would refuse to start on, without starting anything, for
/// `--validate-config`: the PostgreSQL settings (`unix_socket_directories`, `basebackup`
/// options, replica methods) and `restapi.ciphers`.
pub fn check(cfg: &Config) -> anyhow::Result<()> {
    if let Some(c) = &cfg.restapi.ciphers {
        crate::api::serve::cipher_suites(c).map_err(|e| anyhow::anyhow!("restapi.ciphers: {e}"))?;
    }
    if let (false, Some(p)) = (cfg.is_witness(), cfg.postgresql.as_ref()) {
        pg_settings(cfg)?;
        let (timing, _) = cfg.bootstrap.dcs.timing();
        let timing = Timing {
            ttl: Duration::from_secs(timing.ttl.into()),
            loop_wait: Duration::from_secs(timing.loop_wait.into()),
            retry_timeout: Duration::from_secs(timing.retry_timeout.into()),
        };
        ha_settings(cfg, "", timing, p)?;
    }
    Ok(())
}

/// Binds `ctl.listen` and serves the gRPC admin API there until `shutdown`.
async fn start_admin(
    cfg: &Config,
    state: ApiState<RaftNode>,
    node: Arc<RaftNode>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen = cfg.ctl.listen();
    let listener = tokio::net::TcpListener::bind(listen.to_string())
        .await
        .with_context(|| format!("cannot listen for the gRPC admin API on {listen} (ctl.listen)"))?;
    // Actions for another member go to its REST API with the credentials members share.
    let basic = cfg
        .restapi
        .authentication
        .as_ref()
        .and_then(|a| Some((a.username.clone()?, a.password.clone().unwrap_or_default())));
    let admin = Admin::new(state, node, Forwarder::new(basic));
    let auth = AdminAuth::new(cfg.ctl.auth_token.clone());
    let tls = grpc::serve::tls_config(&cfg.ctl).context("ctl: TLS settings")?;
    tracing::info!(addr = %listen, tls = tls.is_some(), "gRPC admin API listening");
    Ok(tokio::spawn(async move {
        let stop = shutdown.cancelled_owned();
        if let Err(e) = grpc::serve::serve_tls(listener, tls, admin, auth, stop).await {
            tracing::error!("gRPC admin API stopped: {}", pgwarden_raft::error_chain(&e));
        }
    }))
}

/// tonic's graceful shutdown waits for clients to close their connections, which a
/// `Watch` stream or an idle pgwardenctl never does: give it a moment, then abort.
async fn stop_admin(mut task: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(1), &mut task)
        .await
        .is_err()
    {
        task.abort();
        let _ = task.await;
    }
}

/// Patroni refuses to start a second daemon with a name whose member key belongs to a live
/// node. pgwarden does the same: the key exists and its API answers.
async fn refuse_duplicate_name(node: &RaftNode, prefix: &str, cfg: &Config) -> anyhow::Result<()> {
    let key = format!("{prefix}members/{}", cfg.name);
    let mut existing = None;
    // A node that is not (yet) a Raft member reads through its partners, so a second
    // machine configured with a taken name is stopped before it joins anything.
    let partners = pgwarden_raft::client::RaftClient::new(
        cfg.raft.partner_addrs.iter().map(|a| a.to_string()).collect(),
        Duration::from_secs(2),
    )
    .with_tls(cfg.raft.peer_tls()?.map(|t| t.client_config()));
    for _ in 0..25 {
        let read = if node.raft().is_initialized().await.unwrap_or(false) {
            node.get(&key).await.map_err(|e| e.to_string())
        } else {
            partners.get(&key).await.map_err(|e| e.to_string())
        };
        match read {
            Ok(v) => {
                existing = v;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let Some(kv) = existing else { return Ok(()) };
    let api = serde_json::from_str::<Value>(&kv.value)
        .ok()
        .and_then(|v| v.get("api_url").and_then(Value::as_str).map(str::to_string));
    if let Some(api) = api {
        let url = api.replace("/patroni", "/liveness");
        let alive = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok();
        if alive {
            bail!(
                "Can't start; there is already a node named '{}' running",
                cfg.name
            );
        }
    }
    Ok(())
}

fn creds(u: &crate::config::PgUser) -> Credentials {
    Credentials {
        username: u.username.clone(),
        password: u.password.clone(),
    }
}

/// PostgreSQL refuses to run as root: a daemon started as root runs its children (and the
/// user's scripts) as `postgresql.run_as`, or as `postgres` when that is not set.
fn run_as(p: &crate::config::Postgresql) -> Option<String> {
    p.run_as
        .clone()
        .or_else(|| nix::unistd::geteuid().is_root().then(|| "postgres".to_string()))
}

fn pg_settings(cfg: &Config) -> anyhow::Result<PgSettings> {
    let p = cfg.postgresql.as_ref().context("postgresql: section missing")?;
    let mut s = PgSettings::new(
        cfg.name.clone(),
        cfg.scope.clone(),
        p.data_dir.clone(),
        p.listen.port,
    );
    s.bin_dir = p.bin_dir.clone();
    s.listen_host = p.listen.hosts.join(",");
    s.run_as = run_as(p);
    if let Some(pgpass) = &p.pgpass {
        s.pgpass_file = pgpass.clone();
    }
    s.superuser = creds(&p.authentication.superuser);
    s.replication = creds(&p.authentication.replication);
    s.rewind = p.authentication.rewind.as_ref().map(creds);
    // Patroni's pg_ctl_timeout: how long a start waits for PostgreSQL to accept connections.
    // A start that takes longer (a long crash recovery) leaves PostgreSQL starting; the HA
    // loop then bounds it by primary_start_timeout.
    s.timeouts.start = std::time::Duration::from_secs(p.pg_ctl_timeout());
    // Patroni honours unix_socket_directories: psql, pgbouncer and pgBackRest look for the
    // socket where the DBA put it. pgwarden connects through its first entry.
    if let Some(v) = p
        .parameters
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("unix_socket_directories"))
        .map(|(_, v)| v.to_string())
    {
        s = s
            .with_unix_socket_directories(&v)
            .map_err(|e| anyhow::anyhow!("postgresql.parameters.{e}"))?;
    }
    s.config_dir = p.config_dir.clone();
    // The local section wins over the one in bootstrap.dcs, as Patroni's merged view does.
    let basebackup = p.basebackup.clone().or_else(|| {
        cfg.bootstrap
            .dcs
            .postgresql
            .as_ref()
            .and_then(|d| d.basebackup.clone())
    });
    if let Some(opts) = basebackup {
        let pairs: Vec<(String, Option<String>)> = opts.0.into_iter().map(|o| (o.name, o.value)).collect();
        s.basebackup_args = crate::postgres::basebackup_args(&pairs)
            .map_err(|e| anyhow::anyhow!("postgresql.basebackup: {e}"))?;
    }
    Ok(s)
}

fn ha_settings(
    cfg: &Config,
    prefix: &str,
    timing: Timing,
    p: &crate::config::Postgresql,
) -> anyhow::Result<HaSettings> {
    let mut tags: BTreeMap<String, Value> = match serde_json::to_value(&cfg.tags)? {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => BTreeMap::new(),
    };
    if let Some(Value::Object(custom)) = tags.remove("custom") {
        tags.extend(custom);
    }
    let initdb: Vec<InitdbOption> = match &cfg.bootstrap.initdb {
        Some(opts) => serde_json::from_value(serde_json::to_value(opts)?).context("bootstrap.initdb")?,
        None => vec![],
    };
    let replica_methods = cfg
        .replica_method_sections()?
        .into_iter()
        .map(|(name, section)| match section {
            None => ReplicaMethod::Basebackup { max_tries: 2 },
            Some(m) => ReplicaMethod::Custom {
                name,
                command: m.command,
                params: m.params,
                keep_data: m.keep_data,
                no_leader: m.no_leader,
                no_params: m.no_params,
            },
        })
        .collect();
    let bootstrap_method = cfg.bootstrap_method_section()?.map(|(name, m)| CustomBootstrap {
        name,
        command: m.command,
        no_params: m.no_params,
        keep_existing_recovery_conf: m.keep_existing_recovery_conf,
        recovery_conf: m.recovery_conf,
        params: m.params,
    });
    let connect = &p.connect_address;
    let api = &cfg.restapi.connect_address;
    // The cap of the fence margin; the lease takes an eighth of its ttl below this.
    let margin = Duration::from_secs(2);
    Ok(HaSettings {
        watchdog: Some((
            cfg.watchdog.mode,
            cfg.watchdog.device(),
            cfg.watchdog
                .safety_margin
                .unwrap_or(crate::config::defaults::WATCHDOG_SAFETY_MARGIN),
        )),
        scripts: Some((
            CallbackCommands::from_config(p).context("postgresql.callbacks")?,
            run_as(p),
        )),
        api_auth: cfg
            .restapi
            .authentication
            .as_ref()
            .and_then(|a| Some((a.username.clone()?, a.password.clone().unwrap_or_default()))),
        prefix: prefix.to_string(),
        scope: cfg.scope.clone(),
        me: cfg.name.clone(),
        api_url: format!("http://{api}/patroni"),
        conn_url: format!("postgres://{connect}/postgres"),
        timing,
        safety_margin: margin,
        failover_priority: if cfg.tags.nofailover() {
            0
        } else {
            cfg.tags.failover_priority()
        },
        tags,
        initdb,
        bootstrap_dcs: cfg.bootstrap.dcs.to_json(),
        // Only the file's own lines: the HA loop falls back to the dynamic configuration's,
        // then to the default, when this is empty.
        pg_hba: cfg
            .bootstrap
            .pg_hba
            .clone()
            .or_else(|| p.pg_hba.clone())
            .unwrap_or_default(),
        pg_ident: p.pg_ident.clone().unwrap_or_default(),
        use_pg_rewind: p.use_pg_rewind,
        remove_data_directory_on_rewind_failure: p.remove_data_directory_on_rewind_failure.unwrap_or(false),
        remove_data_directory_on_diverged_timelines: p
            .remove_data_directory_on_diverged_timelines
            .unwrap_or(false),
        default_pg_hba: default_pg_hba(&default_hba(cfg, p)),
        local_parameters: p
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        recovery_conf: p
            .recovery_conf
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), crate::config::GucValue::text(v)))
            .collect(),
        post_bootstrap: cfg
            .bootstrap
            .post_bootstrap()
            .and_then(|c| c.argv())
            .map(|a| a.join(" ")),
        replica_methods,
        bootstrap_method,
    })
}

/// What the built-in pg_hba is built from: the roles of `postgresql.authentication`, and every
/// member host the file names (PostgreSQL's connect address, this node's and the partners' Raft
/// addresses; a member's PostgreSQL usually shares its host with its Raft address).
fn default_hba(cfg: &Config, p: &crate::config::Postgresql) -> DefaultHba {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    // `peer` only when pgwarden itself runs as the OS user that runs PostgreSQL: otherwise its
    // own socket connection as a superuser of that name would fail it.
    let peer_user = match (run_as(p), me) {
        (None, me) => me,
        (Some(pg_user), Some(me)) if pg_user == me => Some(me),
        _ => None,
    };
    let member_hosts = std::iter::once(&p.connect_address.host)
        .chain(std::iter::once(&cfg.raft.self_addr.host))
        .chain(cfg.raft.partner_addrs.iter().map(|a| &a.host))
        .cloned()
        .collect();
    DefaultHba {
        peer_user,
        superuser: p.authentication.superuser.username.clone(),
        replication: p.authentication.replication.username.clone(),
        rewind: p.authentication.rewind.as_ref().map(|r| r.username.clone()),
        member_hosts,
    }
}
