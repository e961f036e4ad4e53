//! `pgwarden init` and `pgwarden join` with real daemons on loopback: a three-node cluster
//! formed from one init and two joins, with Raft mutual TLS and the admin API's TLS on;
//! wrong, expired and reused tokens refused with nothing written; credentials never in the
//! commands' output or the daemons' logs, and their files 0600.
//!
//! Runs as root (the commands give the files to `postgres`, which runs the daemons as the
//! packaged unit does) with PostgreSQL 15 installed; skipped with a message otherwise.

use pgwarden_testkit::{free_port, wait_for};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

struct Host {
    name: &'static str,
    witness: bool,
    dir: PathBuf,
    raft: u16,
    rest: u16,
    ctl: u16,
    pg: u16,
    child: Option<Child>,
}

impl Host {
    fn new(root: &Path, name: &'static str) -> Host {
        Host {
            name,
            witness: false,
            dir: root.join(name),
            raft: free_port(),
            rest: free_port(),
            ctl: free_port(),
            pg: free_port(),
            child: None,
        }
    }
    fn config(&self) -> PathBuf {
        self.dir.join("etc/pgwarden.yml")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// The flags `init` and `join` share.
    fn node_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--name".into(),
            self.name.into(),
            "--address".into(),
            "127.0.0.1".into(),
            "--config".into(),
            self.config().display().to_string(),
            "--data-dir".into(),
            self.state().display().to_string(),
            "--bin-dir".into(),
            BIN_DIR.into(),
            // Never the machine's watchdog in a test.
            "--watchdog".into(),
            "off".into(),
        ];
        if self.witness {
            a.push("--witness".into());
        }
        for (flag, port) in [
            ("--raft-port", self.raft),
            ("--restapi-port", self.rest),
            ("--ctl-port", self.ctl),
            ("--pg-port", self.pg),
        ] {
            a.push(flag.into());
            a.push(port.to_string());
        }
        a
    }
}

/// Every daemon stopped (SIGTERM, then SIGKILL after 30 s), leftover postmasters
/// stopped, and the directory removed, also when the test fails.
struct Lab {
    root: Option<tempfile::TempDir>,
    bin: PathBuf,
    hosts: Vec<Host>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(c) = &h.child {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::SIGTERM,
                );
            }
        }
        for h in &mut self.hosts {
            if let Some(mut c) = h.child.take() {
                let until = std::time::Instant::now() + Duration::from_secs(30);
                while c.try_wait().ok().flatten().is_none() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            // A postmaster the daemon left behind (it was killed): its pid is in its file.
            let pidfile = h.state().join("pgdata/postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGQUIT);
            }
        }
        if std::thread::panicking() {
            for h in &self.hosts {
                eprintln!(
                    "--- {} daemon log ---\n{}",
                    h.name,
                    std::fs::read_to_string(h.log()).unwrap_or_default()
                );
            }
        }
        if let Some(r) = self.root.take() {
            let _ = r.close();
        }
    }
}

