//! The REST API through its router (no sockets): every health endpoint in every situation,
//! the DCS endpoints, switchover/failover validation, the HA request channel, access rules,
//! bad input and a property test that nothing answers with an undocumented 5xx.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use pgwarden::api::actions::{ActionOutcome, ApiRequest};
use pgwarden::api::metrics::RaftInfo;
use pgwarden::api::rest::{router, ApiState, MAX_BODY};
use pgwarden::api::security::{PeerInfo, Security};
use pgwarden::dcs::{Dcs, DcsError, MemDcs, Watch, WriteOutcome};
use pgwarden::ha::status::{DaemonInfo, NodeStatus};
use pgwarden_raft::command::{Command, Condition, KeyValue};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower::ServiceExt;

const P: &str = "/service/s/";
const TTL: Duration = Duration::from_secs(30);
/// The cluster's optime in the fixtures (200 MiB): in-sync replicas are there, a lagging one at 0.
const OPTIME: u64 = 200 << 20;

fn info() -> DaemonInfo {
    DaemonInfo {
        version: "0.1.0".into(),
        scope: "s".into(),
        name: "me".into(),
    }
}

fn leader() -> NodeStatus {
    let mut s = NodeStatus::initial(info(), false);
    s.role = "primary".into();
    s.state = "running".into();
    s.holds_lock = true;
    s.leader = Some("me".into());
    s.lease_until = Some(Instant::now() + Duration::from_secs(60));
    s.last_loop = Some(Instant::now());
    s.server_version = Some(160004);
    s.timeline = Some(2);
    s.xlog = Some(json!({"location": OPTIME}));
    s.dcs_last_seen = Some(1_700_000_000);
    s
}

fn replica() -> NodeStatus {
    let mut s = NodeStatus::initial(info(), false);
    s.role = "replica".into();
    s.state = "running".into();
    s.leader = Some("l1".into());
    s.last_loop = Some(Instant::now());
    s.server_version = Some(160004);
    s.replication_state = Some("streaming".into());
    s.xlog = Some(
        json!({"received_location": OPTIME, "replayed_location": OPTIME, "replayed_timestamp": null, "paused": false}),
    );
    s.tags.insert("zone".into(), json!("a"));
    s.lag = Some(0);
    s
}

fn member(role: &str, state: &str, tags: Value) -> String {
    json!({
        "conn_url": "postgres://127.0.0.1:5432/postgres",
        "api_url": "http://127.0.0.1:8008/patroni",
        "state": state, "role": role, "xlog_location": OPTIME, "tags": tags,
    })
    .to_string()
}

/// A router over a MemDcs holding `config` (when given), the leader key and members.
struct Fx {
    dcs: Arc<MemDcs>,
    status: watch::Sender<NodeStatus>,
    state: ApiState<MemDcs>,
}

impl Fx {
    async fn new(s: NodeStatus, config: Option<Value>) -> Fx {
        let dcs = Arc::new(MemDcs::new());
        let leader_name = if s.holds_lock { "me" } else { "l1" };
        put(&dcs, "leader", leader_name).await;
        if let Some(c) = config {
            put(&dcs, "config", &c.to_string()).await;
        }
        put(&dcs, "status", &json!({"optime": OPTIME}).to_string()).await;
        put(
            &dcs,
            "members/me",
            &member(s.role.as_str(), s.state.as_str(), json!({})),
        )
        .await;
        if leader_name == "l1" {
            put(&dcs, "members/l1", &member("primary", "running", json!({}))).await;
        }
        let (tx, rx) = watch::channel(s);
        let state = ApiState::new(rx, dcs.clone(), P, TTL);
        Fx {
            dcs,
            status: tx,
            state,
        }
    }

    fn router(&self) -> Router {
        router(self.state.clone())
    }
}

async fn put(dcs: &MemDcs, rel: &str, v: &str) {
    dcs.put(&format!("{P}{rel}"), v, None, Condition::Always)
        .await
        .unwrap();
}

/// One request; a JSON body gets a Content-Length like any real client sends.
async fn call(r: &Router, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(body) = body {
        b = b.header(header::CONTENT_LENGTH, body.len());
    }
    send(r, b.body(Body::from(body.unwrap_or("").to_string())).unwrap()).await
}

