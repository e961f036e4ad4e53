//! pgwardenctl against real clusters: three pgwarden daemons managing PostgreSQL 15 on
//! loopback, driven only through pgwardenctl (its exit status and output), including an
//! interactive switchover answered through a pseudo-terminal.

use crate::harness::{Cluster, CtlOut, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const TOKEN: &str = "e2e-admin-token";

/// Runs pgwardenctl with a time limit (killed past it) and returns its status and output.
async fn run(args: &[&str]) -> CtlOut {
    crate::harness::pgwardenctl(args, Duration::from_secs(180)).await
}

/// pgwardenctl -c <node i's config> args...
async fn ctl(c: &Cluster, i: usize, args: &[&str]) -> CtlOut {
    let cfg = c.nodes[i].config_path();
    let mut all = vec!["-c", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all).await
}

async fn ctl_ok(c: &Cluster, i: usize, args: &[&str]) -> String {
    let o = ctl(c, i, args).await;
    assert!(o.ok, "pgwardenctl {args:?} failed: {o:?}");
    o.stdout
}

/// `list -f json`, parsed.
async fn members(c: &Cluster, i: usize) -> Option<Vec<Value>> {
    let o = ctl(c, i, &["list", "-f", "json"]).await;
    if !o.ok {
        return None;
    }
    serde_json::from_str::<Value>(&o.stdout).ok()?.as_array().cloned()
}

/// The leader's name once one member leads and the others stream on its timeline.
async fn healthy(c: &Cluster, i: usize, limit: Duration) -> String {
    wait_for(
        limit,
        "1 leader and 2 streaming replicas (pgwardenctl list)",
        || async {
            let ms = members(c, i).await?;
            let leader = ms.iter().find(|m| m["Role"] == "Leader")?;
            let tl = leader["TL"].as_u64()?;
            let streaming = ms
                .iter()
                .filter(|m| m["State"] == "streaming" && m["TL"].as_u64() == Some(tl))
                .count();
            (ms.len() == 3 && streaming == 2).then(|| leader["Member"].as_str().unwrap().to_string())
        },
    )
    .await
}

fn index(name: &str) -> usize {
    name.trim_start_matches("pg").parse().unwrap()
}

/// A child on a pseudo-terminal, for the interactive questions.
struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    seen: Arc<Mutex<String>>,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
            .args(args)
            .env_remove("PGWARDENCTL_CONFIG_FILE")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn pgwardenctl on a pty");
        let master = std::fs::File::from(pty.master);
        let seen: Arc<Mutex<String>> = Arc::default();
        let mut reader = master.try_clone().unwrap();
        let s = seen.clone();
        // Reading ends with EIO once the child has exited and the slave side is closed.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty { child, master, seen }
    }

    /// Waits until `text` has been printed after position `from`; returns the new position.
    async fn expect(&self, text: &str, from: usize) -> usize {
        wait_for(
            Duration::from_secs(60),
            &format!("the prompt {text:?}"),
            || async {
                let s = self.seen.lock().unwrap();
                s[from.min(s.len())..].find(text).map(|p| from + p + text.len())
            },
        )
        .await
    }

    fn answer(&mut self, line: &str) {
        self.master.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    async fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "interactive pgwardenctl did not finish: {}",
                    self.seen.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Let the reader drain what the child printed last.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status.success(), self.seen.lock().unwrap().clone())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An interactive switchover: the questions patronictl asks are shown, the answers typed
/// on the terminal are taken, and 'n' at the confirmation aborts with a non-zero exit;
/// the same dialogue answered 'y' switches over.
async fn interactive_switchover(c: &Cluster, leader: &str, candidate: &str) {
    let cfg = c.nodes[0].config_path();
    let cfg = cfg.to_str().unwrap();
    for (answer, succeeds) in [("n", false), ("y", true)] {
        let mut p = Pty::spawn(&["-c", cfg, "switchover", "e2e"]);
        let at = p.expect(&format!("Primary [{leader}]: "), 0).await;
        p.answer("");
        let at = p.expect("Candidate ['", at).await;
        let at = p.expect("] []: ", at).await;
        p.answer(candidate);
        let at = p.expect("When should the switchover take place (e.g. ", at).await;
        let at = p.expect("[now]: ", at).await;
        p.answer("now");
        p.expect(
            &format!(
                "Are you sure you want to switchover cluster e2e, demoting current leader {leader}? [y/N]: "
            ),
            at,
        )
        .await;
        p.answer(answer);
        let (ok, text) = p.finish().await;
        assert_eq!(ok, succeeds, "answer {answer}: {text}");
        if succeeds {
            assert!(
                text.contains(&format!("Successfully switched over to \"{candidate}\"")),
                "{text}"
            );
        } else {
            assert!(text.contains("Aborting switchover"), "{text}");
        }
    }
}

