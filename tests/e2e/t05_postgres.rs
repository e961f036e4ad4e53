//! The PostgreSQL manager against real PostgreSQL 15 (`/usr/lib/postgresql/15/bin`, or `PG_BIN`).
//!
//! Each test makes its own directory under /tmp (mode 0755 so the `postgres` user can traverse it
//! when the tests run as root), picks free ports at run time, listens on 127.0.0.1 and unix
//! sockets in that directory only, and stops every server it started (immediate stop in a Drop
//! guard) before the directory is removed. Tests skip loudly when PostgreSQL is absent.

use pgwarden::postgres::{
    CloneProgress, ConfigInput, Credentials, Error, InitdbOption, PgControl, PgManager, PgRole, PgSettings,
    PostmasterState, ReplicaMethod, StandbyTarget, StopMode, StopOutcome, Upstream,
};
use pgwarden::types::{MemberName, TimelineId};
use pgwarden_testkit::{free_port, wait_for_every};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN));
    if dir.join("postgres").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: PostgreSQL 15 not found at {} (install postgresql-15 or set PG_BIN) ***\n",
            dir.display()
        );
        None
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn postgres_user() -> nix::unistd::User {
    nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres system user exists")
}

/// A test directory the postgres user owns (when root), removed at the end.
fn test_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-pg-")
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap();
    if is_root() {
        let u = postgres_user();
        nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
    }
    dir
}

const SEC: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

fn settings(bin: &Path, dir: &Path, name: &str) -> PgSettings {
    let mut s = PgSettings::new(
        MemberName::new(name).unwrap(),
        "e2e",
        dir.join(format!("{name}-data")),
        free_port(),
    );
    s.bin_dir = Some(bin.to_owned());
    s.run_as = is_root().then(|| "postgres".to_owned());
    s.superuser = Credentials::new("postgres", "su-secret");
    s.replication = Credentials::new("replicator", "repl-secret");
    s.rewind = Some(Credentials::new("rewinder", "rw-secret"));
    s.timeouts.start = Duration::from_secs(60);
    s.timeouts.stop = Duration::from_secs(20);
    s.timeouts.clone = Duration::from_secs(60);
    s.timeouts.rewind = Duration::from_secs(60);
    s.timeouts.initdb = Duration::from_secs(60);
    s.timeouts.crash_recovery = Duration::from_secs(60);
    s
}

