//! Bringing data in with pgBackRest: replicas created from a backup repository
//! (`create_replica_methods: [pgbackrest, basebackup]`), a failing method that falls back to
//! pg_basebackup, and a new cluster bootstrapped by a point-in-time restore.
//!
//! pgBackRest runs as `postgres` (as PostgreSQL's archive_command does) with its
//! configuration file, repository, logs and locks in the test's own directory; nothing under
//! /etc is read or written. Skipped, with a message, when pgbackrest is not installed.

use crate::harness::{Cluster, Options, SUPERUSER_PASSWORD};
use pgwarden_testkit::{require_pg, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const STANZA: &str = "e2e";

fn pgbackrest_bin() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/pgbackrest");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("\n*** SKIPPED: pgbackrest not installed (Debian package `pgbackrest`) ***\n");
        None
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A directory `postgres` owns (when the tests run as root).
fn postgres_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750)).unwrap();
    if is_root() {
        let u = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("postgres user");
        nix::unistd::chown(path, Some(u.uid), Some(u.gid)).unwrap();
    }
}

/// The repository, logs and locks under `root/pgbr`, and the configuration file naming the
/// stanza's database as node `source`'s (its data directory, port and socket directory).
fn write_pgbackrest_conf(c: &Cluster, source: usize) -> PathBuf {
    let dir = c.root().join("pgbr");
    for sub in ["", "repo", "log", "lock", "spool"] {
        postgres_dir(&dir.join(sub));
    }
    let n = &c.nodes[source];
    let conf = dir.join("pgbackrest.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={d}/repo\nlog-path={d}/log\nlock-path={d}/lock\nspool-path={d}/spool\n\
             log-level-console=warn\nlog-level-file=detail\nstart-fast=y\narchive-timeout=120\n\n\
             [{STANZA}]\npg1-path={pgdata}\npg1-port={port}\npg1-socket-path={sock}\n",
            d = dir.display(),
            pgdata = n.pgdata().display(),
            port = n.spec.pg,
            sock = n.dir.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    conf
}

/// Runs pgbackrest as `postgres` with the test's configuration; panics with its output when
/// it fails.
fn pgbackrest(conf: &Path, args: &[&str]) {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "pgbackrest",
        ]);
        c
    } else {
        Command::new("pgbackrest")
    };
    cmd.arg(format!("--config={}", conf.display()))
        .arg(format!("--stanza={STANZA}"))
        .args(args)
        // backup and stanza-create connect to the primary over its socket with a password
        // (the built-in pg_hba asks one of every local connection).
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .current_dir("/");
    let out = cmd.output().expect("run pgbackrest");
    assert!(
        out.status.success(),
        "pgbackrest {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The archive_command of every member: push to the test's repository.
const ARCHIVE_COMMAND: &str =
    "\"pgbackrest --config={root}/pgbr/pgbackrest.conf --stanza=e2e archive-push %p\"";

/// How many base backups a member's PostgreSQL served (`log_replication_commands` logs each
/// replication command it receives).
fn base_backups_served(c: &Cluster, i: usize) -> usize {
    std::fs::read_to_string(c.nodes[i].pg_log_path())
        .unwrap_or_default()
        .matches("received replication command: BASE_BACKUP")
        .count()
}

async fn streaming_from(c: &Cluster, primary: usize, member: &str) -> Option<()> {
    let n = c
        .query_i64(
            primary,
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{member}' AND state = 'streaming'"
            ),
        )
        .await?;
    (n == 1).then_some(())
}