impl Lab {
    /// Hosts named `names` in a new directory; `None` (with a message) where the test
    /// cannot run.
    fn new(names: &[&'static str]) -> Option<Lab> {
        if !nix::unistd::geteuid().is_root() || !Path::new(BIN_DIR).join("postgres").exists() {
            eprintln!("skipped: needs root (files for the postgres user) and PostgreSQL 15 in {BIN_DIR}");
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("pgwarden-join-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The binary must be reachable by postgres wherever the build tree is.
        let bin = root.path().join("pgwarden");
        std::fs::copy(env!("CARGO_BIN_EXE_pgwarden"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hosts = names.iter().map(|n| Host::new(root.path(), n)).collect();
        Some(Lab {
            root: Some(root),
            bin,
            hosts,
        })
    }

    /// `pgwarden join` for host `i`, running.
    fn join_cmd(&self, i: usize, token: &str) -> Child {
        let mut args = vec!["join".to_string(), "--token".into(), token.into()];
        args.extend(self.hosts[i].node_args());
        Command::new(&self.bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn pgwarden(&self, args: &[String]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pgwarden")
    }

    fn start(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let log = std::fs::File::create(h.log()).unwrap();
        // As the packaged unit: the daemon runs as postgres.
        let child = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(&self.bin)
            .arg(h.config())
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pgwarden");
        h.child = Some(child);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The passwords in a written configuration file.
fn passwords(config: &Path) -> Vec<String> {
    let y: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let mut out = vec![y["restapi"]["authentication"]["password"]
        .as_str()
        .unwrap()
        .to_string()];
    for role in ["superuser", "replication", "rewind"] {
        out.push(
            y["postgresql"]["authentication"][role]["password"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    out
}

fn assert_private(path: &Path) {
    let m = std::fs::metadata(path).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o600,
        "{} is not 0600",
        path.display()
    );
    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    assert_eq!(
        m.uid(),
        pg.uid.as_raw(),
        "{} is not owned by postgres",
        path.display()
    );
}

/// A join that must be refused: the message names the problem and nothing is written.
fn refused(lab: &Lab, host: &Host, token: &str, expect: &str) {
    let mut args = vec!["join".to_string(), "--token".into(), token.into()];
    args.extend(host.node_args());
    let out = lab.pgwarden(&args);
    let t = text(&out);
    assert!(!out.status.success(), "join with a bad token succeeded: {t}");
    assert!(t.contains(expect), "expected {expect:?} in: {t}");
    assert!(t.contains("nothing was written"), "{t}");
    assert!(
        !host.dir.exists(),
        "a refused join left {} behind",
        host.dir.display()
    );
}

/// Init on A, start A; B and C join with tokens and start; the cluster forms (a leader, two
/// streaming replicas, three Raft voters) with mutual TLS, and `pgwardenctl list` works
/// with each written file. Wrong, wrongly pinned, expired and reused tokens are refused.
#[tokio::test(flavor = "multi_thread")]
async fn field_join_three_hosts_with_tokens() {
    let Some(mut lab) = Lab::new(&["a", "b", "c", "x"]) else {
        return;
    };
    let join_port = free_port();

    // Host A: init.
    let mut args = vec![
        "init".to_string(),
        "--scope".into(),
        "fieldjoin".into(),
        "--join-port".into(),
        join_port.to_string(),
    ];
    args.extend(lab.hosts[0].node_args());
    let out = lab.pgwarden(&args);
    let init_out = text(&out);
    assert!(out.status.success(), "init failed: {init_out}");
    let token_b = init_out
        .split_whitespace()
        .find(|w| w.starts_with("pgwj1."))
        .expect("init prints a token")
        .to_string();
    let a_cfg = lab.hosts[0].config();
    let secrets = passwords(&a_cfg);
    for s in &secrets {
        assert!(!init_out.contains(s.as_str()), "init printed a credential");
    }
    let a_tls = a_cfg.parent().unwrap().join("tls");
    for p in [a_cfg.clone(), a_tls.join("ca.key"), a_tls.join("node.key")] {
        assert_private(&p);
    }
    // A second init refuses to replace anything.
    let again = lab.pgwarden(&args);
    assert!(
        !again.status.success() && text(&again).contains("already exists"),
        "{}",
        text(&again)
    );
    let valid = lab.pgwarden(&["--validate-config".into(), a_cfg.display().to_string()]);
    assert!(
        valid.status.success(),
        "init's file does not validate: {}",
        text(&valid)
    );

    lab.start(0);
    let http = reqwest::Client::new();
    let a_rest = format!("http://127.0.0.1:{}", lab.hosts[0].rest);
    wait_for(Duration::from_secs(60), "A leads its one-node cluster", || {
        let url = format!("{a_rest}/primary");
        let http = http.clone();
        async move { (http.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;

    let token = |lab: &Lab, ttl: &str| {
        let out = lab.pgwarden(&[
            "token".into(),
            "create".into(),
            "--config".into(),
            a_cfg.display().to_string(),
            "--ttl".into(),
            ttl.into(),
        ]);
        assert!(out.status.success(), "token create: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token_c = token(&lab, "1h");
    let token_expired = token(&lab, "1s");

    // Refusals, each with nothing written (host X's directory never appears).
    let x = &lab.hosts[3];
    let parts = |t: &str| -> Vec<String> {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.trim_start_matches("pgwj1."))
            .unwrap();
        String::from_utf8(b)
            .unwrap()
            .split('|')
            .map(str::to_string)
            .collect()
    };
    let forge = |addr: &str, pin: &str, secret: &str| {
        use base64::Engine;
        format!(
            "pgwj1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{addr}|{pin}|{secret}"))
        )
    };
    let p = parts(&token_b);
    refused(
        &lab,
        x,
        &forge(&p[0], &p[1], "not-a-secret-we-issued"),
        "unknown join token",
    );
    refused(
        &lab,
        x,
        &forge(&p[0], &"0".repeat(64), &p[2]),
        "does not contain the CA the token pins",
    );
    refused(&lab, x, "pgwj1.garbage", "malformed join token");
    let issued = std::time::SystemTime::now();
    wait_for(Duration::from_secs(5), "the 1 s token expires", || async move {
        (issued.elapsed().unwrap_or_default() > Duration::from_millis(1100)).then_some(())
    })
    .await;
    refused(&lab, x, &token_expired, "expired");

    // B and C join: B waits in the exchange until C has joined (three voters).
    let b = lab.join_cmd(1, &token_b);
    let members = lab.hosts[0].state().join("join/members.json");
    wait_for(Duration::from_secs(20), "A admits B", || {
        let members = members.clone();
        async move {
            let m = std::fs::read_to_string(members).ok()?;
            m.contains("\"b\"").then_some(())
        }
    })
    .await;
    let c = lab.join_cmd(2, &token_c);
    let (b, c) =
        tokio::task::spawn_blocking(move || (b.wait_with_output().unwrap(), c.wait_with_output().unwrap()))
            .await
            .unwrap();
    for (who, out) in [("B", &b), ("C", &c)] {
        let t = text(out);
        assert!(out.status.success(), "join {who} failed: {t}");
        for s in &secrets {
            assert!(!t.contains(s.as_str()), "join {who} printed a credential");
        }
    }
    assert!(text(&b).contains("waiting for a third member"), "{}", text(&b));
    // The token of B, again: used.
    refused(&lab, x, &token_b, "already used");

    for i in [1, 2] {
        let cfg = lab.hosts[i].config();
        assert_private(&cfg);
        assert_private(&cfg.parent().unwrap().join("tls/node.key"));
        assert_eq!(
            passwords(&cfg),
            secrets,
            "the joiner got the cluster's credentials"
        );
        let valid = lab.pgwarden(&["--validate-config".into(), cfg.display().to_string()]);
        assert!(
            valid.status.success(),
            "join's file does not validate: {}",
            text(&valid)
        );
        lab.start(i);
    }

    // One leader, two streaming replicas.
    wait_for(
        Duration::from_secs(90),
        "a leader and two streaming replicas",
        || {
            let url = format!("{a_rest}/cluster");
            let http = http.clone();
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                let m = v["members"].as_array()?;
                let leaders = m.iter().filter(|m| m["role"] == "leader").count();
                let streaming = m.iter().filter(|m| m["state"] == "streaming").count();
                (leaders == 1 && streaming == 2).then_some(())
            }
        },
    )
    .await;
    // Three Raft voters, and the admin API over TLS with each host's own file.
    let ctl = |cfg: PathBuf, args: &'static [&'static str]| async move {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
                .arg("-c")
                .arg(cfg)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let a_cfg2 = a_cfg.clone();
    wait_for(Duration::from_secs(60), "three Raft voters", || {
        let cfg = a_cfg2.clone();
        async move {
            let out = ctl(cfg, &["members", "list"]).await;
            let t = text(&out);
            (out.status.success()
                && t.matches("Leader").count() == 1
                && t.matches("Voter").count() == 2
                && !t.contains("Learner"))
            .then_some(())
        }
    })
    .await;
    for i in 0..3 {
        let out = ctl(lab.hosts[i].config(), &["list"]).await;
        let t = text(&out);
        assert!(
            out.status.success(),
            "pgwardenctl list with {}'s file: {t}",
            lab.hosts[i].name
        );
        for n in ["a", "b", "c"] {
            assert!(t.contains(&format!(" {n} ")), "{n} missing from: {t}");
        }
    }
    // A says that from its next start it takes its Raft partners from its join state (its
    // file's `single_node: true` only founded the cluster); a file naming them is valid.
    let a_log = lab.hosts[0].log();
    let partners = wait_for(
        Duration::from_secs(30),
        "A's partners from the join state",
        || {
            let a_log = a_log.clone();
            async move {
                let log = std::fs::read_to_string(a_log).ok()?;
                let line = log
                    .lines()
                    .find(|l| l.contains("takes its Raft partners from the join state"))?;
                let listed = line.split_once("partners=")?.1.trim();
                Some(format!("partner_addrs: [{listed}]"))
            }
        },
    )
    .await;
    let edited = std::fs::read_to_string(&a_cfg)
        .unwrap()
        .replace("single_node: true", &partners);
    std::fs::write(&a_cfg, edited).unwrap();
    let valid = lab.pgwarden(&["--validate-config".into(), a_cfg.display().to_string()]);
    assert!(
        valid.status.success(),
        "A's file with its joined partners: {}",
        text(&valid)
    );
    for h in &lab.hosts[..3] {
        let log = std::fs::read_to_string(h.log()).unwrap();
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()),
                "{}'s daemon log holds a credential",
                h.name
            );
        }
    }
}

/// Two data nodes and a witness the same way: init on A, B joins, the witness joins with
/// `--witness` (no PostgreSQL section in its file); a leader, one streaming replica and
/// three Raft voters. `init --witness` is refused: the first host must run PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn field_join_two_data_nodes_and_a_witness() {
    let Some(mut lab) = Lab::new(&["a", "b", "w"]) else {
        return;
    };
    lab.hosts[2].witness = true;
    let join_port = free_port();
    let init = |lab: &Lab, host: usize| {
        let mut args = vec![
            "init".to_string(),
            "--scope".into(),
            "fieldwitness".into(),
            "--join-port".into(),
            join_port.to_string(),
        ];
        args.extend(lab.hosts[host].node_args());
        lab.pgwarden(&args)
    };
    let out = init(&lab, 2);
    assert!(
        !out.status.success() && text(&out).contains("witness joins"),
        "{}",
        text(&out)
    );
    assert!(!lab.hosts[2].dir.exists(), "a refused init left files");
    let out = init(&lab, 0);
    assert!(out.status.success(), "init failed: {}", text(&out));
    let token_b = text(&out)
        .split_whitespace()
        .find(|w| w.starts_with("pgwj1."))
        .unwrap()
        .to_string();
    lab.start(0);
    let a_cfg = lab.hosts[0].config();
    let token_w = {
        let out = lab.pgwarden(&[
            "token".into(),
            "create".into(),
            "-c".into(),
            a_cfg.display().to_string(),
        ]);
        assert!(out.status.success(), "token create: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // Joins are served once A's daemon runs; B waits in the exchange for the witness.
    let http = reqwest::Client::new();
    let a_rest = format!("http://127.0.0.1:{}", lab.hosts[0].rest);
    wait_for(Duration::from_secs(60), "A leads its one-node cluster", || {
        let url = format!("{a_rest}/primary");
        let http = http.clone();
        async move { (http.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let b = lab.join_cmd(1, &token_b);
    let members = lab.hosts[0].state().join("join/members.json");
    wait_for(Duration::from_secs(30), "A admits B", || {
        let members = members.clone();
        async move {
            std::fs::read_to_string(members)
                .ok()?
                .contains("\"b\"")
                .then_some(())
        }
    })
    .await;
    let w = lab.join_cmd(2, &token_w);
    let (b, w) =
        tokio::task::spawn_blocking(move || (b.wait_with_output().unwrap(), w.wait_with_output().unwrap()))
            .await
            .unwrap();
    assert!(b.status.success(), "join B: {}", text(&b));
    assert!(w.status.success(), "join W: {}", text(&w));
    let w_cfg = std::fs::read_to_string(lab.hosts[2].config()).unwrap();
    assert!(
        w_cfg.contains("witness: true") && !w_cfg.contains("postgresql:"),
        "{w_cfg}"
    );
    lab.start(1);
    lab.start(2);
    wait_for(
        Duration::from_secs(90),
        "a leader and a streaming replica",
        || {
            let url = format!("{a_rest}/cluster");
            let http = http.clone();
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                let m = v["members"].as_array()?;
                let leaders = m.iter().filter(|m| m["role"] == "leader").count();
                let streaming = m.iter().filter(|m| m["state"] == "streaming").count();
                (leaders == 1 && streaming == 1).then_some(())
            }
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "three Raft voters, the witness among them",
        || {
            let cfg = lab.hosts[2].config();
            async move {
                let out = tokio::task::spawn_blocking(move || {
                    Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
                        .arg("-c")
                        .arg(cfg)
                        .args(["members", "list"])
                        .stdin(Stdio::null())
                        .output()
                        .unwrap()
                })
                .await
                .unwrap();
                let t = text(&out);
                (out.status.success()
                    && t.matches("Leader").count() == 1
                    && t.matches("Voter").count() == 2
                    && t.contains(" w "))
                .then_some(())
            }
        },
    )
    .await;
}