async fn send(r: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = r.clone().oneshot(req).await.unwrap();
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

const HEALTH: &[&str] = &[
    "/",
    "/primary",
    "/read-write",
    "/master",
    "/leader",
    "/standby-leader",
    "/standby_leader",
    "/replica",
    "/replica?lag=1MB",
    "/replica?tag_zone=a",
    "/replica?tag_zone=b",
    "/replica?replication_state=streaming",
    "/read-only",
    "/sync",
    "/synchronous",
    "/quorum",
    "/async",
    "/asynchronous",
    "/read-only-sync",
    "/read-only-quorum",
    "/health",
    "/liveness",
    "/readiness",
    "/readiness?lag=100GB",
    "/primary?tag_zone=b",
    "/no-such-check",
];

/// Every health endpoint in every situation: the listed paths answer 200, all others 503;
/// HEAD and OPTIONS give the same code with no body; GET has the status document except
/// on /liveness and /readiness.
#[tokio::test]
async fn every_health_endpoint_in_every_situation() {
    let sync_cfg = json!({"synchronous_mode": true});
    let mut sync = replica();
    sync.tags.insert("x".into(), json!(true));
    let mut paused = leader();
    paused.pause = true;
    paused.last_loop = None; // liveness holds through pause even without a recent loop
    let mut stopped = replica();
    stopped.state = "stopped".into();
    stopped.replication_state = None;
    stopped.xlog = None;
    let mut lagging = replica();
    lagging.xlog = Some(json!({"received_location": 0, "replayed_location": 0}));
    let mut nolb = replica();
    nolb.tags.insert("noloadbalance".into(), json!(true));
    let mut expired = leader();
    expired.lease_until = Some(Instant::now() - Duration::from_secs(1));
    let mut standby_leader = leader();
    standby_leader.role = "standby_leader".into();
    let standby_cfg = json!({"standby_cluster": {"host": "10.0.0.9", "port": 5432}});

    let all_replica = [
        "/replica",
        "/replica?lag=1MB",
        "/replica?tag_zone=a",
        "/replica?replication_state=streaming",
        "/read-only",
        "/health",
        "/liveness",
        "/readiness",
        "/readiness?lag=100GB",
    ];
    let leader_ok = [
        "/",
        "/primary",
        "/read-write",
        "/master",
        "/leader",
        "/read-only",
        "/read-only-sync",
        "/read-only-quorum",
        "/health",
        "/liveness",
        "/readiness",
        "/readiness?lag=100GB",
        "/primary?tag_zone=b",
    ];
    let cat = |a: &[&'static str], b: &[&'static str]| -> Vec<&'static str> {
        a.iter().chain(b).copied().collect()
    };
    let cases: Vec<(&str, NodeStatus, Option<Value>, Vec<&str>)> = vec![
        ("leader", leader(), Some(json!({})), leader_ok.to_vec()),
        (
            "sync replica",
            sync,
            Some(sync_cfg.clone()),
            cat(&all_replica, &["/sync", "/synchronous", "/read-only-sync"]),
        ),
        (
            "async replica",
            replica(),
            Some(sync_cfg.clone()),
            cat(&all_replica, &["/async", "/asynchronous"]),
        ),
        (
            "paused leader",
            paused,
            Some(json!({"pause": true})),
            leader_ok.to_vec(),
        ),
        ("postgres stopped", stopped, Some(json!({})), vec!["/liveness"]),
        (
            "lagging replica",
            lagging,
            Some(json!({})),
            vec![
                "/replica",
                "/replica?tag_zone=a",
                "/replica?replication_state=streaming",
                "/read-only",
                "/async",
                "/asynchronous",
                "/health",
                "/liveness",
                "/readiness?lag=100GB",
            ],
        ),
        (
            "noloadbalance replica",
            nolb,
            Some(json!({})),
            vec!["/health", "/liveness", "/readiness", "/readiness?lag=100GB"],
        ),
        (
            "lease expired",
            expired,
            Some(json!({})),
            vec!["/health", "/liveness"],
        ),
        (
            "standby leader",
            standby_leader,
            Some(standby_cfg),
            vec![
                "/leader",
                "/standby-leader",
                "/standby_leader",
                "/read-only",
                "/read-only-sync",
                "/read-only-quorum",
                "/health",
                "/liveness",
                "/readiness",
                "/readiness?lag=100GB",
            ],
        ),
    ];
    for (situation, status, config, ok) in cases {
        let fx = Fx::new(status, config).await;
        if situation == "sync replica" {
            put(&fx.dcs, "sync", r#"{"leader":"l1","sync_standby":"me"}"#).await;
        } else {
            put(&fx.dcs, "sync", r#"{"leader":"l1","sync_standby":"other"}"#).await;
        }
        let r = fx.router();
        let mut wrong = vec![];
        for path in HEALTH {
            let want = if ok.contains(path) { 200 } else { 503 };
            let (code, body) = call(&r, "GET", path, None).await;
            if code.as_u16() != want {
                wrong.push(format!("GET {path}: {code}, want {want}"));
            }
            let status_only = path.starts_with("/liveness") || path.starts_with("/readiness");
            if !status_only {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                assert_eq!(v["patroni"]["scope"], "s", "{situation} GET {path}: body {body}");
            }
            for m in ["HEAD", "OPTIONS"] {
                let (c, b) = call(&r, m, path, None).await;
                if c.as_u16() != want || !b.is_empty() {
                    wrong.push(format!("{m} {path}: {c} {b:?}, want {want} and no body"));
                }
            }
        }
        assert!(wrong.is_empty(), "{situation}:\n{}", wrong.join("\n"));
    }
}

/// A stuck loop fails /liveness after ttl on a primary and after 2×ttl on a replica.
#[tokio::test]
async fn liveness_follows_the_last_loop() {
    let mut s = leader();
    s.last_loop = Some(Instant::now() - TTL - Duration::from_secs(1));
    let fx = Fx::new(s, None).await;
    assert_eq!(call(&fx.router(), "GET", "/liveness", None).await.0, 503);
    let mut r = replica();
    r.last_loop = Some(Instant::now() - TTL - Duration::from_secs(1));
    fx.status.send_replace(r);
    assert_eq!(call(&fx.router(), "GET", "/liveness", None).await.0, 200);
}

/// /patroni, /cluster, /history, /config and /failsafe read the status and the DCS; the
/// missing ones answer 502 as Patroni.
#[tokio::test]
async fn read_endpoints_show_status_and_dcs() {
    let fx = Fx::new(replica(), None).await;
    let r = fx.router();
    let (code, body) = call(&r, "GET", "/patroni", None).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["role"], "replica");
    assert_eq!(v["patroni"]["name"], "me");
    // Patroni's version, which clients such as check_patroni gate on; pgwarden's beside it.
    assert_eq!(v["patroni"]["version"], "4.1.5");
    assert_eq!(v["patroni"]["pgwarden_version"], "0.1.0");
    assert_eq!(v["xlog"]["replayed_location"], OPTIME);
    assert!(v.get("sync_standby").is_none());

    assert_eq!(call(&r, "GET", "/config", None).await.0, 502);
    assert_eq!(call(&r, "GET", "/failsafe", None).await.0, 502);
    assert_eq!(
        call(&r, "GET", "/history", None).await,
        (StatusCode::OK, "[]".into())
    );

    put(&fx.dcs, "config", r#"{"ttl":30,"synchronous_mode":true}"#).await;
    put(&fx.dcs, "sync", r#"{"leader":"l1","sync_standby":"me"}"#).await;
    put(&fx.dcs, "failsafe", r#"{"l1":"http://127.0.0.1:8008/patroni"}"#).await;
    put(
        &fx.dcs,
        "history",
        r#"[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","l1"]]"#,
    )
    .await;
    let (code, body) = call(&r, "GET", "/config", None).await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (StatusCode::OK, json!({"ttl":30,"synchronous_mode":true}))
    );
    assert_eq!(call(&r, "GET", "/failsafe", None).await.0, 200);
    let (_, h) = call(&r, "GET", "/history", None).await;
    assert_eq!(serde_json::from_str::<Value>(&h).unwrap()[0][4], "l1");
    let (_, body) = call(&r, "GET", "/patroni", None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["sync_standby"],
        true
    );

    let (code, body) = call(&r, "GET", "/cluster", None).await;
    assert_eq!(code, 200);
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["scope"], "s");
    let names: Vec<_> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].clone(), m["role"].clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (json!("l1"), json!("leader")),
            (json!("me"), json!("sync_standby"))
        ]
    );
    assert_eq!(c["members"][1]["lag"], 0);
    assert_eq!(c["members"][1]["host"], "127.0.0.1");
}