fn params(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("shared_buffers", "16MB"),
        ("max_connections", "20"),
        ("max_wal_senders", "5"),
        ("max_replication_slots", "5"),
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        ("wal_keep_size", "64MB"),
        // Tests only: no durability needed, and fsync is the slowest part on a shared 2-core box.
        ("fsync", "off"),
        ("work_mem", "4MB"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn config(standby: Option<StandbyTarget>) -> ConfigInput {
    let role = match standby {
        Some(t) => PgRole::Standby(Some(t)),
        None => PgRole::Primary,
    };
    ConfigInput {
        dcs_parameters: params(&[]),
        local_parameters: BTreeMap::new(),
        pg_hba: vec![
            "local all all trust".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
            "host replication all 127.0.0.1/32 scram-sha-256".into(),
        ],
        role,
        recovery: BTreeMap::new(),
        ..Default::default()
    }
}

/// A managed instance; dropping it stops its postmaster immediately.
struct Node {
    pg: PgManager,
}

impl Node {
    async fn new(s: PgSettings) -> Node {
        Node {
            pg: PgManager::new(s).await.unwrap(),
        }
    }

    fn upstream(&self) -> Upstream {
        Upstream {
            host: "127.0.0.1".into(),
            port: self.pg.settings().port,
        }
    }

    fn standby_of(&self, slot: &str) -> StandbyTarget {
        StandbyTarget {
            host: "127.0.0.1".into(),
            port: self.pg.settings().port,
            slot: Some(slot.into()),
        }
    }

    async fn sql(&self, q: &str) -> Result<Vec<String>, tokio_postgres::Error> {
        let s = self.pg.settings();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&s.socket_dir)
            .port(s.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let msgs = tokio::time::timeout(Duration::from_secs(10), c.simple_query(q))
            .await
            .expect("test query timed out")?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .collect())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop_immediately(&self.pg.settings().data_dir);
    }
}

/// Immediate stop without async: SIGQUIT to the postmaster named in postmaster.pid (one we
/// started), then wait for it to go.
fn stop_immediately(data_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && data_dir.join("postmaster.pid").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn bootstrap_primary(bin: &Path, dir: &Path, name: &str) -> Node {
    let node = Node::new(settings(bin, dir, name)).await;
    node.pg
        .initdb(&[
            InitdbOption::Value("encoding".into(), "UTF8".into()),
            InitdbOption::Value("locale".into(), "C.UTF-8".into()),
        ])
        .await
        .unwrap();
    node.pg.write_config(&config(None)).await.unwrap();
    node.pg.start().await.unwrap();
    node.pg.create_roles().await.unwrap();
    node
}

/// initdb with Patroni-style options, start, observe, and stop in each of the three modes; the
/// forbidden initdb options are refused before anything is written, the superuser password
/// file does not outlive initdb, and post_bootstrap gets the connection URL.
#[tokio::test]
async fn e2e_initdb_start_observe_and_stop_in_each_mode() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let node = Node::new(settings(&bin, dir.path(), "pg1")).await;
    let data = node.pg.settings().data_dir.clone();
    assert_eq!(node.pg.version().num / 10_000, 15);

    let err = node
        .pg
        .initdb(&[InitdbOption::Flag("nosync".into())])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ForbiddenInitdbOption { ref option } if option == "nosync"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a refused initdb must not create the data directory"
    );

    let secrets_before = count_secret_files();
    node.pg
        .initdb(&[
            InitdbOption::Flag("data-checksums".into()),
            InitdbOption::Value("encoding".into(), "UTF8".into()),
            InitdbOption::Value("locale".into(), "C.UTF-8".into()),
        ])
        .await
        .unwrap();
    assert_eq!(
        count_secret_files(),
        secrets_before,
        "initdb's password file was removed"
    );
    node.pg.write_config(&config(None)).await.unwrap();
    assert!(
        data.join("postgresql.base.conf").is_file(),
        "initdb's file kept as the base"
    );
    node.pg.start().await.unwrap();
    node.pg.create_roles().await.unwrap();

    let cd = node.pg.controldata().await.unwrap();
    assert!(cd.data_checksums);
    let st = node.pg.status().await.unwrap();
    assert!(!st.in_recovery);
    assert_eq!(st.timeline, TimelineId(1));
    assert!(st.current_lsn.is_some());
    assert_eq!(st.system_identifier, cd.system_identifier);
    let roles = node.sql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('replicator','rewinder')").await.unwrap();
    assert_eq!(roles, vec!["replicator,rewinder"]);
    let enc = node.sql("SHOW server_encoding").await.unwrap();
    assert_eq!(enc, vec!["UTF8"]);

    let out = dir.path().join("post_bootstrap.out");
    node.pg
        .run_post_bootstrap(&format!("/bin/sh -c 'echo \"$0\" > {}'", out.display()))
        .await
        .unwrap();
    let url = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        url.trim(),
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            node.pg.settings().port
        )
    );

    for mode in [StopMode::Smart, StopMode::Fast, StopMode::Immediate] {
        if !matches!(node.pg.probe(), PostmasterState::Running { .. }) {
            node.pg.start().await.unwrap();
        }
        // An open session: smart must still finish (the manager drops its own connection, and
        // escalation covers foreign ones).
        node.pg.status().await.unwrap();
        let outcome = node.pg.stop(mode).await.unwrap();
        assert_eq!(outcome, StopOutcome::Stopped { mode });
        assert_eq!(node.pg.probe(), PostmasterState::Stopped);
        let state = node.pg.controldata().await.unwrap().state;
        let expected = if mode == StopMode::Immediate {
            "in production"
        } else {
            "shut down"
        };
        assert_eq!(state, expected, "after a {mode} stop");
    }
    assert_eq!(
        node.pg.stop(StopMode::Fast).await.unwrap(),
        StopOutcome::NotRunning
    );
    // The immediate stop left an unclean state: single-user recovery makes it clean.
    assert!(node.pg.crash_recovery().await.unwrap());
    assert!(node.pg.controldata().await.unwrap().clean_shutdown());

    // Escalation: a client session holds a smart shutdown, so after the (short) smart stage the
    // stop escalates to fast.
    node.pg.start().await.unwrap();
    let mut impatient_settings = node.pg.settings().clone();
    impatient_settings.timeouts.stop = Duration::from_secs(1);
    let impatient = PgManager::new(impatient_settings).await.unwrap();
    assert!(impatient.adopt().unwrap().is_some());
    let s = node.pg.settings();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(&s.socket_dir)
        .port(s.port)
        .user("postgres")
        .dbname("postgres");
    let (held, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    held.simple_query("SELECT 1").await.unwrap();
    let outcome = impatient.stop(StopMode::Smart).await.unwrap();
    assert_eq!(outcome, StopOutcome::Stopped { mode: StopMode::Fast });
    drop(held);

    // A postmaster that dies during startup (invalid setting) fails fast with the log tail.
    let mut bad = config(None);
    bad.local_parameters
        .insert("shared_buffers".into(), "lots".into());
    node.pg.write_config(&bad).await.unwrap();
    let started = Instant::now();
    let err = node.pg.start().await.unwrap_err();
    assert!(matches!(err, Error::PostmasterDied { .. }), "{err}");
    assert!(
        err.to_string().contains("shared_buffers"),
        "log tail in the error: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast");
    assert_eq!(node.pg.probe(), PostmasterState::Stopped);
}

