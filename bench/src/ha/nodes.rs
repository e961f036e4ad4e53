//! The clusters under test: three pgwarden daemons, or three Patroni daemons beside a
//! 3-member etcd, on loopback in the bench's temp dir; how they are started, asked about
//! their state, and killed.
//!
//! Every daemon runs as the PostgreSQL OS user, in a process group of its own, with
//! `PR_SET_PDEATHSIG(SIGKILL)`, started from the main thread (the signal follows the
//! thread that forked). PostgreSQL is started by the daemon and detaches from it, so the
//! postmaster is found through `postmaster.pid` and its backends through /proc; `Drop`
//! kills all of them by PID. If the bench itself is SIGKILLed, the daemons die with it and
//! the script's trap kills the postmasters it finds in the work dir.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The password of both the superuser and the replication user.
pub const PASSWORD: &str = "bench";
const HTTP_TIMEOUT: Duration = Duration::from_secs(1);

/// Which HA daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pgwarden,
    Patroni,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Pgwarden => "pgwarden",
            Kind::Patroni => "Patroni 4.1.5 + etcd 3.4",
        }
    }
}

/// The OS user the daemons and PostgreSQL run as.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    pub fn lookup(name: &str) -> Result<RunAs> {
        let cname = std::ffi::CString::new(name).context("user name with a NUL")?;
        // SAFETY: getpwnam returns a pointer into static storage or null; it is read at once,
        // on the main thread, before any other getpw* call.
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if pw.is_null() {
            bail!("no OS user {name:?}: install PostgreSQL (it creates the postgres user)");
        }
        // SAFETY: non-null, as checked.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(RunAs { uid, gid })
    }

    /// Creates `dir` owned by this user.
    pub fn make_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }
}

/// Starts `cmd` with its output appended to `log`, as `user`, in its own process group,
/// killed by the kernel if the bench dies.
pub fn spawn(mut cmd: Command, log: &Path, user: RunAs) -> Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let parent = std::process::id() as libc::pid_t;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .uid(user.uid)
        .gid(user.gid)
        .process_group(0);
    // SAFETY: the closure runs in the forked child after the uid change (so the death
    // signal is not reset by it) and calls only async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the bench exited during spawn"));
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn().with_context(|| format!("starting {program}"))
}

