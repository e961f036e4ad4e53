//! The runner with a fake PostgreSQL, an in-memory DCS, recording callbacks and a stand-in
//! watchdog device: where the callbacks fire and when the watchdog is armed, fed and
//! disarmed. (Never the real /dev/watchdog: arming it would reboot the machine.)

use super::*;
use crate::dcs::MemDcs;
use crate::ha::callbacks::fake::RecordingCallbacks;
use crate::ha::status::DaemonInfo;
use crate::ha::watchdog::fake::FakeDriver;
use crate::postgres::fake::{Call, FakePg};
use crate::postgres::ConfigInput;
use crate::types::Lsn;
use crate::types::TimelineId;
use pgwarden_raft::Condition;
use serde_json::json;
use std::sync::atomic::Ordering;

const PREFIX: &str = "/service/t/";

fn settings(me: &str) -> HaSettings {
    HaSettings {
        prefix: PREFIX.into(),
        scope: "t".into(),
        me: MemberName::new(me).unwrap(),
        api_url: "http://127.0.0.1:1/patroni".into(),
        conn_url: "postgres://127.0.0.1:5432/postgres".into(),
        timing: Timing {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        },
        safety_margin: Duration::from_secs(2),
        tags: BTreeMap::new(),
        failover_priority: 1,
        initdb: vec![],
        bootstrap_dcs: json!({}),
        pg_hba: vec![],
        pg_ident: vec![],
        use_pg_rewind: None,
        remove_data_directory_on_rewind_failure: false,
        remove_data_directory_on_diverged_timelines: false,
        default_pg_hba: vec![],
        local_parameters: BTreeMap::new(),
        recovery_conf: BTreeMap::new(),
        post_bootstrap: None,
        replica_methods: vec![],
        bootstrap_method: None,
        api_auth: None,
        scripts: None,
        watchdog: None,
    }
}

struct Fixture {
    dcs: Arc<MemDcs>,
    pg: Arc<FakePg>,
    cb: Arc<RecordingCallbacks>,
    wd: FakeDriver,
    runner: Runner<MemDcs, FakePg>,
}

/// Member `a`, a running streaming-less replica, alone in an initialised cluster with no
/// leader; member `b` exists as a key only (a leader to follow later).
async fn fixture(mode: WatchdogMode) -> Fixture {
    let dcs = Arc::new(MemDcs::new());
    let put = |k: &str, v: String| {
        let dcs = dcs.clone();
        let k = format!("{PREFIX}{k}");
        async move { dcs.put(&k, &v, None, Condition::Always).await.unwrap() }
    };
    put("initialize", "7000000000000000001".into()).await;
    put(
        "config",
        json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}).to_string(),
    )
    .await;
    put(
        "members/b",
        json!({"conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:1/patroni",
               "state": "running", "role": "replica"})
        .to_string(),
    )
    .await;
    // `b` is unreachable over REST, so it does not count as a peer in the race.
    let pg = Arc::new(FakePg::new());
    pg.with_state(|s| {
        s.postmaster = PostmasterState::Running {
            // No process can have this pid (pid_max is at most 2^22): the fence thread,
            // which signals real processes, never finds one.
            pid: i32::MAX,
        };
        s.status.in_recovery = true;
        s.status.current_lsn = None;
        s.status.receive_lsn = Some(Lsn(0x300_0000));
        s.status.replay_lsn = Some(Lsn(0x300_0000));
        s.status.timeline = TimelineId(1);
    });
    let cb = Arc::new(RecordingCallbacks::default());
    let wd = FakeDriver::default();
    let info = DaemonInfo {
        version: "test".into(),
        scope: "t".into(),
        name: "a".into(),
    };
    let (status, _) = watch::channel(NodeStatus::initial(info, false));
    let runner = Runner::new(dcs.clone(), pg.clone(), settings("a"), status)
        .with_callbacks(cb.clone())
        .with_watchdog(Arc::new(Watchdog::new(
            mode,
            "/dev/stand-in".into(),
            5,
            Box::new(wd.clone()),
        )));
    Fixture {
        dcs,
        pg,
        cb,
        wd,
        runner,
    }
}

impl Fixture {
    async fn leader(&self) -> Option<String> {
        self.dcs
            .get(&format!("{PREFIX}leader"))
            .await
            .unwrap()
            .map(|kv| kv.value)
    }
    fn promoted(&self) -> bool {
        self.pg.calls().contains(&Call::Promote)
    }
}

