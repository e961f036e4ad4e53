//! Patroni keys a DBA commonly sets, applied to a real PostgreSQL 15 through the manager:
//! `unix_socket_directories` (the socket where the DBA put it, and pgwarden connecting
//! through it), `config_dir` (Debian's layout: the configuration files outside PGDATA),
//! `pg_ident` and `basebackup` options.
//!
//! Each test makes its own directory under /tmp (0755, owned by `postgres` when run as root),
//! picks free ports, listens on 127.0.0.1 and on sockets in that directory only, and stops
//! every server it started (immediate stop in a Drop guard) before the directory goes.

use pgwarden::postgres::{
    CloneProgress, ConfigInput, Credentials, InitdbOption, PgControl, PgManager, PgRole, PgSettings,
    ReplicaMethod, Upstream,
};
use pgwarden::types::MemberName;
use pgwarden_testkit::free_port;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn pg_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    if dir.join("postgres").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: PostgreSQL 15 not found at {} (set PG_BIN) ***\n",
            dir.display()
        );
        None
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A directory PostgreSQL's user may use (its owner when we are root).
fn own_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    if is_root() {
        let u = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("postgres user");
        nix::unistd::chown(path, Some(u.uid), Some(u.gid)).unwrap();
    }
}

fn test_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-apply-")
        .tempdir_in("/tmp")
        .unwrap();
    own_dir(dir.path());
    dir
}

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
    for t in [
        &mut s.timeouts.start,
        &mut s.timeouts.stop,
        &mut s.timeouts.clone,
        &mut s.timeouts.initdb,
    ] {
        *t = Duration::from_secs(60);
    }
    s
}

