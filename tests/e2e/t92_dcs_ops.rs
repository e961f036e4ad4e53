//! Operating the embedded DCS (issue 22) on real clusters: `pgwardenctl dcs get|status|
//! put|delete|snapshot save` against three running daemons, `pgwarden restore-dcs`'s
//! refusals, and `pgwarden force-new-cluster` on the survivor of a lost majority, through
//! to two fresh members streaming from it.

use crate::harness::{self, Cluster, CtlOut, Options};
use pgwarden_raft::backup::DcsBackup;
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::Value;
use std::time::Duration;

async fn ctl(c: &Cluster, i: usize, args: &[&str]) -> CtlOut {
    let cfg = c.nodes[i].config_path();
    let mut all = vec!["-c", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    harness::pgwardenctl(&all, Duration::from_secs(120)).await
}

async fn ctl_ok(c: &Cluster, i: usize, args: &[&str]) -> String {
    let o = ctl(c, i, args).await;
    assert!(o.ok, "pgwardenctl {args:?} failed: {o:?}");
    o.stdout
}

/// Runs `pgwarden <args>` (a maintenance subcommand) and returns its status and output.
fn pgwarden(args: &[&std::ffi::OsStr]) -> CtlOut {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .output()
        .expect("run pgwarden");
    CtlOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `dcs get`, `dcs status`, the raw writes and `dcs snapshot save` against a running
/// cluster, and `pgwarden restore-dcs`'s refusals (another scope, a damaged file, an
/// occupied directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dcs_ops_inspect_repair_and_back_up_a_running_cluster() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let leader = format!("pg{p}");

    // get: the leader key with its lease, relative to the cluster's prefix.
    let keys: Value =
        serde_json::from_str(&ctl_ok(&c, 1, &["dcs", "get", "leader", "-f", "json"]).await).unwrap();
    let k = &keys[0];
    assert_eq!(k["Key"], "/service/e2e/leader");
    assert_eq!(k["Value"], leader.as_str());
    let ttl = k["TTL ms"].as_i64().unwrap();
    let left = k["Lease left ms"].as_i64().unwrap();
    assert_eq!(ttl, c.ttl(1).await.as_millis() as i64);
    assert!(left > 0 && left <= ttl, "lease left {left} of {ttl}");
    assert!(k["Mod revision"].as_i64().unwrap() >= k["Create revision"].as_i64().unwrap());
    let all = ctl_ok(&c, 2, &["dcs", "get", "--prefix"]).await;
    assert!(all.starts_with("+ DCS: "), "{all}");
    for key in [
        "/service/e2e/initialize",
        "/service/e2e/config",
        "/service/e2e/members/pg0",
    ] {
        assert!(all.contains(key), "{key} missing:\n{all}");
    }

    // status: every member reachable, one leader whose reaper is the only active one.
    let st: Value = serde_json::from_str(&ctl_ok(&c, 0, &["dcs", "status", "-f", "json"]).await).unwrap();
    let rows = st.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{st}");
    assert!(
        rows.iter()
            .all(|r| r["Error"] == "" && r["Store bytes"].as_i64().unwrap() > 0),
        "{st}"
    );
    let leaders: Vec<_> = rows.iter().filter(|r| r["Role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{st}");
    assert_eq!(leaders[0]["Reaper"], "active");
    assert_eq!(rows.iter().filter(|r| r["Reaper"] == "active").count(), 1);
    let term = leaders[0]["Term"].clone();
    assert!(
        rows.iter()
            .all(|r| r["Term"] == term && r["Leader"] == leaders[0]["Member"]),
        "{st}"
    );
    let table = ctl_ok(&c, 0, &["dcs", "status"]).await;
    assert!(table.starts_with("+ DCS members (asked by pg0) "), "{table}");

    // Raw writes: refused without --force (nothing written), done with it and a warning.
    let o = ctl(&c, 0, &["dcs", "put", "repair", "x"]).await;
    assert!(!o.ok && o.stderr.contains("--force"), "{o:?}");
    let o = ctl(&c, 0, &["dcs", "get", "repair", "-f", "json"]).await;
    assert_eq!(o.stdout.trim(), "[]", "{o:?}");
    let o = ctl(&c, 0, &["dcs", "put", "repair", "x", "--force"]).await;
    assert!(o.ok && o.stderr.contains("Warning"), "{o:?}");
    let got: Value =
        serde_json::from_str(&ctl_ok(&c, 1, &["dcs", "get", "repair", "-f", "json"]).await).unwrap();
    assert_eq!(got[0]["Value"], "x");
    assert!(!ctl(&c, 0, &["dcs", "delete", "repair"]).await.ok);
    ctl_ok(&c, 0, &["dcs", "delete", "repair", "--force"]).await;

    // snapshot save: a checked file; not overwritten without --force.
    let file = c.root().join("e2e.snap");
    let f = file.to_str().unwrap();
    let out = ctl_ok(&c, 2, &["dcs", "snapshot", "save", f]).await;
    assert!(out.starts_with("Success: saved "), "{out}");
    let backup = DcsBackup::read(&file).unwrap();
    assert_eq!(
        (backup.scope.as_str(), backup.prefix.as_str()),
        ("e2e", "/service/e2e/")
    );
    assert!(backup
        .keys
        .iter()
        .any(|k| k.key == "/service/e2e/leader" && k.value == leader));
    let o = ctl(&c, 2, &["dcs", "snapshot", "save", f]).await;
    assert!(!o.ok && o.stderr.contains("exists"), "{o:?}");
    ctl_ok(&c, 2, &["dcs", "snapshot", "save", f, "--force"]).await;

    // restore-dcs, refused: into a running node's store, for another scope, from a damaged
    // file. Each message names the file or the directory.
    let cfg = c.nodes[0].config_path();
    for force in [false, true] {
        let mut args = vec![os("restore-dcs"), file.as_os_str(), cfg.as_os_str()];
        if force {
            args.push(os("--force"));
        }
        let o = pgwarden(&args);
        assert!(!o.ok && o.stderr.contains("still running"), "{o:?}");
    }
    assert!(
        c.nodes[0].state_dir().join("db").exists(),
        "a running node's store was moved"
    );
    let other = c.root().join("other.yml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("scope: e2e"), "{text}");
    std::fs::write(&other, text.replace("scope: e2e", "scope: other")).unwrap();
    let o = pgwarden(&[os("restore-dcs"), file.as_os_str(), other.as_os_str()]);
    assert!(
        !o.ok && o.stderr.contains("snapshot of cluster \"e2e\"") && o.stderr.contains(f),
        "{o:?}"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len() - 20;
    bytes[n] ^= 0x01;
    let damaged = c.root().join("damaged.snap");
    std::fs::write(&damaged, bytes).unwrap();
    let o = pgwarden(&[os("restore-dcs"), damaged.as_os_str(), cfg.as_os_str()]);
    assert!(
        !o.ok && o.stderr.contains("corrupt") && o.stderr.contains("damaged.snap"),
        "{o:?}"
    );
    // None of this disturbed the cluster.
    assert_eq!(c.wait_healthy(Duration::from_secs(30)).await, p);
}

/// Rows in `writes` with an id above `from`, on node `i`.
async fn rows_above(c: &Cluster, i: usize, from: i64) -> Option<i64> {
    c.query_i64(i, &format!("SELECT count(*) FROM writes WHERE id > {from}"))
        .await
}

/// Two of three nodes lost for good (SIGKILL, Raft and PostgreSQL data deleted): on the
/// surviving replica, `force-new-cluster` is first refused while the others run, then,
/// with them gone, makes it a one-voter cluster that starts paused: it is not promoted when
/// the lost primary's lease runs out, but by `pgwardenctl failover`; then it is resumed,
/// accepts writes,
/// and two fresh nodes join with `members add` and stream from it. No write acknowledged
/// by the survivor is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dcs_ops_force_new_cluster_on_the_survivor_of_a_lost_majority() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let s = (p + 1) % 3;
    let survivor = format!("pg{s}");
    let cfg = c.nodes[s].config_path();
    let lost: Vec<usize> = (0..3).filter(|i| *i != s).collect();
    c.connect(p)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE writes (id bigint primary key)")
        .await
        .unwrap();

    // While its own daemon runs: refused (the store is locked).
    let o = pgwarden(&[os("force-new-cluster"), cfg.as_os_str()]);
    assert!(!o.ok && o.stderr.contains("still running"), "{o:?}");
    // Daemon stopped, the others up: refused, nothing changed, and it rejoins as before.
    c.kill9_daemon(s);
    let o = pgwarden(&[os("force-new-cluster"), cfg.as_os_str()]);
    assert!(!o.ok && o.stderr.contains("nothing was changed"), "{o:?}");
    for i in &lost {
        assert!(o.stderr.contains(&format!("pg{i}")), "pg{i} not named: {o:?}");
    }
    c.start(s);
    c.wait_healthy(Duration::from_secs(60)).await;
    let st: Value = serde_json::from_str(&ctl_ok(&c, s, &["dcs", "status", "-f", "json"]).await).unwrap();
    assert_eq!(
        st.as_array().unwrap().len(),
        3,
        "the refused run changed the membership: {st}"
    );

    // The majority is lost for good.
    for i in &lost {
        c.kill9(*i);
    }
    c.kill9_daemon(s);
    for i in &lost {
        std::fs::remove_dir_all(c.nodes[*i].state_dir()).unwrap();
        std::fs::remove_dir_all(c.nodes[*i].pgdata()).unwrap();
    }
    let o = pgwarden(&[os("force-new-cluster"), cfg.as_os_str()]);
    assert!(o.ok, "{o:?}");
    assert!(o.stdout.starts_with("Success: the Raft membership"), "{o:?}");
    assert!(o.stderr.contains("FORCE-NEW-CLUSTER"), "not logged loudly: {o:?}");
    c.start(s);

    // DCS writes work again: a raw read through the new one-voter cluster.
    wait_for(
        Duration::from_secs(30),
        "the survivor's DCS to serve reads",
        || async {
            ctl(&c, s, &["dcs", "get", "--prefix", "-f", "json"])
                .await
                .ok
                .then_some(())
        },
    )
    .await;
    assert!(o.stdout.contains("paused"), "{o:?}");
    // It starts paused: once the lost primary's leader key has expired, it is still a
    // replica (never promoted on its own).
    wait_for(
        Duration::from_secs(60),
        "the lost primary's leader key to expire",
        || async {
            let o = ctl(&c, s, &["dcs", "get", "leader", "-f", "json"]).await;
            (o.ok && !o.stdout.contains("/leader\"")).then_some(())
        },
    )
    .await;
    let status = wait_for(Duration::from_secs(30), "the survivor's /patroni", || async {
        c.patroni(s).await.filter(|p| p["pause"] == Value::Bool(true))
    })
    .await;
    assert_eq!(status["role"], "replica", "promoted on its own: {status}");
    assert_ne!(c.primary().await, Some(s));
    // Promote it: the normal failover command, honoured in pause, retried while the HA
    // loop settles.
    wait_for(
        Duration::from_secs(60),
        "the survivor to be the primary",
        || async {
            if c.primary().await == Some(s) {
                return Some(());
            }
            let o = ctl(&c, s, &["failover", "--candidate", &survivor, "--force"]).await;
            eprintln!("failover --candidate {survivor}: {o:?}");
            None
        },
    )
    .await;
    let o = ctl(&c, s, &["resume"]).await;
    assert!(o.ok, "resume: {o:?}");
    let first = 1_000_000;
    let (acks, stop) = harness::write_to_one(&c, s, first);
    wait_for(Duration::from_secs(30), "100 writes on the survivor", || async {
        (acks.lock().unwrap().len() >= 100).then_some(())
    })
    .await;

    // Two fresh nodes (no Raft, no PostgreSQL data) join and stream.
    for i in &lost {
        c.start(*i);
        let addr = c.nodes[*i].raft_addr();
        wait_for(Duration::from_secs(60), "a fresh node to be added", || async {
            ctl(&c, s, &["members", "add", &addr]).await.ok.then_some(())
        })
        .await;
    }
    assert_eq!(c.wait_healthy(Duration::from_secs(180)).await, s);
    stop.cancel();
    // Counted before the rows: every write acknowledged by then is in the table, and one
    // still in flight can only add a row.
    let acked = acks.lock().unwrap().len() as i64;
    let on_survivor = rows_above(&c, s, first).await.unwrap();
    assert!(
        on_survivor >= acked,
        "{on_survivor} rows on the survivor, {acked} acknowledged"
    );
    for i in &lost {
        let n = wait_for(
            Duration::from_secs(30),
            "a new replica to replay every write",
            || async { rows_above(&c, *i, first).await.filter(|n| *n >= on_survivor) },
        )
        .await;
        assert!(n >= acked);
    }
    let st: Value = serde_json::from_str(&ctl_ok(&c, s, &["dcs", "status", "-f", "json"]).await).unwrap();
    let rows = st.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{st}");
    assert!(rows.iter().all(|r| r["Error"] == ""), "{st}");
}

/// The system identifier of node `i`'s PostgreSQL.
async fn sysid(c: &Cluster, i: usize) -> Option<i64> {
    c.query_i64(i, "SELECT system_identifier FROM pg_control_system()")
        .await
}

/// The timeline node `i` reports on GET /patroni.
async fn timeline(c: &Cluster, i: usize) -> Option<u64> {
    c.patroni(i).await?.get("timeline")?.as_u64()
}

/// Lines of node `i`'s log that mention initdb.
fn initdb_lines(c: &Cluster, i: usize) -> usize {
    c.log(i).matches("initdb").count()
}

/// After the keyspace was rebuilt: `initialize` is `id`, `config` is there again, and every
/// member has the same system identifier, the 1000 rows, and no new initdb in its log.
async fn check_keys_and_rows(c: &Cluster, id: i64, initdb_before: &[usize]) {
    let keys: Value =
        serde_json::from_str(&ctl_ok(c, 0, &["dcs", "get", "initialize", "-f", "json"]).await).unwrap();
    assert_eq!(keys[0]["Value"], id.to_string(), "{keys}");
    let config = wait_for(Duration::from_secs(30), "the config key", || async {
        let o = ctl(c, 1, &["dcs", "get", "config", "-f", "json"]).await;
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        v[0]["Value"].as_str().map(str::to_string)
    })
    .await;
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["postgresql"]["parameters"]["wal_keep_size"], "128MB",
        "not bootstrap.dcs: {config}"
    );
    for (i, before) in initdb_before.iter().enumerate() {
        assert_eq!(sysid(c, i).await, Some(id), "pg{i} has another system identifier");
        wait_for(Duration::from_secs(30), "the rows on every member", || async {
            rows_above(c, i, 0).await.filter(|n| *n == 1000)
        })
        .await;
        assert_eq!(initdb_lines(c, i), *before, "pg{i} ran initdb: {}", c.log(i));
    }
}

/// Every Raft data directory lost at once while PostgreSQL keeps its data (restored VMs):
/// after a restart of every daemon the members form a new Raft group, and the cluster is
/// adopted around the member that runs as the primary: it stays the primary on the same
/// timeline (no replica races it), `initialize` is its system identifier, `config` is
/// written again from bootstrap.dcs, every row is there and nobody runs initdb. Then the same
/// loss with no primary running (its PostgreSQL crashed too): nobody takes the leader key
/// until an operator names a member with `pgwardenctl failover --candidate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dcs_ops_total_loss_of_the_dcs_keeps_postgres_and_its_data() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let id = sysid(&c, p).await.unwrap();
    let tl = timeline(&c, p).await.unwrap();
    c.connect(p)
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE writes (id bigint primary key); \
             INSERT INTO writes SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    for i in 0..3 {
        wait_for(
            Duration::from_secs(30),
            "every replica to replay the rows",
            || async { rows_above(&c, i, 0).await.filter(|n| *n == 1000) },
        )
        .await;
    }
    let before: Vec<usize> = (0..3).map(|i| initdb_lines(&c, i)).collect();
    let lose_the_dcs = |c: &mut Cluster| {
        for i in 0..3 {
            c.kill9_daemon(i);
        }
        for i in 0..3 {
            std::fs::remove_dir_all(c.nodes[i].state_dir()).unwrap();
        }
    };
    // 1. The primary keeps running: it adopts the new, empty keyspace.
    lose_the_dcs(&mut c);
    let restarted = std::time::Instant::now();
    c.start_all();
    let q = c.wait_healthy(Duration::from_secs(120)).await;
    eprintln!("adopted and healthy {:?} after the restart", restarted.elapsed());
    assert_eq!(q, p, "another member took the primary's place");
    assert_eq!(
        timeline(&c, p).await,
        Some(tl),
        "a promotion changed the timeline"
    );
    check_keys_and_rows(&c, id, &before).await;
    assert!(
        c.log(p).contains("recreated the missing config key"),
        "not logged: {}",
        c.log(p)
    );

    // 2. No member runs as a primary: the primary's PostgreSQL crashed with the DCS.
    let waiting = |c: &Cluster, i: usize| c.log(i).matches("an operator must choose").count();
    let waited: Vec<usize> = (0..3).map(|i| waiting(&c, i)).collect();
    lose_the_dcs(&mut c);
    c.kill9_postmaster(p).expect("the primary's postmaster");
    let restarted = std::time::Instant::now();
    c.start_all();
    // Every member says it waits for an operator (the former primary once it runs read-only)...
    wait_for(
        Duration::from_secs(60),
        "every member to wait for an operator",
        || async { (0..3).all(|i| waiting(&c, i) > waited[i]).then_some(()) },
    )
    .await;
    // ...and none took the leader key meanwhile.
    let o = ctl(&c, 0, &["dcs", "get", "leader", "-f", "json"]).await;
    assert_eq!(o.stdout.trim(), "[]", "{o:?}");
    for i in 0..3 {
        let s = c.patroni(i).await.unwrap();
        assert_eq!(s["role"], "replica", "pg{i} became a primary on its own: {s}");
    }
    let candidate = format!("pg{p}");
    wait_for(
        Duration::from_secs(60),
        "the chosen member to be the primary",
        || async {
            if c.primary().await == Some(p) {
                return Some(());
            }
            let o = ctl(&c, p, &["failover", "--candidate", &candidate, "--force"]).await;
            eprintln!("failover --candidate {candidate}: {o:?}");
            None
        },
    )
    .await;
    assert_eq!(c.wait_healthy(Duration::from_secs(120)).await, p);
    eprintln!(
        "chosen, promoted and healthy {:?} after the restart",
        restarted.elapsed()
    );
    check_keys_and_rows(&c, id, &before).await;
}

/// The runbook's witness survivor in 2 data nodes + witness: both data hosts lost, one data
/// directory saved (the primary's, as a restore from a backup would give). On the witness,
/// `force-new-cluster`, start; the data node comes back with that directory and an empty
/// `raft.data_dir`, is added with `members add`, and after `resume` its HA loop starts
/// PostgreSQL, finds no leader and takes the key with the data: every row, the same system
/// identifier, no initdb. The second data node, fresh, joins and clones from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dcs_ops_force_new_cluster_on_a_witness_survivor() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        ..Default::default()
    });
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let other = 1 - p;
    let witness = 2;
    let id = sysid(&c, p).await.unwrap();
    c.connect(p)
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE writes (id bigint primary key); \
             INSERT INTO writes SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    let initdb_before = initdb_lines(&c, p);

    // Both data hosts are lost; the primary's data directory is saved, its Raft store is not.
    c.kill9(p);
    c.kill9(other);
    for dir in [
        c.nodes[p].state_dir(),
        c.nodes[other].state_dir(),
        c.nodes[other].pgdata(),
    ] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    // Steps 1-4 on the witness.
    c.kill9_daemon(witness);
    let cfg = c.nodes[witness].config_path();
    let o = pgwarden(&[os("force-new-cluster"), cfg.as_os_str()]);
    assert!(o.ok, "{o:?}");
    c.start(witness);
    wait_for(
        Duration::from_secs(30),
        "the witness's DCS to serve reads",
        || async {
            ctl(&c, witness, &["dcs", "get", "initialize", "-f", "json"])
                .await
                .ok
                .then_some(())
        },
    )
    .await;

    // The data node with the saved directory: started with an empty raft.data_dir, added.
    c.start(p);
    let addr = c.nodes[p].raft_addr();
    wait_for(Duration::from_secs(60), "the data node to be added", || async {
        ctl(&c, witness, &["members", "add", &addr])
            .await
            .ok
            .then_some(())
    })
    .await;
    // force-new-cluster paused the cluster: the data node leaves its PostgreSQL stopped (and
    // a failover to it is refused: it is not running) until the cluster is resumed.
    wait_for(
        Duration::from_secs(60),
        "the data node to see the paused cluster",
        || async {
            c.log(p)
                .contains("the cluster is paused: not starting it")
                .then_some(())
        },
    )
    .await;
    let o = ctl(&c, witness, &["resume"]).await;
    assert!(o.ok, "resume: {o:?}");
    wait_for(
        Duration::from_secs(90),
        "the data node to take the key with its data",
        || async { (c.primary().await == Some(p)).then_some(()) },
    )
    .await;
    assert_eq!(sysid(&c, p).await, Some(id));
    assert_eq!(rows_above(&c, p, 0).await, Some(1000));
    assert_eq!(initdb_lines(&c, p), initdb_before, "initdb ran: {}", c.log(p));

    // The second data node, fresh, joins and clones.
    c.start(other);
    let addr = c.nodes[other].raft_addr();
    wait_for(Duration::from_secs(60), "the fresh node to be added", || async {
        ctl(&c, witness, &["members", "add", &addr])
            .await
            .ok
            .then_some(())
    })
    .await;
    assert_eq!(c.wait_healthy(Duration::from_secs(180)).await, p);
    let n = wait_for(Duration::from_secs(30), "the rows on the new replica", || async {
        rows_above(&c, other, 0).await.filter(|n| *n == 1000)
    })
    .await;
    assert_eq!(n, 1000);
    let st: Value =
        serde_json::from_str(&ctl_ok(&c, witness, &["dcs", "status", "-f", "json"]).await).unwrap();
    let rows = st.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{st}");
    assert!(rows.iter().all(|r| r["Error"] == ""), "{st}");
}