/// F6: the watchdog is tried (opened and closed) before PostgreSQL is promoted, armed only
/// once the promotion has succeeded, with a timeout no shorter than the lease's fence
/// deadline (ttl 30 − 2 = 28, not ttl − safety_margin = 25), fed after every leader-key
/// refresh, and magic-closed when the member is demoted; the callbacks fire as Patroni's do:
/// on_role_change primary on promotion, before_stop and on_stop primary on the demotion,
/// on_role_change replica once it runs as a replica.
#[tokio::test]
async fn safety_f6_watchdog_is_armed_after_promote_with_the_fence_timeout_fed_and_closed_on_demote() {
    let mut f = fixture(WatchdogMode::Required).await;
    // Record whether PostgreSQL had been promoted each time the device was opened.
    let (pg, seen) = (f.pg.clone(), Arc::new(std::sync::Mutex::new(Vec::new())));
    let seen2 = seen.clone();
    f.wd.with(|s| {
        s.on_open = Some(Arc::new(move || {
            seen2.lock().unwrap().push(pg.calls().contains(&Call::Promote));
        }))
    });
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await.as_deref(), Some("a"));
    assert!(f.promoted());
    assert_eq!(
        *seen.lock().unwrap(),
        [false, true],
        "tried before the promotion, armed after it"
    );
    assert_eq!(
        f.wd.ops(),
        ["open", "set_timeout 28", "magic_close", "open", "set_timeout 28"]
    );
    assert_eq!(f.cb.calls(), ["pre_promote", "on_role_change primary"]);

    for n in 1..=3 {
        f.runner.iteration().await.unwrap();
        let feeds = f.wd.ops().iter().filter(|o| *o == "keepalive").count();
        assert_eq!(feeds, n, "one feed per refresh: {:?}", f.wd.ops());
    }

    // Another member took the key: demote.
    f.dcs
        .put(&format!("{PREFIX}leader"), "b", None, Condition::Always)
        .await
        .unwrap();
    f.runner.iteration().await.unwrap();
    assert_eq!(f.wd.ops().last().map(String::as_str), Some("magic_close"));
    assert!(!f.wd.with(|s| s.open));
    assert_eq!(
        f.cb.calls()[2..],
        ["before_stop", "on_stop primary", "on_role_change replica"]
    );
}

/// Shutdown of an armed primary: before_stop, stop, on_stop primary, then the magic close.
#[tokio::test]
async fn shutdown_stops_postgres_then_magic_closes_the_watchdog() {
    let mut f = fixture(WatchdogMode::Automatic).await;
    f.runner.iteration().await.unwrap();
    f.runner.iteration().await.unwrap();
    assert!(f.wd.with(|s| s.open));
    f.runner.on_shutdown().await;
    assert_eq!(f.wd.ops().last().map(String::as_str), Some("magic_close"));
    assert_eq!(f.cb.calls()[2..], ["before_stop", "on_stop primary"]);
    assert!(f.pg.calls().contains(&Call::Stop(StopMode::Fast)));
}

/// Shutdown of the primary of a paused cluster (Patroni's rule, how a cluster is handed back
/// to Patroni): PostgreSQL is not stopped, the leader key is left to expire, no stop
/// callbacks run, the watchdog is closed, and the lease is forgotten so that neither fence
/// stops PostgreSQL once the daemon is gone.
#[tokio::test]
async fn shutdown_in_a_paused_cluster_leaves_postgres_running() {
    let mut f = fixture(WatchdogMode::Automatic).await;
    f.runner.iteration().await.unwrap();
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await.as_deref(), Some("a"));
    f.dcs
        .put(
            &format!("{PREFIX}config"),
            &json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "pause": true}).to_string(),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    f.runner.iteration().await.unwrap();
    assert!(
        f.runner.lease.deadline().is_some(),
        "the paused primary keeps its lease"
    );
    f.runner.on_shutdown().await;
    let stops: Vec<_> =
        f.pg.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Stop(_)))
            .collect();
    assert!(stops.is_empty(), "PostgreSQL was stopped: {stops:?}");
    assert_eq!(
        f.leader().await.as_deref(),
        Some("a"),
        "the key is left to expire"
    );
    assert!(f.runner.lease.deadline().is_none(), "the lease is forgotten");
    assert!(!f.wd.with(|s| s.open));
    assert!(
        !f.cb.calls().iter().any(|c| c.starts_with("on_stop")),
        "{:?}",
        f.cb.calls()
    );
}