fn count_secret_files() -> usize {
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pgwarden-initdb-pw"))
                .count()
        })
        .unwrap_or(0)
}

/// A replica cloned with pg_basebackup (progress observed) streams from the primary; after it is
/// promoted and the old primary diverges, the old primary is rewound and streams from the new
/// primary on the new timeline.
#[tokio::test]
async fn e2e_clone_stream_promote_diverge_and_rewind() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let a = bootstrap_primary(&bin, dir.path(), "pg1").await;
    a.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('before-clone')")
        .await
        .unwrap();
    a.pg.create_physical_slot("pg2").await.unwrap();

    let b = Node::new(settings(&bin, dir.path(), "pg2")).await;
    let (tx, mut rx) = tokio::sync::watch::channel(CloneProgress::default());
    let seen = tokio::spawn(async move {
        let mut max_total = 0;
        while rx.changed().await.is_ok() {
            max_total = max_total.max(rx.borrow().total_kb);
        }
        max_total
    });
    // A custom method first (records its Patroni-style arguments, then fails), then basebackup.
    let args_file = dir.path().join("custom.args");
    let methods = vec![
        ReplicaMethod::Custom {
            name: "custom".into(),
            command: format!(
                "/bin/sh -c 'echo \"$@\" > {}; exit 3' custom",
                args_file.display()
            ),
            params: [("foo".to_string(), "bar".to_string())].into(),
            keep_data: false,
            no_leader: false,
            no_params: false,
        },
        ReplicaMethod::Basebackup { max_tries: 2 },
    ];
    b.pg.clone_from(&a.upstream(), &methods, &tx).await.unwrap();
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        args.trim(),
        format!(
            "--scope=e2e --role=replica --datadir={} --connstring=postgres://replicator@127.0.0.1:{}/postgres --foo=bar",
            b.pg.settings().data_dir.display(),
            a.pg.settings().port
        )
    );
    let last = tx.borrow().clone();
    drop(tx);
    assert!(last.finished && last.percent == 100, "{last:?}");
    assert_eq!(last.method, "basebackup");
    assert!(
        seen.await.unwrap() > 0,
        "progress with a total size was published"
    );

    b.pg.write_config(&config(Some(a.standby_of("pg2"))))
        .await
        .unwrap();
    b.pg.start().await.unwrap();
    let row = wait_for_every(TICK, 30 * SEC, "pg2 streaming in pg_stat_replication", || async {
        a.pg.replication()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.application_name == "pg2" && r.state.as_deref() == Some("streaming"))
    })
    .await;
    assert_eq!(row.usename.as_deref(), Some("replicator"));
    let slot =
        a.pg.slots()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "pg2")
            .unwrap();
    assert!(slot.active);
    a.sql("INSERT INTO t VALUES ('streamed')").await.unwrap();
    wait_for_every(TICK, 30 * SEC, "row on the replica", || async {
        let rows = b.sql("SELECT string_agg(v, ',' ORDER BY v) FROM t").await.ok()?;
        (rows == vec!["before-clone,streamed"]).then_some(())
    })
    .await;
    let st = b.pg.status().await.unwrap();
    assert!(st.in_recovery && st.replay_lsn.is_some() && st.receive_lsn.is_some());
    let wr = b.pg.wal_receiver().await.unwrap().expect("a walreceiver row");
    assert_eq!(wr.slot_name.as_deref(), Some("pg2"));

    // Promote pg2, then write on pg1 too: now both have WAL the other lacks.
    b.pg.promote().await.unwrap();
    let st = b.pg.status().await.unwrap();
    assert!(!st.in_recovery);
    assert_eq!(st.timeline, TimelineId(2));
    b.pg.checkpoint().await.unwrap(); // what the leader does after promote; pg_rewind needs it
    a.sql("INSERT INTO t VALUES ('diverged')").await.unwrap();
    assert_eq!(
        a.pg.stop(StopMode::Fast).await.unwrap(),
        StopOutcome::Stopped { mode: StopMode::Fast }
    );

    let decision = a.pg.check_rewind(&b.upstream()).await.unwrap();
    assert!(decision.needed(), "{decision:?}");
    b.pg.create_physical_slot("pg1").await.unwrap();
    a.pg.rewind(&b.upstream()).await.unwrap();
    a.pg.write_config(&config(Some(b.standby_of("pg1"))))
        .await
        .unwrap();
    a.pg.start().await.unwrap();
    b.sql("INSERT INTO t VALUES ('after-rewind')").await.unwrap();
    wait_for_every(
        TICK,
        30 * SEC,
        "rewound pg1 streams timeline 2 from pg2",
        || async {
            let st = a.pg.status().await.ok()?;
            let rows = a.sql("SELECT string_agg(v, ',' ORDER BY v) FROM t").await.ok()?;
            (st.in_recovery
                && st.timeline == TimelineId(2)
                && rows == vec!["after-rewind,before-clone,streamed"])
            .then_some(())
        },
    )
    .await;
    let err = a.pg.check_rewind(&b.upstream()).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyRunning { .. }), "{err}");
}

