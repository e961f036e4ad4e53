//! Real pgwarden daemons managing real PostgreSQL on loopback, with ports chosen at run
//! time, a temporary directory per cluster and a writer that records every acknowledged
//! row. Everything started here is killed and reaped on drop.
//!
//! With [`Options::netns`], the same cluster runs in network namespaces instead (a
//! [`NetLab`] of the testkit): each daemon, and the PostgreSQL it starts, in its node's
//! namespace, listening on the node's address; [`Cluster::isolate`] and [`Cluster::heal`]
//! then cut real links (silent drops) instead of writing the partition file. Everything that
//! talks to the nodes (REST, SQL, the [`Writer`]) must then run inside the client namespace,
//! through [`NetLab::block_on_in_client`].
//!
//! It stays with the tests rather than in the shared testkit crate: it starts the
//! `pgwarden` binary of this package (`CARGO_BIN_EXE_pgwarden`, which only this package's
//! tests know) and writes each node's file with the library's writer (the demo's), so it
//! depends on the library the testkit must not depend on (pgwarden-raft's tests use it too).

use pgwarden::demo::{local_node_config, LocalNode};
use pgwarden_testkit::{free_port, http, wait_for, NetLab};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const SUPERUSER_PASSWORD: &str = "sup3r-secret";

/// libpq connection strings of every data node (for [`Writer::start`]).
pub fn conns(c: &Cluster) -> Vec<String> {
    (0..c.nodes.len())
        .filter(|i| !c.nodes[*i].spec.witness)
        .map(|i| c.conn_str(i))
        .collect()
}

#[derive(Clone)]
pub struct NodeSpec {
    pub name: String,
    pub witness: bool,
    pub raft: u16,
    pub rest: u16,
    pub pg: u16,
    /// The gRPC admin API (ctl.listen).
    pub ctl: u16,
    /// The address every listener binds: 127.0.0.1, or the node's own in network namespaces.
    pub host: String,
}

pub struct Node {
    pub spec: NodeSpec,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("pgwarden.yml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }
    /// PostgreSQL's server log (the manager writes it beside the data directory).
    pub fn pg_log_path(&self) -> PathBuf {
        self.dir.join("pgdata.log")
    }
    /// The daemon's state directory (raft.data_dir), which also holds the fence guard's files.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("raft")
    }
    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.spec.host, self.spec.raft)
    }
    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pgdata().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

pub struct Cluster {
    root_dir: PathBuf,
    root: Option<tempfile::TempDir>,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
    /// The network namespaces the nodes run in, if any. Dropped after the Cluster's own
    /// drop has killed every process in them.
    net: Option<Arc<NetLab>>,
    /// With [`Options::unprivileged`] (and the tests running as root): the copy of the
    /// pgwarden binary the `postgres` user runs.
    unprivileged_bin: Option<PathBuf>,
    /// See [`Options::faketime`].
    faketime: Option<PathBuf>,
}