fn config(role: PgRole, pg_ident: Vec<String>) -> ConfigInput {
    let dcs_parameters: BTreeMap<String, String> = [
        ("shared_buffers", "16MB"),
        ("max_connections", "20"),
        ("max_wal_senders", "5"),
        ("wal_level", "replica"),
        ("fsync", "off"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ConfigInput {
        dcs_parameters,
        pg_hba: vec![
            "local all all trust".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
            "host replication all 127.0.0.1/32 scram-sha-256".into(),
        ],
        pg_ident,
        role,
        ..Default::default()
    }
}

/// A managed instance; dropping it stops its postmaster at once.
struct Node {
    pg: PgManager,
}

impl Drop for Node {
    fn drop(&mut self) {
        let data_dir = &self.pg.settings().data_dir;
        let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
            return;
        };
        let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
            return;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT).is_err()
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && data_dir.join("postmaster.pid").exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Node {
    /// One row's first column per row, over the socket in `socket_dir`.
    async fn sql_via(&self, socket_dir: &Path, q: &str) -> Result<Vec<String>, tokio_postgres::Error> {
        let s = self.pg.settings();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(socket_dir)
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

/// unix_socket_directories with two entries and a separate config_dir: the sockets are where
/// configured (not in the data directory's parent, where pgwarden used to force them),
/// pgwarden's own connection goes through the first, the server reads postgresql.conf,
/// pg_hba.conf and pg_ident.conf from config_dir, and pg_ident's lines are loaded.
#[tokio::test]
async fn config_state_applied_socket_dirs_config_dir_and_pg_ident() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let (sock1, sock2, etc) = (
        dir.path().join("run1"),
        dir.path().join("run2"),
        dir.path().join("etc/15/main"),
    );
    own_dir(&sock1);
    own_dir(&sock2);
    let mut s = settings(&bin, dir.path(), "pg1")
        .with_unix_socket_directories(&format!("{}, {}", sock1.display(), sock2.display()))
        .unwrap();
    s.config_dir = Some(etc.clone());
    let port = s.port;
    let data = s.data_dir.clone();
    let node = Node {
        pg: PgManager::new(s).await.unwrap(),
    };
    node.pg
        .initdb(&[
            InitdbOption::Value("encoding".into(), "UTF8".into()),
            InitdbOption::Value("locale".into(), "C.UTF-8".into()),
        ])
        .await
        .unwrap();
    let ident = vec!["ops   dba   postgres".to_string()];
    node.pg
        .write_config(&config(PgRole::Primary, ident))
        .await
        .unwrap();
    for f in [
        "postgresql.conf",
        "postgresql.base.conf",
        "pg_hba.conf",
        "pg_ident.conf",
    ] {
        assert!(etc.join(f).is_file(), "{f} written in config_dir");
    }
    node.pg.start().await.unwrap();

    // Both sockets exist where configured, none in the data directory's parent.
    for d in [&sock1, &sock2] {
        assert!(
            d.join(format!(".s.PGSQL.{port}")).exists(),
            "socket in {}",
            d.display()
        );
    }
    assert!(!dir.path().join(format!(".s.PGSQL.{port}")).exists());
    // pgwarden's own connection (status) goes through the first directory.
    let st = node.pg.status().await.unwrap();
    assert!(!st.in_recovery);

    let show = |what: &'static str| {
        let n = &node;
        let sock = sock2.clone();
        async move { n.sql_via(&sock, &format!("SHOW {what}")).await.unwrap().remove(0) }
    };
    assert_eq!(
        show("config_file").await,
        etc.join("postgresql.conf").display().to_string()
    );
    assert_eq!(
        show("hba_file").await,
        etc.join("pg_hba.conf").display().to_string()
    );
    assert_eq!(
        show("ident_file").await,
        etc.join("pg_ident.conf").display().to_string()
    );
    assert_eq!(
        std::fs::canonicalize(show("data_directory").await).unwrap(),
        std::fs::canonicalize(&data).unwrap()
    );
    let maps = node
        .sql_via(
            &sock1,
            "SELECT map_name || ' ' || sys_name || ' ' || pg_username FROM pg_ident_file_mappings",
        )
        .await
        .unwrap();
    assert_eq!(maps, ["ops dba postgres"]);
    // The data directory's own postgresql.conf (initdb's) is not the one in use.
    let in_data = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    assert!(!in_data.starts_with("# Written by pgwarden"));
}

/// postgresql.basebackup options reach pg_basebackup: the label shows in the clone's
/// backup_label; an option pgwarden controls is refused.
#[tokio::test]
async fn config_state_applied_basebackup_options() {
    let Some(bin) = pg_bin() else { return };
    let dir = test_dir();
    let a = Node {
        pg: PgManager::new(settings(&bin, dir.path(), "pg1")).await.unwrap(),
    };
    a.pg.initdb(&[InitdbOption::Value("encoding".into(), "UTF8".into())])
        .await
        .unwrap();
    a.pg.write_config(&config(PgRole::Primary, vec![])).await.unwrap();
    a.pg.start().await.unwrap();
    a.pg.create_roles().await.unwrap();

    let pairs = |v: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    };
    assert!(pgwarden::postgres::basebackup_args(&pairs(&[("wal-method", Some("fetch"))])).is_err());
    let mut s = settings(&bin, dir.path(), "pg2");
    s.basebackup_args = pgwarden::postgres::basebackup_args(&pairs(&[
        ("label", Some("pgwarden-apply-test")),
        ("max-rate", Some("64M")),
    ]))
    .unwrap();
    let b = Node {
        pg: PgManager::new(s).await.unwrap(),
    };
    let (tx, _rx) = tokio::sync::watch::channel(CloneProgress::default());
    let up = Upstream {
        host: "127.0.0.1".into(),
        port: a.pg.settings().port,
    };
    b.pg.clone_from(&up, &[ReplicaMethod::Basebackup { max_tries: 1 }], &tx)
        .await
        .unwrap();
    let label = std::fs::read_to_string(b.pg.settings().data_dir.join("backup_label")).unwrap();
    assert!(label.contains("LABEL: pgwarden-apply-test"), "{label}");
}