/// Pausing the cluster disarms the watchdog.
#[tokio::test]
async fn pause_disarms_the_watchdog() {
    let mut f = fixture(WatchdogMode::Automatic).await;
    f.runner.iteration().await.unwrap();
    assert!(f.wd.with(|s| s.open));
    f.dcs
        .put(
            &format!("{PREFIX}config"),
            &json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "pause": true}).to_string(),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    f.runner.iteration().await.unwrap();
    assert!(!f.wd.with(|s| s.open));
    assert_eq!(f.wd.ops().last().map(String::as_str), Some("magic_close"));
}

/// watchdog.mode required with a missing device: the member does not race for the leader
/// key, and PostgreSQL is never promoted.
#[tokio::test]
async fn required_watchdog_without_a_device_prevents_promotion() {
    let mut f = fixture(WatchdogMode::Required).await;
    f.wd.with(|s| s.missing = true);
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await, None);
    assert!(!f.promoted());
    assert!(
        f.runner.last_reason.contains("watchdog"),
        "{}",
        f.runner.last_reason
    );
}

/// required, device present but it cannot be armed safely (a fixed 60 s timeout): the
/// member takes the key, fails to arm, releases the key without promoting, and does not
/// race again.
#[tokio::test]
async fn required_watchdog_that_cannot_be_armed_releases_the_key_unpromoted() {
    let mut f = fixture(WatchdogMode::Required).await;
    f.wd.with(|s| s.fixed_timeout = Some(60));
    let r = f.runner.iteration().await;
    assert!(
        matches!(&r, Err(ActError::GaveUp(m)) if m.contains("watchdog")),
        "{r:?}"
    );
    assert_eq!(f.leader().await, None);
    assert!(!f.promoted());
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await, None, "no second race");
    assert!(
        f.runner.last_reason.contains("watchdog"),
        "{}",
        f.runner.last_reason
    );
}

/// A primary holding the key whose required watchdog cannot be armed demotes: PostgreSQL
/// is stopped at once and the key released.
#[tokio::test]
async fn primary_that_cannot_arm_a_required_watchdog_demotes() {
    let mut f = fixture(WatchdogMode::Required).await;
    f.wd.with(|s| s.fail_open = true);
    f.pg.with_state(|s| {
        s.status.in_recovery = false;
        s.status.current_lsn = Some(Lsn(0x300_0000));
    });
    f.dcs
        .put(&format!("{PREFIX}leader"), "a", None, Condition::Always)
        .await
        .unwrap();
    let r = f.runner.iteration().await;
    assert!(
        matches!(&r, Err(ActError::GaveUp(m)) if m.contains("watchdog")),
        "{r:?}"
    );
    assert!(f.pg.calls().contains(&Call::Stop(StopMode::Immediate)));
    assert_eq!(f.leader().await, None);
}

/// A failing pre_promote aborts the promotion, releases the key, and keeps the member out
/// of the race for ttl (then it may race again).
#[tokio::test]
async fn failing_pre_promote_releases_the_key_and_backs_off_for_ttl() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.cb.fail_pre_promote.store(true, Ordering::SeqCst);
    let r = f.runner.iteration().await;
    assert!(
        matches!(&r, Err(ActError::GaveUp(m)) if m.contains("pre-promote")),
        "{r:?}"
    );
    assert_eq!(f.leader().await, None);
    assert!(!f.promoted());
    let until = f.runner.race_backoff_until.expect("back-off set");
    let left = until.saturating_duration_since(Instant::now());
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );

    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await, None, "backing off");
    assert!(
        f.runner.last_reason.contains("pre_promote"),
        "{}",
        f.runner.last_reason
    );

    // Once ttl has passed (simulated), it races again; the script now succeeds.
    f.runner.race_backoff_until = Some(Instant::now());
    f.cb.fail_pre_promote.store(false, Ordering::SeqCst);
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await.as_deref(), Some("a"));
    assert!(f.promoted());
}

