//! A real HAProxy in front of a real 3-node pgwarden cluster, configured as Patroni's
//! documentation configures it (`option httpchk OPTIONS /primary` and `/replica`,
//! `http-check expect status 200`, `default-server inter .. fall 3 rise 2
//! on-marked-down shutdown-sessions`), with a client that writes through HAProxy's primary
//! port across a switchover and a failover.
//!
//! HAProxy is found through `PGWARDEN_HAPROXY`, else as `haproxy` on PATH or in /usr/sbin
//! (Debian's package); `scripts/test.sh` installs it.

use crate::harness::{Cluster, Options};
use pgwarden_testkit::{free_port, require_pg, require_tool, wait_for};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// HAProxy's check interval here; Patroni's documentation uses 3 s. `fall 3 rise 2` are
/// kept, so a server is marked down after about 1.5 s of failed checks and up after 1 s.
const CHECK_INTERVAL_MS: u64 = 500;

fn haproxy_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_HAPROXY") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
}

/// One HAProxy child with its own directory (config, stats socket, log); killed by PID on drop.
struct HaProxy {
    child: Child,
    dir: tempfile::TempDir,
    primary_port: u16,
    replica_port: u16,
}

impl HaProxy {
    /// Writes Patroni's documented configuration for the cluster's members and starts
    /// HAProxy in the foreground (`-db`), as a child of the test.
    fn start(bin: &Path, c: &Cluster) -> HaProxy {
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-haproxy-")
            .tempdir()
            .unwrap();
        let primary_port = free_port();
        let replica_port = free_port();
        let servers: String = c
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "    server {} 127.0.0.1:{} maxconn 100 check port {}\n",
                    n.spec.name, n.spec.pg, n.spec.rest
                )
            })
            .collect();
        let listen = |name: &str, port: u16, check: &str| {
            format!(
                "listen {name}\n    bind 127.0.0.1:{port}\n    option httpchk OPTIONS {check}\n    \
                 http-check expect status 200\n    default-server inter {CHECK_INTERVAL_MS}ms fall 3 rise 2 \
                 on-marked-down shutdown-sessions\n{servers}\n"
            )
        };
        let cfg = format!(
            "global\n    maxconn 100\n    stats socket {sock} mode 600 level admin\n\n\
             defaults\n    mode tcp\n    retries 2\n    timeout client 30m\n    timeout connect 4s\n    \
             timeout server 30m\n    timeout check 2s\n\n{primary}{replicas}",
            sock = dir.path().join("stats.sock").display(),
            primary = listen("primary", primary_port, "/primary"),
            replicas = listen("replicas", replica_port, "/replica"),
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, &cfg).unwrap();
        let check = Command::new(bin)
            .arg("-c")
            .arg("-f")
            .arg(&cfg_path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c rejected the configuration:\n{cfg}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        HaProxy {
            child,
            dir,
            primary_port,
            replica_port,
        }
    }

    fn conn_str(&self, port: u16) -> String {
        format!(
            "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres connect_timeout=2",
            crate::harness::SUPERUSER_PASSWORD
        )
    }

    /// The servers HAProxy has UP in each listener, from `show stat` on its stats socket.
    async fn up(&self) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
        let mut s = tokio::net::UnixStream::connect(self.dir.path().join("stats.sock"))
            .await
            .ok()?;
        s.write_all(b"show stat\n").await.ok()?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
            .await
            .ok()?
            .ok()?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
        let (mut primary, mut replicas) = (BTreeSet::new(), BTreeSet::new());
        for l in lines {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() <= st || f[sv] == "FRONTEND" || f[sv] == "BACKEND" || f[st] != "UP" {
                continue;
            }
            match f[px] {
                "primary" => primary.insert(f[sv].to_string()),
                "replicas" => replicas.insert(f[sv].to_string()),
                _ => false,
            };
        }
        Some((primary, replicas))
    }

    /// Waits until HAProxy routes its primary port to `primary` alone and its replica port
    /// to exactly `replicas`.
    async fn wait_routes(&self, c: &Cluster, primary: usize, replicas: &[usize], limit: Duration) {
        let want_p: BTreeSet<String> = [c.nodes[primary].spec.name.clone()].into();
        let want_r: BTreeSet<String> = replicas.iter().map(|i| c.nodes[*i].spec.name.clone()).collect();
        let what = format!("HAProxy to route primary -> {want_p:?}, replicas -> {want_r:?}");
        wait_for(limit, &what, || async {
            let (p, r) = self.up().await?;
            (p == want_p && r == want_r).then_some(())
        })
        .await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("==== haproxy log ====\n{}", self.log());
        }
        // SIGKILL to this child's PID only, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One acknowledged write: its id, when it was acknowledged, and the PostgreSQL port of
/// the server that acknowledged it (`inet_server_port()`, behind HAProxy).
#[derive(Clone, Copy, Debug)]
struct Ack {
    id: i64,
    at: Instant,
    port: u16,
}