/// A member whose first method fails after writing into the data directory falls back to
/// pg_basebackup, the partial directory moved aside; a member whose pgBackRest restore fails
/// (no backup yet) falls back too; once a backup exists, that member reinitialized is created
/// through pgBackRest from the repository, with no base backup served by the primary, and
/// streams afterwards. Last, with the primary lost and no leader, a member whose disk was
/// replaced restores itself from the repository (`no_leader: true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_pgbackrest_replica_and_fallback_to_basebackup() {
    require_pg!();
    if pgbackrest_bin().is_none() {
        return;
    }
    let broken =
        "  create_replica_methods: [broken, basebackup]\n  broken: {command: '{root}/broken-method.sh', \
                  threads: 2}\n";
    let restore = "  create_replica_methods: [pgbackrest, basebackup]\n  pgbackrest:\n    command: \
                   'pgbackrest --config={root}/pgbr/pgbackrest.conf --stanza=e2e --pg1-path={root}/pg1/pgdata --delta restore'\n    \
                   keep_data: true\n    no_params: true\n    no_leader: true\n";
    let mut c = Cluster::new(Options {
        dcs_parameters: vec![
            ("archive_mode", "\"on\""),
            ("archive_command", ARCHIVE_COMMAND),
            ("log_replication_commands", "\"on\""),
        ],
        pg_extra: vec![String::new(), restore.to_string(), broken.to_string()],
        ..Options::default()
    });
    let conf = write_pgbackrest_conf(&c, 0);
    // The broken method records its arguments, writes into the data directory, then fails.
    let script = c.root().join("broken-method.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --datadir=*) d=\"${a#--datadir=}\";; esac; done\n\
         echo \"$@\" > \"$d/../broken-method.args\"\necho partial > \"$d/partial-file\"\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // pg0 bootstraps the cluster (the others may not), and the repository's stanza is pg0's.
    c.append_config(1, "tags:\n  nofailover: true\n");
    c.append_config(2, "tags:\n  nofailover: true\n");
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(120)).await;
    assert_eq!(leader, 0);
    let log2 = c.log(2);
    assert!(
        log2.contains("replica method failed")
            && log2.contains("broken-method.sh")
            && log2.contains("exit status: 7"),
        "the failing method is logged with its command and exit status:\n{log2}"
    );
    let args = std::fs::read_to_string(c.nodes[2].dir.join("broken-method.args")).unwrap();
    assert!(
        args.contains("--scope=e2e --role=replica --datadir=")
            && args.contains("--connstring=postgres://replicator@")
            && args.trim_end().ends_with("--threads=2"),
        "Patroni's arguments, then the extra key: {args}"
    );
    let aside: Vec<_> = std::fs::read_dir(&c.nodes[2].dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pgdata.failed-"))
        .collect();
    assert_eq!(aside.len(), 1, "the partial data directory was moved aside");
    assert!(aside[0].path().join("partial-file").is_file());
    let log1 = c.log(1);
    assert!(
        log1.lines()
            .any(|l| l.contains("replica method failed") && l.contains("pgbackrest")),
        "pg1's restore failed (no backup yet) and was logged:\n{log1}"
    );
    assert_eq!(
        base_backups_served(&c, 0),
        2,
        "pg1 and pg2 fell back to pg_basebackup"
    );

    // A full backup into the repository, then a row it does not hold.
    let db = c.connect(0).await.unwrap();
    db.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('in-backup')")
        .await
        .unwrap();
    pgbackrest(&conf, &["stanza-create"]);
    pgbackrest(&conf, &["--type=full", "backup"]);
    db.batch_execute("INSERT INTO t VALUES ('after-backup')")
        .await
        .unwrap();

    // pg1 again, from scratch: this time the restore works.
    let (code, body) = c
        .post(1, "/reinitialize", serde_json::json!({}))
        .await
        .expect("reinitialize answered");
    assert_eq!(code, 200, "{body}");
    wait_for(Duration::from_secs(120), "pg1 restored by pgBackRest", || async {
        c.log(1)
            .lines()
            .any(|l| l.contains("clone finished") && l.contains("pgbackrest"))
            .then_some(())
    })
    .await;
    wait_for(Duration::from_secs(120), "pg1 streaming from pg0", || {
        streaming_from(&c, 0, "pg1")
    })
    .await;
    assert_eq!(
        base_backups_served(&c, 0),
        2,
        "the primary served no base backup for pg1's restore"
    );
    wait_for(Duration::from_secs(30), "both rows on pg1", || async {
        (c.query_i64(1, "SELECT count(*) FROM t").await? == 2).then_some(())
    })
    .await;
    c.wait_healthy(Duration::from_secs(60)).await;

    // `no_leader: true`: the primary is lost for good (the others may not fail over) and
    // pg1's disk is replaced. With no member to copy from, pg1 restores itself from the
    // repository (Patroni's "bootstrap (without leader)") and runs read-only.
    c.kill9(0);
    wait_for(Duration::from_secs(60), "the leader key expired", || async {
        let v = pgwarden_testkit::http::get_json(&c.http, &format!("{}/cluster", c.rest_url(2))).await?;
        let members = v["members"].as_array()?;
        (!members.is_empty() && !members.iter().any(|m| m["role"] == "leader")).then_some(())
    })
    .await;
    c.stop(1).await;
    let data = c.nodes[1].dir.join("pgdata");
    std::fs::rename(&data, c.nodes[1].dir.join("pgdata.lost-disk")).unwrap();
    c.start(1);
    wait_for(
        Duration::from_secs(120),
        "pg1 restored from the repository with no leader",
        || async {
            let log = c.log(1);
            (log.contains("no data directory and no leader: creating a replica")
                && log
                    .lines()
                    .filter(|l| l.contains("clone finished") && l.contains("pgbackrest"))
                    .count()
                    == 2)
                .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "pg1 answers read-only with the backup's rows",
        || async {
            let rows = c.query_i64(1, "SELECT count(*) FROM t").await?;
            let ro = c.query_i64(1, "SELECT pg_is_in_recovery()::int::int8").await?;
            (rows >= 1 && ro == 1).then_some(())
        },
    )
    .await;
}

/// Adds a custom bootstrap method to every node's configuration (the harness writes the
/// `bootstrap:` section; the method goes beside `dcs:`).
fn set_bootstrap_method(c: &Cluster, section: &str) {
    for n in &c.nodes {
        let path = n.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("bootstrap:\n  dcs:\n"));
        let text = text.replacen(
            "bootstrap:\n  dcs:\n",
            &format!("bootstrap:\n{section}  dcs:\n"),
            1,
        );
        std::fs::write(&path, text).unwrap();
    }
}