/// A restarted daemon adopts the running postmaster without restarting it; a postmaster killed
/// with SIGKILL is then detected as crashed, and the next start goes through crash recovery
/// and keeps committed data.
#[tokio::test]
async fn e2e_adopted_postmaster_killed_is_detected_and_restarts_through_crash_recovery() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let a = bootstrap_primary(&bin, dir.path(), "pg1").await;
    a.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')")
        .await
        .unwrap();
    let PostmasterState::Running { pid } = a.pg.probe() else {
        panic!("not running")
    };

    // A second manager on the same data directory stands for the daemon after a restart.
    let restarted = PgManager::new(a.pg.settings().clone()).await.unwrap();
    assert_eq!(restarted.adopt().unwrap(), Some(pid));
    assert_eq!(restarted.probe(), PostmasterState::Running { pid });
    assert!(!restarted.status().await.unwrap().in_recovery);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for_every(TICK, 10 * SEC, "the crash is detected", || async {
        (restarted.probe() == PostmasterState::Crashed { pid }).then_some(())
    })
    .await;
    assert_eq!(restarted.controldata().await.unwrap().state, "in production");
    restarted.start().await.unwrap();
    let PostmasterState::Running { pid: new_pid } = restarted.probe() else {
        panic!("not running after restart")
    };
    assert_ne!(new_pid, pid);
    assert_eq!(a.sql("SELECT v FROM t").await.unwrap(), vec!["committed"]);
    let log = std::fs::read_to_string(&a.pg.settings().log_file).unwrap();
    assert!(
        log.contains("not properly shut down"),
        "the start replayed WAL (crash recovery)"
    );
}

