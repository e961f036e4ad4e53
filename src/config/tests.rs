//! Unit tests of the configuration module.

use super::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE: &str = "test.yml";

/// The smallest valid data-node config.
fn base() -> Value {
    json!({
        "scope": "batman",
        "name": "node1",
        "restapi": {"listen": "0.0.0.0:8008", "connect_address": "10.0.0.1:8008"},
        "raft": {"data_dir": "/var/lib/pgwarden/raft", "self_addr": "10.0.0.1:5010",
                 "partner_addrs": ["10.0.0.2:5010", "10.0.0.3:5010"]},
        "postgresql": {
            "listen": "0.0.0.0:5432", "connect_address": "10.0.0.1:5432", "data_dir": "/data/pg",
            "authentication": {"superuser": {"username": "postgres"}, "replication": {"username": "replicator"}}
        }
    })
}

fn set(doc: &mut Value, path: &str, v: Value) {
    let mut cur = doc;
    let segs: Vec<&str> = path.split('.').collect();
    for seg in &segs[..segs.len() - 1] {
        if !cur.get(*seg).is_some_and(Value::is_object) {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    cur[segs[segs.len() - 1]] = v;
}

fn remove(doc: &mut Value, path: &str) {
    let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    let target = if parent.is_empty() {
        Some(&mut *doc)
    } else {
        parent.split('.').try_fold(doc, |v, s| v.get_mut(s))
    };
    if let Some(Value::Object(m)) = target {
        m.remove(leaf);
    }
}

fn load_env(doc: &Value, strict: Strictness, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let text = serde_yaml::to_string(doc).unwrap();
    Config::from_yaml_str(
        &text,
        Path::new(FILE),
        strict,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn load(doc: &Value) -> Result<Loaded, ConfigError> {
    load_env(doc, Strictness::Lenient, &[])
}

fn load_yaml(text: &str) -> Result<Loaded, ConfigError> {
    Config::from_yaml_str(text, Path::new(FILE), Strictness::Lenient, std::iter::empty())
}

fn keys_of(e: &ConfigError) -> Vec<String> {
    e.iter().filter_map(|e| e.key().map(str::to_string)).collect()
}

/// A realistic Patroni file, with `raft:` in place of `etcd:`. It names a custom bootstrap
/// method and a custom replica method, which are not built and so refused
/// (`safety_a_patroni_file_with_unbuilt_methods_is_refused`); the parse test takes them out.
const PATRONI_STYLE: &str = r#"
scope: batman
namespace: /db/
name: postgresql0
log: {level: DEBUG, dir: /var/log/pgwarden, file_num: 5}
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
  authentication: {username: u, password: p}
  certfile: /etc/ssl/api.pem
  keyfile: /etc/ssl/api.key
  cafile: /etc/ssl/ca.pem
  verify_client: optional
  allowlist: [127.0.0.1, 10.0.0.0/8]
  allowlist_include_members: true
  http_extra_headers: {X-Frame-Options: SAMEORIGIN}
  request_queue_size: 10
raft:
  data_dir: /var/lib/pgwarden/raft
  self_addr: 127.0.0.1:2222
  partner_addrs: ['127.0.0.1:2223', '127.0.0.1:2224']
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    master_start_timeout: 120
    synchronous_mode: quorum
    synchronous_node_count: 2
    failsafe_mode: true
    member_slots_ttl: 1h
    slots: {logical1: {type: logical, database: app, plugin: pgoutput}, phys1: null}
    ignore_slots: [{name: ext, type: physical}]
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters: {wal_level: replica, hot_standby: "on", max_connections: 100, wal_log_hints: true}
    my_custom_key: {kept: true}
  method: wal_g_restore
  wal_g_restore: {command: /usr/local/bin/restore.sh, no_params: true}
  initdb: [{encoding: UTF8}, data-checksums]
  pg_hba: [host replication replicator 127.0.0.1/32 md5]
  post_bootstrap: /usr/local/bin/post.sh --flag
postgresql:
  listen: 127.0.0.1,127.0.0.2:5432
  connect_address: 127.0.0.1:5432
  proxy_address: 127.0.0.1:6432
  data_dir: /data/postgresql0
  bin_dir: /usr/lib/postgresql/16/bin
  pgpass: /tmp/pgpass0
  run_as: postgres
  authentication:
    replication: {username: replicator, password: rep-pass, sslmode: require}
    superuser: {username: postgres, password: zalando}
    rewind: {username: rewind_user, password: rewind_password}
  parameters: {unix_socket_directories: '..', shared_buffers: 128MB, work_mem: 4096}
  pg_hba: [host all all 0.0.0.0/0 md5]
  callbacks: {on_role_change: "/bin/cb.sh 'a b'", on_start: [/bin/cb.sh, start]}
  pre_promote: /bin/fence.sh
  create_replica_methods: [wal_g, basebackup]
  wal_g: {command: /bin/walg-clone.sh, no_leader: true}
  basebackup: [{max-rate: 100M}, checkpoint=fast]
  rewind: [debug, {sync-method: fsync}]
  use_unix_socket: true
  pg_ctl_timeout: 2min
  bin_name: {pg_ctl: pg_ctl16}
tags: {nofailover: false, noloadbalance: false, clonefrom: true, rack: r1, zone: 3}
watchdog: {mode: required, device: /dev/watchdog1, safety_margin: -1}
"#;

/// The custom methods of [`PATRONI_STYLE`], and what the parse test puts in their place.
const UNBUILT_METHODS: [(&str, &str); 2] = [
    (
        "  method: wal_g_restore\n  wal_g_restore: {command: /usr/local/bin/restore.sh, no_params: true}\n",
        "",
    ),
    (
        "  create_replica_methods: [wal_g, basebackup]\n  wal_g: {command: /bin/walg-clone.sh, no_leader: true}\n",
        "  create_replica_methods: [basebackup]\n",
    ),
];

/// A realistic Patroni file (with `raft:` in place of `etcd:`) parses, and values land where the
/// daemon will read them.
#[test]
fn a_full_patroni_style_config_parses() {
    let text = UNBUILT_METHODS
        .iter()
        .fold(PATRONI_STYLE.to_string(), |t, (from, to)| {
            assert!(t.contains(from), "{from}");
            t.replace(from, to)
        });
    let Loaded { config: c, warnings } = load_yaml(&text).unwrap();
    // A custom key in bootstrap.dcs is kept (it goes to the DCS) but reported, since it may be a typo.
    // (The keys with no effect are each warned about too; tests/config_state.rs checks those.)
    assert_eq!(
        warnings
            .iter()
            .filter(|w| !matches!(w, ConfigWarning::NoEffect { .. }))
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "bootstrap.dcs.my_custom_key: unknown key",
            "restapi.certfile: the REST API serves HTTPS, but members publish an http:// api_url, so the \
             other members cannot poll this one during a leader race (see docs/rest-api.md)"
        ]
    );
    assert_eq!(c.namespace, "/db/");
    assert_eq!(c.name.as_str(), "postgresql0");
    assert_eq!(c.log.level(), "DEBUG");
    assert_eq!(c.restapi.verify_client(), VerifyClient::Optional);
    assert_eq!(c.restapi.request_queue_size(), 10);
    assert_eq!(c.raft.voters(), 3);
    assert_eq!(c.raft.bind_addr().to_string(), "127.0.0.1:2222");
    let dcs = &c.bootstrap.dcs;
    assert_eq!(
        dcs.timing().0,
        Timing {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10
        }
    );
    assert_eq!(dcs.primary_start_timeout(), 120, "master_start_timeout alias");
    assert_eq!(dcs.synchronous_mode(), SyncMode::Quorum);
    assert_eq!(dcs.synchronous_node_count(), 2);
    assert_eq!(dcs.member_slots_ttl(), 3600);
    assert!(dcs.use_slots());
    assert_eq!(dcs.extra["my_custom_key"], json!({"kept": true}));
    assert!(c.bootstrap.methods.is_empty());
    assert_eq!(c.bootstrap.method, None);
    assert_eq!(
        c.bootstrap.initdb.as_ref().unwrap().args(),
        ["--encoding=UTF8", "--data-checksums"]
    );
    assert_eq!(
        c.bootstrap.post_bootstrap().unwrap().argv().unwrap(),
        ["/usr/local/bin/post.sh", "--flag"]
    );
    let pg = c.postgresql.as_ref().unwrap();
    assert_eq!(pg.listen.hosts, ["127.0.0.1", "127.0.0.2"]);
    assert_eq!(pg.listen.port, 5432);
    assert_eq!(pg.run_as.as_deref(), Some("postgres"));
    assert_eq!(pg.authentication.replication.sslmode.as_deref(), Some("require"));
    assert_eq!(pg.authentication.rewind.as_ref().unwrap().username, "rewind_user");
    assert_eq!(pg.parameters["work_mem"].to_string(), "4096");
    assert_eq!(
        pg.callbacks
            .as_ref()
            .unwrap()
            .on_role_change
            .as_ref()
            .unwrap()
            .argv()
            .unwrap(),
        ["/bin/cb.sh", "a b"]
    );
    assert_eq!(pg.create_replica_methods(), ["basebackup"]);
    assert!(pg.replica_methods.is_empty());
    assert_eq!(
        pg.rewind.as_ref().unwrap().args(),
        ["--debug", "--sync-method=fsync"]
    );
    assert_eq!(pg.pg_ctl_timeout(), 120);
    assert_eq!(c.tags.custom["rack"], json!("r1"));
    assert_eq!(c.tags.failover_priority(), 1);
    assert!(c.tags.clonefrom.unwrap());
    assert_eq!(c.watchdog.mode, WatchdogMode::Required);
    assert_eq!(c.watchdog.safety_margin(30), 15, "-1 means ttl // 2");
}

/// The commented example shipped in packaging/ is valid and produces no warning, apart from
/// one per key the key table says has no effect (so the warnings go when those keys take effect).
#[test]
fn the_packaged_example_parses_without_warnings() {
    let text = include_str!("../../packaging/pgwarden.yml");
    let loaded = Config::from_yaml_str(
        text,
        Path::new("packaging/pgwarden.yml"),
        Strictness::Strict,
        std::iter::empty(),
    )
    .unwrap();
    let others: Vec<&ConfigWarning> = loaded
        .warnings
        .iter()
        .filter(|w| match w {
            ConfigWarning::NoEffect { key, .. } => {
                !matches!(keys::lookup(key).map(|k| k.state), Some(keys::State::NoEffect(_)))
            }
            _ => true,
        })
        .collect();
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(loaded.config.bootstrap.dcs.timing().0, Timing::default());
}

/// Every validation error names the key it is about.
#[test]
fn each_validation_error_names_its_key() {
    type Mutation = fn(&mut Value);
    let cases: Vec<(&str, Mutation)> = vec![
        ("scope", |d| remove(d, "scope")),
        ("name", |d| remove(d, "name")),
        ("name", |d| set(d, "name", json!("a/b"))),
        ("name", |d| {
            set(d, "name", json!("__patroni_strict_sync_replica_placeholder__"))
        }),
        ("restapi.listen", |d| remove(d, "restapi.listen")),
        ("restapi.listen", |d| set(d, "restapi.listen", json!("localhost"))),
        ("restapi.connect_address", |d| {
            set(d, "restapi.connect_address", json!("10.0.0.1:99999"))
        }),
        ("restapi.connect_address", |d| {
            set(d, "restapi.connect_address", json!(":8008"))
        }),
        ("restapi.verify_client", |d| {
            set(d, "restapi.verify_client", json!("sometimes"))
        }),
        ("restapi.cafile", |d| {
            set(d, "restapi.verify_client", json!("required"))
        }),
        ("restapi.request_queue_size", |d| {
            set(d, "restapi.request_queue_size", json!("many"))
        }),
        ("raft.keyfile", |d| set(d, "raft.certfile", json!("/n.pem"))),
        ("raft.certfile", |d| {
            set(d, "raft.keyfile", json!("/n.key"));
            set(d, "raft.cafile", json!("/ca.pem"))
        }),
        ("ctl.cacert", |d| {
            set(d, "ctl.certfile", json!("/c.pem"));
            set(d, "ctl.verify_client", json!("required"))
        }),
        ("raft.self_addr", |d| remove(d, "raft.self_addr")),
        ("raft.data_dir", |d| remove(d, "raft.data_dir")),
        ("raft.partner_addrs[1]", |d| {
            set(d, "raft.partner_addrs", json!(["10.0.0.2:5010", "::1:5010"]))
        }),
        ("raft.partner_addrs[1]", |d| {
            set(d, "raft.partner_addrs", json!(["10.0.0.2:5010", "10.0.0.1:5010"]))
        }),
        ("raft.witness", |d| set(d, "raft.witness", json!("maybe"))),
        ("raft.election_timeout_min_ms", |d| {
            set(d, "raft.election_timeout_min_ms", json!(50))
        }),
        ("raft.election_timeout_max_ms", |d| {
            set(d, "raft.election_timeout_max_ms", json!(400))
        }),
        ("raft.voters", |d| set(d, "raft.voters", json!(4))),
        ("raft.voters", |d| set(d, "raft.voters", json!(1))),
        ("raft.voter_replace_after", |d| {
            set(d, "raft.voter_replace_after", json!(4))
        }),
        ("raft.voter_replace_after", |d| {
            set(d, "raft.election_timeout_max_ms", json!(3000));
            set(d, "raft.voter_replace_after", json!("10s"))
        }),
        ("raft.site", |d| set(d, "raft.site", json!(" "))),
        ("ctl.listen", |d| set(d, "ctl.listen", json!("0.0.0.0:8009"))),
        ("postgresql.listen", |d| remove(d, "postgresql.listen")),
        ("postgresql.data_dir", |d| {
            set(d, "postgresql.data_dir", json!(["/a"]))
        }),
        ("postgresql.authentication.superuser.username", |d| {
            remove(d, "postgresql.authentication.superuser")
        }),
        ("postgresql.parameters.shared_buffers", |d| {
            set(d, "postgresql.parameters", json!({"shared_buffers": [1]}))
        }),
        ("postgresql.pg_ctl_timeout", |d| {
            set(d, "postgresql.pg_ctl_timeout", json!("soon"))
        }),
        ("postgresql.wal_g", |d| {
            set(d, "postgresql.create_replica_methods", json!(["wal_g"]))
        }),
        ("postgresql.wal_g.command", |d| {
            set(d, "postgresql.create_replica_methods", json!(["wal_g"]));
            set(d, "postgresql.wal_g", json!({"no_leader": true}))
        }),
        ("bootstrap.pitr", |d| set(d, "bootstrap.method", json!("pitr"))),
        ("postgresql.callbacks.on_start", |d| {
            set(d, "postgresql.callbacks.on_start", json!("'unbalanced"))
        }),
        ("postgresql.rewind", |d| {
            set(d, "postgresql.rewind", json!(["dry-run"]))
        }),
        ("bootstrap.initdb", |d| {
            set(d, "bootstrap.initdb", json!(["nosync"]))
        }),
        ("bootstrap.custom", |d| {
            set(d, "bootstrap.method", json!("custom"))
        }),
        ("bootstrap.dcs.ttl", |d| {
            set(d, "bootstrap.dcs.ttl", json!("long"))
        }),
        ("bootstrap.dcs.synchronous_mode", |d| {
            set(d, "bootstrap.dcs.synchronous_mode", json!("sometimes"))
        }),
        ("bootstrap.dcs.synchronous_node_count", |d| {
            set(d, "bootstrap.dcs.synchronous_node_count", json!(0))
        }),
        ("bootstrap.dcs.slots.s1", |d| {
            set(d, "bootstrap.dcs.slots", json!({"s1": {"type": "logical"}}))
        }),
        ("bootstrap.dcs.standby_cluster", |d| {
            set(
                d,
                "bootstrap.dcs.standby_cluster",
                json!({"primary_slot_name": "x"}),
            )
        }),
        ("bootstrap.dcs.member_slots_ttl", |d| {
            set(d, "bootstrap.dcs.member_slots_ttl", json!("30 fortnights"))
        }),
        ("tags.failover_priority", |d| {
            set(d, "tags.failover_priority", json!([1]))
        }),
        ("watchdog.mode", |d| set(d, "watchdog.mode", json!("sometimes"))),
        ("etcd3", |d| set(d, "etcd3", json!({"hosts": "a:2379"}))),
        ("bootstrap.users", |d| {
            set(d, "bootstrap.users", json!({"admin": {"password": "x"}}))
        }),
    ];
    for (key, mutate) in cases {
        let mut doc = base();
        mutate(&mut doc);
        let err = match load(&doc) {
            Err(e) => e,
            Ok(l) => panic!(
                "expected an error about `{key}`, got a config with warnings {:?}",
                l.warnings
            ),
        };
        assert!(
            keys_of(&err).iter().any(|k| k == key),
            "expected `{key}` in {:?}: {err}",
            keys_of(&err)
        );
        assert!(err.to_string().contains(key), "message must name `{key}`: {err}");
    }
}

/// Several problems are reported together, each with its key.
#[test]
fn several_errors_are_reported_at_once() {
    let mut doc = base();
    remove(&mut doc, "scope");
    set(&mut doc, "restapi.listen", json!(5));
    let err = load(&doc).unwrap_err();
    let keys = keys_of(&err);
    assert!(
        keys.contains(&"scope".to_string()) && keys.contains(&"restapi.listen".to_string()),
        "{err}"
    );
}

/// Unknown keys are warnings for the daemon and errors for --validate-config, named by full path,
/// with a hint when the key looks like a typo or a misplaced dynamic setting.
#[test]
fn unknown_keys_are_reported_with_their_path() {
    let mut doc = base();
    set(&mut doc, "postgresql.paramters", json!({"work_mem": "4MB"}));
    set(&mut doc, "ttl", json!(30));
    set(&mut doc, "bootstrap.dcs.loop_wiat", json!(5));
    set(&mut doc, "tags.my_tag", json!("custom tags are fine"));
    set(&mut doc, "bootstrap.dcs.postgresql.parameters.any_guc", json!(1));
    let warnings: Vec<String> = load(&doc)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.starts_with("postgresql.paramters: unknown key (did you mean `postgresql.parameters`?)")));
    assert!(warnings
        .iter()
        .any(|w| w.starts_with("ttl: unknown key (`ttl` is a dynamic setting")));
    assert!(warnings
        .iter()
        .any(|w| w.starts_with("bootstrap.dcs.loop_wiat: unknown key")));

    // Strict: one error per unknown key, on its own line.
    let err = load_env(&doc, Strictness::Strict, &[]).unwrap_err();
    assert_eq!(
        err.iter()
            .filter(|e| matches!(e, ConfigError::UnknownKey { .. }))
            .count(),
        3,
        "{err}"
    );
    assert!(err.to_string().contains("`postgresql.paramters`: unknown key"));
}

/// Patroni-only keys load with a note instead of an unknown-key warning.
#[test]
fn patroni_only_keys_are_accepted_and_noted() {
    let mut doc = base();
    set(&mut doc, "restapi.thread_pool_size", json!(5));
    let loaded = load_env(&doc, Strictness::Strict, &[]).unwrap();
    assert!(
        matches!(&loaded.warnings[..], [ConfigWarning::Ignored { key, .. }] if key == "restapi.thread_pool_size")
    );
}

/// PGWARDEN_* variables override the file the way PATRONI_* do, with types converted per key.
#[test]
fn environment_overrides_the_file() {
    let mut doc = base();
    remove(&mut doc, "name");
    remove(&mut doc, "raft.partner_addrs");
    let env = [
        ("PGWARDEN_NAME", "node-env"),
        ("PGWARDEN_SCOPE", "robin"),
        ("PGWARDEN_NAMESPACE", "/env/"),
        ("PGWARDEN_RESTAPI_LISTEN", "127.0.0.1:18008"),
        ("PGWARDEN_RESTAPI_USERNAME", "api"),
        ("PGWARDEN_RESTAPI_PASSWORD", "secret"),
        ("PGWARDEN_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "on"),
        ("PGWARDEN_POSTGRESQL_DATA_DIR", "/env/pg"),
        ("PGWARDEN_POSTGRESQL_BIN_PG_CTL", "pg_ctl16"),
        ("PGWARDEN_SUPERUSER_PASSWORD", "su-pass"),
        ("PGWARDEN_REPLICATION_USERNAME", "rep-env"),
        ("PGWARDEN_REWIND_USERNAME", "rew"),
        ("PGWARDEN_LOG_LEVEL", "warning"),
        ("PGWARDEN_RAFT_PARTNER_ADDRS", "10.0.0.7:5010,10.0.0.8:5010"),
        ("PGWARDEN_RAFT_DATA_DIR", "/env/raft"),
        ("PGWARDEN_RAFT_SELF_ADDR", "10.0.0.9:5010"),
        ("PGWARDEN_RAFT_WITNESS", "false"),
        ("PGWARDEN_POSTGRESQL_PGPASS", ""), // empty values are ignored, as in Patroni
        ("PATRONI_NAME", "not-ours"),
    ];
    let c = load_env(&doc, Strictness::Strict, &env).unwrap().config;
    assert_eq!(c.name.as_str(), "node-env");
    assert_eq!(c.scope, "robin");
    assert_eq!(c.namespace, "/env/");
    assert_eq!(c.restapi.listen.port, 18008);
    assert_eq!(
        c.restapi.authentication.as_ref().unwrap().password.as_deref(),
        Some("secret")
    );
    assert_eq!(c.restapi.allowlist_include_members, Some(true));
    let pg = c.postgresql.unwrap();
    assert_eq!(pg.data_dir, PathBuf::from("/env/pg"));
    assert_eq!(pg.bin_name.unwrap().pg_ctl.as_deref(), Some("pg_ctl16"));
    assert_eq!(
        pg.authentication.superuser.username, "postgres",
        "file value kept"
    );
    assert_eq!(pg.authentication.superuser.password.as_deref(), Some("su-pass"));
    assert_eq!(pg.authentication.replication.username, "rep-env");
    assert_eq!(pg.authentication.rewind.unwrap().username, "rew");
    assert!(pg.pgpass.is_none());
    assert_eq!(c.log.level(), "WARNING");
    assert_eq!(
        c.raft
            .partner_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.0.0.7:5010", "10.0.0.8:5010"]
    );
    assert_eq!(c.raft.data_dir(), PathBuf::from("/env/raft"));
    assert_eq!(c.raft.self_addr.to_string(), "10.0.0.9:5010");
}

/// A malformed environment value is an error naming the variable and the key.
#[test]
fn a_bad_environment_value_names_the_variable() {
    let err = load_env(
        &base(),
        Strictness::Lenient,
        &[("PGWARDEN_RAFT_WITNESS", "perhaps")],
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Env { var, key, .. } if var == "PGWARDEN_RAFT_WITNESS" && key == "raft.witness"),
        "{err}"
    );
}

/// The timing rule, applied exactly as Patroni does, with pgwarden's minima.
#[test]
fn timing_rule_matches_patroni() {
    // pgwarden's defaults satisfy the rule.
    assert_eq!(adjust_timing(None, None, None), (Timing::default(), vec![]));
    // Patroni's own test cases (tests/test_config.py).
    let (t, w) = adjust_timing(Some(20), Some(11), Some(5));
    assert_eq!(
        t,
        Timing {
            ttl: 20,
            loop_wait: 10,
            retry_timeout: 5
        }
    );
    assert_eq!(
        w[0].to_string(),
        "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20 and retry_timeout=5. Adjusting loop_wait from 11 to 10"
    );
    let (t, w) = adjust_timing(Some(20), Some(10), Some(10));
    assert_eq!(
        t,
        Timing {
            ttl: 20,
            loop_wait: 1,
            retry_timeout: 9
        }
    );
    assert_eq!(
        w[0].to_string(),
        "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20. Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 9"
    );
    let (t, w) = adjust_timing(None, Some(0), None);
    assert_eq!(t.loop_wait, 1);
    assert_eq!(
        w[0].to_string(),
        "loop_wait=0 can't be smaller than 1, adjusting..."
    );
    // pgwarden minima: ttl 2 is raised to 4, then retry_timeout 3 does not fit: (4-1)//2 = 1.
    let (t, w) = adjust_timing(Some(2), None, Some(3));
    assert_eq!(
        t,
        Timing {
            ttl: 4,
            loop_wait: 1,
            retry_timeout: 1
        }
    );
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].to_string(), "ttl=2 can't be smaller than 4, adjusting...");
    // Patroni's defaults are legal for us too.
    assert_eq!(adjust_timing(Some(30), Some(10), Some(10)).1, vec![]);
    // The file path reports the adjustment as a warning.
    let mut doc = base();
    set(
        &mut doc,
        "bootstrap.dcs",
        json!({"ttl": 10, "loop_wait": 5, "retry_timeout": 3}),
    );
    let warnings = load(&doc).unwrap().warnings;
    assert!(
        matches!(&warnings[..], [ConfigWarning::TimingAdjusted(t)] if t.contains("Adjusting loop_wait from 5 to 4")),
        "{warnings:?}"
    );
}

