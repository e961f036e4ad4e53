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
    /// First port; each node uses three consecutive ports from here.
    pub base_port: u16,
}

struct DemoNode {
    name: String,
    witness: bool,
    dir: PathBuf,
    raft: u16,
    rest: u16,
    pg: u16,
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
        watch_until_up(&nodes).await?;
        print_info(&nodes, &exe);
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
    let partners: Vec<String> = all
        .iter()
        .filter(|o| o.name != n.name)
        .map(|o| format!("127.0.0.1:{}", o.raft))
        .collect();
    let mut y = format!(
        "scope: demo\nname: {name}\nrestapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         raft:\n  data_dir: {dir}/raft\n  self_addr: 127.0.0.1:{raft}\n  partner_addrs: [{partners}]\n",
        name = n.name,
        rest = n.rest,
        raft = n.raft,
        dir = n.dir.display(),
        partners = partners.join(", ")
    );
    if n.witness {
        y.push_str("  witness: true\n");
        return y;
    }
    y.push_str(&format!(
        "bootstrap:\n  dcs:\n    postgresql:\n      parameters:\n        wal_log_hints: \"on\"\n        shared_buffers: 32MB\n        \
         wal_keep_size: 128MB\n  initdb: [{{encoding: UTF8}}, data-checksums]\n\
         postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {dir}/pgdata\n  \
         authentication:\n    superuser: {{username: postgres, password: {PASSWORD}}}\n    \
         replication: {{username: replicator, password: {PASSWORD}}}\n",
        pg = n.pg,
        dir = n.dir.display(),
    ));
    y
}

/// Narrates start-up from the members' REST answers until one leads and the others stream.
async fn watch_until_up(nodes: &[DemoNode]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut last: Vec<String> = vec![String::new(); nodes.len()];
    loop {
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
            return Ok(());
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