/// A restart-only parameter shows as pending restart with old and new values; a reloadable one
/// applies on reload. Local parameters override the DCS ones except cluster-wide GUCs.
#[tokio::test]
async fn e2e_pending_restart_and_reload() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let a = bootstrap_primary(&bin, dir.path(), "pg1").await;
    assert!(a.pg.pending_restart().await.unwrap().is_empty());

    let mut input = config(None);
    input.dcs_parameters.insert("max_connections".into(), "30".into());
    input.dcs_parameters.insert("work_mem".into(), "6MB".into());
    // Local wins for ordinary GUCs; a local cluster-wide GUC is ignored.
    input.local_parameters.insert("work_mem".into(), "8MB".into());
    input
        .local_parameters
        .insert("max_connections".into(), "99".into());
    a.pg.write_config(&input).await.unwrap();
    a.pg.reload().await.unwrap();

    wait_for_every(TICK, 10 * SEC, "work_mem applied by reload", || async {
        (a.sql("SHOW work_mem").await.ok()? == vec!["8MB"]).then_some(())
    })
    .await;
    let pending = wait_for_every(TICK, 10 * SEC, "max_connections pending restart", || async {
        let p = a.pg.pending_restart().await.ok()?;
        p.contains_key("max_connections").then_some(p)
    })
    .await;
    assert_eq!(pending["max_connections"].old_value, "20");
    assert_eq!(pending["max_connections"].new_value, "30");
    assert!(!pending.contains_key("work_mem"));

    a.pg.set_synchronous_standby_names(Some("\"pg2\"")).await.unwrap();
    wait_for_every(TICK, 10 * SEC, "synchronous_standby_names applied", || async {
        (a.sql("SHOW synchronous_standby_names").await.ok()? == vec!["\"pg2\""]).then_some(())
    })
    .await;

    a.pg.restart(StopMode::Fast).await.unwrap();
    assert!(a.pg.pending_restart().await.unwrap().is_empty());
    assert_eq!(a.sql("SHOW max_connections").await.unwrap(), vec!["30"]);
}

/// bin_dir pointing at an empty directory: a specific error naming the directory and the
/// package to install.
#[tokio::test]
async fn e2e_missing_binaries_name_the_directory_and_package() {
    let dir = test_dir();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let mut s = PgSettings::new(MemberName::new("pg1").unwrap(), "e2e", dir.path().join("data"), 1);
    s.bin_dir = Some(empty.clone());
    s.run_as = is_root().then(|| "postgres".to_owned());
    let err = PgManager::new(s).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BinariesNotFound { .. }), "{msg}");
    assert!(
        msg.contains(&empty.display().to_string()) && msg.contains("postgresql-15"),
        "{msg}"
    );
    assert!(!dir.path().join("data").exists());
}