/// Two voters are refused with an explanation and a suggestion; one voter needs single_node.
#[test]
fn two_voters_are_refused_and_single_node_must_be_explicit() {
    let mut doc = base();
    set(&mut doc, "raft.partner_addrs", json!(["10.0.0.2:5010"]));
    let err = load(&doc).unwrap_err();
    assert!(matches!(err, ConfigError::TwoVoters { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("tolerate no failure") && text.contains("witness"),
        "{text}"
    );

    set(&mut doc, "raft.partner_addrs", json!([]));
    assert!(matches!(
        load(&doc).unwrap_err(),
        ConfigError::TooFewVoters { voters: 1 }
    ));

    set(&mut doc, "raft.single_node", json!(true));
    let c = load(&doc).unwrap().config;
    assert_eq!(c.raft.voters(), 1);

    set(
        &mut doc,
        "raft.partner_addrs",
        json!(["10.0.0.2:5010", "10.0.0.3:5010"]),
    );
    assert!(matches!(
        load(&doc).unwrap_err(),
        ConfigError::SingleNodeWithPartners { count: 2 }
    ));
}

/// A witness needs neither a postgresql section nor a raft.data_dir; a postgresql section on a
/// witness is dropped with a note.
#[test]
fn a_witness_needs_no_postgresql_section() {
    let mut doc = base();
    remove(&mut doc, "postgresql");
    remove(&mut doc, "raft.data_dir");
    set(&mut doc, "raft.witness", json!(true));
    let loaded = load_env(&doc, Strictness::Strict, &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.config.is_witness() && loaded.config.postgresql.is_none());
    assert_eq!(
        loaded.config.raft.data_dir(),
        PathBuf::from(defaults::WITNESS_RAFT_DATA_DIR)
    );

    set(&mut doc, "postgresql", json!({"listen": "0.0.0.0:5432"}));
    let loaded = load(&doc).unwrap();
    assert!(loaded.config.postgresql.is_none());
    assert!(matches!(&loaded.warnings[..], [ConfigWarning::Note { key, .. }] if key == "postgresql"));

    // Without witness, the missing section is an error naming the keys.
    remove(&mut doc, "postgresql");
    set(&mut doc, "raft.witness", json!(false));
    let err = load(&doc).unwrap_err();
    assert!(keys_of(&err).contains(&"postgresql.listen".to_string()), "{err}");
}

/// The DCS config survives JSON → DynamicConfig → JSON unchanged, unknown keys included.
#[test]
fn dynamic_config_round_trips_with_unknown_keys() {
    let stored = json!({
        "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
        "master_start_timeout": 60, "synchronous_mode": "quorum", "synchronous_mode_strict": false,
        "member_slots_ttl": "30min", "failsafe_mode": true, "pause": true,
        "slots": {"s1": {"type": "logical", "database": "d", "plugin": "p", "future": 1}, "s2": null},
        "ignore_slots": [{"name": "x", "type": "physical"}],
        "standby_cluster": {"host": "remote", "port": 5433, "restore_command": "cp %f %p", "later": "kept"},
        "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 100, "hot_standby": "on"},
                       "pg_hba": ["host all all 0.0.0.0/0 md5"], "somebody_elses": {"a": [1, 2]}},
        "citus_something": "kept", "nested": {"deep": {"deeper": null}}
    });
    let dc = DynamicConfig::from_json(&stored).unwrap();
    assert_eq!(dc.primary_start_timeout(), 60);
    assert_eq!(
        dc.synchronous_mode(),
        SyncMode::Off,
        "always off in a standby cluster"
    );
    assert_eq!(dc.member_slots_ttl(), 1800);
    assert!(dc.is_paused());
    assert_eq!(dc.to_json(), stored);
    assert_eq!(DynamicConfig::from_json(&dc.to_json()).unwrap(), dc);

    // Strings Patroni would int() are accepted; a wrong shape names the key.
    assert_eq!(
        DynamicConfig::from_json(&json!({"ttl": "25"}))
            .unwrap()
            .timing()
            .0
            .ttl,
        25
    );
    let err = DynamicConfig::from_json(&json!({"postgresql": {"use_slots": "maybe"}})).unwrap_err();
    assert_eq!(err.key(), Some("postgresql.use_slots"), "{err}");
    assert!(DynamicConfig::from_json(&json!([1])).is_err());
}

/// merge_patch: null deletes, mappings merge recursively, scalars replace (unless equal as text).
#[test]
fn merge_patch_deletes_nulls_and_merges_nested_mappings() {
    let base = json!({"ttl": 30, "loop_wait": 10, "pause": true,
                      "postgresql": {"use_slots": true, "parameters": {"a": 1, "b": 2}}, "list": [1, 2]});
    let patch = json!({"pause": null, "ttl": "30", "loop_wait": 5, "missing": null,
                       "postgresql": {"parameters": {"a": null, "c": 3}}, "list": [3], "new": {"x": 1}});
    let merged = merge_patch(&base, &patch);
    assert_eq!(
        merged,
        json!({"ttl": 30, "loop_wait": 5, "postgresql": {"use_slots": true, "parameters": {"b": 2, "c": 3}},
               "list": [3], "new": {"x": 1}})
    );
    // A mapping replacing a scalar is stored whole; a non-mapping patch replaces everything.
    assert_eq!(
        merge_patch(&json!({"a": 1}), &json!({"a": {"b": 1}})),
        json!({"a": {"b": 1}})
    );
    assert_eq!(merge_patch(&json!({"a": 1}), &json!(5)), json!(5));
}

/// nofailover vs failover_priority: the boolean wins, with Patroni's warning text.
#[test]
fn tag_conflicts_warn_with_patronis_text_and_the_boolean_wins() {
    let mut doc = base();
    set(
        &mut doc,
        "tags",
        json!({"nofailover": true, "failover_priority": 1}),
    );
    let loaded = load(&doc).unwrap();
    assert_eq!(
        loaded.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["Conflicting configuration between nofailover: True and failover_priority: 1. Defaulting to nofailover: True"]
    );
    assert!(loaded.config.tags.nofailover());
    assert_eq!(loaded.config.tags.failover_priority(), 0);

    let t = Tags {
        nosync: Some(false),
        sync_priority: Some(0),
        ..Tags::default()
    };
    assert_eq!(
        t.conflicts()[0].to_string(),
        "Conflicting configuration between nosync: False and sync_priority: 0. Defaulting to nosync: False"
    );
    assert!(!t.nosync());
    let p = Tags {
        failover_priority: Some(0),
        ..Tags::default()
    };
    assert!(p.nofailover() && p.conflicts().is_empty());
}

/// DCS-only GUCs given locally are ignored (with a note); others override the DCS.
#[test]
fn local_parameters_override_dcs_except_cluster_wide_ones() {
    let dcs: BTreeMap<String, GucValue> = [
        ("max_connections".to_string(), GucValue::Int(100)),
        ("work_mem".to_string(), GucValue::Str("4MB".into())),
    ]
    .into();
    let local: BTreeMap<String, GucValue> = [
        ("max_connections".to_string(), GucValue::Int(5)),
        ("work_mem".to_string(), GucValue::Str("8MB".into())),
    ]
    .into();
    let (merged, ignored) = merge_parameters(Some(&dcs), &local);
    assert_eq!(merged["max_connections"], GucValue::Int(100));
    assert_eq!(merged["work_mem"].to_string(), "8MB");
    assert_eq!(ignored, ["max_connections"]);
}

fn sample(kind: keys::Kind) -> Option<Value> {
    use keys::Kind::*;
    Some(match kind {
        Section | Open | Any => return None,
        Map | ScalarMap => json!({"k": "v"}),
        Str | Scalar => json!("x"),
        Path => json!("/x"),
        Bool => json!(true),
        Int | Secs => json!(7),
        Addr => json!("10.9.9.9:1234"),
        ListenAddr => json!("10.9.9.9:1234"),
        StrList => json!(["x"]),
        AddrList => json!(["10.9.9.1:1", "10.9.9.2:1"]),
        OptList => json!(["x"]),
        Command => json!("x"),
        Enum(vals) => json!(vals[vals.len() - 1]),
        SyncMode => json!("quorum"),
        WatchdogMode => json!("required"),
        Port => json!(5432),
        MapList => json!([{"name": "x"}]),
    })
}

/// The key table and the serde types agree: every listed key is read into the types (it comes back
/// out when the config is serialised), so no documented key is silently dropped.
#[test]
fn every_table_key_is_read_by_the_types() {
    for spec in keys::table() {
        let Some(mut value) = sample(spec.kind) else {
            continue;
        };
        // Samples that other rules constrain.
        match spec.path.as_str() {
            "namespace" => value = json!("/x/"),
            "bootstrap.method" => value = json!("initdb"),
            "bootstrap.dcs.slots" => value = json!({"k": {"type": "physical"}}),
            p if p.ends_with("create_replica_methods") => value = json!(["basebackup"]),
            "vip.address" => value = json!("10.0.0.10/24"),
            "vip.interface" => value = json!("eth0"),
            "vip.label" => value = json!("eth0:vip"),
            "vip.on" => value = json!("primary"),
            _ => {}
        }
        if spec.path.contains('<') {
            continue; // method sections: covered by a_full_patroni_style_config_parses
        }
        let mut doc = base();
        set(&mut doc, "ctl.auth_token", json!("t")); // so any ctl.listen sample is allowed
        set(&mut doc, "restapi.cafile", json!("/ca")); // so any verify_client sample is allowed
        set(&mut doc, "restapi.certfile", json!("/c")); // so a keyfile sample is allowed
        set(&mut doc, "ctl.certfile", json!("/c"));
        set(&mut doc, "ctl.cacert", json!("/ca")); // so a verify_client sample is allowed
        for k in ["raft.certfile", "raft.keyfile", "raft.cafile"] {
            set(&mut doc, k, json!("/tls")); // the three go together
        }
        set(
            &mut doc,
            "postgresql.authentication.rewind.username",
            json!("rewinder"),
        );
        if spec.path.starts_with("vip.") {
            // A `vip` section needs its address and interface.
            set(&mut doc, "vip.address", json!("10.0.0.10/24"));
            set(&mut doc, "vip.interface", json!("eth0"));
        }
        if let Some(rest) = spec.path.strip_prefix("bootstrap.dcs.standby_cluster") {
            // A `standby_cluster` key alone may not make a standby cluster (it needs a host,
            // a port or a restore_command): checked on the DCS value with a host beside it.
            let mut dcs = json!({"standby_cluster": {"host": "remote"}});
            if let Some(leaf) = rest.strip_prefix('.') {
                set(&mut dcs, &format!("standby_cluster.{leaf}"), value.clone());
            }
            let back = DynamicConfig::from_json(&dcs)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.path))
                .to_json();
            assert_eq!(back, dcs, "`{}`: the types dropped it", spec.path);
            continue;
        }
        set(&mut doc, &spec.path, value);
        if spec.path == "raft.single_node" {
            set(&mut doc, "raft.partner_addrs", json!([]));
        }
        if spec.path == "raft.witness" {
            remove(&mut doc, "postgresql");
        }
        if spec.path == "raft.voters" {
            set(&mut doc, "raft.voters", json!(5)); // 3 or 5 only
        }
        if spec.path == "raft.voter_replace_after" {
            set(&mut doc, "raft.voter_replace_after", json!("1min")); // well above the election timeout
        }
        if spec.path.starts_with("raft.election_timeout") || spec.path == "raft.heartbeat_interval_ms" {
            continue; // numeric relations; covered by each_validation_error_names_its_key
        }
        let out = if matches!(spec.state, keys::State::Refused(r) if r.when == keys::RefuseWhen::Set) {
            // Refused whenever set: loading says so, and the types still read the key.
            load_env(&doc, Strictness::Strict, &[]).unwrap_err();
            serde_json::to_value(serde_json::from_value::<Config>(doc).unwrap()).unwrap()
        } else {
            let loaded =
                load_env(&doc, Strictness::Strict, &[]).unwrap_or_else(|e| panic!("{}: {e}", spec.path));
            serde_json::to_value(&loaded.config).unwrap()
        };
        let back = spec.path.split('.').try_fold(&out, |v, s| v.get(s));
        assert!(
            back.is_some(),
            "`{}` is in the key table but the types dropped it",
            spec.path
        );
    }
}