/// A new cluster bootstrapped by a point-in-time restore from another cluster's pgBackRest
/// repository (`bootstrap.method` with `recovery_conf`): it holds exactly the rows committed
/// before the target time, its leader left recovery on a new timeline, and its replicas
/// stream from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_pgbackrest_point_in_time_bootstrap() {
    require_pg!();
    if pgbackrest_bin().is_none() {
        return;
    }
    // The source: one node, archiving into the repository.
    let mut src = Cluster::new(Options {
        data_nodes: 1,
        raft_extra: vec!["  single_node: true\n".into()],
        dcs_parameters: vec![("archive_mode", "\"on\""), ("archive_command", ARCHIVE_COMMAND)],
        ..Options::default()
    });
    let conf = write_pgbackrest_conf(&src, 0);
    src.start(0);
    src.wait_healthy(Duration::from_secs(90)).await;
    let db = src.connect(0).await.unwrap();
    db.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 3)")
        .await
        .unwrap();
    pgbackrest(&conf, &["stanza-create"]);
    pgbackrest(&conf, &["--type=full", "backup"]);
    db.batch_execute("INSERT INTO t VALUES (4), (5)").await.unwrap();
    let target: String = db
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0);
    // Commits after the target: recovery stops before the first of them.
    wait_for(Duration::from_secs(10), "the clock past the target", || async {
        let r = db
            .query_one(
                &format!("SELECT clock_timestamp() > '{target}'::timestamptz"),
                &[],
            )
            .await
            .ok()?;
        r.get::<_, bool>(0).then_some(())
    })
    .await;
    db.batch_execute("INSERT INTO t VALUES (6), (7)").await.unwrap();
    let wal: String = db
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    wait_for(
        Duration::from_secs(60),
        "the last WAL segment archived",
        || async {
            let r = db
                .query_one(
                    "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                    &[],
                )
                .await
                .ok()?;
            (r.get::<_, String>(0) >= wal).then_some(())
        },
    )
    .await;
    drop(db);
    src.stop(0).await;

    // The new cluster: whichever member wins the bootstrap race restores into its own data
    // directory (the wrapper maps Patroni's --datadir to pgBackRest's --pg1-path).
    let mut c = Cluster::new(Options::default());
    let wrapper = c.root().join("restore.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --datadir=*) d=\"${{a#--datadir=}}\";; esac; done\n\
             exec pgbackrest --config={conf} --stanza={STANZA} --pg1-path=\"$d\" --delta restore\n",
            conf = conf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    set_bootstrap_method(
        &c,
        &format!(
            "  method: pitr\n  pitr:\n    command: {wrapper}\n    recovery_conf:\n      \
             restore_command: 'pgbackrest --config={conf} --stanza={STANZA} archive-get %f \"%p\"'\n      \
             recovery_target_time: '{target}'\n      recovery_target_action: promote\n",
            wrapper = wrapper.display(),
            conf = conf.display(),
        ),
    );
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(180)).await;
    let rows = c.query_i64(leader, "SELECT count(*) FROM t").await.unwrap();
    assert_eq!(rows, 5, "exactly the rows committed before {target}");
    let max = c
        .query_i64(leader, "SELECT max(id)::bigint FROM t")
        .await
        .unwrap();
    assert_eq!(max, 5);
    let tl = c.patroni(leader).await.unwrap()["timeline"].as_u64().unwrap();
    assert!(
        tl >= 2,
        "recovery ended with a promotion to a new timeline (timeline {tl})"
    );
    let log = c.log(leader);
    assert!(log.contains("running the custom bootstrap method"), "{log}");
    for i in (0..3).filter(|i| *i != leader) {
        wait_for(Duration::from_secs(30), "the rows on a replica", || async {
            (c.query_i64(i, "SELECT count(*) FROM t").await? == 5).then_some(())
        })
        .await;
    }
    drop(src);
}