/// A three-node cluster managed only through pgwardenctl: list; switchover --force; an
/// interactive switchover (aborted, then confirmed); a scheduled switchover and its
/// cancellation; pause and resume; edit-config of a PostgreSQL parameter; restarts (one
/// forwarded to another member, one refused by its conditions); reinit of a replica;
/// removing and re-adding a Raft member. Also the refusals: unknown member, invalid YAML, wrong or
/// missing token; each is a clear message and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_is_managed_through_pgwardenctl() {
    require_pg!();
    let mut c = Cluster::new(Options {
        ctl_extra: format!("  auth_token: {TOKEN}\n"),
        ..Default::default()
    });
    c.start_all();
    let leader = healthy(&c, 0, Duration::from_secs(120)).await;

    // list: patronictl's table with the system identifier in the title.
    let table = ctl_ok(&c, 1, &["list", "e2e"]).await;
    let first = table.lines().next().unwrap();
    assert!(first.starts_with("+ Cluster: e2e ("), "{table}");
    assert!(first[16..].starts_with(|ch: char| ch.is_ascii_digit()), "{table}");
    for col in [
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Lag",
        "Replay LSN",
    ] {
        assert!(table.contains(col), "{col}: {table}");
    }
    assert!(table.contains("| Leader "), "{table}");
    assert!(table.contains("streaming"), "{table}");

    // switchover --force, through a member that is not the leader.
    let cand = format!("pg{}", (index(&leader) + 1) % 3);
    let via = (index(&leader) + 2) % 3;
    let out = ctl_ok(&c, via, &["switchover", "--candidate", &cand, "--force"]).await;
    assert!(
        out.contains(&format!("Successfully switched over to \"{cand}\"")),
        "{out}"
    );
    let leader = healthy(&c, via, Duration::from_secs(90)).await;
    assert_eq!(leader, cand);

    // Interactive, through a pseudo-terminal.
    let cand = format!("pg{}", (index(&leader) + 1) % 3);
    interactive_switchover(&c, &leader, &cand).await;
    let leader = healthy(&c, 0, Duration::from_secs(90)).await;
    assert_eq!(leader, cand);

    // A scheduled switchover shows in the footer until flushed.
    let at = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let other = format!("pg{}", (index(&leader) + 1) % 3);
    let out = ctl_ok(
        &c,
        0,
        &[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            &other,
            "--scheduled",
            &at,
            "--force",
        ],
    )
    .await;
    assert!(out.contains("Switchover scheduled"), "{out}");
    let table = ctl_ok(&c, 1, &["list"]).await;
    assert!(table.contains(" Switchover scheduled at: "), "{table}");
    assert!(table.contains(&format!("to: {other}")), "{table}");
    let out = ctl_ok(&c, 2, &["flush", "e2e", "switchover"]).await;
    assert!(out.contains("scheduled switchover deleted"), "{out}");
    assert!(!ctl_ok(&c, 1, &["list"]).await.contains("Switchover scheduled"));

    // pause / resume --wait.
    let out = ctl_ok(&c, 0, &["pause", "--wait"]).await;
    assert!(out.contains("Success: cluster management is paused"), "{out}");
    assert!(ctl_ok(&c, 1, &["list"]).await.contains(" Maintenance mode: on"));
    let again = ctl(&c, 0, &["pause"]).await;
    assert!(
        !again.ok && again.stderr.contains("Cluster is already paused"),
        "{again:?}"
    );
    let out = ctl_ok(&c, 0, &["resume", "--wait"]).await;
    assert!(out.contains("Success: cluster management is resumed"), "{out}");
    assert!(!ctl_ok(&c, 1, &["list"]).await.contains("Maintenance mode"));

    // edit-config of a PostgreSQL parameter: diff, compare-and-swap write, show-config.
    let out = ctl_ok(&c, 1, &["edit-config", "-p", "shared_buffers=24MB", "--force"]).await;
    assert!(out.contains("-    shared_buffers: 16MB"), "{out}");
    assert!(out.contains("+    shared_buffers: 24MB"), "{out}");
    assert!(out.contains("Configuration changed"), "{out}");
    let show = ctl_ok(&c, 2, &["show-config"]).await;
    assert!(show.contains("shared_buffers: 24MB"), "{show}");
    let out = ctl_ok(&c, 1, &["edit-config", "-p", "shared_buffers=24MB", "--force"]).await;
    assert!(out.contains("Not changed"), "{out}");

    // restart: one member unconditionally, through another member (forwarded to its REST
    // API); then --pending on all, which members without a pending change refuse.
    let leader = healthy(&c, 0, Duration::from_secs(90)).await;
    let replica = format!("pg{}", (index(&leader) + 1) % 3);
    let via = (index(&leader) + 2) % 3;
    let out = ctl_ok(&c, via, &["restart", "e2e", &replica, "--force"]).await;
    assert!(
        out.contains(&format!("Success: restart on member {replica}")),
        "{out}"
    );
    let out = ctl_ok(&c, via, &["restart", "e2e", &replica, "--pending", "--force"]).await;
    assert!(
        out.contains(&format!(
            "Failed: restart for member {replica}, status code=503, (restart conditions are not satisfied)"
        )),
        "{out}"
    );
    let leader = healthy(&c, 0, Duration::from_secs(90)).await;

    // reinit of a replica, waiting for it to stream again.
    let replica = format!("pg{}", (index(&leader) + 1) % 3);
    let out = ctl_ok(&c, 0, &["reinit", "e2e", &replica, "--force", "--wait"]).await;
    assert!(
        out.contains(&format!("Success: reinitialize for member {replica}")),
        "{out}"
    );
    assert!(out.contains("Reinitialize is completed on"), "{out}");
    let out = ctl(&c, 0, &["reinit", "e2e", &leader, "--force"]).await;
    assert!(
        !out.ok && out.stdout.contains("I am the leader, can not reinitialize"),
        "{out:?}"
    );
    healthy(&c, 0, Duration::from_secs(90)).await;

    // Raft membership: remove a member and add it back, through the leader's node (the
    // removed node itself no longer knows the membership).
    let l = index(&leader);
    let list = ctl_ok(&c, l, &["members", "list"]).await;
    assert_eq!(
        list.matches("| Voter ").count() + list.matches("| Leader ").count(),
        3,
        "{list}"
    );
    let out = ctl_ok(&c, l, &["members", "remove", &replica, "--force"]).await;
    assert!(out.contains(&format!("removed Raft member {replica}")), "{out}");
    let list = ctl_ok(&c, l, &["members", "list", "-f", "json"]).await;
    assert!(!list.contains(&format!("\"{replica}\"")), "{list}");
    let addr = c.nodes[index(&replica)].raft_addr();
    let out = ctl_ok(&c, l, &["members", "add", &addr]).await;
    assert!(out.contains(&format!("Success: {replica}")), "{out}");
    let list = ctl_ok(&c, l, &["members", "list", "-f", "json"]).await;
    assert!(list.contains(&format!("\"{replica}\"")), "{list}");
    healthy(&c, 0, Duration::from_secs(90)).await;

    // Refusals: clear message, non-zero exit.
    let o = ctl(&c, 0, &["restart", "e2e", "nosuch", "--force"]).await;
    assert!(
        !o.ok && o.stderr.contains("nosuch is not a member of cluster e2e"),
        "{o:?}"
    );
    let o = ctl(&c, 0, &["failover", "--candidate", "nosuch", "--force"]).await;
    assert!(
        !o.ok && o.stderr.contains("Member nosuch does not exist in cluster e2e"),
        "{o:?}"
    );
    let bad = c.nodes[0].dir.join("bad.yaml");
    std::fs::write(&bad, "postgresql: {parameters: [unclosed\n").unwrap();
    let o = ctl(
        &c,
        0,
        &["edit-config", "--apply", bad.to_str().unwrap(), "--force"],
    )
    .await;
    assert!(!o.ok && o.stderr.contains("is not valid YAML"), "{o:?}");
    let endpoint = format!("127.0.0.1:{}", c.nodes[0].spec.ctl);
    let o = run(&["--endpoints", &endpoint, "--token", "wrong", "list"]).await;
    assert!(
        !o.ok && o.stderr.contains("authentication failed: wrong bearer token"),
        "{o:?}"
    );
    let o = run(&["--endpoints", &endpoint, "list"]).await;
    assert!(!o.ok && o.stderr.contains("requires a bearer token"), "{o:?}");
    let o = run(&["--endpoints", &endpoint, "--token", TOKEN, "list", "-f", "tsv"]).await;
    assert!(o.ok && o.stdout.starts_with("Cluster\tMember\tHost"), "{o:?}");
}