pub struct Options {
    pub data_nodes: usize,
    pub witness: bool,
    /// Witnesses beyond the one of `witness` (named `witness1`, `witness2`, ...), after it:
    /// cheap members (no PostgreSQL) for tests of the Raft membership.
    pub more_witnesses: usize,
    /// Extra YAML lines under bootstrap.dcs (indented by 4).
    pub dcs_extra: String,
    /// Extra YAML lines under ctl (indented by 2), e.g. `  auth_token: x\n`.
    pub ctl_extra: String,
    /// Per data node (by index; missing = none): extra YAML lines under `postgresql:`
    /// (indented by 2), e.g. callbacks.
    pub pg_extra: Vec<String>,
    /// Per node (by index; missing = none): extra YAML lines under `raft:` (indented
    /// by 2), e.g. TLS files.
    pub raft_extra: Vec<String>,
    /// PostgreSQL parameters of bootstrap.dcs, over the harness's defaults (same name:
    /// replaced), e.g. `("wal_level", "logical")`. In every YAML string of these options,
    /// `{root}` stands for the cluster's temporary directory.
    pub dcs_parameters: Vec<(&'static str, &'static str)>,
    /// Run node `i` in namespace `net.node_ns(i)` (one per node, witness included), listening
    /// on `net.node_ip(i)`; the clients' subnet is allowed into PostgreSQL.
    pub netns: Option<Arc<NetLab>>,
    /// Run the daemons as the unprivileged `postgres` user, as the packaged unit does, instead
    /// of as root (which then runs PostgreSQL as `postgres`). Only when the tests run as root.
    pub unprivileged: bool,
    /// libfaketime's library: each daemon (and the PostgreSQL it starts) runs with it
    /// preloaded, its wall clock offset by what its node's `clock-offset` file says (see
    /// [`Cluster::step_clock`]); the monotonic clock is left alone.
    pub faketime: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_nodes: 3,
            witness: false,
            more_witnesses: 0,
            dcs_extra: String::new(),
            ctl_extra: String::new(),
            pg_extra: Vec::new(),
            raft_extra: Vec::new(),
            dcs_parameters: Vec::new(),
            netns: None,
            unprivileged: false,
            faketime: None,
        }
    }
}

impl Options {
    /// A standby cluster of two data nodes and a witness, following the primary cluster
    /// whose PostgreSQL listens on 127.0.0.1:`remote_port`, through the permanent slot
    /// `slot` (which that cluster must keep).
    pub fn standby_of(remote_port: u16, slot: &str) -> Options {
        Options {
            data_nodes: 2,
            witness: true,
            dcs_extra: format!(
                "    standby_cluster:\n      host: 127.0.0.1\n      port: {remote_port}\n      primary_slot_name: {slot}\n"
            ),
            ..Options::default()
        }
    }
}