/// A custom bootstrap method that fails: the data directory it wrote is moved aside (never
/// deleted), the cluster stays uninitialised, and GET /patroni says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_failed_custom_bootstrap_is_moved_aside_and_reported() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    let script = c.root().join("bad-restore.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --datadir=*) d=\"${a#--datadir=}\";; esac; done\n\
         echo half > \"$d/half-restored\"\necho 'restore failed: no backup' >&2\nexit 5\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    set_bootstrap_method(
        &c,
        &format!("  method: broken\n  broken:\n    command: {}\n", script.display()),
    );
    c.start_all();
    // Each member tries once (the `initialize` key is given back after each failure), then
    // none tries again.
    let failed = wait_for(
        Duration::from_secs(90),
        "a member reporting the failed bootstrap",
        || async {
            for i in 0..3 {
                let s = c.patroni(i).await?;
                if let Some(why) = s.get("bootstrap_failure").and_then(|v| v.as_str()) {
                    return Some((i, why.to_string(), s["state"].as_str().unwrap_or("").to_string()));
                }
            }
            None
        },
    )
    .await;
    let (i, why, state) = failed;
    assert_eq!(state, "custom bootstrap failed");
    assert!(
        why.contains("bad-restore.sh") && why.contains("exit status: 5") && why.contains("moved aside"),
        "{why}"
    );
    let aside: Vec<_> = std::fs::read_dir(&c.nodes[i].dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pgdata.failed-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside once, never deleted");
    assert!(aside[0].path().join("half-restored").is_file());
    assert!(c.log(i).contains("restore failed: no backup"));
    // Uninitialised: nobody is primary, nobody holds data.
    assert_eq!(c.primary().await, None);
    let s = c.patroni(i).await.unwrap();
    assert_eq!(s["role"].as_str(), Some("uninitialized"), "{s}");
}