/// edit-config of a parameter that needs a restart shows "Pending restart" in `list`, and
/// `restart --pending` restarts exactly those members and clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_restart_is_shown_and_restart_pending_clears_it() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    healthy(&c, 0, Duration::from_secs(120)).await;
    ctl_ok(&c, 1, &["edit-config", "-p", "shared_buffers=24MB", "--force"]).await;
    wait_for(
        Duration::from_secs(60),
        "pending restart on every member",
        || async {
            let ms = members(&c, 0).await?;
            ms.iter().all(|m| m["Pending restart"] == "*").then_some(())
        },
    )
    .await;
    let table = ctl_ok(&c, 0, &["list"]).await;
    assert!(table.contains("shared_buffers: 16MB->24MB"), "{table}");
    let out = ctl_ok(&c, 0, &["restart", "e2e", "--pending", "--force"]).await;
    assert_eq!(out.matches("Success: restart on member").count(), 3, "{out}");
    wait_for(Duration::from_secs(60), "no pending restart", || async {
        let ms = members(&c, 0).await?;
        ms.iter()
            .all(|m| m.get("Pending restart").is_none())
            .then_some(())
    })
    .await;
}

/// With no member reachable the message names every endpoint tried, and the exit is
/// non-zero (no cluster needed).
#[tokio::test]
async fn unreachable_endpoints_are_listed() {
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            // Bound then closed: nothing listens there afterwards.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let eps = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let o = run(&["--endpoints", &eps, "--connect-timeout", "1", "list"]).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.stderr.contains("no member reachable; tried"), "{o:?}");
    for p in ports {
        assert!(o.stderr.contains(&format!("127.0.0.1:{p} (")), "{o:?}");
    }
}