/// A client of HAProxy's primary port: one connection at a time, one INSERT per
/// iteration, reconnecting through HAProxy after any error. Bounded: 100k inserts at most.
struct ProxyWriter {
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<u64>>,
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProxyWriter {
    fn start(conn: String) -> ProxyWriter {
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let errors: Arc<Mutex<u64>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let (a, e, s) = (acks.clone(), errors.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            let mut id: i64 = 0;
            while !s.is_cancelled() && id < 100_000 {
                if client.is_none() {
                    match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(async move {
                                let _ = conn.await;
                            });
                            client = Some(c);
                        }
                        Err(_) => {
                            *e.lock().unwrap() += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = &client else { continue };
                id += 1;
                let r = tokio::time::timeout(
                    Duration::from_secs(3),
                    c.query_one(
                        "INSERT INTO writes (id) VALUES ($1) RETURNING inet_server_port()",
                        &[&id],
                    ),
                )
                .await;
                match r {
                    Ok(Ok(row)) => {
                        let port: i32 = row.get(0);
                        a.lock().unwrap().push(Ack {
                            id,
                            at: Instant::now(),
                            port: port as u16,
                        });
                    }
                    // A read-only server (a demoted primary HAProxy has not yet marked
                    // down), a closed session or a timeout: reconnect through HAProxy.
                    _ => {
                        *e.lock().unwrap() += 1;
                        client = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        ProxyWriter {
            acks,
            errors,
            stop,
            task: Some(task),
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Waits for `n` writes acknowledged after `from`; returns the first of them.
    async fn wait_acks_after(&self, from: Instant, n: usize, limit: Duration, what: &str) -> Ack {
        wait_for(limit, what, || async {
            let acks = self.acks();
            let after: Vec<&Ack> = acks.iter().filter(|a| a.at > from).collect();
            (after.len() >= n).then(|| *after[0])
        })
        .await
    }

    /// Around an event at `at`: the longest interval between consecutive acknowledged
    /// writes from the last one before it on, and how long after it writes resumed on `port`.
    fn gap_around(&self, at: Instant, port: u16) -> (Duration, Duration) {
        let acks = self.acks();
        let last_before = acks.iter().rev().find(|a| a.at <= at).map_or(at, |a| a.at);
        let first_on_port = acks.iter().find(|a| a.at > at && a.port == port).map(|a| a.at);
        let resumed = first_on_port.map_or(Duration::MAX, |t| t - at);
        let mut gap = Duration::ZERO;
        let mut prev = last_before;
        let end = first_on_port.unwrap_or_else(Instant::now);
        for a in acks.iter().filter(|a| a.at > last_before && a.at <= end) {
            gap = gap.max(a.at - prev);
            prev = a.at;
        }
        (gap, resumed)
    }

    async fn stop(mut self) -> Vec<Ack> {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.acks()
    }
}

impl Drop for ProxyWriter {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Reads through HAProxy's replica port on fresh connections: every one must land on a
/// server in recovery. Returns the ports served.
async fn read_through_replica_port(hp: &HaProxy, n: usize) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for _ in 0..n {
        let (client, conn) = tokio_postgres::connect(&hp.conn_str(hp.replica_port), tokio_postgres::NoTls)
            .await
            .expect("connect through HAProxy's replica port");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let row = client
            .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
            .await
            .expect("read through HAProxy's replica port");
        let (in_recovery, port): (bool, i32) = (row.get(0), row.get(1));
        assert!(
            in_recovery,
            "a read through the replica port landed on a primary (port {port})"
        );
        ports.insert(port as u16);
        drop(client);
        let _ = task.await;
    }
    ports
}

/// Writes through HAProxy's primary port keep landing on the primary across a switchover
/// and a failover (SIGKILL of the primary node): the acknowledging server only ever moves
/// forward (old primary, candidate, new primary; never back, never a replica), every
/// acknowledged write is on the final primary (bar the killed primary's unreplicated last
/// moments, which asynchronous replication cannot keep), the writer resumes through
/// HAProxy within a bound after each event, and reads through the replica port land on
/// servers in recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_routes_writes_to_the_primary_across_switchover_and_failover() {
    require_pg!();
    let bin = haproxy_bin();
    require_tool!(bin.is_some(), "haproxy (apt-get install haproxy)");

    let mut c = Cluster::new(Options::default());
    c.start_all();
    let first = c.wait_healthy(Duration::from_secs(90)).await;
    let others = |p: usize| -> Vec<usize> { (0..3).filter(|i| *i != p).collect() };
    let pg_ports: Vec<u16> = c.nodes.iter().map(|n| n.spec.pg).collect();
    let port_of = |i: usize| pg_ports[i];
    c.connect(first)
        .await
        .expect("connect to the primary")
        .batch_execute("CREATE TABLE writes (id bigint primary key)")
        .await
        .unwrap();

    let hp = HaProxy::start(&bin.unwrap(), &c);
    hp.wait_routes(&c, first, &others(first), Duration::from_secs(20))
        .await;
    let ports = read_through_replica_port(&hp, 6).await;
    eprintln!(
        "replica port served PostgreSQL ports {ports:?} (replicas {:?})",
        others(first).iter().map(|i| port_of(*i)).collect::<Vec<_>>()
    );

    let w = ProxyWriter::start(hp.conn_str(hp.primary_port));
    w.wait_acks_after(
        Instant::now(),
        200,
        Duration::from_secs(30),
        "200 writes through HAProxy",
    )
    .await;

    // Switchover to a named candidate.
    let cand = (first + 1) % 3;
    let t1 = Instant::now();
    let (code, body) = c
        .post(
            first,
            "/switchover",
            json!({"leader": c.nodes[first].spec.name, "candidate": c.nodes[cand].spec.name}),
        )
        .await
        .expect("switchover answered");
    assert_eq!(code, 200, "switchover: {body}");
    wait_for(
        Duration::from_secs(30),
        "writes through HAProxy on the new primary",
        || async {
            let after = w
                .acks()
                .into_iter()
                .filter(|a| a.at > t1 && a.port == port_of(cand))
                .count();
            (after >= 100).then_some(())
        },
    )
    .await;
    let (gap1, res1) = w.gap_around(t1, port_of(cand));
    eprintln!("switchover through HAProxy: longest write gap {gap1:?}, writes resumed on the new primary {res1:?} after the request");
    assert_eq!(c.wait_healthy(Duration::from_secs(60)).await, cand);
    hp.wait_routes(&c, cand, &others(cand), Duration::from_secs(20))
        .await;
    read_through_replica_port(&hp, 6).await;

    // Failover: SIGKILL of the primary's daemon and postmaster.
    let t2 = Instant::now();
    c.kill9(cand);
    let survivors = others(cand);
    let new_primary = wait_for(
        Duration::from_secs(60),
        "a new primary after the SIGKILL",
        || async { c.primary().await.filter(|p| survivors.contains(p)) },
    )
    .await;
    w.wait_acks_after(
        t2,
        100,
        Duration::from_secs(60),
        "100 writes through HAProxy after the failover",
    )
    .await;
    let (gap2, res2) = w.gap_around(t2, port_of(new_primary));
    eprintln!("failover through HAProxy: longest write gap {gap2:?}, writes resumed on the new primary {res2:?} after the SIGKILL");
    let replica = survivors.iter().copied().find(|i| *i != new_primary).unwrap();
    hp.wait_routes(&c, new_primary, &[replica], Duration::from_secs(30))
        .await;
    let ports = read_through_replica_port(&hp, 4).await;
    assert_eq!(ports, [port_of(replica)].into());

    let errors = *w.errors.lock().unwrap();
    let acks = w.stop().await;
    eprintln!(
        "{} writes acknowledged through HAProxy, {errors} failed attempts or reconnects",
        acks.len()
    );

    // The acknowledging server only moves forward: first, cand, new_primary.
    let mut servers: Vec<u16> = acks.iter().map(|a| a.port).collect();
    servers.dedup();
    assert_eq!(
        servers,
        vec![port_of(first), port_of(cand), port_of(new_primary)],
        "acknowledging servers in order (PostgreSQL ports)"
    );
    // Every acknowledged write is on the final primary.
    let stored: BTreeSet<i64> = c
        .connect(new_primary)
        .await
        .expect("connect to the final primary")
        .query("SELECT id FROM writes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Every acknowledged write is on the final primary, bar what asynchronous replication
    // cannot promise: the killed primary's last acknowledged writes may not have reached
    // the replica promoted in its place (Patroni without synchronous_mode loses them too).
    // Such a loss must be a suffix of the killed primary's writes, acknowledged just
    // before the SIGKILL; nothing acknowledged before the switchover or by another server
    // may be missing.
    let lost: Vec<Ack> = acks.iter().filter(|a| !stored.contains(&a.id)).copied().collect();
    let window = lost
        .iter()
        .map(|a| t2.saturating_duration_since(a.at))
        .max()
        .unwrap_or_default();
    eprintln!(
        "failover: {} acknowledged writes missing on the new primary, acknowledged by the killed \
         primary at most {window:?} before the SIGKILL",
        lost.len()
    );
    for a in &lost {
        assert_eq!(
            a.port,
            port_of(cand),
            "acknowledged write {} (by port {}) missing on the final primary",
            a.id,
            a.port
        );
    }
    if let Some(first_lost) = lost.iter().map(|a| a.id).min() {
        let kept_after: Vec<i64> = acks
            .iter()
            .filter(|a| a.port == port_of(cand) && a.id > first_lost && stored.contains(&a.id))
            .map(|a| a.id)
            .collect();
        assert!(
            kept_after.is_empty(),
            "a hole, not a suffix: write {first_lost} lost but later {kept_after:?} kept"
        );
    }
    assert!(
        window < Duration::from_secs(2),
        "writes acknowledged {window:?} before the SIGKILL were not replicated"
    );

    // Bounded unavailability through HAProxy (the default timing, checks every 0.5 s).
    assert!(
        res1 < Duration::from_secs(20),
        "switchover: writes resumed after {res1:?}"
    );
    assert!(
        res2 < Duration::from_secs(40),
        "failover: writes resumed after {res2:?}"
    );
}