/// Bad inputs give specific errors and touch no data: a non-empty directory at initdb, a data
/// directory owned by another user, an unreachable clone source, a wrong replication password.
#[tokio::test]
async fn e2e_bad_inputs_fail_specifically_and_touch_no_data() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();

    // Non-empty directory at initdb.
    let s = settings(&bin, dir.path(), "full");
    std::fs::create_dir(&s.data_dir).unwrap();
    std::fs::write(s.data_dir.join("keep.txt"), "precious").unwrap();
    if is_root() {
        let u = postgres_user();
        nix::unistd::chown(&s.data_dir, Some(u.uid), Some(u.gid)).unwrap();
    }
    let full = PgManager::new(s.clone()).await.unwrap();
    let err = full.initdb(&[]).await.unwrap_err();
    assert!(
        matches!(err, Error::DataDirNotEmpty { ref path, .. } if *path == s.data_dir),
        "{err}"
    );
    assert!(err.to_string().contains("full-data"), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.data_dir.join("keep.txt")).unwrap(),
        "precious"
    );

    // A data directory owned by another user (root here; PostgreSQL runs as postgres).
    if is_root() {
        let s = settings(&bin, dir.path(), "foreign");
        std::fs::create_dir(&s.data_dir).unwrap(); // owned by root
        let foreign = PgManager::new(s.clone()).await.unwrap();
        let err = foreign.initdb(&[]).await.unwrap_err();
        assert!(matches!(err, Error::DataDirOwner { owner: 0, .. }), "{err}");
        assert!(err.to_string().contains("foreign-data"), "{err}");
        let err = foreign.start().await.unwrap_err();
        assert!(matches!(err, Error::DataDirOwner { .. }), "{err}");
        assert_eq!(
            std::fs::metadata(&s.data_dir).unwrap().uid(),
            0,
            "ownership untouched"
        );
        assert_eq!(std::fs::read_dir(&s.data_dir).unwrap().count(), 0);
    } else {
        eprintln!("*** part skipped: the foreign-owner case needs root ***");
    }

    // Unreachable clone source: nobody listens on a fresh free port.
    let s = settings(&bin, dir.path(), "orphan");
    let orphan = PgManager::new(s.clone()).await.unwrap();
    let nowhere = Upstream {
        host: "127.0.0.1".into(),
        port: free_port(),
    };
    let (tx, _rx) = tokio::sync::watch::channel(CloneProgress::default());
    let err = orphan
        .clone_from(&nowhere, &ReplicaMethod::default_methods(), &tx)
        .await
        .unwrap_err();
    let Error::CloneFailed { ref source, .. } = err else {
        panic!("{err}")
    };
    assert!(
        matches!(**source, Error::CloneSourceUnreachable { .. }),
        "{source}"
    );
    assert!(source.to_string().contains(&nowhere.to_string()), "{source}");
    assert_eq!(
        std::fs::read_dir(&s.data_dir).unwrap().count(),
        0,
        "nothing left behind"
    );

    // Wrong replication password against a real primary.
    let a = bootstrap_primary(&bin, dir.path(), "pg1").await;
    let mut s = settings(&bin, dir.path(), "badpw");
    s.replication = Credentials::new("replicator", "wrong");
    let badpw = PgManager::new(s.clone()).await.unwrap();
    let err = badpw
        .clone_from(&a.upstream(), &ReplicaMethod::default_methods(), &tx)
        .await
        .unwrap_err();
    let Error::CloneFailed { ref source, .. } = err else {
        panic!("{err}")
    };
    assert!(
        matches!(**source, Error::CloneAuthentication { ref user, .. } if user == "replicator"),
        "{source}"
    );
    assert!(
        source.to_string().contains("password authentication failed"),
        "{source}"
    );
    assert_eq!(std::fs::read_dir(&s.data_dir).unwrap().count(), 0);
    // The primary was not disturbed.
    assert!(!a.pg.status().await.unwrap().in_recovery);
}

/// A member with no leader to follow starts PostgreSQL as a standby without an upstream: it
/// serves reads and refuses writes, and only a promotion makes it writable. (A switchover
/// once lost acknowledged commits because such a member came up writable.)
#[tokio::test]
async fn e2e_standby_without_upstream_refuses_writes() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let node = bootstrap_primary(&bin, dir.path(), "pg1").await;
    node.sql("CREATE TABLE t (id int)").await.unwrap();
    node.pg.stop(StopMode::Fast).await.unwrap();

    let mut input = config(None);
    input.role = PgRole::Standby(None);
    node.pg.write_config(&input).await.unwrap();
    let data = node.pg.settings().data_dir.clone();
    assert!(data.join("standby.signal").is_file());
    node.pg.start().await.unwrap();
    assert!(node.pg.status().await.unwrap().in_recovery);
    let err = node.sql("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "a standby must refuse writes: {err:?}"
    );
    assert_eq!(node.sql("SELECT count(*) FROM t").await.unwrap(), vec!["0"]);

    node.pg.promote().await.unwrap();
    assert!(!data.join("standby.signal").exists());
    node.sql("INSERT INTO t VALUES (1)").await.unwrap();
}
