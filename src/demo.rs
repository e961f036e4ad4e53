//! `pgwarden demo`: a local cluster on loopback in a temporary directory, from this same
//! binary, with real PostgreSQL. It prints the members and how to connect, runs until
//! Ctrl-C (or `--duration`), then stops every process it started and removes its directory
//! (unless `--keep`).

use anyhow::{bail, Context};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Demo options.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Two data nodes and a witness instead of three data nodes.
    pub witness: bool,
    /// Stop after this long instead of waiting for Ctrl-C.
    pub duration: Option<Duration>,
    /// Keep the directory afterwards.
    pub keep: bool,
    /// First port; each node uses three consecutive ports from here, and the nodes' admin
    /// APIs the three after those.
    pub base_port: u16,
    /// Once the cluster is up: kill the primary, narrate the failover with timings, bring
    /// the old primary back, then switch over to it and time the write gap.
    pub failover_drill: bool,
}

struct DemoNode {
    name: String,
    witness: bool,
    dir: PathBuf,
    raft: u16,
    rest: u16,
    pg: u16,
    ctl: u16,
    child: Option<Child>,
}

const PASSWORD: &str = "demo";

fn pg_installed() -> bool {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.count() > 0)
        .unwrap_or(false)
        || std::fs::read_dir("/usr/pgsql-15").is_ok();
    found || which("pg_ctl")
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    if !pg_installed() {
        bail!("PostgreSQL is not installed: on Debian/Ubuntu run `apt-get install postgresql-15` (or any postgresql-NN), on RHEL `dnf install postgresql-server`");
    }
    let exe = std::env::current_exe().context("finding the pgwarden binary")?;
    let root = tempfile::Builder::new()
        .prefix("pgwarden-demo-")
        .tempdir_in("/tmp")
        .context("creating the demo directory")?;
    // PostgreSQL runs as `postgres` when the demo runs as root: it must reach its directory.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let names: Vec<(String, bool)> = if opts.witness {
        vec![
            ("pg0".into(), false),
            ("pg1".into(), false),
            ("witness".into(), true),
        ]
    } else {
        (0..3).map(|i| (format!("pg{i}"), false)).collect()
    };
    let mut nodes: Vec<DemoNode> = names
        .into_iter()
        .enumerate()
        .map(|(i, (name, witness))| {
            let base = opts.base_port + (i as u16) * 3;
            DemoNode {
                dir: root.path().join(&name),
                name,
                witness,
                raft: base,
                rest: base + 1,
                pg: base + 2,
                ctl: opts.base_port + 9 + i as u16,
                child: None,
            }
        })
        .collect();
    for n in &nodes {
        std::fs::create_dir_all(&n.dir)?;
        std::fs::set_permissions(&n.dir, std::fs::Permissions::from_mode(0o777))?;
        std::fs::write(n.dir.join("pgwarden.yml"), config(n, &nodes))?;
    }
    println!(
        "pgwarden demo: {} in {}",
        if opts.witness {
            "2 data nodes + a witness"
        } else {
            "3 nodes"
        },
        root.path().display()
    );
    let result = async {
        for n in nodes.iter_mut() {
            let log = std::fs::File::create(n.dir.join("pgwarden.log"))?;
            let child = Command::new(&exe)
                .arg(n.dir.join("pgwarden.yml"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("starting a pgwarden node")?;
            println!(
                "  started {} (pid {}), log {}",
                n.name,
                child.id().unwrap_or(0),
                n.dir.join("pgwarden.log").display()
            );
            n.child = Some(child);
        }
        let up = watch_until_up(&mut nodes).await?;
        println!("timing: bootstrap {:.2} s", up.as_secs_f64());
        print_info(&nodes, &exe);
        if opts.failover_drill {
            failover_drill(&mut nodes, &exe).await?;
        }
        match opts.duration {
            Some(d) => {
                println!("running for {d:?} (--duration)");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                println!("press Ctrl-C to stop the cluster");
                tokio::signal::ctrl_c().await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    println!("stopping the cluster");
    stop_all(&mut nodes).await;
    if opts.keep {
        println!("kept {}", root.keep().display());
    } else {
        let path = root.path().to_path_buf();
        root.close()
            .with_context(|| format!("removing {}", path.display()))?;
        println!("removed the demo directory");
    }
    result
}

fn config(n: &DemoNode, all: &[DemoNode]) -> String {
    let partners: Vec<u16> = all.iter().filter(|o| o.name != n.name).map(|o| o.raft).collect();
    let parameters = [
        ("wal_log_hints", "\"on\"".to_string()),
        ("shared_buffers", "32MB".to_string()),
        ("wal_keep_size", "128MB".to_string()),
    ];
    local_node_config(&LocalNode {
        scope: "demo",
        name: &n.name,
        dir: &n.dir,
        raft: n.raft,
        rest: n.rest,
        pg: n.pg,
        ctl: n.ctl,
        partners: &partners,
        witness: n.witness,
        watchdog_off: false,
        superuser_password: PASSWORD,
        replication_password: PASSWORD,
        ctl_extra: "",
        raft_extra: "",
        dcs_extra: "",
        parameters: &parameters,
        pg_extra: "",
    })
}

/// One member of a cluster on loopback, as [`local_node_config`] writes it: the demo's
/// nodes and the end-to-end tests' nodes (which add their own settings through the
/// `*_extra` fields) share this writer, so a configuration change is made once.
pub struct LocalNode<'a> {
    pub scope: &'a str,
    pub name: &'a str,
    /// The node's directory: Raft data in `raft/`, PostgreSQL's in `pgdata/`.
    pub dir: &'a Path,
    pub raft: u16,
    pub rest: u16,
    /// Unused for a witness.
    pub pg: u16,
    /// The gRPC admin API (`ctl.listen`).
    pub ctl: u16,
    /// The other members' Raft ports.
    pub partners: &'a [u16],
    pub witness: bool,
    /// Writes `watchdog: {mode: off}` for a data node, for callers that kill daemons: an
    /// armed /dev/watchdog left unfed reboots the host.
    pub watchdog_off: bool,
    pub superuser_password: &'a str,
    pub replication_password: &'a str,
    /// Extra YAML lines under `ctl:` (indented by 2).
    pub ctl_extra: &'a str,
    /// Extra YAML lines under `raft:` (indented by 2).
    pub raft_extra: &'a str,
    /// Extra YAML lines under `bootstrap.dcs` (indented by 4), before its `postgresql:`.
    pub dcs_extra: &'a str,
    /// PostgreSQL parameters of `bootstrap.dcs`, in order.
    pub parameters: &'a [(&'a str, String)],
    /// Extra YAML lines under `postgresql:` (indented by 2).
    pub pg_extra: &'a str,
}

/// The YAML configuration file of one node of a cluster on loopback.
pub fn local_node_config(n: &LocalNode) -> String {
    let partners: Vec<String> = n.partners.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut y = format!(
        "scope: {scope}\nname: {name}\nrestapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         ctl:\n  listen: 127.0.0.1:{ctl}\n{ctl_extra}\
         raft:\n  data_dir: {dir}/raft\n  self_addr: 127.0.0.1:{raft}\n  partner_addrs: [{partners}]\n{raft_extra}",
        scope = n.scope,
        name = n.name,
        rest = n.rest,
        raft = n.raft,
        ctl = n.ctl,
        ctl_extra = n.ctl_extra,
        raft_extra = n.raft_extra,
        dir = n.dir.display(),
        partners = partners.join(", ")
    );
    if n.witness {
        y.push_str("  witness: true\n");
        return y;
    }
    if n.watchdog_off {
        y.push_str("watchdog:\n  mode: off\n");
    }
    let params: String = n
        .parameters
        .iter()
        .map(|(k, v)| format!("        {k}: {v}\n"))
        .collect();
    y.push_str(&format!(
        "bootstrap:\n  dcs:\n{dcs_extra}    postgresql:\n      parameters:\n{params}  initdb: [{{encoding: UTF8}}, data-checksums]\n\
         postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {dir}/pgdata\n  \
         authentication:\n    superuser: {{username: postgres, password: {su}}}\n    \
         replication: {{username: replicator, password: {repl}}}\n{pg_extra}",
        dcs_extra = n.dcs_extra,
        pg = n.pg,
        dir = n.dir.display(),
        su = n.superuser_password,
        repl = n.replication_password,
        pg_extra = n.pg_extra,
    ));
    y
}

/// Narrates start-up from the members' REST answers until one leads and the others stream;
/// returns how long that took.
async fn watch_until_up(nodes: &mut [DemoNode]) -> anyhow::Result<Duration> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut last: Vec<String> = vec![String::new(); nodes.len()];
    loop {
        // A member that exited (a port taken since it was probed, a bad setting) will not
        // come up: say so now, with its log, since the demo directory goes away on exit.
        for n in nodes.iter_mut() {
            if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(n.dir.join("pgwarden.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "{} exited ({status}) before the cluster came up; the end of its log:\n{}",
                    n.name,
                    tail.join("\n")
                );
            }
        }
        let mut leaders = 0;
        let mut streaming = 0;
        for (i, n) in nodes.iter().enumerate() {
            let url = format!("http://127.0.0.1:{}/patroni", n.rest);
            let s: Option<Value> = match http.get(&url).timeout(Duration::from_secs(1)).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let line = match &s {
                None => "starting".to_string(),
                Some(s) => {
                    let role = s["role"].as_str().unwrap_or("?");
                    let state = s["state"].as_str().unwrap_or("?");
                    let rep = s["replication_state"].as_str().unwrap_or("");
                    if role == "primary" && state == "running" {
                        leaders += 1;
                    }
                    if rep == "streaming" {
                        streaming += 1;
                    }
                    format!(
                        "{role}, {state}{}",
                        if rep.is_empty() {
                            String::new()
                        } else {
                            format!(", {rep}")
                        }
                    )
                }
            };
            if line != last[i] {
                println!("  [{:>5.1}s] {}: {line}", started.elapsed().as_secs_f64(), n.name);
                last[i] = line;
            }
        }
        let data = nodes.iter().filter(|n| !n.witness).count();
        if leaders == 1 && streaming == data - 1 {
            println!(
                "  [{:>5.1}s] cluster is up: 1 leader + {} streaming",
                started.elapsed().as_secs_f64(),
                data - 1
            );
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the cluster did not come up within 180 s; see the logs above");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_info(nodes: &[DemoNode], exe: &Path) {
    let data: Vec<&DemoNode> = nodes.iter().filter(|n| !n.witness).collect();
    println!();
    println!("Members:");
    for n in nodes {
        if n.witness {
            println!(
                "  {:<8} witness   REST http://127.0.0.1:{}/patroni",
                n.name, n.rest
            );
        } else {
            println!(
                "  {:<8} postgres  127.0.0.1:{}   REST http://127.0.0.1:{}/patroni",
                n.name, n.pg, n.rest
            );
        }
    }
    let hosts: Vec<String> = data.iter().map(|n| format!("127.0.0.1:{}", n.pg)).collect();
    println!();
    println!("Connect (password {PASSWORD:?}):");
    println!(
        "  psql 'postgresql://postgres@{}/postgres?target_session_attrs=read-write'",
        hosts.join(",")
    );
    for n in &data {
        println!("  psql -h 127.0.0.1 -p {} -U postgres postgres", n.pg);
    }
    println!();
    println!("Health checks as HAProxy uses them:");
    for n in &data {
        println!(
            "  curl -s -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.1:{}/primary",
            n.rest
        );
    }
    println!("Switchover (leader -> another member):");
    println!("  curl -s -XPOST http://127.0.0.1:{}/switchover -d '{{\"leader\":\"<leader>\",\"candidate\":\"<member>\"}}'", data[0].rest);
    println!("The daemon: {}", exe.display());
}

async fn stop_all(nodes: &mut [DemoNode]) {
    for n in nodes.iter_mut() {
        if let Some(c) = &n.child {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
    for n in nodes.iter_mut() {
        if let Some(mut c) = n.child.take() {
            // A node stops PostgreSQL before it exits; give it time, then make sure.
            if tokio::time::timeout(Duration::from_secs(30), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
        // A postmaster left behind by a node that did not shut down cleanly.
        if let Ok(pidfile) = std::fs::read_to_string(n.dir.join("pgdata/postmaster.pid")) {
            if let Some(pid) = pidfile.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                for _ in 0..100 {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn status(http: &reqwest::Client, n: &DemoNode) -> Option<Value> {
    let url = format!("http://127.0.0.1:{}/patroni", n.rest);
    http.get(url)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn primary(http: &reqwest::Client, nodes: &[DemoNode]) -> Option<usize> {
    for (i, n) in nodes.iter().enumerate() {
        if n.witness || n.child.is_none() {
            continue;
        }
        let url = format!("http://127.0.0.1:{}/primary", n.rest);
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await {
            if r.status().as_u16() == 200 {
                return Some(i);
            }
        }
    }
    None
}

/// Inserts a row every 10 ms through the multi-host connection string and records when
/// each insert was acknowledged and by which port.
fn start_writer(
    nodes: &[DemoNode],
) -> (
    tokio::sync::watch::Receiver<Vec<(Instant, u16)>>,
    tokio_util::sync::CancellationToken,
) {
    let hosts: Vec<String> = nodes
        .iter()
        .filter(|n| !n.witness)
        .map(|n| format!("127.0.0.1:{}", n.pg))
        .collect();
    let conn = format!(
        "postgresql://postgres:{PASSWORD}@{}/postgres?target_session_attrs=read-write&connect_timeout=1",
        hosts.join(",")
    );
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut client: Option<tokio_postgres::Client> = None;
        // Bounded by the drill: it cancels the token when done.
        while !token.is_cancelled() {
            if client.is_none() {
                if let Ok((c, conn)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = c
                        .batch_execute("CREATE TABLE IF NOT EXISTS drill (at timestamptz DEFAULT now())")
                        .await;
                    client = Some(c);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            let Some(c) = &client else { continue };
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                c.query_one(
                    "INSERT INTO drill DEFAULT VALUES RETURNING inet_server_port()",
                    &[],
                ),
            )
            .await;
            match r {
                Ok(Ok(row)) => {
                    let port: i32 = row.try_get(0).unwrap_or(0);
                    tx.send_modify(|v| v.push((Instant::now(), port as u16)));
                }
                _ => client = None,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (rx, stop)
}

/// The failover drill: SIGKILL of the primary's daemon and postmaster, narrated, timed.
async fn failover_drill(nodes: &mut [DemoNode], exe: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    println!();
    println!("failover drill: writing through the multi-host connection string, then killing the primary");
    let (acks, stop) = start_writer(nodes);
    let wait_acks = |n: usize| {
        let mut acks = acks.clone();
        async move {
            let target = acks.borrow().len() + n;
            let _ = tokio::time::timeout(Duration::from_secs(60), acks.wait_for(|v| v.len() >= target)).await;
        }
    };
    wait_acks(50).await;
    let Some(old) = primary(&http, nodes).await else {
        bail!("no primary to kill")
    };
    let old_port = nodes[old].pg;
    let killed = Instant::now();
    if let Some(c) = nodes[old].child.as_mut() {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    nodes[old].child = None;
    if let Ok(pidfile) = std::fs::read_to_string(nodes[old].dir.join("pgdata/postmaster.pid")) {
        if let Some(pid) = pidfile.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    println!(
        "  [{:>5.1}s] killed {} (daemon and postmaster, SIGKILL)",
        0.0, nodes[old].name
    );
    let deadline = killed + Duration::from_secs(90);
    let mut promoted: Option<(usize, Duration)> = None;
    let mut first_write: Option<Duration> = None;
    while Instant::now() < deadline && (promoted.is_none() || first_write.is_none()) {
        if promoted.is_none() {
            if let Some(p) = primary(&http, nodes).await.filter(|p| *p != old) {
                promoted = Some((p, killed.elapsed()));
                println!(
                    "  [{:>5.1}s] {} is the new primary",
                    killed.elapsed().as_secs_f64(),
                    nodes[p].name
                );
            }
        }
        if first_write.is_none() {
            let w = acks
                .borrow()
                .iter()
                .find(|(at, port)| *at > killed && *port != old_port)
                .map(|(at, _)| *at - killed);
            if let Some(w) = w {
                first_write = Some(w);
                println!(
                    "  [{:>5.1}s] first write acknowledged by the new primary",
                    w.as_secs_f64()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (Some((new, _)), Some(rto)) = (promoted, first_write) else {
        stop.cancel();
        bail!("no failover within 90 s; see the node logs");
    };
    println!(
        "timing: failover {:.2} s (SIGKILL of the primary to the first acknowledged write)",
        rto.as_secs_f64()
    );

    // Bring the old primary back: it rejoins as a replica (pg_rewind if it diverged).
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(nodes[old].dir.join("pgwarden.log"))?;
    nodes[old].child = Some(
        Command::new(exe)
            .arg(nodes[old].dir.join("pgwarden.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?,
    );
    let back = Instant::now();
    loop {
        if let Some(s) = status(&http, &nodes[old]).await {
            if s["role"] == "replica" && s["replication_state"] == "streaming" {
                break;
            }
        }
        if back.elapsed() > Duration::from_secs(120) {
            stop.cancel();
            bail!("{} did not rejoin within 120 s", nodes[old].name);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  {} rejoined as a streaming replica {:.1} s after its restart",
        nodes[old].name,
        back.elapsed().as_secs_f64()
    );

    // Switch back, timing the longest write gap.
    wait_acks(50).await;
    let before = Instant::now();
    let url = format!("http://127.0.0.1:{}/switchover", nodes[new].rest);
    let body = serde_json::json!({"leader": nodes[new].name, "candidate": nodes[old].name});
    let reply = http
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let code = reply.status();
    let text = reply.text().await.unwrap_or_default();
    println!(
        "  switchover {} -> {}: {} {}",
        nodes[new].name,
        nodes[old].name,
        code.as_u16(),
        text
    );
    wait_acks(50).await;
    let gap = {
        let v = acks.borrow();
        let mut last: Option<Instant> = None;
        let mut gap = Duration::ZERO;
        for (at, _) in v.iter() {
            if let Some(l) = last {
                if *at > before {
                    gap = gap.max(*at - l);
                }
            }
            last = Some(*at);
        }
        gap
    };
    stop.cancel();
    if !code.is_success() {
        bail!("switchover failed: {text}");
    }
    println!("timing: switchover write gap {:.2} s", gap.as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, witness: bool, base: u16) -> DemoNode {
        DemoNode {
            name: name.into(),
            witness,
            dir: PathBuf::from(format!("demo-dir/{name}")),
            raft: base,
            rest: base + 1,
            pg: base + 2,
            ctl: base + 100,
            child: None,
        }
    }

    /// The demo's files, as they were before the writer was shared with the end-to-end tests.
    #[test]
    fn demo_configs_are_unchanged() {
        let nodes = [node("pg0", false, 15400), node("witness", true, 15403)];
        assert_eq!(
            config(&nodes[0], &nodes),
            "scope: demo\nname: pg0\nrestapi:\n  listen: 127.0.0.1:15401\n  connect_address: 127.0.0.1:15401\n\
             ctl:\n  listen: 127.0.0.1:15500\nraft:\n  data_dir: demo-dir/pg0/raft\n  self_addr: 127.0.0.1:15400\n  \
             partner_addrs: [127.0.0.1:15403]\nbootstrap:\n  dcs:\n    postgresql:\n      parameters:\n        \
             wal_log_hints: \"on\"\n        shared_buffers: 32MB\n        wal_keep_size: 128MB\n  \
             initdb: [{encoding: UTF8}, data-checksums]\npostgresql:\n  listen: 127.0.0.1:15402\n  \
             connect_address: 127.0.0.1:15402\n  data_dir: demo-dir/pg0/pgdata\n  authentication:\n    \
             superuser: {username: postgres, password: demo}\n    replication: {username: replicator, password: demo}\n"
        );
        assert_eq!(
            config(&nodes[1], &nodes),
            "scope: demo\nname: witness\nrestapi:\n  listen: 127.0.0.1:15404\n  connect_address: 127.0.0.1:15404\n\
             ctl:\n  listen: 127.0.0.1:15503\nraft:\n  data_dir: demo-dir/witness/raft\n  self_addr: 127.0.0.1:15403\n  \
             partner_addrs: [127.0.0.1:15400]\n  witness: true\n"
        );
    }
}