fn pg_tool(name: &str) -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
        .join(name)
}

/// Runs a PostgreSQL tool as `postgres` (when the tests run as root); panics with its output
/// when it fails.
fn as_postgres(program: &Path, args: &[&str]) {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd
        .args(args)
        .current_dir("/")
        .output()
        .expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Patroni's "convert a standalone": a PostgreSQL made with initdb and run by hand, with
/// rows, and the roles of `postgresql.authentication` created (Patroni's documented step),
/// becomes the primary of a three-node cluster started on it. Returns after checking that
/// the rows are on every member and that the replicas stream.
async fn convert_standalone(keep_running: bool) {
    let mut c = Cluster::new(Options::default());
    let n0 = &c.nodes[0];
    let pgdata = n0.pgdata();
    let pgdata_s = pgdata.display().to_string();
    as_postgres(
        &pg_tool("initdb"),
        &["-D", &pgdata_s, "-U", "postgres", "-A", "trust", "-E", "UTF8"],
    );
    let opts = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1",
        n0.spec.pg,
        n0.dir.display()
    );
    let log = n0.dir.join("standalone.log").display().to_string();
    as_postgres(
        &pg_tool("pg_ctl"),
        &["-D", &pgdata_s, "-l", &log, "-o", &opts, "-w", "start"],
    );
    let (db, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", n0.spec.pg),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the standalone");
    tokio::spawn(conn);
    db.batch_execute(&format!(
        "ALTER ROLE postgres PASSWORD '{SUPERUSER_PASSWORD}';
         CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'r3pl-secret';
         CREATE TABLE standalone_rows AS SELECT generate_series(1, 100) AS id;"
    ))
    .await
    .unwrap();
    let sysid: i64 = db
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .unwrap()
        .get(0);
    drop(db);
    if !keep_running {
        as_postgres(&pg_tool("pg_ctl"), &["-D", &pgdata_s, "-m", "fast", "-w", "stop"]);
    }

    // A member with an empty data directory whose daemon came up before any member
    // reported data would bootstrap a new, empty cluster: the others may not (nofailover),
    // as the procedure in docs/migrating-from-patroni.md says.
    c.append_config(1, "tags:\n  nofailover: true\n");
    c.append_config(2, "tags:\n  nofailover: true\n");
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(120)).await;
    assert_eq!(leader, 0, "the member with the data is the primary");
    let s = c.patroni(0).await.unwrap();
    assert_eq!(
        s["database_system_identifier"].as_str(),
        Some(sysid.to_string().as_str())
    );
    assert_eq!(s["timeline"].as_u64(), Some(1), "adopted with no promotion: {s}");
    for i in 0..3 {
        wait_for(
            Duration::from_secs(30),
            "the standalone's rows on every member",
            || async { (c.query_i64(i, "SELECT count(*) FROM standalone_rows").await? == 100).then_some(()) },
        )
        .await;
        let si = c.patroni(i).await.unwrap();
        assert_eq!(si["database_system_identifier"], s["database_system_identifier"]);
    }
    // pgwarden manages its configuration from now on (initdb's file kept as the base).
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.starts_with("# Written by pgwarden"), "{conf}");
    assert!(pgdata.join("postgresql.base.conf").is_file());
    // Writes go on through the new primary.
    let db = c.connect(0).await.unwrap();
    db.batch_execute("INSERT INTO standalone_rows VALUES (101)")
        .await
        .unwrap();
    c.wait_healthy(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_standalone_stopped_is_converted() {
    require_pg!();
    convert_standalone(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datain_standalone_running_is_converted() {
    require_pg!();
    convert_standalone(true).await;
}
