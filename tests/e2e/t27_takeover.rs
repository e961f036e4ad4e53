//! Issue 17: a running Patroni 4.1.5 + etcd cluster taken over in place by pgwarden, under a
//! client writing continuously.
//!
//! The procedure is docs/migrating-from-patroni.md's: pause the Patroni cluster, stop the
//! Patroni daemons (PostgreSQL keeps running: Patroni leaves it alone in maintenance mode),
//! convert each node's file with `pgwarden convert-patroni-config`, start pgwarden on each
//! node. pgwarden adopts the running primary as leader and the running replicas as replicas
//! without restarting any of them. The Patroni cluster runs in synchronous mode, so that no
//! acknowledged write may be lost across the SIGKILL failover that follows. Then the rollback,
//! the same way back: pause pgwarden, stop it (PostgreSQL keeps running), start etcd and
//! Patroni with their own files, resume; still no restart and no acknowledged write lost.
//!
//! Patroni comes from PyPI into the virtualenv `scripts/test.sh` makes under the target
//! directory (`target/tools/patroni`, or `PGWARDEN_PATRONI` naming the `patroni` script);
//! etcd is Debian's `etcd-server`. Both run on loopback with ports of the test's own.

use crate::harness::{conns, Cluster, Options, Writer, SUPERUSER_PASSWORD};
use pgwarden_testkit::{free_port, require_pg, require_tool, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The `patroni` script of the virtualenv, if installed.
fn patroni_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_PATRONI") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()?
        .join("tools/patroni/bin/patroni");
    p.is_file().then_some(p)
}

fn etcd_bin() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/etcd");
    p.is_file().then_some(p)
}