/// Sends `sig` to `pid` (a negative value: the process group `-pid`); a process that is
/// already gone is not an error. 0 and -1 (the caller's group, every process) are refused.
pub fn signal(pid: i32, sig: libc::c_int) {
    if pid != 0 && pid != -1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Whether `pid` still runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The children of `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// One member: its daemon, its directory and ports.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub rest: u16,
    pub pg: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    /// The postmaster's PID, from its pid file, if it is running.
    pub fn postmaster(&self) -> Option<i32> {
        let s = std::fs::read_to_string(self.pgdata().join("postmaster.pid")).ok()?;
        let pid = s.lines().next()?.trim().parse::<i32>().ok()?;
        // A pid file left by a killed postmaster may name a PID reused since: the
        // postmaster's working directory is its data directory.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        (alive(pid) && cwd == self.pgdata()).then_some(pid)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the postmaster (SIGKILL) and waits, bounded, until it is gone.
    pub fn kill_postmaster(&self) {
        if let Some(pm) = self.postmaster() {
            signal(pm, libc::SIGKILL);
            wait_gone(&[pm], Duration::from_secs(10));
        }
    }

    /// The PIDs a node loss kills: the daemon's process group, the postmaster and its
    /// children (backends and auxiliary processes).
    fn victims(&self) -> (Option<i32>, Vec<i32>) {
        let mut pids = Vec::new();
        if let Some(pm) = self.postmaster() {
            pids.push(pm);
            pids.extend(children(pm));
        }
        (self.daemon_pid(), pids)
    }
}

fn wait_gone(pids: &[i32], limit: Duration) {
    let until = std::time::Instant::now() + limit;
    while pids.iter().any(|p| alive(*p)) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A 3-node cluster of one kind (and etcd for Patroni).
pub struct Cluster {
    pub nodes: Vec<Node>,
    daemon: PathBuf,
    user: RunAs,
    etcd: Vec<Child>,
}

/// What the cluster needs from the machine.
pub struct Setup<'a> {
    pub root: &'a Path,
    pub user: RunAs,
    /// The pgwarden binary, or Patroni's `patroni` script.
    pub daemon: &'a Path,
    /// etcd, for Patroni.
    pub etcd: &'a Path,
    pub pg_bin: &'a Path,
}

/// Free ports on 127.0.0.1, all held until every one is chosen so none repeats.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ls = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding a free port")?;
    Ok(ls
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect())
}

impl Cluster {
    /// Writes the configuration files and starts the daemons (and etcd).
    pub fn start(kind: Kind, s: &Setup) -> Result<Cluster> {
        let mut c = Cluster {
            nodes: Vec::new(),
            daemon: s.daemon.to_path_buf(),
            user: s.user,
            etcd: Vec::new(),
        };
        let ports = free_ports(18)?;
        let raft: Vec<u16> = ports[0..3].to_vec();
        let etcd_client: Vec<u16> = ports[12..15].to_vec();
        let etcd_peer: Vec<u16> = ports[15..18].to_vec();
        if kind == Kind::Patroni {
            c.start_etcd(s, &etcd_client, &etcd_peer)?;
        }
        for i in 0..3 {
            let name = format!("{}{i}", if kind == Kind::Pgwarden { "pw" } else { "pa" });
            let dir = s.root.join(&name);
            s.user.make_dir(&dir)?;
            let (rest, pg, ctl) = (ports[3 + i], ports[6 + i], ports[9 + i]);
            let text = match kind {
                Kind::Pgwarden => pgwarden_config(&name, &dir, rest, pg, ctl, raft[i], &raft),
                Kind::Patroni => patroni_config(&name, &dir, rest, pg, &etcd_client, s.pg_bin),
            };
            let config = dir.join("node.yml");
            std::fs::write(&config, text)?;
            std::os::unix::fs::chown(&config, Some(s.user.uid), Some(s.user.gid))?;
            c.nodes.push(Node {
                log: dir.join("daemon.log"),
                name,
                dir,
                rest,
                pg,
                config,
                child: None,
            });
        }
        for i in 0..3 {
            c.start_node(i)?;
        }
        Ok(c)
    }

    fn start_etcd(&mut self, s: &Setup, client: &[u16], peer: &[u16]) -> Result<()> {
        let initial: Vec<String> = peer
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        for i in 0..3 {
            let dir = s.root.join(format!("etcd{i}"));
            s.user.make_dir(&dir)?;
            let mut cmd = Command::new(s.etcd);
            cmd.arg(format!("--name=e{i}"))
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{}", client[i]))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", client[i]))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", peer[i]))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                    peer[i]
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-token=ha-bench")
                .arg("--initial-cluster-state=new");
            // etcd reads every ETCD_* variable as a flag: keep the caller's out of the run.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(k);
                }
            }
            let child = spawn(cmd, &dir.join("etcd.log"), s.user)?;
            self.etcd.push(child);
        }
        Ok(())
    }

    /// Starts (or restarts) node `i`'s daemon.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        let mut cmd = Command::new(&self.daemon);
        cmd.arg(&n.config)
            .current_dir(&n.dir)
            .env("HOME", &n.dir)
            .env_remove("RUST_LOG")
            .env_remove("PGPASSWORD");
        n.child = Some(spawn(cmd, &n.log, self.user)?);
        Ok(())
    }

    /// Fails with the log of any daemon that exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "{} exited ({status}); its log ends with:\n{}",
                        n.name,
                        n.log_tail(30)
                    );
                }
            }
        }
        for (i, e) in self.etcd.iter_mut().enumerate() {
            if let Some(status) = e.try_wait()? {
                bail!("etcd member e{i} exited ({status})");
            }
        }
        Ok(())
    }

    /// Node loss: SIGKILL of node `i`'s daemon, its postmaster and the postmaster's
    /// children, one right after the other, all PIDs collected first. Returns once all are
    /// gone (bounded).
    pub fn kill_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let (daemon, pg) = n.victims();
        if let Some(d) = daemon {
            // The whole group: anything the daemon forked and that stayed in it.
            signal(-d, libc::SIGKILL);
        }
        for p in &pg {
            signal(*p, libc::SIGKILL);
        }
        if let Some(mut c) = n.child.take() {
            let _ = c.wait();
        }
        wait_gone(&pg, Duration::from_secs(10));
    }

    /// SIGTERM of node `i`'s daemon, as `systemctl stop` sends it; waits up to `limit` for
    /// it to exit, then kills it. Returns whether it exited on its own.
    pub fn stop_daemon(&mut self, i: usize, limit: Duration) -> bool {
        let n = &mut self.nodes[i];
        let Some(mut c) = n.child.take() else { return true };
        signal(c.id() as i32, libc::SIGTERM);
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(-(c.id() as i32), libc::SIGKILL);
        let _ = c.wait();
        false
    }

    /// Kills everything this cluster started: daemons, postmasters and their children, etcd.
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
            // A postmaster can outlive its daemon's kill if it was starting just then.
            self.nodes[i].kill_postmaster();
        }
        for mut e in self.etcd.drain(..) {
            signal(-(e.id() as i32), libc::SIGKILL);
            let _ = e.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a member says, in `GET /patroni` (pgwarden answers the same document), that it
/// streams from the primary.
pub async fn streaming(http: &reqwest::Client, n: &Node) -> bool {
    let Ok(r) = http
        .get(format!("http://127.0.0.1:{}/patroni", n.rest))
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
    else {
        return false;
    };
    r.json::<Value>()
        .await
        .is_ok_and(|v| v["replication_state"] == "streaming")
}

/// Whether `GET /primary` answers 200.
pub async fn is_primary(http: &reqwest::Client, n: &Node) -> bool {
    matches!(
        http.get(format!("http://127.0.0.1:{}/primary", n.rest)).timeout(HTTP_TIMEOUT).send().await,
        Ok(r) if r.status().as_u16() == 200
    )
}

/// The cluster is healthy: exactly one member answers `GET /primary` with 200 and the
/// two others stream from it. Returns the primary's index.
pub async fn healthy(http: &reqwest::Client, c: &Cluster) -> Option<usize> {
    let mut primary = None;
    let mut replicas = 0;
    for (i, n) in c.nodes.iter().enumerate() {
        if is_primary(http, n).await {
            if primary.is_some() {
                return None;
            }
            primary = Some(i);
        } else if streaming(http, n).await {
            replicas += 1;
        }
    }
    primary.filter(|_| replicas == c.nodes.len() - 1)
}

/// The dynamic configuration of the running cluster, from `GET /config` (timing included).
pub async fn dynamic_config(http: &reqwest::Client, c: &Cluster) -> Option<Value> {
    for n in &c.nodes {
        let r = http
            .get(format!("http://127.0.0.1:{}/config", n.rest))
            .timeout(HTTP_TIMEOUT)
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(v) = r.json::<Value>().await {
                return Some(v);
            }
        }
    }
    None
}

/// PostgreSQL parameters both systems get: the same small instance.
const PARAMETERS: &str =
    "        wal_log_hints: \"on\"\n        shared_buffers: 32MB\n        wal_keep_size: 128MB\n";

/// A pgwarden node with the shipped defaults: only addresses, directories and passwords;
/// no timing (`ttl`, `loop_wait`, `retry_timeout` come from the binary). The watchdog is
/// off because the bench kills daemons (an armed, unfed /dev/watchdog reboots the host).
fn pgwarden_config(name: &str, dir: &Path, rest: u16, pg: u16, ctl: u16, raft: u16, all: &[u16]) -> String {
    let partners: Vec<String> = all
        .iter()
        .filter(|p| **p != raft)
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let d = dir.display();
    format!(
        "scope: ha-bench\nname: {name}\n\
         restapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         ctl:\n  listen: 127.0.0.1:{ctl}\n\
         raft:\n  data_dir: {d}/raft\n  self_addr: 127.0.0.1:{raft}\n  partner_addrs: [{partners}]\n\
         watchdog:\n  mode: off\n\
         bootstrap:\n  dcs:\n    postgresql:\n      parameters:\n{PARAMETERS}  initdb: [{{encoding: UTF8}}, data-checksums]\n\
         postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {d}/pgdata\n  \
         authentication:\n    superuser: {{username: postgres, password: {PASSWORD}}}\n    \
         replication: {{username: replicator, password: {PASSWORD}}}\n",
        partners = partners.join(", ")
    )
}

/// A Patroni node with Patroni's default timing (ttl 30, loop_wait 10, retry_timeout 10:
/// none is set). `use_pg_rewind` is on so that a killed primary can rejoin, as pgwarden's
/// does by default; pg_hba lets the bench's clients and the replicas in with a password.
fn patroni_config(name: &str, dir: &Path, rest: u16, pg: u16, etcd: &[u16], pg_bin: &Path) -> String {
    let hosts: Vec<String> = etcd.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let d = dir.display();
    format!(
        "scope: ha-bench\nname: {name}\n\
         restapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         etcd3:\n  hosts: [{hosts}]\n\
         watchdog:\n  mode: off\n\
         bootstrap:\n  dcs:\n    postgresql:\n      use_pg_rewind: true\n      parameters:\n{PARAMETERS}  initdb: [{{encoding: UTF8}}, data-checksums]\n\
         postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {d}/pgdata\n  \
         bin_dir: {bin}\n  pgpass: {d}/pgpass\n  \
         parameters:\n    unix_socket_directories: {d}\n  \
         pg_hba:\n    - local all all trust\n    - host all all 127.0.0.1/32 scram-sha-256\n    \
         - host replication replicator 127.0.0.1/32 scram-sha-256\n  \
         authentication:\n    superuser: {{username: postgres, password: {PASSWORD}}}\n    \
         replication: {{username: replicator, password: {PASSWORD}}}\n    \
         rewind: {{username: postgres, password: {PASSWORD}}}\n",
        hosts = hosts.join(", "),
        bin = pg_bin.display()
    )
}