/// Conversely, the types serialise no key that the table lacks (walking the serialised full config
/// against the table finds nothing unknown).
#[test]
fn the_types_have_no_key_missing_from_the_table() {
    let text = include_str!("../../packaging/pgwarden.yml");
    let mut c = load_yaml(text).unwrap().config;
    // Fill the optional structs so that their fields are serialised too.
    let pg = c.postgresql.as_mut().unwrap();
    pg.callbacks = Some(Callbacks {
        on_start: Some(Command::Shell("x".into())),
        ..Default::default()
    });
    pg.bin_name = Some(BinNames {
        pg_ctl: Some("x".into()),
        ..Default::default()
    });
    pg.authentication.rewind = Some(PgUser {
        username: "r".into(),
        ..Default::default()
    });
    c.restapi.authentication = Some(BasicAuth {
        username: Some("u".into()),
        password: Some("p".into()),
    });
    c.ctl.authentication = c.restapi.authentication.clone();
    c.bootstrap.dcs.standby_cluster = Some(StandbyCluster {
        host: Some("h".into()),
        ..Default::default()
    });
    let out = serde_json::to_value(&c).unwrap();
    let mut report = keys::WalkReport::default();
    keys::walk(
        out.as_object().unwrap(),
        "",
        "",
        &keys::MethodNames::default(),
        &mut report,
    );
    assert!(report.unknown.is_empty(), "{:?}", report.unknown);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// Defaults that are parsed at run time parse.
#[test]
fn defaults_are_valid() {
    assert_eq!(Ctl::default().listen().to_string(), defaults::CTL_LISTEN);
    let t = Timing::default();
    assert!(t.loop_wait + 2 * t.retry_timeout <= t.ttl);
    const { assert!(defaults::MIN_LOOP_WAIT + 2 * defaults::MIN_RETRY_TIMEOUT < defaults::MIN_TTL) };
    // ttl 4 − Patroni's margin of 5 is nothing; the fence deadline (4 − 0.5, rounded up) is kept.
    assert_eq!(Watchdog::default().timeout(&t), Some(4));
}

/// Addresses, durations and commands parse the way Patroni users write them.
#[test]
fn value_types_parse() {
    assert_eq!(HostPort::parse("[::1]:8008").unwrap().to_string(), "[::1]:8008");
    assert!(HostPort::parse("::1:8008").is_err());
    assert!(HostPort::parse("host").is_err());
    for (text, secs) in [
        ("30", 30),
        ("500ms", 1),
        ("30min", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("10s", 10),
    ] {
        assert_eq!(Secs::from_value(&json!(text)).unwrap().secs, secs, "{text}");
    }
    assert!(Secs::from_value(&json!("-1")).is_none());
    assert_eq!(
        Command::Shell(r#"a "b c" 'd e' f\ g"#.into()).argv().unwrap(),
        ["a", "b c", "d e", "f g"]
    );
    assert_eq!(GucValue::Bool(true).to_string(), "on");
}

/// Syntax errors and a non-mapping document are reported as such.
#[test]
fn broken_documents_are_reported() {
    assert!(matches!(
        load_yaml("scope: [unclosed").unwrap_err(),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        load_yaml("- a\n- b\n").unwrap_err(),
        ConfigError::NotAMapping { .. }
    ));
    let err = Config::load_with_env(
        Path::new("/nonexistent/pgwarden.yml"),
        Strictness::Lenient,
        std::iter::empty(),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

/// Mutual TLS between peers: unreadable or bad files are errors naming the key and the file.
#[test]
fn raft_tls_files_are_checked_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM").unwrap();
    let mut doc = base();
    set(&mut doc, "raft.certfile", json!(dir.path().join("absent.pem")));
    set(&mut doc, "raft.keyfile", json!(junk));
    set(&mut doc, "raft.cafile", json!(junk));
    let cfg = load_env(&doc, Strictness::Strict, &[]).unwrap().config;
    let e = cfg.raft.peer_tls().unwrap_err().to_string();
    assert!(
        e.contains("raft.certfile") && e.contains("absent.pem") && e.contains("cannot read"),
        "{e}"
    );
    let mut doc = base();
    set(&mut doc, "raft.certfile", json!(junk));
    set(&mut doc, "raft.keyfile", json!(junk));
    set(&mut doc, "raft.cafile", json!(junk));
    let cfg = load_env(&doc, Strictness::Strict, &[]).unwrap().config;
    let e = cfg.raft.peer_tls().unwrap_err().to_string();
    assert!(e.contains("raft.certfile") && e.contains("junk.pem"), "{e}");
    let plain = load_env(&base(), Strictness::Strict, &[]).unwrap().config;
    assert!(plain.raft.peer_tls().unwrap().is_none());
}

/// A Patroni setting pgwarden cannot honour is refused with a message that names its key, says
/// it is not supported yet and what to do; the features built since (custom bootstrap and
/// replica methods, standby clusters) load.
#[test]
fn safety_unbuilt_features_are_refused_naming_the_key() {
    let mut doc = base();
    set(&mut doc, "restapi.keyfile_password", json!("secret"));
    for strict in [Strictness::Lenient, Strictness::Strict] {
        let err = load_env(&doc, strict, &[]).unwrap_err();
        assert_eq!(keys_of(&err), ["restapi.keyfile_password"], "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("`restapi.keyfile_password`: not supported yet: "),
            "{text}"
        );
        assert!(text.contains("decrypt the key file"), "{text}");
    }
    let mut doc = base();
    set(&mut doc, "bootstrap.method", json!("restore"));
    set(
        &mut doc,
        "bootstrap.restore",
        json!({"command": "/bin/restore.sh"}),
    );
    set(
        &mut doc,
        "postgresql.create_replica_methods",
        json!(["wal_g", "basebackup"]),
    );
    set(
        &mut doc,
        "postgresql.wal_g",
        json!({"command": "/bin/walg-clone.sh"}),
    );
    set(
        &mut doc,
        "bootstrap.dcs.standby_cluster",
        json!({"host": "10.0.0.9,10.0.0.10", "port": 5432, "primary_slot_name": "dc2"}),
    );
    load(&doc).unwrap();
}

/// The full Patroni-style file names a custom bootstrap and a custom replica method: both
/// load, and their sections are read (control keys apart from the command's parameters).
#[test]
fn datain_a_patroni_file_with_custom_methods_loads() {
    let c = load_yaml(PATRONI_STYLE).unwrap().config;
    let methods = c.replica_method_sections().unwrap();
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[0].0, "wal_g");
    let wal_g = methods[0].1.as_ref().unwrap();
    assert_eq!(wal_g.command, "/bin/walg-clone.sh");
    assert!(wal_g.no_leader && !wal_g.keep_data && !wal_g.no_params);
    assert_eq!(methods[1], ("basebackup".to_string(), None));
    let (name, b) = c.bootstrap_method_section().unwrap().unwrap();
    assert_eq!(name, "wal_g_restore");
    assert_eq!(b.command, "/usr/local/bin/restore.sh");
    assert!(b.no_params);
}

/// The DCS `config` key (PATCH and PUT /config) is checked with the same rule: a standby
/// cluster is accepted there as in the file.
#[test]
fn standby_cluster_in_the_dcs_is_accepted() {
    let dc = DynamicConfig::from_json(&json!({"ttl": 30, "standby_cluster": {"host": "10.0.0.9"}})).unwrap();
    assert!(dc.not_built("").is_empty());
    assert!(dc.is_standby_cluster());
    let plain =
        DynamicConfig::from_json(&json!({"ttl": 30, "postgresql": {"pg_hba": ["local all all peer"]}}));
    assert!(plain.unwrap().not_built("").is_empty());
}

#[test]
fn vip_section_errors_name_their_keys_and_a_missing_interface_fails_the_host_check() {
    let mut doc = base();
    set(&mut doc, "vip.address", json!("10.0.0.10"));
    set(&mut doc, "vip.interface", json!("lo"));
    let e = load(&doc).unwrap_err();
    assert_eq!(keys_of(&e), ["vip.address"], "{e}");

    let mut doc = base();
    set(&mut doc, "vip.address", json!("10.0.0.10/24"));
    let e = load(&doc).unwrap_err();
    assert_eq!(keys_of(&e), ["vip.interface"], "{e}");

    let mut doc = base();
    set(&mut doc, "vip.address", json!("10.0.0.10/24"));
    set(&mut doc, "vip.interface", json!("lo"));
    set(&mut doc, "vip.on", json!("replica"));
    let e = load(&doc).unwrap_err();
    assert_eq!(keys_of(&e), ["vip.on"], "{e}");
    set(&mut doc, "vip.on", json!("standby_leader"));
    let c = load(&doc).unwrap().config;
    assert!(c.vip_spec().unwrap().unwrap().on_standby_leader);

    // A valid section; the host has `lo` but no `pgw-none0`.
    let mut doc = base();
    set(&mut doc, "vip.address", json!("10.0.0.10/24"));
    set(&mut doc, "vip.interface", json!("lo"));
    let c = load(&doc).unwrap().config;
    let spec = c.vip_spec().unwrap().unwrap();
    assert_eq!(spec.cidr(), "10.0.0.10/24");
    let host = c.check_host().err().map(|e| keys_of(&e)).unwrap_or_default();
    assert!(!host.contains(&"vip.interface".to_string()), "{host:?}");
    set(&mut doc, "vip.interface", json!("pgw-none0"));
    let c = load(&doc).unwrap().config;
    let host = keys_of(&c.check_host().unwrap_err());
    assert!(host.contains(&"vip.interface".to_string()), "{host:?}");

    // A witness ignores the section.
    set(&mut doc, "raft.witness", json!(true));
    assert_eq!(load(&doc).unwrap().config.vip_spec().unwrap(), None);
}