/// The packaging hooks: a man page per command and completion scripts.
#[tokio::test]
async fn man_pages_and_completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["generate", "man", dir.path().to_str().unwrap()]).await;
    assert!(o.ok, "{o:?}");
    let page = std::fs::read_to_string(dir.path().join("pgwardenctl.1")).unwrap();
    assert!(page.contains("switchover"), "{page}");
    assert!(
        page.contains(".SH EXAMPLES") && page.contains("pgwardenctl version batman"),
        "{page}"
    );
    assert!(dir.path().join("pgwardenctl-edit-config.1").exists());
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["generate", "completions", shell]).await;
        assert!(o.ok && o.stdout.contains("pgwardenctl"), "{shell}: {o:?}");
    }
    let o = run(&["version"]).await;
    assert!(o.ok && o.stdout.starts_with("pgwardenctl version "), "{o:?}");
}

/// pgwardenctl with extra environment (PGPASSWORD for `query`), under the same time limit
/// and clean PGWARDENCTL_* environment as [`run`].
async fn run_env(args: &[&str], env: &[(&str, &str)]) -> CtlOut {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"));
    cmd.args(args)
        .env_remove("PGWARDENCTL_CONFIG_FILE")
        .env_remove("PGWARDENCTL_ENDPOINTS")
        .env_remove("PGWARDENCTL_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("pgwardenctl did not finish within 120 s")
        .expect("pgwardenctl output");
    CtlOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// patronictl's `query`, `version CLUSTER` and `flush CLUSTER MEMBER restart` against a
/// real cluster; and pointing pgwardenctl at a member's REST port explains the mistake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_query_version_flush_and_rest_port_on_a_real_cluster() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = healthy(&c, 0, Duration::from_secs(120)).await;
    let cfg = c.nodes[1].config_path();
    let cfg = cfg.to_str().unwrap();
    let pw = [("PGPASSWORD", crate::harness::SUPERUSER_PASSWORD)];

    // query: the leader by default, tsv with Python's True/None, typed JSON on a replica.
    let o = run_env(
        &[
            "-c",
            cfg,
            "query",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "select 1 as one, true as t, null as n, pg_is_in_recovery() as r",
        ],
        &pw,
    )
    .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.stdout, "one\tt\tn\tr\n1\tTrue\tNone\tFalse\n", "{o:?}");
    let o = run_env(
        &[
            "-c",
            cfg,
            "query",
            "e2e",
            "-r",
            "replica",
            "-U",
            "postgres",
            "--format",
            "json",
            "-c",
            "select pg_is_in_recovery() as r, 2.5::float8 as f",
        ],
        &pw,
    )
    .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.stdout, "[{\"r\": true, \"f\": 2.5}]\n", "{o:?}");
    // -r standby checks PostgreSQL itself; -m names a member; an SQL error is
    // patronictl's error line and a non-zero exit.
    let o = run_env(
        &[
            "-c",
            cfg,
            "query",
            "-r",
            "standby",
            "-U",
            "postgres",
            "--format",
            "pretty",
            "-c",
            "select 1 as x",
        ],
        &pw,
    )
    .await;
    assert!(o.ok && o.stdout.contains("| x |"), "{o:?}");
    let o = run_env(
        &[
            "-c",
            cfg,
            "query",
            "-m",
            &leader,
            "-U",
            "postgres",
            "-c",
            "select nosuch",
        ],
        &pw,
    )
    .await;
    assert!(!o.ok && o.stdout.contains("\tERROR, SQLSTATE: 42703\n"), "{o:?}");
    let o = run_env(
        &["-c", cfg, "query", "-U", "postgres", "-c", "select 1"],
        &[("PGPASSWORD", "wrong")],
    )
    .await;
    assert!(!o.ok && o.stdout.contains("ERROR, SQLSTATE: 28P01"), "{o:?}");

    // version: the tool's, then each member's pgwarden and PostgreSQL version.
    let out = ctl_ok(&c, 0, &["version", "e2e"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("pgwardenctl version "), "{out}");
    assert_eq!(lines[1], "", "{out}");
    let v = env!("CARGO_PKG_VERSION");
    for i in 0..3 {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("pg{i}: pgwarden {v} PostgreSQL 15."))),
            "pg{i}: {out}"
        );
    }
    let out = ctl_ok(&c, 0, &["version", "e2e", "pg2"]).await;
    assert_eq!(out.lines().count(), 3, "{out}");

    // flush in patronictl's order cancels a scheduled restart.
    let replica = format!("pg{}", (index(&leader) + 1) % 3);
    let at = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let out = ctl_ok(
        &c,
        0,
        &["restart", "e2e", &replica, "--scheduled", &at, "--force"],
    )
    .await;
    assert!(out.contains("restart scheduled"), "{out}");
    // The member key carries it, so `list` shows it on every member (patronictl's column).
    let scheduled_on = |ms: &[Value]| {
        ms.iter()
            .filter(|m| m.get("Scheduled restart").is_some())
            .map(|m| m["Member"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    wait_for(
        Duration::from_secs(30),
        "the scheduled restart in list",
        || async {
            let ms = members(&c, 1).await?;
            (scheduled_on(&ms) == vec![replica.clone()]).then_some(())
        },
    )
    .await;
    let out = ctl_ok(&c, 2, &["flush", "e2e", &replica, "restart", "--force"]).await;
    assert!(
        out.contains(&format!("Success: flush scheduled restart for member {replica}")),
        "{out}"
    );
    wait_for(
        Duration::from_secs(30),
        "no scheduled restart in list after flush",
        || async {
            let ms = members(&c, 1).await?;
            scheduled_on(&ms).is_empty().then_some(())
        },
    )
    .await;

    // The REST port instead of the admin API.
    let rest = format!("127.0.0.1:{}", c.nodes[0].spec.rest);
    let o = run(&["-d", &rest, "list"]).await;
    assert!(
        !o.ok
            && o.stderr.contains(&format!(
                "{rest} is not pgwarden's admin API (the REST API port?)"
            )),
        "{o:?}"
    );
}