/// A reload that changes `postgresql.callbacks` swaps the scripts: the on_reload of the
/// new file runs, with Patroni's arguments (action, role, scope).
#[tokio::test]
async fn reload_swaps_the_callback_scripts() {
    let mut f = fixture(WatchdogMode::Off).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("echo \"$0 $1 $2\" >> {}", out.display()),
    ];
    f.runner = f.runner.with_reloader(Arc::new(move || {
        let mut s = settings("a");
        s.scripts = Some((
            CallbackCommands {
                on_reload: Some(script.clone()),
                ..CallbackCommands::default()
            },
            // As root, scripts need a user to run as: the daemon's own will do here.
            nix::unistd::geteuid().is_root().then(|| "root".to_string()),
        ));
        Ok(s)
    }));
    f.runner.handle_request(ApiRequest::Reload).await;
    assert!(
        f.cb.calls().is_empty(),
        "the old scripts no longer get events: {:?}",
        f.cb.calls()
    );
    f.runner.callbacks.wait_idle(Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&out).expect("the new on_reload script ran");
    // No iteration ran yet, so the role is not known: Patroni says "uninitialized" then.
    assert_eq!(text.trim(), "on_reload uninitialized t");
}

/// A reload that changes the watchdog settings disarms the old device at once, and an
/// armed primary arms the new one at its next refresh (Patroni's reload); unchanged
/// settings leave the armed device alone.
#[tokio::test]
async fn reload_reconfigures_the_watchdog() {
    let mut f = fixture(WatchdogMode::Automatic).await;
    f.runner.iteration().await.unwrap();
    f.runner.iteration().await.unwrap();
    assert!(f.wd.with(|s| s.open), "armed as primary");
    let wanted = Arc::new(std::sync::Mutex::new((WatchdogMode::Automatic, 5_i64)));
    let w = wanted.clone();
    f.runner = f.runner.with_reloader(Arc::new(move || {
        let (mode, margin) = *w.lock().unwrap();
        let mut s = settings("a");
        s.watchdog = Some((mode, "/dev/stand-in".into(), margin));
        Ok(s)
    }));
    f.runner.handle_request(ApiRequest::Reload).await;
    assert!(f.wd.with(|s| s.open), "same settings: still armed");

    *wanted.lock().unwrap() = (WatchdogMode::Off, 5);
    f.runner.handle_request(ApiRequest::Reload).await;
    assert!(!f.wd.with(|s| s.open), "mode off: disarmed");
    assert_eq!(f.wd.ops().last().map(String::as_str), Some("magic_close"));
    f.runner.iteration().await.unwrap();
    assert!(!f.wd.with(|s| s.open), "mode off: not armed again");

    *wanted.lock().unwrap() = (WatchdogMode::Automatic, 10);
    f.runner.handle_request(ApiRequest::Reload).await;
    f.runner.iteration().await.unwrap();
    assert!(f.wd.with(|s| s.open), "armed again at the next refresh");
    // ttl 30 − the new safety_margin 10 is 20, below the lease's fence deadline (ttl 30 −
    // the 2 s lease margin): the watchdog never fires before the fence would.
    assert_eq!(f.wd.ops().last().map(String::as_str), Some("set_timeout 28"));
}

/// A promotion appends its row to the stored history, whatever the rows' lengths (3 to 5
/// fields), and never replaces it.
#[tokio::test]
async fn a_promotion_appends_to_a_history_of_short_rows() {
    let mut f = fixture(WatchdogMode::Off).await;
    let old = json!([
        [1, 25165992, "no recovery target specified"],
        [
            2,
            50331824,
            "no recovery target specified",
            "2026-01-01T00:00:00+00:00"
        ]
    ]);
    f.dcs
        .put(
            &format!("{PREFIX}history"),
            &old.to_string(),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    f.pg.with_state(|s| s.status.timeline = TimelineId(3));
    f.runner.iteration().await.unwrap();
    assert!(f.promoted());
    let stored = f
        .dcs
        .get(&format!("{PREFIX}history"))
        .await
        .unwrap()
        .unwrap()
        .value;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stored).unwrap();
    assert_eq!(rows.len(), 3, "{stored}");
    assert_eq!(rows[0], old[0]);
    assert_eq!(rows[1], old[1]);
    assert_eq!(rows[2][0], json!(3));
    assert_eq!(rows[2][4], json!("a"));
}