impl Cluster {
    pub fn new(opts: Options) -> Cluster {
        // Under /tmp with traversable permissions: PostgreSQL runs as `postgres` when the
        // tests run as root, and must reach its data directory.
        let root = tempfile::Builder::new()
            .prefix("pgwarden-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut specs = vec![];
        let nodes_total = opts.data_nodes + usize::from(opts.witness) + opts.more_witnesses;
        if let Some(net) = &opts.netns {
            assert!(
                net.nodes() >= nodes_total,
                "the NetLab has fewer nodes than the cluster"
            );
        }
        let host = |i: usize| match &opts.netns {
            Some(net) => net.node_ip(i).to_string(),
            None => "127.0.0.1".to_string(),
        };
        for i in 0..opts.data_nodes {
            specs.push(NodeSpec {
                host: host(i),
                name: format!("pg{i}"),
                witness: false,
                raft: free_port(),
                rest: free_port(),
                pg: free_port(),
                ctl: free_port(),
            });
        }
        if opts.witness {
            specs.push(NodeSpec {
                host: host(opts.data_nodes),
                name: "witness".into(),
                witness: true,
                raft: free_port(),
                rest: free_port(),
                pg: 0,
                ctl: free_port(),
            });
        }
        for w in 1..=opts.more_witnesses {
            specs.push(NodeSpec {
                host: host(specs.len()),
                name: format!("witness{w}"),
                witness: true,
                raft: free_port(),
                rest: free_port(),
                pg: 0,
                ctl: free_port(),
            });
        }
        let mut nodes = vec![];
        for (i, spec) in specs.iter().enumerate() {
            let dir = root.path().join(&spec.name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let node = Node {
                spec: spec.clone(),
                dir,
                child: None,
            };
            let mut pg_extra = opts.pg_extra.get(i).cloned().unwrap_or_default();
            if let Some(net) = &opts.netns {
                // The built-in pg_hba admits the members' hosts only; the clients connect
                // from their own namespace's address.
                pg_extra.push_str(&format!(
                    "  pg_hba:\n    - local all all scram-sha-256\n    - host all all 127.0.0.1/32 scram-sha-256\n    \
                     - host replication replicator {net}/24 scram-sha-256\n    - host all all {net}/24 scram-sha-256\n",
                    net = net.node_ip(0)
                ));
            }
            let raft_extra = opts.raft_extra.get(i).map_or("", String::as_str);
            write_config(
                &node,
                &specs,
                &opts.dcs_extra,
                &opts.ctl_extra,
                &pg_extra,
                raft_extra,
                &opts.dcs_parameters,
                root.path(),
            );
            nodes.push(node);
        }
        // The binary must be reachable by `postgres`, wherever the build tree is: a copy in
        // the cluster's directory (world-traversable, see above).
        let unprivileged_bin = (opts.unprivileged && nix::unistd::geteuid().is_root()).then(|| {
            let bin = root.path().join("pgwarden");
            std::fs::copy(env!("CARGO_BIN_EXE_pgwarden"), &bin).expect("copy the pgwarden binary");
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            bin
        });
        Cluster {
            root_dir: root.path().to_path_buf(),
            root: Some(root),
            nodes,
            http: reqwest::Client::new(),
            net: opts.netns,
            unprivileged_bin,
            faketime: opts.faketime,
        }
    }

    /// The network namespaces the nodes run in, if the cluster was built with
    /// [`Options::netns`]. For faults beyond isolate/heal (one-way cuts, loss).
    #[allow(dead_code)] // Not every test binary that includes the harness injects those.
    pub fn net(&self) -> Option<&NetLab> {
        self.net.as_deref()
    }

    pub fn partition_file(&self) -> PathBuf {
        self.root_dir.join("partition")
    }

    /// The cluster's temporary directory (`{root}` in [`Options`]).
    pub fn root(&self) -> &Path {
        &self.root_dir
    }

    /// Cuts the Raft links of node `i` (its PostgreSQL and REST stay reachable). In network
    /// namespaces: every packet between node `i` and the other nodes is dropped (the clients
    /// still reach it).
    pub fn isolate(&self, i: usize) {
        if let Some(net) = &self.net {
            net.isolate(i).expect("cut the node off");
            return;
        }
        std::fs::write(self.partition_file(), format!("{}\n", self.nodes[i].raft_addr())).unwrap();
    }

    /// Cuts every Raft link: no member has a quorum, the REST APIs and PostgreSQL stay up.
    pub fn isolate_all(&self) {
        let all: String = self
            .nodes
            .iter()
            .map(|n| format!("{}\n", n.raft_addr()))
            .collect();
        std::fs::write(self.partition_file(), all).unwrap();
    }

    pub fn heal(&self) {
        if let Some(net) = &self.net {
            net.heal().expect("heal the network");
            return;
        }
        std::fs::write(self.partition_file(), "").unwrap();
    }

    /// Appends top-level YAML (e.g. `tags:`) to node `i`'s configuration file: read at its
    /// next start, or by POST /reload.
    pub fn append_config(&self, i: usize, yaml: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.nodes[i].config_path())
            .unwrap();
        std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
    }

    /// The first sample of `name` in node `i`'s GET /metrics.
    pub async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.rest_url(i)))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split([' ', '{']).next() == Some(name))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }

    /// Seconds left on node `i`'s leader lease, as it reports it the moment the lease changes
    /// (0 when it does not hold the key); answered while its HA loop is busy in a long action.
    pub async fn lease_remaining(&self, i: usize) -> Option<f64> {
        self.metric(i, "pgwarden_leader_lease_remaining_seconds").await
    }

    pub fn start(&mut self, i: usize) {
        let part = self.partition_file();
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log_path())
            .unwrap();
        // The argv: [setpriv ... as postgres] [env LD_PRELOAD=... (faketime)] pgwarden. Each
        // wrapper execs the next (no fork), so the child's PID stays the daemon's and a
        // SIGKILL of the child is a SIGKILL of the daemon.
        let mut argv: Vec<std::ffi::OsString> = vec![];
        if self.unprivileged_bin.is_some() {
            argv.extend(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"].map(Into::into));
        }
        if let Some(lib) = &self.faketime {
            let offset = n.dir.join("clock-offset");
            if !offset.exists() {
                std::fs::write(&offset, "+0\n").unwrap();
            }
            // Preloaded only after setpriv dropped to `postgres`: libfaketime makes a
            // semaphore in the first process it loads into, which a root setpriv would own.
            // The offset is re-read at most once a second; only CLOCK_REALTIME and its kin
            // move.
            let var = |k: &str, v: &std::ffi::OsStr| {
                let mut s = std::ffi::OsString::from(format!("{k}="));
                s.push(v);
                s
            };
            argv.push("env".into());
            argv.push(var("LD_PRELOAD", lib.as_os_str()));
            argv.push(var("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()));
            argv.push("FAKETIME_CACHE_DURATION=1".into());
            argv.push("FAKETIME_DONT_FAKE_MONOTONIC=1".into());
        }
        argv.push(match &self.unprivileged_bin {
            Some(bin) => bin.clone().into_os_string(),
            None => env!("CARGO_BIN_EXE_pgwarden").into(),
        });
        let mut cmd = match &self.net {
            Some(net) => net.command_in_node(i, &argv[0]),
            None => Command::new(&argv[0]),
        };
        cmd.args(&argv[1..]);
        // The partition file is loopback's way to cut links; namespaces cut real ones.
        if self.net.is_none() {
            cmd.env("PGWARDEN_TEST_PARTITION_FILE", &part);
        }
        let child = cmd
            .arg(n.config_path())
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pgwarden");
        n.child = Some(child);
    }

    /// Steps node `i`'s wall clock to `offset_secs` from the real time (0: back to it), as
    /// an NTP step would; it takes effect within a second. False when the cluster was not
    /// built with [`Options::faketime`].
    #[allow(dead_code)] // Only the chaos suite steps clocks.
    pub fn step_clock(&self, i: usize, offset_secs: i64) -> bool {
        if self.faketime.is_none() {
            return false;
        }
        std::fs::write(
            self.nodes[i].dir.join("clock-offset"),
            format!("{offset_secs:+}s\n"),
        )
        .is_ok()
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// SIGKILL of the daemon and of its postmaster together (a node loss).
    pub fn kill9(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = n.postmaster_pid() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// SIGKILL of the daemon only: its PostgreSQL (and the fence guard beside it) keep
    /// running, with no supervisor to stop them.
    pub fn kill9_daemon(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL of the postmaster only (a PostgreSQL crash with the daemon alive).
    pub fn kill9_postmaster(&self, i: usize) -> Option<i32> {
        let pid = self.nodes[i].postmaster_pid()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).ok()?;
        Some(pid)
    }

    /// SIGTERM and wait (at most 30 s, then SIGKILL).
    pub async fn stop(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The base URL of node `i`'s REST API.
    pub fn rest_url(&self, i: usize) -> String {
        format!("http://{}:{}", self.nodes[i].spec.host, self.nodes[i].spec.rest)
    }

    pub async fn patroni(&self, i: usize) -> Option<Value> {
        http::get_json(&self.http, &format!("{}/patroni", self.rest_url(i))).await
    }

    /// GET /cluster from node `i`: the names of the members whose role is `role`.
    pub async fn members_with_role(&self, i: usize, role: &str) -> Option<BTreeSet<String>> {
        let body = http::get_json(&self.http, &format!("{}/cluster", self.rest_url(i))).await?;
        Some(
            body.get("members")?
                .as_array()?
                .iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some(role))
                .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect(),
        )
    }

    pub async fn http_status(&self, i: usize, path: &str) -> Option<u16> {
        http::status(&self.http, &format!("{}{path}", self.rest_url(i))).await
    }

    pub async fn post(&self, i: usize, path: &str, body: Value) -> Option<(u16, String)> {
        let url = format!("{}{path}", self.rest_url(i));
        http::send_json(
            &self.http,
            reqwest::Method::POST,
            &url,
            &body,
            Duration::from_secs(40),
        )
        .await
    }

    /// PATCH /config on node `i`: its status code and body.
    pub async fn patch_config(&self, i: usize, body: Value) -> Option<(u16, String)> {
        let url = format!("{}/config", self.rest_url(i));
        http::send_json(
            &self.http,
            reqwest::Method::PATCH,
            &url,
            &body,
            Duration::from_secs(10),
        )
        .await
    }

    /// Index of the node answering /primary with 200, if exactly one does.
    pub async fn primary(&self) -> Option<usize> {
        let mut found = vec![];
        for i in 0..self.nodes.len() {
            if self.nodes[i].spec.witness || self.nodes[i].child.is_none() {
                continue;
            }
            if self.http_status(i, "/primary").await == Some(200) {
                found.push(i);
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    /// Waits for one primary and every other running data node streaming from it on its timeline.
    pub async fn wait_healthy(&self, limit: Duration) -> usize {
        wait_for(limit, "1 leader and every other data node streaming", || async {
            let p = self.primary().await?;
            let tl = self.patroni(p).await?.get("timeline")?.as_u64()?;
            for i in 0..self.nodes.len() {
                if i == p || self.nodes[i].spec.witness || self.nodes[i].child.is_none() {
                    continue;
                }
                let s = self.patroni(i).await?;
                if s.get("replication_state")?.as_str()? != "streaming" || s.get("timeline")?.as_u64()? != tl
                {
                    return None;
                }
            }
            Some(p)
        })
        .await
    }

    pub fn conn_str(&self, i: usize) -> String {
        format!(
            "host={} port={} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres connect_timeout=2",
            self.nodes[i].spec.host, self.nodes[i].spec.pg
        )
    }

    pub async fn connect(&self, i: usize) -> Option<tokio_postgres::Client> {
        let (c, conn) = tokio_postgres::connect(&self.conn_str(i), tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(c)
    }

    pub async fn query_i64(&self, i: usize, sql: &str) -> Option<i64> {
        let c = self.connect(i).await?;
        c.query_one(sql, &[]).await.ok()?.try_get::<_, i64>(0).ok()
    }

    /// The member whose Raft node is the leader, from each member's /metrics: `None` unless
    /// exactly one member claims it (a cut-off former leader may still believe it leads).
    pub async fn raft_leader(&self) -> Option<usize> {
        let mut claims = vec![];
        for i in 0..self.nodes.len() {
            let url = format!("{}/metrics", self.rest_url(i));
            let r = self.http.get(url).timeout(Duration::from_secs(2)).send().await;
            let text = r.ok()?.text().await.ok()?;
            let is_leader = text
                .lines()
                .any(|l| l.starts_with("pgwarden_raft_is_leader") && l.trim_end().ends_with(" 1"));
            if is_leader {
                claims.push(i);
            }
        }
        (claims.len() == 1).then(|| claims[0])
    }

    /// The lease's ttl the cluster runs with, as node `i` reads it: the DCS configuration's,
    /// else the shipped default (tests of the defaults must not hard-code them).
    pub async fn ttl(&self, i: usize) -> Duration {
        let url = format!("{}/config", self.rest_url(i));
        let cfg = http::get_json(&self.http, &url).await;
        let secs = cfg
            .and_then(|v| v.get("ttl").and_then(Value::as_u64))
            .unwrap_or(pgwarden::config::defaults::TTL.into());
        Duration::from_secs(secs)
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].log_path()).unwrap_or_default()
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let s = std::fs::read_to_string(n.log_path()).unwrap_or_default();
            eprintln!("==== {} daemon log (tail) ====", n.spec.name);
            for l in s.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.dump_logs();
        }
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        // Postmasters whose daemon died earlier: stop every one still running in our tree.
        for n in &self.nodes {
            if let Some(pid) = n.postmaster_pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // A failed test keeps its directory (logs, data) for a post-mortem.
        if failed {
            if let Some(root) = self.root.take() {
                eprintln!("test directory kept for inspection: {}", root.keep().display());
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    n: &Node,
    all: &[NodeSpec],
    dcs_extra: &str,
    ctl_extra: &str,
    pg_extra: &str,
    raft_extra: &str,
    dcs_parameters: &[(&str, &str)],
    root: &Path,
) {
    let root = root.display().to_string();
    // No timing: the tests run at the shipped defaults (ttl 4, loop_wait 2, retry_timeout 1), so
    // that every cluster test is also a check that they cause no false failover.
    let dcs_extra = dcs_extra.replace("{root}", &root);
    let pg_extra = pg_extra.replace("{root}", &root);
    let mut params: Vec<(&str, String)> = [
        ("wal_level", "replica"),
        ("hot_standby", "\"on\""),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_log_hints", "\"on\""),
        ("shared_buffers", "16MB"),
        ("wal_keep_size", "128MB"),
    ]
    .iter()
    .map(|(k, v)| (*k, v.to_string()))
    .collect();
    for (k, v) in dcs_parameters {
        let v = v.replace("{root}", &root);
        match params.iter_mut().find(|(name, _)| name == k) {
            Some(p) => p.1 = v,
            None => params.push((k, v)),
        }
    }
    let partners: Vec<u16> = all
        .iter()
        .filter(|s| s.name != n.spec.name)
        .map(|s| s.raft)
        .collect();
    let y = local_node_config(&LocalNode {
        scope: "e2e",
        name: &n.spec.name,
        dir: &n.dir,
        raft: n.spec.raft,
        rest: n.spec.rest,
        pg: n.spec.pg,
        ctl: n.spec.ctl,
        partners: &partners,
        witness: n.spec.witness,
        // Never the machine's watchdog: these tests SIGKILL daemons, and an armed
        // /dev/watchdog left unfed reboots the host.
        watchdog_off: true,
        superuser_password: SUPERUSER_PASSWORD,
        replication_password: "r3pl-secret",
        ctl_extra,
        raft_extra,
        dcs_extra: &dcs_extra,
        parameters: &params,
        pg_extra: &pg_extra,
    });
    // The library's writer binds everything to 127.0.0.1; ports are unique across the
    // cluster, so each `127.0.0.1:port` names one member and can take its own address. The
    // admin API stays on the loopback of the node's namespace (open to the network, it
    // would need a token).
    let mut y = y;
    for s in all.iter().filter(|s| s.host != "127.0.0.1") {
        for port in [s.raft, s.rest, s.pg].into_iter().filter(|p| *p != 0) {
            y = replace_addr(&y, &format!("127.0.0.1:{port}"), &format!("{}:{port}", s.host));
        }
    }
    std::fs::write(n.config_path(), y).unwrap();
}

/// `text` with every `from` that is not followed by another digit (port 543 is not the
/// start of port 5432) replaced by `to`.
fn replace_addr(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A client that inserts rows continuously into whichever member accepts writes, and
/// records every acknowledged id and the gaps between acknowledged writes.
pub struct Writer {
    pub acked: Arc<Mutex<BTreeSet<i64>>>,
    pub ack_times: Arc<Mutex<Vec<(Instant, usize)>>>,
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How a [`Writer`] finds the member to write to.
#[derive(Clone)]
pub enum Route {
    /// Connects to each member in turn and writes to the first not in recovery.
    Probe,
    /// As HAProxy does: writes to a member whose `GET /primary` answers 200 (one REST base
    /// URL per connection string, same order). A checker asks every member every 100 ms; a
    /// member written to that answers anything else loses its connection, as HAProxy's
    /// `on-marked-down shutdown-sessions` does. A member that does not answer at all is not
    /// marked down by that alone (HAProxy waits for several failed checks).
    RestPrimary(Vec<String>),
}

/// The last `GET /primary` answer of each member (`None`: no answer), kept by the checker of
/// [`Route::RestPrimary`].
type Health = Arc<Mutex<Vec<Option<u16>>>>;

/// Asks every member's `GET /primary` every 100 ms until `stop`.
async fn check_primaries(urls: Vec<String>, health: Health, stop: tokio_util::sync::CancellationToken) {
    let client = reqwest::Client::new();
    // Bounded by the writer's stop (and each GET by its 1 s limit).
    while !stop.is_cancelled() {
        let mut answers = Vec::with_capacity(urls.len());
        for u in &urls {
            let r = client
                .get(format!("{u}/primary"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            answers.push(r.ok().map(|r| r.status().as_u16()));
        }
        *health.lock().unwrap() = answers;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection to member `i` with the writes table in place.
async fn connect_writer(conn: &str) -> Option<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let _ = c
        .batch_execute("CREATE TABLE IF NOT EXISTS writes (id bigint primary key)")
        .await;
    Some(c)
}

impl Writer {
    pub async fn start(conns: Vec<String>) -> Writer {
        Writer::start_routed(conns, Route::Probe).await
    }

    /// A writer that finds the primary through `GET /primary` ([`Route::RestPrimary`]).
    pub async fn start_via_rest(c: &Cluster) -> Writer {
        let data: Vec<usize> = (0..c.nodes.len()).filter(|i| !c.nodes[*i].spec.witness).collect();
        let conns = data.iter().map(|i| c.conn_str(*i)).collect();
        let urls = data.iter().map(|i| c.rest_url(*i)).collect();
        Writer::start_routed(conns, Route::RestPrimary(urls)).await
    }

    pub async fn start_routed(conns: Vec<String>, route: Route) -> Writer {
        let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let ack_times: Arc<Mutex<Vec<(Instant, usize)>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let health: Health = Arc::new(Mutex::new(vec![None; conns.len()]));
        let rest = matches!(route, Route::RestPrimary(_));
        if let Route::RestPrimary(urls) = route {
            assert_eq!(urls.len(), conns.len(), "one REST URL per connection string");
            tokio::spawn(check_primaries(urls, health.clone(), stop.clone()));
        }
        let (a, t, s) = (acked.clone(), ack_times.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut id: i64 = 0;
            let mut client: Option<(tokio_postgres::Client, usize)> = None;
            // Bounded: at most 200k inserts.
            while !s.is_cancelled() && id < 200_000 {
                if rest {
                    // The member being written to was marked down: cut its session.
                    let down = client.as_ref().is_some_and(
                        |(_, i)| matches!(health.lock().unwrap()[*i], Some(code) if code != 200),
                    );
                    if down {
                        client = None;
                    }
                }
                if client.is_none() {
                    if rest {
                        let up = health.lock().unwrap().iter().position(|h| *h == Some(200));
                        if let Some(i) = up {
                            client = connect_writer(&conns[i]).await.map(|c| (c, i));
                        }
                    } else {
                        for (i, cs) in conns.iter().enumerate() {
                            let Some(c) = connect_writer(cs).await else {
                                continue;
                            };
                            if let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                                if !row.get::<_, bool>(0) {
                                    client = Some((c, i));
                                    break;
                                }
                            }
                        }
                    }
                    if client.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                id += 1;
                let Some((c, node)) = &client else { continue };
                let r = tokio::time::timeout(
                    Duration::from_secs(3),
                    c.execute("INSERT INTO writes (id) VALUES ($1)", &[&id]),
                )
                .await;
                match r {
                    Ok(Ok(_)) => {
                        a.lock().unwrap().insert(id);
                        t.lock().unwrap().push((Instant::now(), *node));
                    }
                    _ => client = None,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Writer {
            acked,
            ack_times,
            stop,
            task: Some(task),
        }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` more writes have been acknowledged.
    pub async fn wait_more(&self, n: usize, limit: Duration) {
        let target = self.count() + n;
        wait_for(limit, "writes to be acknowledged", || async {
            (self.count() >= target).then_some(())
        })
        .await;
    }

    /// Longest gap between consecutive acknowledgements after `from`.
    pub fn longest_gap_after(&self, from: Instant) -> Duration {
        let t = self.ack_times.lock().unwrap();
        let mut last: Option<Instant> = None;
        let mut gap = Duration::ZERO;
        for (at, _) in t.iter() {
            if let Some(l) = last {
                if *at >= from {
                    gap = gap.max(*at - l);
                }
            }
            last = Some(*at);
        }
        gap
    }

    /// The first acknowledgement after `from` by a node other than `not`.
    pub fn first_ack_after(&self, from: Instant, not: Option<usize>) -> Option<(Instant, usize)> {
        self.ack_times
            .lock()
            .unwrap()
            .iter()
            .find(|(at, n)| *at > from && Some(*n) != not)
            .copied()
    }

    pub async fn stop(mut self) -> BTreeSet<i64> {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.acked.lock().unwrap().clone()
    }
}

/// pgwardenctl's exit status and output.
pub struct CtlOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for CtlOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={} stdout:\n{}\nstderr:\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Runs pgwardenctl with a time limit (killed past it), ignoring any PGWARDENCTL_* settings
/// of the environment; a panic in it fails the test.
pub async fn pgwardenctl(args: &[&str], limit: Duration) -> CtlOut {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"));
    cmd.args(args);
    for var in [
        "PGWARDENCTL_CONFIG_FILE",
        "PGWARDENCTL_ENDPOINTS",
        "PGWARDENCTL_TOKEN",
        "PGWARDENCTL_CACERT",
        "PGWARDENCTL_CERTFILE",
        "PGWARDENCTL_KEYFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn pgwardenctl");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pgwardenctl {args:?} did not finish within {limit:?}"))
        .expect("pgwardenctl output");
    let o = CtlOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!o.stderr.contains("panicked"), "pgwardenctl panicked: {o:?}");
    o
}

/// Writes to node `i` only (reconnecting to it, never elsewhere) and records when each write
/// was acknowledged, until stopped. Ids start after `first_id`, so that several writers into
/// the same `writes` table do not collide.
pub fn write_to_one(
    c: &Cluster,
    i: usize,
    first_id: i64,
) -> (Arc<Mutex<Vec<Instant>>>, tokio_util::sync::CancellationToken) {
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(insert_loop(
        c.conn_str(i),
        first_id,
        Duration::from_secs(3),
        stop.clone(),
        acks.clone(),
    ));
    (acks, stop)
}

/// The loop of a one-target writer: inserts ids after `first_id` into `writes` through
/// `conn_str` (reconnecting there after any error, each insert bounded by `each`), pushing the
/// time of every acknowledgement to `acks`, until `stop` or 100,000 inserts.
pub async fn insert_loop(
    conn_str: String,
    first_id: i64,
    each: Duration,
    stop: tokio_util::sync::CancellationToken,
    acks: Arc<Mutex<Vec<Instant>>>,
) {
    let mut id: i64 = first_id;
    let mut client = None;
    while !stop.is_cancelled() && id < first_id + 100_000 {
        if client.is_none() {
            match tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await {
                Ok((cl, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client = Some(cl);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(cl) = &client else { continue };
        id += 1;
        let r = tokio::time::timeout(each, cl.execute("INSERT INTO writes (id) VALUES ($1)", &[&id])).await;
        match r {
            Ok(Ok(_)) => acks.lock().unwrap().push(Instant::now()),
            _ => client = None,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