/// /metrics: Patroni's names and labels, pgwarden's Raft and lease metrics.
#[tokio::test]
async fn metrics_use_patronis_names_and_add_raft() {
    let fx = Fx::new(leader(), Some(json!({}))).await;
    let (_rtx, rrx) = watch::channel(RaftInfo {
        id: 1,
        term: 7,
        leader_id: Some(1),
        leader_name: Some("me".into()),
        last_log_index: 42,
        applied_index: 41,
        voters: 3,
        learners: 0,
        millis_since_quorum_ack: Some(120),
    });
    let r = router(fx.state.clone().with_raft(rrx));
    let (code, body) = call(&r, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let l = "{scope=\"s\",name=\"me\"}";
    for line in [
        format!("patroni_version{l} 040105"),
        format!("patroni_postgres_running{l} 1"),
        format!("patroni_primary{l} 1"),
        format!("patroni_replica{l} 0"),
        format!("patroni_xlog_location{l} {OPTIME}"),
        format!("patroni_xlog_received_location{l} 0"),
        format!("patroni_xlog_replayed_location{l} 0"),
        format!("patroni_postgres_timeline{l} 2"),
        format!("patroni_cluster_unlocked{l} 0"),
        format!("patroni_is_paused{l} 0"),
        format!("patroni_dcs_last_seen{l} 1700000000"),
        format!("patroni_pending_restart{l} 0"),
        format!("patroni_postgres_state{l} 5"),
        format!("patroni_postgres_server_version{l} 160004"),
        format!("pgwarden_raft_term{l} 7"),
        format!("pgwarden_raft_is_leader{l} 1"),
        format!("pgwarden_raft_applied_index{l} 41"),
        format!("pgwarden_raft_voters{l} 3"),
        "# TYPE patroni_xlog_location counter".to_string(),
    ] {
        assert!(body.lines().any(|x| x == line), "missing {line:?} in\n{body}");
    }
    let lease: f64 = body
        .lines()
        .find_map(|x| x.strip_prefix(&format!("pgwarden_leader_lease_remaining_seconds{l} ")))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lease > 50.0 && lease <= 60.0, "{lease}");
}

/// A DCS that lets another writer change the config right after each read of it, as a
/// concurrent PATCH from another client would.
struct RacingDcs {
    inner: MemDcs,
    race: AtomicBool,
}