/// Processes this test starts besides the harness's (etcd, the Patroni daemons): killed and
/// reaped on drop.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Children {
    fn push(&mut self, name: &str, c: Child) {
        self.0.push((name.to_string(), c));
    }

    /// SIGTERM to `name` and wait for it (at most `limit`, then SIGKILL). False if it had to
    /// be killed.
    async fn stop(&mut self, name: &str, limit: Duration) -> bool {
        let Some(pos) = self.0.iter().position(|(n, _)| n == name) else {
            return true;
        };
        let (_, mut c) = self.0.remove(pos);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Node `i`'s Patroni file: the same ports, data directory and passwords the harness gave
/// the pgwarden node, so that the converted file describes the same member.
fn patroni_yaml(c: &Cluster, i: usize, etcd_port: u16) -> String {
    let n = &c.nodes[i];
    let dir = n.dir.display();
    format!(
        "scope: e2e\nname: {name}\n\
         restapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         etcd3:\n  hosts: 127.0.0.1:{etcd_port}\n\
         bootstrap:\n  dcs:\n    ttl: 20\n    loop_wait: 2\n    retry_timeout: 5\n    synchronous_mode: true\n    \
         postgresql:\n      use_pg_rewind: true\n      parameters:\n        wal_level: replica\n        \
         hot_standby: 'on'\n        max_wal_senders: 10\n        max_replication_slots: 10\n        \
         wal_log_hints: 'on'\n        shared_buffers: 16MB\n        wal_keep_size: 128MB\n  \
         initdb: [{{encoding: UTF8}}, data-checksums]\n  \
         pg_hba:\n  - local all all trust\n  - host replication replicator 127.0.0.1/32 scram-sha-256\n  \
         - host all all 127.0.0.1/32 scram-sha-256\n\
         postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {dir}/pgdata\n  \
         bin_dir: /usr/lib/postgresql/15/bin\n  pgpass: {dir}/pgpass.patroni\n  \
         authentication:\n    superuser: {{username: postgres, password: {SUPERUSER_PASSWORD}}}\n    \
         replication: {{username: replicator, password: r3pl-secret}}\n  \
         parameters:\n    unix_socket_directories: {dir}\n\
         watchdog:\n  mode: off\n",
        name = n.spec.name,
        rest = n.spec.rest,
        pg = n.spec.pg,
    )
}

fn start_patroni(c: &Cluster, i: usize, bin: &Path) -> Child {
    let n = &c.nodes[i];
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(n.dir.join("patroni.log"))
        .unwrap();
    Command::new("setpriv")
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(bin)
        .arg(n.dir.join("patroni.yml"))
        .env_remove("PGPASSFILE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start patroni")
}

fn start_etcd(root: &Path, client: u16, peer: u16) -> Child {
    let log = std::fs::File::create(root.join("etcd.log")).unwrap();
    Command::new("/usr/bin/etcd")
        .args(["--name", "e2e", "--data-dir"])
        .arg(root.join("etcd"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster=e2e=http://127.0.0.1:{peer}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd")
}

/// GET /cluster of whichever member answers (Patroni's and pgwarden's have the same shape).
async fn cluster_view(c: &Cluster) -> Option<Value> {
    for i in 0..c.nodes.len() {
        let url = format!("{}/cluster", c.rest_url(i));
        if let Some(v) = pgwarden_testkit::http::get_json(&c.http, &url).await {
            return Some(v);
        }
    }
    None
}

/// The leader's name and the number of streaming replicas in a /cluster answer.
fn leader_and_streaming(v: &Value) -> Option<(String, usize)> {
    let members = v["members"].as_array()?;
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader" && m["state"] == "running")?;
    let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
    Some((leader["name"].as_str()?.to_string(), streaming))
}

async fn wait_cluster_up(c: &Cluster, what: &str, limit: Duration) -> String {
    wait_for(limit, what, || async {
        let v = cluster_view(c).await?;
        let (leader, streaming) = leader_and_streaming(&v)?;
        (streaming == c.nodes.len() - 1).then_some(leader)
    })
    .await
}

fn postmaster_pids(c: &Cluster) -> Vec<Option<i32>> {
    (0..c.nodes.len()).map(|i| c.nodes[i].postmaster_pid()).collect()
}

/// Waits until every member (Patroni's or pgwarden's: the same REST API) reports the cluster
/// paused; returns the postmaster pids, every one running.
async fn paused_and_running(c: &Cluster, who: &str) -> Vec<Option<i32>> {
    wait_for(
        Duration::from_secs(30),
        &format!("every {who} member reports pause"),
        || async {
            for i in 0..c.nodes.len() {
                if c.patroni(i).await?["pause"] != Value::Bool(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let pids = postmaster_pids(c);
    assert!(
        pids.iter().all(Option::is_some),
        "every PostgreSQL runs: {pids:?}"
    );
    pids
}

/// The Patroni cluster (3 members, etcd) under a writer; pause; stop Patroni; convert; start
/// pgwarden: the same primary leads, the replicas stream, no postmaster was restarted, no
/// acknowledged write is lost and the longest write gap is printed. The pgwarden cluster
/// then fails over on a SIGKILL of the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_takeover_of_a_running_patroni_cluster_and_the_rollback_keep_every_write() {
    require_pg!();
    let patroni = patroni_bin();
    require_tool!(
        patroni.is_some(),
        "Patroni 4.1.5 (python3 -m venv target/tools/patroni; pip install 'patroni[etcd3,psycopg3]==4.1.5')"
    );
    require_tool!(etcd_bin().is_some(), "etcd (Debian package etcd-server)");
    let patroni = patroni.unwrap();

    let mut c = Cluster::new(Options::default());
    let root = c.root().to_path_buf();
    let mut kids = Children::default();
    let (etcd_client, etcd_peer) = (free_port(), free_port());
    kids.push("etcd", start_etcd(&root, etcd_client, etcd_peer));

    // The Patroni cluster: the first member bootstraps, then the others clone from it.
    for i in 0..3 {
        std::fs::write(
            c.nodes[i].dir.join("patroni.yml"),
            patroni_yaml(&c, i, etcd_client),
        )
        .unwrap();
    }
    let t0 = Instant::now();
    kids.push("patroni0", start_patroni(&c, 0, &patroni));
    wait_for(
        Duration::from_secs(90),
        "Patroni's first member is primary",
        || async { (c.http_status(0, "/primary").await == Some(200)).then_some(()) },
    )
    .await;
    for i in 1..3 {
        kids.push(&format!("patroni{i}"), start_patroni(&c, i, &patroni));
    }
    let patroni_leader = wait_cluster_up(
        &c,
        "the Patroni cluster: a leader and two streaming",
        Duration::from_secs(120),
    )
    .await;
    eprintln!(
        "Patroni cluster up in {:.1?}, leader {patroni_leader}",
        t0.elapsed()
    );

    let writer = Writer::start(conns(&c)).await;
    writer.wait_more(200, Duration::from_secs(30)).await;

    // Synchronous replication must hold through the takeover: the primary's
    // synchronous_standby_names, sampled every 50 ms on one connection (PostgreSQL is never
    // restarted), is never empty from before the pause until pgwarden names a sync standby.
    let leader_idx = c
        .nodes
        .iter()
        .position(|n| n.spec.name == patroni_leader)
        .unwrap();
    let (sampler_client, connection) =
        tokio_postgres::connect(&c.conn_str(leader_idx), tokio_postgres::NoTls)
            .await
            .expect("connect to the Patroni primary");
    tokio::spawn(connection);
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let stop = sampling.clone();
        async move {
            let mut samples = Vec::new();
            while !stop.is_cancelled() && samples.len() < 5000 {
                if let Ok(row) = sampler_client
                    .query_one("SHOW synchronous_standby_names", &[])
                    .await
                {
                    samples.push(row.get::<_, String>(0));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        }
    });

    // 1. Pause: Patroni stops acting, and leaves PostgreSQL running when it exits.
    let url = format!("{}/config", c.rest_url(0));
    let r = c
        .http
        .patch(&url)
        .json(&serde_json::json!({"pause": true}))
        .send()
        .await
        .expect("PATCH /config");
    assert!(r.status().is_success(), "pause: {}", r.status());
    let before = paused_and_running(&c, "Patroni").await;
    let takeover = Instant::now();

    // 2. Stop the Patroni daemons and etcd.
    for i in 0..3 {
        assert!(
            kids.stop(&format!("patroni{i}"), Duration::from_secs(30)).await,
            "Patroni {i} did not exit on SIGTERM within 30 s"
        );
    }
    kids.stop("etcd", Duration::from_secs(10)).await;
    assert_eq!(
        postmaster_pids(&c),
        before,
        "PostgreSQL kept running after Patroni stopped"
    );

    // 3. Convert each file and start pgwarden on each node.
    for i in 0..3 {
        let n = &c.nodes[i];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
        cmd.arg("convert-patroni-config")
            .arg(n.dir.join("patroni.yml"))
            .arg("-o")
            .arg(n.config_path())
            .arg("--force")
            .arg("--raft-data-dir")
            .arg(n.state_dir())
            .arg("--self-addr")
            .arg(n.raft_addr());
        for (j, m) in c.nodes.iter().enumerate() {
            if j != i {
                cmd.arg("--partner").arg(m.raft_addr());
            }
        }
        let out = cmd.output().expect("run convert-patroni-config");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("convert-patroni-config {}:\n{err}", n.spec.name);
        assert!(out.status.success(), "convert-patroni-config {i}: {err}");
        // Settings of pgwarden's own that Patroni's file has no place for: the admin API's
        // port (three members share this host).
        c.append_config(i, &format!("ctl:\n  listen: 127.0.0.1:{}\n", n.spec.ctl));
    }
    c.start_all();
    let leader = wait_cluster_up(
        &c,
        "pgwarden: a leader and two streaming",
        Duration::from_secs(90),
    )
    .await;
    eprintln!(
        "pgwarden took over in {:.1?} after the pause, leader {leader}",
        takeover.elapsed()
    );
    assert_eq!(leader, patroni_leader, "the running primary stays the leader");
    assert_eq!(
        postmaster_pids(&c),
        before,
        "no PostgreSQL was restarted by the takeover"
    );
    writer.wait_more(200, Duration::from_secs(30)).await;
    let gap = writer.longest_gap_after(takeover);
    eprintln!("longest write gap from the pause to the end of the takeover: {gap:?}");

    // 4. The pgwarden cluster fails over on a SIGKILL of the primary, once its sync key
    // names a synchronous standby (until then no member may be promoted: the new DCS holds
    // no record of which standby has every acknowledged commit).
    wait_for(
        Duration::from_secs(30),
        "pgwarden names a synchronous standby",
        || async {
            let v = cluster_view(&c).await?;
            v["members"]
                .as_array()?
                .iter()
                .any(|m| m["role"] == "sync_standby")
                .then_some(())
        },
    )
    .await;
    sampling.cancel();
    let samples = sampler.await.unwrap();
    let empty = samples.iter().filter(|v| v.is_empty()).count();
    eprintln!(
        "synchronous_standby_names sampled {} times through the takeover, empty {empty} times",
        samples.len()
    );
    assert!(samples.len() > 10, "too few samples: {samples:?}");
    assert_eq!(
        empty, 0,
        "commits stopped waiting for a standby during the takeover: {samples:?}"
    );
    let primary = c.primary().await.expect("a primary");
    c.kill9(primary);
    let new = wait_for(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|p| *p != primary)
    })
    .await;
    writer.wait_more(200, Duration::from_secs(30)).await;
    c.start(primary);
    wait_for(
        Duration::from_secs(90),
        "the old primary streams again",
        || async {
            let v = cluster_view(&c).await?;
            let (_, streaming) = leader_and_streaming(&v)?;
            (streaming == 2).then_some(())
        },
    )
    .await;

    // 5. The rollback, the same way back: pause pgwarden, stop its daemons (PostgreSQL keeps
    // running: like Patroni, pgwarden leaves it alone when it stops in a paused cluster),
    // start etcd and Patroni again with their own files, resume.
    let (code, body) = c
        .patch_config(new, serde_json::json!({"pause": true}))
        .await
        .expect("PATCH /config on pgwarden");
    assert_eq!(code, 200, "pause: {body}");
    let before = paused_and_running(&c, "pgwarden").await;
    let rollback = Instant::now();
    for i in 0..3 {
        c.stop(i).await;
    }
    assert_eq!(
        postmaster_pids(&c),
        before,
        "PostgreSQL kept running after pgwarden stopped in the paused cluster"
    );
    for i in 0..3 {
        assert_eq!(
            c.query_i64(i, "SELECT 1::int8").await,
            Some(1),
            "PostgreSQL of node {i} answers with pgwarden stopped"
        );
    }
    kids.push("etcd", start_etcd(&root, etcd_client, etcd_peer));
    for i in 0..3 {
        kids.push(&format!("patroni{i}"), start_patroni(&c, i, &patroni));
    }
    // etcd kept Patroni's keys from before the takeover (its leases restart with their full
    // TTL), so the first answers may still name the old leader: Patroni removes that lock
    // itself ("PAUSE: removed leader lock because postgres is not running as primary") and
    // the running primary takes it.
    let new_name = c.nodes[new].spec.name.clone();
    wait_for(
        Duration::from_secs(120),
        "Patroni again, pgwarden's primary its leader and two streaming",
        || async {
            let v = cluster_view(&c).await?;
            let (leader, streaming) = leader_and_streaming(&v)?;
            (leader == new_name && streaming == 2).then_some(())
        },
    )
    .await;
    let r = c
        .http
        .patch(format!("{}/config", c.rest_url(new)))
        .json(&serde_json::json!({"pause": false}))
        .send()
        .await
        .expect("PATCH /config on Patroni");
    assert!(r.status().is_success(), "resume: {}", r.status());
    wait_for(
        Duration::from_secs(30),
        "every Patroni member resumed",
        || async {
            for i in 0..3 {
                if c.patroni(i).await?["pause"] == Value::Bool(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!(
        "rolled back to Patroni in {:.1?} after the pause",
        rollback.elapsed()
    );
    assert_eq!(
        postmaster_pids(&c),
        before,
        "no PostgreSQL was restarted by the rollback"
    );
    wait_cluster_up(
        &c,
        "Patroni resumed: a leader and two streaming",
        Duration::from_secs(60),
    )
    .await;
    writer.wait_more(200, Duration::from_secs(30)).await;
    let gap = writer.longest_gap_after(rollback);
    eprintln!("longest write gap from pgwarden's pause to the end of the rollback: {gap:?}");
    let acked = writer.stop().await;
    let rows: std::collections::BTreeSet<i64> = c
        .connect(new)
        .await
        .expect("connect to the new primary")
        .query("SELECT id FROM writes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i64> = acked.difference(&rows).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!("{} acknowledged writes, none lost", acked.len());
}