/// A restart scheduled through the API is published in the member key as Patroni's
/// `scheduled_restart` (GET /cluster and `list` show it from there), and gone once cancelled.
#[tokio::test]
async fn a_scheduled_restart_is_published_in_the_member_key() {
    let mut f = fixture(WatchdogMode::Off).await;
    let at = chrono::DateTime::parse_from_rfc3339("2999-01-01T00:00:00+00:00").unwrap();
    let (reply, rx) = tokio::sync::oneshot::channel();
    f.runner
        .handle_request(ApiRequest::ScheduleRestart {
            conditions: RestartConditions {
                postgres_version: Some(170000),
                ..Default::default()
            },
            at,
            reply,
        })
        .await;
    assert!(rx.await.unwrap());
    f.runner.iteration().await.unwrap();
    let member = |f: &Fixture| {
        let dcs = f.dcs.clone();
        async move {
            let kv = dcs.get(&format!("{PREFIX}members/a")).await.unwrap().unwrap();
            serde_json::from_str::<serde_json::Value>(&kv.value).unwrap()
        }
    };
    let m = member(&f).await;
    assert_eq!(
        m["scheduled_restart"],
        json!({"schedule": "2999-01-01T00:00:00+00:00", "postgres_version": "170000"})
    );
    let (reply, rx) = tokio::sync::oneshot::channel();
    f.runner
        .handle_request(ApiRequest::CancelScheduledRestart { reply })
        .await;
    assert!(rx.await.unwrap());
    f.runner.iteration().await.unwrap();
    assert!(member(&f).await.get("scheduled_restart").is_none());
}

/// F8 through the runner: PostgreSQL stopped, its data directory present but pg_controldata
/// failing, and the DCS keyspace without `initialize` (as after `pgwardenctl remove`): no
/// initdb, and the data directory is not moved aside.
#[tokio::test]
async fn safety_f8_a_failing_pg_controldata_never_leads_to_a_bootstrap() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.pg.with_state(|s| s.postmaster = PostmasterState::Stopped);
    f.pg.fail("controldata");
    f.dcs
        .delete(&format!("{PREFIX}initialize"), Condition::Always)
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = f.runner.iteration().await;
    }
    let calls = f.pg.calls();
    assert!(!calls.iter().any(|c| matches!(c, Call::Initdb(_))), "{calls:?}");
    assert!(!calls.contains(&Call::MoveAside), "{calls:?}");
    assert!(
        f.runner.last_reason.contains("cannot be examined"),
        "{}",
        f.runner.last_reason
    );
}

/// F2 through the runner: the lock holder's PostgreSQL fails to start while a replica could
/// take over: the key is released at once (Patroni's post_recover), not kept for retries.
#[tokio::test]
async fn safety_f2_a_failed_start_of_the_primary_releases_the_key_at_once() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.pg.with_state(|s| {
        s.postmaster = PostmasterState::Stopped;
        s.status.in_recovery = false;
    });
    f.pg.fail("start");
    f.dcs
        .put(&format!("{PREFIX}leader"), "a", None, Condition::Always)
        .await
        .unwrap();
    let r = f.runner.iteration().await;
    assert!(
        matches!(&r, Err(ActError::GaveUp(m)) if m.contains("failed to start")),
        "{r:?}"
    );
    assert_eq!(f.leader().await, None);
    assert_eq!(f.runner.lease.deadline(), None);
}

/// F2, the other half: a postmaster that runs but does not answer on the lock holder is
/// stopped and the key released once primary_start_timeout has passed since it was first
/// seen so, counted across iterations.
#[tokio::test]
async fn safety_f2_an_unanswering_primary_gives_the_key_up_after_primary_start_timeout() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.dcs
        .put(
            &format!("{PREFIX}config"),
            &json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "primary_start_timeout": 1}).to_string(),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    f.dcs
        .put(&format!("{PREFIX}leader"), "a", None, Condition::Always)
        .await
        .unwrap();
    f.pg.with_state(|s| {
        s.unresponsive = true;
        s.status.in_recovery = false;
    });
    let first = Instant::now();
    // Bounded: iterations for at most 10 s, until the key is gone.
    while f.leader().await.is_some() {
        assert!(
            first.elapsed() < Duration::from_secs(10),
            "the key was kept: {}",
            f.runner.last_reason
        );
        let _ = f.runner.iteration().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        first.elapsed() >= Duration::from_secs(1),
        "released before primary_start_timeout"
    );
    assert!(f.pg.calls().contains(&Call::Stop(StopMode::Immediate)));
}