impl Dcs for RacingDcs {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DcsError> {
        let got = self.inner.get(key).await;
        if key.ends_with("/config") && self.race.load(Ordering::SeqCst) {
            self.inner
                .put(key, r#"{"ttl":99}"#, None, Condition::Always)
                .await?;
        }
        got
    }
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, DcsError> {
        self.inner.list(prefix).await
    }
    fn list_stale(&self, prefix: &str) -> Vec<KeyValue> {
        self.inner.list_stale(prefix)
    }
    async fn write(&self, cmd: Command) -> Result<WriteOutcome, DcsError> {
        self.inner.write(cmd).await
    }
    fn watch(&self, prefix: &str) -> Watch {
        self.inner.watch(prefix)
    }
}

/// PATCH deep-merges with null deletes and CAS (409 when someone else wrote in between);
/// 411 without Content-Length, 400 on bad or empty JSON, 503 without a config; PUT replaces.
#[tokio::test]
async fn patch_and_put_config_follow_patroni() {
    let dcs = Arc::new(RacingDcs {
        inner: MemDcs::new(),
        race: AtomicBool::new(false),
    });
    let (_tx, rx) = watch::channel(leader());
    let r = router(ApiState::new(rx, dcs.clone(), P, TTL));
    let patch = r#"{"ttl":20,"postgresql":{"parameters":{"work_mem":"8MB","foo":null}}}"#;

    assert_eq!(call(&r, "PATCH", "/config", Some(patch)).await.0, 503);
    dcs.inner
        .put(
            &format!("{P}config"),
            r#"{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"foo":"1"}}}"#,
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    let req = Request::builder()
        .method("PATCH")
        .uri("/config")
        .body(Body::from(patch))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::LENGTH_REQUIRED);
    for bad in ["{}", "[1,2]", "not json", "", "{\"a\":"] {
        assert_eq!(call(&r, "PATCH", "/config", Some(bad)).await.0, 400, "{bad:?}");
    }
    let (code, body) = call(&r, "PATCH", "/config", Some(patch)).await;
    assert_eq!(code, 200);
    let want = json!({"ttl":20,"loop_wait":10,"postgresql":{"parameters":{"work_mem":"8MB"}}});
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), want);
    let stored = dcs.inner.get(&format!("{P}config")).await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored.value).unwrap(), want);

    dcs.race.store(true, Ordering::SeqCst);
    let (code, _) = call(&r, "PATCH", "/config", Some(r#"{"loop_wait":5}"#)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let stored = dcs.inner.get(&format!("{P}config")).await.unwrap().unwrap();
    assert_eq!(stored.value, r#"{"ttl":99}"#, "the concurrent write must survive");

    // PUT is unconditional.
    let (code, body) = call(&r, "PUT", "/config", Some(r#"{"ttl":40}"#)).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"ttl":40}"#));
    let stored = dcs.inner.get(&format!("{P}config")).await.unwrap().unwrap();
    assert_eq!(stored.value, r#"{"ttl":40}"#);
    assert_eq!(call(&r, "PUT", "/config", Some("[]")).await.0, 400);
}

/// A cluster for the switchover tests: leader l1; r1 healthy, r2 stopped, r3 nofailover.
async fn switchover_fx(config: Value) -> Fx {
    let fx = Fx::new(replica(), Some(config)).await;
    put(&fx.dcs, "members/r1", &member("replica", "running", json!({}))).await;
    put(&fx.dcs, "members/r2", &member("replica", "stopped", json!({}))).await;
    put(
        &fx.dcs,
        "members/r3",
        &member("replica", "running", json!({"nofailover": true})),
    )
    .await;
    fx
}

/// Every validation answer of POST /switchover and /failover, with Patroni's texts.
#[tokio::test]
async fn switchover_and_failover_validation() {
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let fx = switchover_fx(json!({})).await;
    let r = fx.router();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/switchover", "{}".into(), 400, ""),
        (
            "/switchover",
            r#"{"candidate":"r1"}"#.into(),
            400,
            "Switchover could be performed only from a specific leader",
        ),
        (
            "/failover",
            r#"{"leader":"l1"}"#.into(),
            400,
            "Failover could be performed only to a specific candidate",
        ),
        (
            "/failover",
            format!(r#"{{"candidate":"r1","scheduled_at":"{future}"}}"#),
            400,
            "Failover can't be scheduled",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","candidate":"l1"}"#.into(),
            400,
            "Switchover target and source are the same",
        ),
        (
            "/failover",
            r#"{"leader":"l1","candidate":"l1"}"#.into(),
            400,
            "Switchover target and source are the same",
        ),
        (
            "/switchover",
            r#"{"leader":"x","candidate":"r1"}"#.into(),
            412,
            "leader name does not match",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","candidate":"nobody"}"#.into(),
            412,
            "candidate does not exists",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","candidate":"r2"}"#.into(),
            412,
            "switchover is not possible: no good candidates have been found",
        ),
        (
            "/failover",
            r#"{"candidate":"r3"}"#.into(),
            412,
            "failover is not possible: no good candidates have been found",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","scheduled_at":"2001-01-01T00:00:00+00:00"}"#.into(),
            422,
            "Cannot schedule switchover in the past",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","scheduled_at":"tomorrow-ish"}"#.into(),
            422,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        ),
        (
            "/switchover",
            r#"{"leader":"l1","scheduled_at":"2999-01-01T00:00:00"}"#.into(),
            400,
            "Timezone information is mandatory for the scheduled switchover",
        ),
        (
            "/switchover",
            r#"{"leader":5,"candidate":["r1"]}"#.into(),
            400,
            "Switchover could be performed only from a specific leader",
        ),
    ];
    for (path, body, code, msg) in cases {
        let (c, b) = call(&r, "POST", path, Some(&body)).await;
        assert_eq!(c.as_u16(), code, "{path} {body}: {b}");
        if !msg.is_empty() {
            assert_eq!(b, msg, "{path} {body}");
        }
    }

    // Scheduled: 202, visible in /cluster, deletable once.
    let body = format!(r#"{{"leader":"l1","candidate":"r1","scheduled_at":"{future}"}}"#);
    assert_eq!(
        call(&r, "POST", "/switchover", Some(&body)).await,
        (StatusCode::ACCEPTED, "Switchover scheduled".into())
    );
    let (_, c) = call(&r, "GET", "/cluster", None).await;
    let c: Value = serde_json::from_str(&c).unwrap();
    assert_eq!(
        (
            c["scheduled_switchover"]["from"].clone(),
            c["scheduled_switchover"]["to"].clone()
        ),
        (json!("l1"), json!("r1"))
    );
    assert_eq!(
        call(&r, "DELETE", "/switchover", None).await,
        (StatusCode::OK, "scheduled switchover deleted".into())
    );
    assert_eq!(
        call(&r, "DELETE", "/switchover", None).await,
        (StatusCode::NOT_FOUND, "no switchover is scheduled".into())
    );
    let stored = fx.dcs.get(&format!("{P}failover")).await.unwrap().unwrap();
    assert_eq!(stored.value, "{}", "Patroni clears the key by writing {{}}");

    // Paused cluster.
    let fx = switchover_fx(json!({"pause": true})).await;
    let r = fx.router();
    assert_eq!(
        call(&r, "POST", "/switchover", Some(r#"{"leader":"l1"}"#)).await,
        (
            StatusCode::BAD_REQUEST,
            "Switchover is possible only to a specific candidate in a paused state".into()
        )
    );
    let body = format!(r#"{{"leader":"l1","candidate":"r1","scheduled_at":"{future}"}}"#);
    assert_eq!(
        call(&r, "POST", "/switchover", Some(&body)).await,
        (
            StatusCode::BAD_REQUEST,
            "Can't schedule switchover in the paused state".into()
        )
    );

    // Synchronous mode.
    let fx = switchover_fx(json!({"synchronous_mode": true})).await;
    let r = fx.router();
    assert_eq!(
        call(&r, "POST", "/switchover", Some(r#"{"leader":"l1"}"#)).await,
        (
            StatusCode::PRECONDITION_FAILED,
            "switchover is not possible: can not find sync_standby".into()
        )
    );
    put(&fx.dcs, "sync", r#"{"leader":"l1","sync_standby":"r3"}"#).await;
    assert_eq!(
        call(
            &r,
            "POST",
            "/switchover",
            Some(r#"{"leader":"l1","candidate":"r1"}"#)
        )
        .await,
        (
            StatusCode::PRECONDITION_FAILED,
            "candidate name does not match with sync_standby".into()
        )
    );

    // Quorum mode too (safety F4): a candidate outside /sync may lack acknowledged commits.
    let fx = switchover_fx(json!({"synchronous_mode": "quorum"})).await;
    put(
        &fx.dcs,
        "sync",
        r#"{"leader":"l1","sync_standby":"r3","quorum":1}"#,
    )
    .await;
    assert_eq!(
        call(
            &fx.router(),
            "POST",
            "/switchover",
            Some(r#"{"leader":"l1","candidate":"r1"}"#)
        )
        .await,
        (
            StatusCode::PRECONDITION_FAILED,
            "candidate name does not match with sync_standby".into()
        )
    );

    // Only the leader.
    let fx = Fx::new(leader(), Some(json!({}))).await;
    assert_eq!(
        call(&fx.router(), "POST", "/switchover", Some(r#"{"leader":"me"}"#)).await,
        (
            StatusCode::PRECONDITION_FAILED,
            "switchover is not possible: cluster does not have members except leader".into()
        )
    );

    // DCS down.
    let fx = switchover_fx(json!({})).await;
    fx.dcs.set_available(false);
    assert_eq!(
        call(
            &fx.router(),
            "POST",
            "/switchover",
            Some(r#"{"leader":"l1","candidate":"r1"}"#)
        )
        .await
        .0,
        503
    );
}

/// An immediate switchover waits for the outcome: success, another member, failure, timeout.
#[tokio::test(start_paused = true)]
async fn immediate_switchover_reports_the_outcome() {
    async fn run(
        after: Option<(&'static str, &'static str)>,
        path: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let fx = switchover_fx(json!({})).await;
        let dcs = fx.dcs.clone();
        if let Some((key, value)) = after {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                put(&dcs, key, value).await;
            });
        }
        call(&fx.router(), "POST", path, Some(body)).await
    }
    assert_eq!(
        run(
            Some(("leader", "r1")),
            "/switchover",
            r#"{"leader":"l1","candidate":"r1"}"#
        )
        .await,
        (StatusCode::OK, "Successfully switched over to \"r1\"".into())
    );
    assert_eq!(
        run(Some(("leader", "r1")), "/failover", r#"{"candidate":"r1"}"#).await,
        (StatusCode::OK, "Successfully failed over to \"r1\"".into())
    );
    assert_eq!(
        run(
            Some(("leader", "r3")),
            "/switchover",
            r#"{"leader":"l1","candidate":"r1"}"#
        )
        .await,
        (StatusCode::OK, "Switched over to \"r3\" instead of \"r1\"".into())
    );
    assert_eq!(
        run(
            Some(("failover", "{}")),
            "/switchover",
            r#"{"leader":"l1","candidate":"r1"}"#
        )
        .await,
        (StatusCode::SERVICE_UNAVAILABLE, "Switchover failed".into())
    );
    assert_eq!(
        run(None, "/switchover", r#"{"leader":"l1"}"#).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Switchover status unknown after 20 seconds; operation may still be in progress".into()
        )
    );
}

/// A fake HA loop: answers requests as the runner would and records them.
fn fake_loop(mut rx: mpsc::Receiver<ApiRequest>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut scheduled = false;
        while let Some(req) = rx.recv().await {
            let entry = format!("{req:?}");
            match req {
                ApiRequest::Restart { conditions, reply } => {
                    let ok = conditions.role.as_deref() != Some("replica");
                    let message = if ok {
                        "restarted successfully"
                    } else {
                        "restart conditions are not satisfied"
                    };
                    let _ = reply.send(ActionOutcome {
                        ok,
                        message: message.into(),
                    });
                }
                ApiRequest::ScheduleRestart { reply, .. } => {
                    let _ = reply.send(!scheduled);
                    scheduled = true;
                }
                ApiRequest::CancelScheduledRestart { reply } => {
                    let _ = reply.send(scheduled);
                    scheduled = false;
                }
                ApiRequest::Reinitialize { reply, force, .. } => {
                    let _ = reply.send(if force {
                        Ok(())
                    } else {
                        Err("reinitialize already in progress".into())
                    });
                }
                ApiRequest::Reload | ApiRequest::Wakeup => {}
            }
            log.lock().unwrap().push(entry);
        }
    });
    seen
}

/// Restart, reload and reinitialize go to the HA loop with Patroni's codes; failsafe is
/// answered by the API itself.
#[tokio::test]
async fn actions_go_through_the_request_channel() {
    let fx = Fx::new(replica(), Some(json!({}))).await;
    // Without a channel the loop cannot act: 503, never a hang.
    assert_eq!(call(&fx.router(), "POST", "/reload", None).await.0, 503);

    let (tx, rx) = mpsc::channel(16);
    let seen = fake_loop(rx);
    let r = router(fx.state.clone().with_requests(tx));
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();

    assert_eq!(
        call(&r, "POST", "/restart", None).await,
        (StatusCode::OK, "restarted successfully".into())
    );
    assert_eq!(
        call(&r, "POST", "/restart", Some("{}")).await,
        (StatusCode::OK, "restarted successfully".into())
    );
    assert_eq!(
        call(
            &r,
            "POST",
            "/restart",
            Some(r#"{"role":"replica","restart_pending":true,"postgres_version":"17.1","timeout":"30s"}"#)
        )
        .await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "restart conditions are not satisfied".into()
        )
    );
    for (body, msg) in [
        (
            r#"{"role":"leader"}"#,
            "PostgreSQL role should be either primary, standby_leader, or replica",
        ),
        (r#"{"foo":1}"#, "Unknown filter for the scheduled restart: foo"),
        (
            r#"{"timeout":-1}"#,
            "Timeout should be a positive number of seconds",
        ),
        (
            r#"{"timeout":"soon"}"#,
            "Timeout should be a positive number of seconds",
        ),
        (
            r#"{"postgres_version":"10"}"#,
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10",
        ),
        (
            r#"{"schedule":"2999-01-01T00:00:00"}"#,
            "Timezone information is mandatory for the scheduled restart",
        ),
    ] {
        assert_eq!(
            call(&r, "POST", "/restart", Some(body)).await,
            (StatusCode::BAD_REQUEST, msg.into()),
            "{body}"
        );
    }
    assert_eq!(
        call(
            &r,
            "POST",
            "/restart",
            Some(r#"{"schedule":"2001-01-01T00:00:00Z"}"#)
        )
        .await
        .0,
        422
    );
    let sched = format!(r#"{{"schedule":"{future}"}}"#);
    assert_eq!(
        call(&r, "POST", "/restart", Some(&sched)).await,
        (StatusCode::ACCEPTED, "Restart scheduled".into())
    );
    assert_eq!(
        call(&r, "POST", "/restart", Some(&sched)).await,
        (
            StatusCode::CONFLICT,
            "Another restart is already scheduled".into()
        )
    );
    assert_eq!(
        call(&r, "DELETE", "/restart", None).await,
        (StatusCode::OK, "scheduled restart deleted".into())
    );
    assert_eq!(
        call(&r, "DELETE", "/restart", None).await,
        (StatusCode::NOT_FOUND, "no restarts are scheduled".into())
    );

    assert_eq!(
        call(&r, "POST", "/reload", None).await,
        (StatusCode::ACCEPTED, "reload scheduled".into())
    );

    assert_eq!(
        call(
            &r,
            "POST",
            "/reinitialize",
            Some(r#"{"force":true,"from-leader":true}"#)
        )
        .await,
        (StatusCode::OK, "reinitialize started".into())
    );
    assert_eq!(
        call(&r, "POST", "/reinitialize", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "reinitialize already in progress".into()
        )
    );

    assert_eq!(
        call(&r, "POST", "/failsafe", Some(r#"{"l1":"http://x/patroni"}"#))
            .await
            .0,
        502
    );
    put(&fx.dcs, "config", r#"{"failsafe_mode":true}"#).await;
    // Patroni's primary checks for exactly this plain-text body.
    let notice = r#"{"name":"l1","conn_url":"postgres://x:5432/postgres","api_url":"http://x/patroni"}"#;
    assert!(!call(&r, "GET", "/patroni", None)
        .await
        .1
        .contains("failsafe_mode_is_active"));
    assert_eq!(
        call(&r, "POST", "/failsafe", Some(notice)).await,
        (StatusCode::OK, "Accepted".into())
    );
    assert!(call(&r, "GET", "/patroni", None)
        .await
        .1
        .contains(r#""failsafe_mode_is_active":true"#));
    assert!(call(&r, "GET", "/metrics", None)
        .await
        .1
        .contains("patroni_failsafe_mode_is_active{scope=\"s\",name=\"me\"} 1"));
    let (code, body) = call(&r, "POST", "/failsafe", Some(r#"{"l1":"http://x/patroni"}"#)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("'name'"), "{body}");
    // A running primary never vouches for another one.
    let lfx = Fx::new(leader(), Some(json!({"failsafe_mode": true}))).await;
    assert_eq!(
        call(&lfx.router(), "POST", "/failsafe", Some(notice)).await,
        (StatusCode::INTERNAL_SERVER_ERROR, "Running as a leader".into())
    );

    put(&fx.dcs, "config", r#"{"pause":true}"#).await;
    assert_eq!(
        call(&r, "POST", "/restart", Some(&sched)).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't schedule restart in the paused state".into()
        )
    );

    // The leader and a leaderless cluster are refused before the loop is asked.
    fx.status.send_replace(leader());
    assert_eq!(
        call(&r, "POST", "/reinitialize", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "I am the leader, can not reinitialize".into()
        )
    );
    fx.status.send_replace(replica());
    fx.dcs
        .delete(&format!("{P}leader"), Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        call(&r, "POST", "/reinitialize", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Cluster has no leader, can not reinitialize".into()
        )
    );

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.contains("Reinitialize") && s.contains("from_leader: true")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.contains("postgres_version: Some(170001)") && s.contains("timeout: Some(30s)")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s == "Reload"));
}

/// Configured extra headers are on every answer, errors included.
#[tokio::test]
async fn extra_headers_are_added_to_every_response() {
    let fx = Fx::new(replica(), None).await;
    let h = vec![(
        header::HeaderName::from_static("x-frame-options"),
        header::HeaderValue::from_static("DENY"),
    )];
    let r = router(fx.state.clone().with_extra_headers(h));
    for (m, p) in [("GET", "/replica"), ("GET", "/config"), ("BREW", "/x")] {
        let resp = r
            .clone()
            .oneshot(Request::builder().method(m).uri(p).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{m} {p}");
    }
}

/// A loop that drops the reply makes the request fail with 503, not hang.
#[tokio::test]
async fn a_dropped_reply_is_a_503() {
    let fx = Fx::new(replica(), Some(json!({}))).await;
    let (tx, mut rx) = mpsc::channel::<ApiRequest>(4);
    tokio::spawn(async move { while let Some(_req) = rx.recv().await {} });
    let r = router(fx.state.clone().with_requests(tx));
    assert_eq!(
        call(&r, "POST", "/restart", None).await,
        (StatusCode::SERVICE_UNAVAILABLE, "restart failed".into())
    );
}

fn with_peer(method: &str, uri: &str, ip: Option<&str>, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    let mut req = b.body(Body::empty()).unwrap();
    if let Some(ip) = ip {
        req.extensions_mut().insert(PeerInfo {
            addr: std::net::SocketAddr::new(ip.parse().unwrap(), 40000),
            client_cert: false,
        });
    }
    req
}

/// Unsafe endpoints need the allowlist (403) and Basic auth (401 + WWW-Authenticate); GET,
/// HEAD and OPTIONS stay open.
#[tokio::test]
async fn auth_and_allowlist_guard_unsafe_endpoints() {
    let fx = Fx::new(replica(), Some(json!({}))).await;
    let (tx, rx) = mpsc::channel(16);
    let _seen = fake_loop(rx);
    let mut sec = Security::default().with_basic_auth("admin", "secret");
    sec.allowlist = vec!["127.0.0.0/8".parse().unwrap()];
    let r = router(fx.state.clone().with_requests(tx).with_security(sec));
    let good = "Basic YWRtaW46c2VjcmV0"; // admin:secret

    let resp = r
        .clone()
        .oneshot(with_peer("POST", "/reload", Some("127.0.0.1"), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"Patroni\""
    );
    assert_eq!(
        send(
            &r,
            with_peer(
                "POST",
                "/reload",
                Some("127.0.0.1"),
                Some("Basic YWRtaW46d3Jvbmc=")
            )
        )
        .await,
        (StatusCode::UNAUTHORIZED, "not authenticated".into())
    );
    assert_eq!(
        send(&r, with_peer("POST", "/reload", Some("127.0.0.1"), Some(good))).await,
        (StatusCode::ACCEPTED, "reload scheduled".into())
    );
    assert_eq!(
        send(&r, with_peer("POST", "/reload", Some("10.9.9.9"), Some(good))).await,
        (StatusCode::FORBIDDEN, "Access is denied".into())
    );
    assert_eq!(
        send(&r, with_peer("DELETE", "/switchover", None, Some(good)))
            .await
            .0,
        403
    );
    for (m, p) in [
        ("PATCH", "/config"),
        ("PUT", "/config"),
        ("POST", "/switchover"),
        ("POST", "/failover"),
        ("POST", "/restart"),
        ("DELETE", "/restart"),
        ("POST", "/reinitialize"),
        ("POST", "/failsafe"),
        ("DELETE", "/switchover"),
    ] {
        assert_eq!(
            send(&r, with_peer(m, p, Some("127.0.0.1"), None)).await.0,
            401,
            "{m} {p}"
        );
    }
    for (m, p) in [
        ("GET", "/patroni"),
        ("GET", "/cluster"),
        ("GET", "/replica"),
        ("HEAD", "/replica"),
        ("OPTIONS", "/replica"),
        ("GET", "/metrics"),
        ("GET", "/config"),
    ] {
        let code = send(&r, with_peer(m, p, Some("10.9.9.9"), None)).await.0;
        assert!(code != 401 && code != 403, "{m} {p}: {code}");
    }
}

/// Malformed bodies, wrong types, unknown members, oversized bodies and unknown methods get
/// a 4xx (or Patroni's 501 for an unknown method), never a 500.
#[tokio::test]
async fn bad_input_is_a_client_error() {
    let fx = switchover_fx(json!({})).await;
    let r = fx.router();
    for (m, p, body, want) in [
        ("POST", "/switchover", "{\"leader\":", 400),
        ("POST", "/switchover", "\"l1\"", 400),
        ("POST", "/switchover", "null", 400),
        ("POST", "/failover", r#"{"candidate":{"a":1}}"#, 400),
        (
            "POST",
            "/switchover",
            r#"{"leader":"l1","candidate":"ghost"}"#,
            412,
        ),
        (
            "POST",
            "/switchover",
            r#"{"leader":"l1","candidate":"r1","scheduled_at":12}"#,
            422,
        ),
        ("POST", "/restart", "[]", 400),
        ("POST", "/restart", r#"{"role":7}"#, 400),
        ("POST", "/reinitialize", "garbage", 400),
        ("PATCH", "/config", "\u{0}\u{1}", 400),
    ] {
        let (code, b) = call(&r, m, p, Some(body)).await;
        assert_eq!(code.as_u16(), want, "{m} {p} {body:?}: {b}");
    }
    let big = format!("{{\"leader\":\"{}\"}}", "x".repeat(MAX_BODY));
    assert_eq!(call(&r, "POST", "/switchover", Some(&big)).await.0, 413);
    let lie = Request::builder()
        .method("PATCH")
        .uri("/config")
        .header(header::CONTENT_LENGTH, "many")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&r, lie).await.0, 400);
    assert_eq!(call(&r, "BREW", "/coffee", None).await.0, 501);
    assert_eq!(call(&r, "POST", "/patroni", Some("{}")).await.0, 501);
    assert_eq!(call(&r, "DELETE", "/config", None).await.0, 501);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn method() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("GET".to_string()),
            Just("HEAD".to_string()),
            Just("OPTIONS".to_string()),
            Just("POST".to_string()),
            Just("PUT".to_string()),
            Just("PATCH".to_string()),
            Just("DELETE".to_string()),
            "[A-Z]{1,8}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            Just("patroni"),
            Just("cluster"),
            Just("history"),
            Just("config"),
            Just("failsafe"),
            Just("metrics"),
            Just("switchover"),
            Just("failover"),
            Just("restart"),
            Just("reload"),
            Just("reinitialize"),
            Just("replica"),
            Just("primary"),
            Just("read-only-sync"),
            Just("liveness"),
            Just("readiness"),
            Just("sync"),
            Just("x%zz"),
            Just(""),
        ];
        let query = prop_oneof![
            Just(""),
            Just("?lag=1MB"),
            Just("?lag=zz&mode=write"),
            Just("?tag_a=%ff"),
            Just("?&&=="),
            Just("?replication_state=streaming&tag_zone=a"),
        ];
        (prop::collection::vec(seg, 1..3), query).prop_map(|(s, q)| format!("/{}{}", s.join("/"), q))
    }

    fn body() -> impl Strategy<Value = Option<String>> {
        let json_ish = prop_oneof![
            Just(r#"{"leader":"l1","candidate":"r1"}"#.to_string()),
            Just(
                r#"{"leader":"l1","candidate":"r1","scheduled_at":"2999-01-01T00:00:00+00:00"}"#.to_string()
            ),
            Just(r#"{"candidate":"r1"}"#.to_string()),
            Just(r#"{"schedule":"soon","role":"replica"}"#.to_string()),
            Just(r#"{"ttl":null,"postgresql":{"parameters":{"a":1}}}"#.to_string()),
            Just(r#"{"force":true}"#.to_string()),
            "\\{\"[a-z_]{1,12}\":(1|\"x\"|null|\\[\\]|\\{\\}|true)\\}",
            ".{0,40}",
        ];
        prop::option::of(json_ish)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

        /// Random methods, paths and bodies: no panic, and no 5xx but Patroni's documented
        /// 501 (unknown method/path), 502 (no config/failsafe) and 503 (health, DCS, loop).
        #[test]
        fn random_requests_never_get_an_undocumented_5xx(m in method(), p in path(), b in body()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let fx = switchover_fx(json!({"loop_wait": 1})).await;
                let (tx, rx) = mpsc::channel(16);
                let _seen = fake_loop(rx);
                let r = router(fx.state.clone().with_requests(tx));
                let mut req = Request::builder().method(m.as_str()).uri(p.as_str());
                if let Some(b) = &b {
                    req = req.header(header::CONTENT_LENGTH, b.len());
                }
                let req = req.body(Body::from(b.clone().unwrap_or_default())).unwrap();
                let resp = r.oneshot(req).await.unwrap();
                let code = resp.status().as_u16();
                prop_assert!(code < 500 || [501, 502, 503].contains(&code), "{m} {p} {b:?} -> {code}");
                Ok(())
            })?;
        }
    }
}
