//! Configuration that would build the wrong cluster, and pg_hba.conf: a refused setting (an
//! encrypted TLS key) stops both `pgwarden --validate-config` and the daemon with a message
//! naming the key, and the features built since validate; a cluster bootstrapped
//! with `bootstrap.dcs.postgresql.pg_hba` loads exactly those rules (and follows a PATCH of
//! them); without any pg_hba the built-in default has no `trust` and nothing open to every
//! address.

use crate::harness::{Cluster, Options};
use pgwarden::demo::{local_node_config, LocalNode};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A valid one-node configuration file in `dir` (nothing is started from it), with `edit`
/// applied to its text.
fn config_file(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = local_node_config(&LocalNode {
        scope: "safety",
        name: "n1",
        dir,
        raft: 1,
        rest: 2,
        pg: 3,
        ctl: 4,
        partners: &[],
        witness: false,
        watchdog_off: true,
        superuser_password: "s",
        replication_password: "r",
        ctl_extra: "",
        raft_extra: "  single_node: true\n",
        dcs_extra: "",
        parameters: &[("wal_level", "replica".to_string())],
        pg_extra: "",
    });
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// Runs the pgwarden binary with `args`; a daemon that is still running after 30 s (it
/// accepted the file) is killed and reported.
fn pgwarden(args: &[&Path]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .env("RUST_LOG", "info,openraft=error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgwarden");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pgwarden {args:?} accepted the configuration and kept running:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A refused setting (an encrypted TLS key): `--validate-config` and the daemon's start both
/// exit non-zero with the same message, which names the key and says what to do. The
/// Patroni features refused until they were built (a standby cluster, a custom
/// `bootstrap.method`, a custom `create_replica_methods` entry) now validate. The unedited
/// file is valid.
#[test]
fn safety_validate_config_and_start_refuse_unbuilt_features() {
    let dir = tempfile::tempdir().unwrap();
    let good = config_file(dir.path(), "good.yml", |t| t);
    let out = pgwarden(&[Path::new("--validate-config"), &good]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let file = config_file(dir.path(), "refused.yml", |t| {
        t.replacen("restapi:\n", "restapi:\n  keyfile_password: secret\n", 1)
    });
    let (key, what_to_do) = ("restapi.keyfile_password", "decrypt the key file");
    let expected = format!("`{key}`: not supported yet: ");
    for args in [vec![Path::new("--validate-config"), &file], vec![&file]] {
        let out = pgwarden(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail: {stderr}");
        assert!(
            stderr.contains(&expected) && stderr.contains(what_to_do),
            "{args:?}: expected {expected:?} and {what_to_do:?} in:\n{stderr}"
        );
    }

    type Edit = fn(String) -> String;
    let built: [(&str, Edit); 3] = [
        ("standby_cluster", |t| {
            t.replacen(
                "bootstrap:\n  dcs:\n",
                "bootstrap:\n  dcs:\n    standby_cluster:\n      host: 10.0.0.9\n      port: 5432\n",
                1,
            )
        }),
        ("bootstrap.method", |t| {
            t.replacen(
                "bootstrap:\n",
                "bootstrap:\n  method: restore\n  restore:\n    command: /bin/true\n",
                1,
            )
        }),
        ("create_replica_methods", |t| {
            format!("{t}  create_replica_methods: [wal_g, basebackup]\n  wal_g:\n    command: /bin/true\n")
        }),
    ];
    for (what, edit) in built {
        let file = config_file(dir.path(), "built.yml", edit);
        let out = pgwarden(&[Path::new("--validate-config"), &file]);
        assert!(
            out.status.success(),
            "{what} is built and must validate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `(type, database, user, address, netmask, auth)` of every rule in the pg_hba.conf that
/// member `i` has loaded, in file order; `None` when a line has an error.
async fn hba_rules(c: &Cluster, i: usize) -> Option<Vec<String>> {
    let client = c.connect(i).await?;
    let rows = client
        .query(
            "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), \
             coalesce(address, ''), coalesce(netmask, ''), auth_method, error \
             FROM pg_hba_file_rules ORDER BY line_number",
            &[],
        )
        .await
        .ok()?;
    let mut out = vec![];
    for r in rows {
        if r.get::<_, Option<String>>(6).is_some() {
            return None;
        }
        let cols: Vec<String> = (0..6).map(|k| r.get::<_, String>(k)).collect();
        out.push(cols.join(" ").split_whitespace().collect::<Vec<_>>().join(" "));
    }
    Some(out)
}

/// Puts `lines` under `bootstrap.dcs.postgresql.pg_hba` of node `i`'s file.
fn with_dcs_pg_hba(c: &Cluster, i: usize, lines: &[&str]) {
    let path = c.nodes[i].config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let list: String = lines.iter().map(|l| format!("      - \"{l}\"\n")).collect();
    let from = "    postgresql:\n      parameters:\n";
    assert!(text.contains(from), "{text}");
    let text = text.replacen(
        from,
        &format!("    postgresql:\n      pg_hba:\n{list}      parameters:\n"),
        1,
    );
    std::fs::write(path, text).unwrap();
}

/// A cluster bootstrapped with `bootstrap.dcs.postgresql.pg_hba` (the local file has none)
/// loads exactly those rules; a PATCH of them reaches pg_hba.conf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_dcs_pg_hba_is_applied() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 1,
        raft_extra: vec!["  single_node: true\n".into()],
        ..Options::default()
    });
    with_dcs_pg_hba(
        &c,
        0,
        &[
            "local all all scram-sha-256",
            "host all postgres 127.0.0.1/32 scram-sha-256",
            "host replication replicator 127.0.0.1/32 scram-sha-256",
            "host all all 192.0.2.0/24 scram-sha-256",
        ],
    );
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(60)).await;
    let rules = hba_rules(&c, leader).await.expect("pg_hba_file_rules");
    assert_eq!(
        rules,
        [
            "local all all scram-sha-256",
            "host all postgres 127.0.0.1 255.255.255.255 scram-sha-256",
            "host replication replicator 127.0.0.1 255.255.255.255 scram-sha-256",
            "host all all 192.0.2.0 255.255.255.0 scram-sha-256",
        ]
    );

    // The dynamic lines follow the DCS.
    let (code, body) = c
        .patch_config(
            leader,
            json!({"postgresql": {"pg_hba": [
                "local all all scram-sha-256",
                "host all postgres 127.0.0.1/32 scram-sha-256",
                "host all all 198.51.100.0/24 scram-sha-256",
            ]}}),
        )
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "{body}");
    wait_for(Duration::from_secs(20), "the patched pg_hba rules", || async {
        let rules = hba_rules(&c, leader).await?;
        (rules
            == [
                "local all all scram-sha-256",
                "host all postgres 127.0.0.1 255.255.255.255 scram-sha-256",
                "host all all 198.51.100.0 255.255.255.0 scram-sha-256",
            ])
        .then_some(())
    })
    .await;
}

/// Without any pg_hba (local or dynamic), the built-in default is loaded: no `trust`, no
/// address open to everyone, replication only for the replication role from the members'
/// host; pgwarden (over the socket) and clients on loopback connect with their passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_default_pg_hba_is_not_permissive() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 1,
        raft_extra: vec!["  single_node: true\n".into()],
        ..Options::default()
    });
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(60)).await;
    let rules = hba_rules(&c, leader).await.expect("pg_hba_file_rules");
    eprintln!("default pg_hba rules: {rules:#?}");
    assert!(!rules.is_empty());
    for r in &rules {
        let w: Vec<&str> = r.split(' ').collect();
        assert_ne!(w.last(), Some(&"trust"), "{r}");
        assert!(
            !(w.len() == 6 && (w[4] == "0.0.0.0" || w[4] == "::")),
            "open to every address: {r}"
        );
        if w[1] == "replication" {
            assert_eq!(
                w[2..],
                ["replicator", "127.0.0.1", "255.255.255.255", "scram-sha-256"],
                "{r}"
            );
        }
    }
    assert!(
        rules.contains(&"local all all scram-sha-256".to_string()),
        "{rules:?}"
    );
    assert!(
        rules.contains(&"host replication replicator 127.0.0.1 255.255.255.255 scram-sha-256".to_string()),
        "{rules:?}"
    );
    // The daemon reaches its PostgreSQL (the member reports it running) and a client with
    // the superuser's password connects over TCP.
    let status = c.patroni(leader).await.expect("GET /patroni");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(c.query_i64(leader, "SELECT 1::int8").await, Some(1));
}