/// F9: a primary found running when the daemon starts (adopted) gets its configuration
/// rewritten from the DCS and the local settings as a primary at the first iteration (the
/// dynamic parameters included), and a later reload keeps it a primary: never standby.signal.
#[tokio::test]
async fn safety_f9_an_adopted_primary_is_reconfigured_from_the_real_inputs_and_stays_primary() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.dcs
        .put(
            &format!("{PREFIX}config"),
            &json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                    "postgresql": {"parameters": {"wal_keep_size": "1GB"}}})
            .to_string(),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    f.dcs
        .put(&format!("{PREFIX}leader"), "a", None, Condition::Always)
        .await
        .unwrap();
    f.pg.with_state(|s| {
        s.status.in_recovery = false;
        s.status.current_lsn = Some(Lsn(0x300_0000));
    });
    f.runner.iteration().await.unwrap();
    let written: Vec<ConfigInput> =
        f.pg.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::WriteConfig(i) => Some(i),
                _ => None,
            })
            .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].role, PgRole::Primary);
    assert_eq!(
        written[0].dcs_parameters.get("wal_keep_size").map(String::as_str),
        Some("1GB")
    );
    assert!(f.pg.calls().contains(&Call::Reload));
    f.pg.clear_calls();
    f.runner.handle_request(ApiRequest::Reload).await;
    let roles: Vec<PgRole> =
        f.pg.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::WriteConfig(i) => Some(i.role),
                _ => None,
            })
            .collect();
    assert_eq!(roles, [PgRole::Primary]);
}

/// Issue 22: the keyspace lost with every Raft data directory while PostgreSQL runs as the
/// primary here. One iteration adopts it: the leader key, `initialize` from the data
/// directory's system identifier, and `config` again from the local bootstrap.dcs section;
/// PostgreSQL is neither stopped nor promoted.
#[tokio::test]
async fn a_lost_keyspace_is_rebuilt_around_the_running_primary() {
    let mut f = fixture(WatchdogMode::Off).await;
    for k in ["initialize", "config", "members/b"] {
        f.dcs
            .delete(&format!("{PREFIX}{k}"), Condition::Always)
            .await
            .unwrap();
    }
    let bootstrap = json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 4096});
    f.runner.s.bootstrap_dcs = bootstrap.clone();
    f.pg.with_state(|s| {
        s.status.in_recovery = false;
        s.status.current_lsn = Some(Lsn(0x300_0000));
    });
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await.as_deref(), Some("a"), "{}", f.runner.last_reason);
    let get = |k: &'static str| {
        let dcs = f.dcs.clone();
        async move { dcs.get(&format!("{PREFIX}{k}")).await.unwrap().map(|kv| kv.value) }
    };
    assert_eq!(get("initialize").await.as_deref(), Some("7000000000000000001"));
    let config: Value = serde_json::from_str(&get("config").await.unwrap()).unwrap();
    assert_eq!(config, bootstrap);
    let calls = f.pg.calls();
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Stop(_) | Call::Promote | Call::Initdb(_))),
        "{calls:?}"
    );
}

/// The `config` key deleted while the leader runs comes back with the value the leader last
/// read, not the local bootstrap.dcs section (Patroni writes its in-memory dynamic
/// configuration back).
#[tokio::test]
async fn a_deleted_config_key_comes_back_with_the_last_value_read() {
    let mut f = fixture(WatchdogMode::Off).await;
    f.runner.s.bootstrap_dcs = json!({"ttl": 99});
    f.pg.with_state(|s| {
        s.status.in_recovery = false;
        s.status.current_lsn = Some(Lsn(0x300_0000));
    });
    f.runner.iteration().await.unwrap();
    assert_eq!(f.leader().await.as_deref(), Some("a"), "{}", f.runner.last_reason);
    let key = format!("{PREFIX}config");
    f.dcs.delete(&key, Condition::Always).await.unwrap();
    f.runner.iteration().await.unwrap();
    let back: Value =
        serde_json::from_str(&f.dcs.get(&key).await.unwrap().expect("config is back").value).unwrap();
    assert_eq!(back, json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}));
}
