//! The decision table: every row a named case with its expected actions.
use super::super::view::{FailoverKey, MemberRecord, Versioned};
use super::*;
use crate::ha::view::HistoryRow;
use serde_json::json;

fn n(s: &str) -> MemberName {
    MemberName::new(s).unwrap()
}

fn view(leader: Option<&str>) -> ClusterView {
    let mut v = ClusterView {
        initialize: Some("7000000000000000001".into()),
        ..Default::default()
    };
    v.leader = leader.map(|l| Versioned {
        value: n(l),
        revision: 5,
    });
    for m in ["a", "b", "c"] {
        v.members.insert(
            n(m),
            MemberRecord {
                conn_url: "postgres://127.0.0.1:5432/postgres".into(),
                state: "running".into(),
                role: if Some(m) == leader {
                    "primary".into()
                } else {
                    "replica".into()
                },
                xlog_location: Some(100),
                ..Default::default()
            },
        );
    }
    v
}

fn replica(wal: u64, following: Option<&str>) -> PgState {
    PgState::Running(Running {
        primary: false,
        timeline: 1,
        wal: Lsn(wal),
        following: following.map(n),
        streaming: true,
        stalled: false,
        receiver_timeline: Some(1),
        replayed: Lsn(wal),
    })
}

fn primary() -> PgState {
    PgState::Running(Running {
        primary: true,
        timeline: 1,
        wal: Lsn(100),
        following: None,
        streaming: false,
        stalled: false,
        receiver_timeline: None,
        replayed: Lsn(0),
    })
}

fn peer(name: &str, wal: u64, primary: bool, prio: i64) -> PeerStatus {
    PeerStatus {
        name: n(name),
        primary,
        wal: Lsn(wal),
        timeline: 1,
        failover_priority: prio,
        watchdog_failed: false,
    }
}

struct Case {
    name: &'static str,
    me: &'static str,
    view: Option<ClusterView>,
    pg: PgState,
    prio: i64,
    peers: Vec<PeerStatus>,
    expect: Vec<Action>,
}

fn run(c: &Case) -> Decision {
    let me = n(c.me);
    decide(&Inputs {
        failover_priority: c.prio,
        peers: &c.peers,
        ..inputs(&me, c.view.as_ref(), &c.pg)
    })
}

/// Every row of the decision table pgwarden implements.
#[test]
fn decision_table() {
    let mut fresh = ClusterView::default();
    fresh.members.clear();
    let mut bootstrapping = ClusterView {
        initialize: Some(String::new()),
        ..Default::default()
    };
    bootstrapping.members.clear();
    let mut paused = view(None);
    paused.config = Some(Versioned {
        value: crate::config::DynamicConfig::from_json(&json!({"pause": true})).unwrap(),
        revision: 1,
    });
    let mut switchover = view(Some("a"));
    switchover.failover = Some(Versioned {
        value: FailoverKey {
            leader: Some("a".into()),
            member: Some("b".into()),
            scheduled_at: None,
        },
        revision: 9,
    });
    let mut switchover_bad = switchover.clone();
    switchover_bad.members.get_mut(&n("b")).unwrap().state = "stopped".into();
    let mut failover_to_c = view(None);
    failover_to_c.failover = Some(Versioned {
        value: FailoverKey {
            leader: None,
            member: Some("c".into()),
            scheduled_at: None,
        },
        revision: 4,
    });
    let mut lagging = view(None);
    lagging.optime = Some(10_000_000);
    let mut paused_failover_to_c = failover_to_c.clone();
    paused_failover_to_c.config = paused.config.clone();
    let mut paused_c_holds = paused_failover_to_c.clone();
    paused_c_holds.leader = view(Some("c")).leader;
    let mut promoted_a = view(Some("a"));
    promoted_a.history = vec![HistoryRow::new(1, 50, "no recovery target specified", None, None)];
    promoted_a.members.get_mut(&n("a")).unwrap().timeline = Some(2);

    let cases = vec![
        Case {
            name: "replica past the end of its timeline: restart with a rewind check",
            me: "b",
            view: Some(promoted_a),
            pg: replica(90, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![Action::StartReplica { leader: Some(n("a")) }],
        },
        Case {
            name: "empty cluster: race to bootstrap",
            me: "a",
            view: Some(fresh.clone()),
            pg: PgState::NoData,
            prio: 1,
            peers: vec![],
            expect: vec![Action::RaceInitialize, Action::Bootstrap],
        },
        Case {
            name: "nofailover never bootstraps",
            me: "a",
            view: Some(fresh),
            pg: PgState::NoData,
            prio: 0,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "someone is bootstrapping",
            me: "b",
            view: Some(bootstrapping),
            pg: PgState::NoData,
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "no data: clone from the leader",
            me: "b",
            view: Some(view(Some("a"))),
            pg: PgState::NoData,
            prio: 1,
            peers: vec![],
            expect: vec![
                Action::Clone {
                    from: n("a"),
                    clonefrom: vec![],
                },
                Action::StartReplica { leader: Some(n("a")) },
            ],
        },
        Case {
            name: "no data, no leader: wait",
            me: "b",
            view: Some(view(None)),
            pg: PgState::NoData,
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "no data but I hold the lock: release it",
            me: "a",
            view: Some(view(Some("a"))),
            pg: PgState::NoData,
            prio: 1,
            peers: vec![],
            expect: vec![Action::ReleaseLeader],
        },
        Case {
            name: "leader: refresh",
            me: "a",
            view: Some(view(Some("a"))),
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader],
        },
        Case {
            name: "lock holder that is a replica: promote",
            me: "a",
            view: Some(view(Some("a"))),
            pg: replica(1, None),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::Promote],
        },
        Case {
            name: "stopped leader: start as primary",
            me: "a",
            view: Some(view(Some("a"))),
            pg: PgState::Stopped {
                clean: false,
                standby: false,
            },
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::StartPrimary],
        },
        Case {
            name: "stopped replica: start following the leader",
            me: "b",
            view: Some(view(Some("a"))),
            pg: PgState::Stopped {
                clean: true,
                standby: false,
            },
            prio: 1,
            peers: vec![],
            expect: vec![Action::StartReplica { leader: Some(n("a")) }],
        },
        Case {
            name: "primary while another holds the key: demote",
            me: "b",
            view: Some(view(Some("a"))),
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![
                Action::Demote(DemoteMode::ImmediateNoLock),
                Action::StartReplica { leader: Some(n("a")) },
            ],
        },
        Case {
            name: "replica following someone else: follow the leader",
            me: "b",
            view: Some(view(Some("a"))),
            pg: replica(1, Some("c")),
            prio: 1,
            peers: vec![],
            expect: vec![Action::Follow { leader: n("a") }],
        },
        Case {
            name: "replica following the leader: nothing",
            me: "b",
            view: Some(view(Some("a"))),
            pg: replica(1, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "no leader, healthiest: take over",
            me: "b",
            view: Some(view(None)),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![peer("c", 90, false, 1)],
            expect: vec![Action::AcquireLeader, Action::Promote],
        },
        Case {
            name: "no leader, a peer has more WAL",
            me: "b",
            view: Some(view(None)),
            pg: replica(90, Some("a")),
            prio: 1,
            peers: vec![peer("c", 100, false, 1)],
            expect: vec![],
        },
        Case {
            name: "no leader, equal WAL, peer has higher priority",
            me: "b",
            view: Some(view(None)),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![peer("c", 100, false, 2)],
            expect: vec![],
        },
        Case {
            name: "no leader, old primary still alive",
            me: "b",
            view: Some(view(None)),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![peer("a", 100, true, 1)],
            expect: vec![],
        },
        Case {
            name: "no leader, nofailover",
            me: "b",
            view: Some(view(None)),
            pg: replica(100, Some("a")),
            prio: 0,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "no leader, lagging over maximum_lag_on_failover",
            me: "b",
            view: Some(lagging),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "no leader, paused: no race",
            me: "b",
            view: Some(paused.clone()),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "paused, manual failover: the named candidate takes the key and promotes",
            me: "c",
            view: Some(paused_failover_to_c.clone()),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![Action::AcquireLeader, Action::Promote],
        },
        Case {
            name: "paused, manual failover to another member: no race",
            me: "b",
            view: Some(paused_failover_to_c.clone()),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "paused, manual failover to a nofailover member: no race",
            me: "c",
            view: Some(paused_failover_to_c),
            pg: replica(100, Some("a")),
            prio: 0,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "paused, the candidate holds the key but is still a replica: promotes, key kept",
            me: "c",
            view: Some(paused_c_holds.clone()),
            pg: replica(100, None),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::Promote],
        },
        Case {
            name: "paused, the candidate is the primary now: the failover key is cleared",
            me: "c",
            view: Some(paused_c_holds),
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::ClearFailover { revision: 4 }],
        },
        Case {
            name: "paused: a stopped member is not started",
            me: "b",
            view: Some(paused),
            pg: PgState::Stopped {
                clean: true,
                standby: false,
            },
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
        Case {
            name: "manual failover: the named candidate takes over",
            me: "c",
            view: Some(failover_to_c.clone()),
            pg: replica(1, Some("a")),
            prio: 1,
            peers: vec![peer("b", 100, false, 1)],
            expect: vec![
                Action::AcquireLeader,
                Action::ClearFailover { revision: 4 },
                Action::Promote,
            ],
        },
        Case {
            name: "manual failover: others leave it to the candidate",
            me: "b",
            view: Some(failover_to_c),
            pg: replica(100, Some("a")),
            prio: 1,
            peers: vec![peer("c", 1, false, 1)],
            expect: vec![],
        },
        Case {
            name: "switchover: leader demotes gracefully",
            me: "a",
            view: Some(switchover.clone()),
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::Demote(DemoteMode::Graceful)],
        },
        Case {
            name: "switchover to an unhealthy candidate is cleared",
            me: "a",
            view: Some(switchover_bad),
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![Action::RefreshLeader, Action::ClearFailover { revision: 9 }],
        },
        Case {
            name: "DCS down: a primary demotes",
            me: "a",
            view: None,
            pg: primary(),
            prio: 1,
            peers: vec![],
            expect: vec![Action::Demote(DemoteMode::Offline)],
        },
        Case {
            name: "DCS down: a replica waits",
            me: "b",
            view: None,
            pg: replica(1, Some("a")),
            prio: 1,
            peers: vec![],
            expect: vec![],
        },
    ];
    for c in &cases {
        let d = run(c);
        assert_eq!(d.actions, c.expect, "case {:?}: reason {:?}", c.name, d.reason);
        assert!(!d.reason.is_empty());
    }
}

fn sync_view(mode: serde_json::Value, standbys: &str, quorum: u64) -> ClusterView {
    let mut v = view(None);
    v.config = Some(Versioned {
        value: crate::config::DynamicConfig::from_json(&json!({ "synchronous_mode": mode })).unwrap(),
        revision: 1,
    });
    v.sync = Some(Versioned {
        value: super::super::view::SyncKey {
            leader: Some("a".into()),
            sync_standby: Some(standbys.into()),
            quorum: Some(quorum),
        },
        revision: 2,
    });
    v
}

fn race(me: &'static str, v: &ClusterView, wal: u64, peers: Vec<PeerStatus>) -> Decision {
    run(&Case {
        name: "sync",
        me,
        view: Some(v.clone()),
        pg: replica(wal, Some("a")),
        prio: 1,
        peers,
        expect: vec![],
    })
}

fn races(d: &Decision) -> bool {
    d.actions.contains(&Action::AcquireLeader)
}

/// Mode on: only the standby in /sync races, ignoring an asynchronous replica that
/// received more WAL and the former primary's unacknowledged WAL.
#[test]
fn sync_mode_only_listed_standbys_race() {
    let v = sync_view(json!(true), "b", 0);
    let d = race("c", &v, 100, vec![peer("b", 50, false, 1)]);
    assert!(!races(&d), "{}", d.reason);
    assert!(d.reason.contains("/sync"), "{}", d.reason);
    let d = race(
        "b",
        &v,
        50,
        vec![peer("c", 100, false, 1), peer("a", 90, false, 1)],
    );
    assert!(races(&d), "{}", d.reason);
    // With the mode switched off the key no longer restricts anybody.
    let off = sync_view(json!(false), "b", 0);
    assert!(races(&race("c", &off, 100, vec![peer("b", 50, false, 1)])));
}

/// Quorum: a voter needs `quorum` votes from the other voters that are not ahead.
#[test]
fn quorum_mode_needs_votes() {
    let v = sync_view(json!("quorum"), "b,c", 1);
    let d = race("b", &v, 50, vec![peer("c", 50, false, 1)]);
    assert!(races(&d), "{}", d.reason);
    let d = race("b", &v, 50, vec![]);
    assert!(!races(&d), "{}", d.reason);
    assert!(d.reason.contains("quorum"), "{}", d.reason);
    let d = race("b", &v, 50, vec![peer("c", 60, false, 1)]);
    assert!(!races(&d), "{}", d.reason);
}

/// replicatefrom: a replica streams from the named replica, and from the leader once
/// the named member is the leader or is not a running replica.
#[test]
fn replicatefrom_cascades_and_falls_back() {
    let mut v = view(Some("a"));
    v.members
        .get_mut(&n("c"))
        .unwrap()
        .tags
        .insert("replicatefrom".into(), json!("b"));
    let d = run(&Case {
        name: "cascade",
        me: "c",
        view: Some(v.clone()),
        pg: replica(10, Some("a")),
        prio: 1,
        peers: vec![],
        expect: vec![Action::Follow { leader: n("b") }],
    });
    assert_eq!(d.actions, vec![Action::Follow { leader: n("b") }], "{}", d.reason);
    let d = run(&Case {
        name: "cascading",
        me: "c",
        view: Some(v.clone()),
        pg: replica(10, Some("b")),
        prio: 1,
        peers: vec![],
        expect: vec![],
    });
    assert_eq!(d.actions, vec![], "{}", d.reason);
    v.members.get_mut(&n("b")).unwrap().state = "stopped".into();
    let d = run(&Case {
        name: "upstream gone",
        me: "c",
        view: Some(v),
        pg: replica(10, Some("b")),
        prio: 1,
        peers: vec![],
        expect: vec![],
    });
    assert_eq!(d.actions, vec![Action::Follow { leader: n("a") }], "{}", d.reason);
}

/// An empty member never bootstraps a second database next to a running leader whose
/// `initialize` key is missing.
#[test]
fn no_bootstrap_while_a_leader_exists() {
    let mut v = view(Some("a"));
    v.initialize = None;
    let d = run(&Case {
        name: "leader without initialize",
        me: "b",
        view: Some(v),
        pg: PgState::NoData,
        prio: 1,
        peers: vec![],
        expect: vec![],
    });
    assert_eq!(d.actions, vec![], "{}", d.reason);
}

/// A data directory from another cluster stops the loop instead of being touched.
#[test]
fn system_id_mismatch_is_fatal() {
    let v = view(Some("a"));
    let me = n("b");
    let d = decide(&Inputs {
        sysid: Some(42),
        maximum_lag_on_failover: 0,
        ..inputs(&me, Some(&v), &replica(1, Some("a")))
    });
    assert!(matches!(d.actions.as_slice(), [Action::Fatal(m)] if m.contains("42")));
}
fn race_local(me: &str, pg: &PgState, backoff: bool, watchdog_healthy: bool) -> Decision {
    let v = view(None);
    let me = n(me);
    decide(&Inputs {
        pre_promote_backoff: backoff,
        watchdog_healthy,
        ..inputs(&me, Some(&v), pg)
    })
}

/// A member whose pre_promote script failed does not race for ttl seconds, even as the
/// healthiest replica, so another member is chosen.
#[test]
fn a_member_backing_off_after_a_failed_pre_promote_does_not_race() {
    let ok = race_local("b", &replica(100, Some("a")), false, true);
    assert_eq!(
        ok.actions,
        vec![Action::AcquireLeader, Action::Promote],
        "{}",
        ok.reason
    );
    let d = race_local("b", &replica(100, Some("a")), true, true);
    assert_eq!(d.actions, vec![], "{}", d.reason);
    assert!(d.reason.contains("pre_promote"), "{}", d.reason);
}

/// watchdog.mode required with an unusable device: the replica does not race, with a
/// reason saying why; a lock-less primary still takes the key (the runner then fails to
/// arm the watchdog and demotes it).
#[test]
fn a_required_but_unusable_watchdog_keeps_a_replica_out_of_the_race() {
    let d = race_local("b", &replica(100, Some("a")), false, false);
    assert_eq!(d.actions, vec![], "{}", d.reason);
    assert!(d.reason.contains("watchdog"), "{}", d.reason);
    let p = race_local("b", &primary(), false, false);
    assert_eq!(p.actions, vec![Action::AcquireLeader], "{}", p.reason);
}

/// One decision for member `me` with default inputs.
fn decide_for(me: &str, view: Option<&ClusterView>, pg: &PgState, failsafe_held: bool) -> Decision {
    let me = n(me);
    decide(&Inputs {
        failsafe_held,
        ..inputs(&me, view, pg)
    })
}

/// DCS lost: a primary whose members all accepted its failsafe notice keeps running;
/// without that it demotes; a replica waits either way.
#[test]
fn failsafe_keeps_a_confirmed_primary_through_a_dcs_outage() {
    let kept = decide_for("a", None, &primary(), true);
    assert_eq!(kept.actions, vec![], "{}", kept.reason);
    assert!(kept.reason.contains("failsafe"), "{}", kept.reason);
    let demoted = decide_for("a", None, &primary(), false);
    assert_eq!(demoted.actions, vec![Action::Demote(DemoteMode::Offline)]);
    assert_eq!(
        decide_for("a", None, &replica(1, Some("a")), true).actions,
        vec![]
    );
}

/// With failsafe_mode on, a member missing from a non-empty /failsafe never races
/// (the primary did not ask it, so it may still be running); listed members do.
#[test]
fn failsafe_members_not_listed_do_not_race() {
    let mut v = view(None);
    v.config = Some(Versioned {
        value: crate::config::DynamicConfig::from_json(&json!({"failsafe_mode": true})).unwrap(),
        revision: 1,
    });
    v.failsafe = Some(
        [("a", "http://a/patroni"), ("c", "http://c/patroni")]
            .into_iter()
            .map(|(k, u)| (k.to_string(), u.to_string()))
            .collect(),
    );
    let race = |me: &str, v: &ClusterView| decide_for(me, Some(v), &replica(100, Some("a")), false);
    let b = race("b", &v);
    assert_eq!(b.actions, vec![], "{}", b.reason);
    assert!(b.reason.contains("/failsafe"), "{}", b.reason);
    let c = race("c", &v);
    assert_eq!(
        c.actions,
        vec![Action::AcquireLeader, Action::Promote],
        "{}",
        c.reason
    );
    // failsafe_mode off: the stale list does not matter.
    v.config = None;
    assert_eq!(
        race("b", &v).actions,
        vec![Action::AcquireLeader, Action::Promote]
    );
}

/// A peer reporting watchdog_failed cannot be promoted, so its extra WAL does not hold
/// a healthy member back (Patroni's "not watchdog capable"); a running primary still does.
#[test]
fn peers_with_a_failed_watchdog_do_not_block_the_race() {
    let v = view(None);
    let mut ahead = peer("c", 200, false, 1);
    assert!(!races(&race("b", &v, 100, vec![ahead.clone()])));
    ahead.watchdog_failed = true;
    assert!(races(&race("b", &v, 100, vec![ahead.clone()])));
    let mut primary_peer = peer("c", 200, true, 1);
    primary_peer.watchdog_failed = true;
    assert!(!races(&race("b", &v, 100, vec![primary_peer])));
}

/// clonefrom: a new replica clones from a running member tagged `clonefrom` (not
/// itself, not the leader), picked by the random number the runner passes; else from
/// the leader.
#[test]
fn clone_source_prefers_clonefrom_members() {
    let mut v = view(Some("a"));
    for m in ["a", "b", "c"] {
        v.members
            .get_mut(&n(m))
            .unwrap()
            .tags
            .insert("clonefrom".into(), json!(true));
    }
    // "b" is the one cloning; "a" leads: only "c" qualifies.
    assert_eq!(clone_candidates(&n("b"), &v, &n("a")), vec![n("c")]);
    let d = run(&Case {
        name: "clonefrom",
        me: "b",
        view: Some(v.clone()),
        pg: PgState::NoData,
        prio: 1,
        peers: vec![],
        expect: vec![],
    });
    assert_eq!(
        d.actions[0],
        Action::Clone {
            from: n("a"),
            clonefrom: vec![n("c")],
        }
    );
    // Not running: not a source.
    v.members.get_mut(&n("c")).unwrap().state = "stopped".into();
    assert!(clone_candidates(&n("b"), &v, &n("a")).is_empty());
    let (c, d2, leader) = (n("c"), n("d"), n("a"));
    let both = [c.clone(), d2.clone()];
    assert_eq!(clone_source(&both, &leader, 0), &c);
    assert_eq!(clone_source(&both, &leader, 3), &d2);
    assert_eq!(clone_source(&[], &leader, 7), &leader);
}

/// DCS lost while the lease is valid: the primary rides through (the fence stops it at the
/// deadline); once the lease has run out it demotes. A replica waits either way.
#[test]
fn a_primary_rides_through_a_dcs_outage_while_its_lease_is_valid() {
    let me = n("a");
    let with_lease = |pg: &PgState, lease_valid: bool| {
        decide(&Inputs {
            lease_valid,
            ..inputs(&me, None, pg)
        })
    };
    let kept = with_lease(&primary(), true);
    assert_eq!(kept.actions, vec![], "{}", kept.reason);
    assert!(kept.reason.contains("lease is valid"), "{}", kept.reason);
    assert_eq!(
        with_lease(&primary(), false).actions,
        vec![Action::Demote(DemoteMode::Offline)]
    );
    assert_eq!(with_lease(&replica(1, Some("a")), true).actions, vec![]);
}

/// F5: a running primary on a timeline older than the cluster's (its daemon was away while
/// another member was promoted) never takes a free leader key; on the cluster's timeline it does.
#[test]
fn safety_f5_a_primary_on_an_older_timeline_does_not_take_a_free_key() {
    let mut v = view(None);
    v.history = vec![HistoryRow::new(
        1,
        0x300_0000,
        "no recovery target specified",
        None,
        None,
    )];
    let me = n("a");
    let race = |pg: &PgState| decide(&inputs(&me, Some(&v), pg));
    let stale = race(&primary());
    assert!(!stale.actions.contains(&Action::AcquireLeader), "{stale:?}");
    assert!(stale.reason.contains("timeline"), "{}", stale.reason);
    let current = PgState::Running(Running {
        timeline: 2,
        ..match primary() {
            PgState::Running(r) => r,
            _ => unreachable!(),
        }
    });
    assert!(race(&current).actions.contains(&Action::AcquireLeader));
}

/// check_timeline (Patroni): a replica on a timeline behind the cluster's does not race for a
/// free key; without it, one timeline behind still may (as before).
#[test]
fn config_state_applied_check_timeline_keeps_a_replica_behind_out_of_the_race() {
    let mut v = view(None);
    v.history = vec![HistoryRow::new(
        1,
        0x300_0000,
        "no recovery target specified",
        None,
        None,
    )];
    let me = n("b");
    let behind = replica(100, None);
    let loose = decide(&inputs(&me, Some(&v), &behind));
    assert!(loose.actions.contains(&Action::AcquireLeader), "{loose:?}");
    v.config = Some(Versioned {
        value: crate::config::DynamicConfig::from_json_lenient(&json!({"check_timeline": true})).0,
        revision: 1,
    });
    let strict = decide(&inputs(&me, Some(&v), &behind));
    assert!(!strict.actions.contains(&Action::AcquireLeader), "{strict:?}");
    assert!(strict.reason.contains("check_timeline"), "{}", strict.reason);
    let current = PgState::Running(Running {
        timeline: 2,
        ..match behind {
            PgState::Running(r) => r,
            _ => unreachable!(),
        }
    });
    assert!(decide(&inputs(&me, Some(&v), &current))
        .actions
        .contains(&Action::AcquireLeader));
}

/// F8: a stopped instance whose data directory cannot be examined (pg_controldata failed) is
/// not "no data": no bootstrap race even without `initialize`, no clone; a lock holder in that
/// state gives the key up so that a replica can take over.
#[test]
fn safety_f8_an_unreadable_data_directory_is_not_taken_for_an_empty_one() {
    let unknown = PgState::Unknown("pg_controldata failed".into());
    let mut empty = view(None);
    empty.initialize = None;
    let d = decide_for("a", Some(&empty), &unknown, false);
    assert_eq!(d.actions, vec![], "{}", d.reason);
    let d = decide_for("b", Some(&view(Some("a"))), &unknown, false);
    assert_eq!(d.actions, vec![], "{}", d.reason);
    let d = decide_for("a", Some(&view(Some("a"))), &unknown, false);
    assert_eq!(d.actions, vec![Action::ReleaseLeader], "{}", d.reason);
    // Truly no data, here and on the other members, for contrast: the bootstrap race.
    empty.members.clear();
    let d = decide_for("a", Some(&empty), &PgState::NoData, false);
    assert!(d.actions.contains(&Action::RaceInitialize), "{}", d.reason);
}

/// Default inputs for member `me`; tests override fields with struct update syntax.
fn inputs<'a>(me: &'a MemberName, view: Option<&'a ClusterView>, pg: &'a PgState) -> Inputs<'a> {
    Inputs {
        me,
        view,
        pg,
        sysid: Some(7000000000000000001),
        failover_priority: 1,
        peers: &[],
        maximum_lag_on_failover: 1 << 20,
        scheduled_due: true,
        pre_promote_backoff: false,
        watchdog_healthy: true,
        failsafe_held: false,
        lease_valid: false,
        primary_start_overdue: false,
        standalone: false,
        standby_cluster: false,
        following_remote: false,
        clone_without_leader: false,
        demoted_for_switchover: false,
    }
}

/// F1: the lock holder whose stopped data directory is a standby's is started read-only,
/// never as a primary; once running as a replica it is promoted.
#[test]
fn safety_f1_a_standby_data_directory_is_promoted_never_started_as_primary() {
    let v = view(Some("a"));
    let me = n("a");
    let stopped_standby = PgState::Stopped {
        clean: true,
        standby: true,
    };
    let d = decide(&inputs(&me, Some(&v), &stopped_standby));
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::StartReplica { leader: None }],
        "{}",
        d.reason
    );
    let d = decide(&inputs(&me, Some(&v), &replica(100, None)));
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::Promote],
        "{}",
        d.reason
    );
    // A primary's data directory still starts as primary.
    let stopped_primary = PgState::Stopped {
        clean: false,
        standby: false,
    };
    let d = decide(&inputs(&me, Some(&v), &stopped_primary));
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::StartPrimary],
        "{}",
        d.reason
    );
}

/// F2: a lock holder that has not brought PostgreSQL up within primary_start_timeout
/// (stopped, or a postmaster that does not answer) releases the key when a replica can take
/// over, and keeps trying when none can.
#[test]
fn safety_f2_a_leader_that_cannot_start_releases_the_key_after_primary_start_timeout() {
    let v = view(Some("a"));
    let me = n("a");
    let stopped = PgState::Stopped {
        clean: false,
        standby: false,
    };
    let overdue = |pg| Inputs {
        primary_start_overdue: true,
        ..inputs(&me, Some(&v), pg)
    };
    assert_eq!(decide(&overdue(&stopped)).actions, vec![Action::ReleaseLeader]);
    assert_eq!(
        decide(&overdue(&PgState::Unresponsive)).actions,
        vec![Action::Demote(DemoteMode::ImmediateNoLock), Action::ReleaseLeader]
    );
    assert_eq!(
        decide(&inputs(&me, Some(&v), &PgState::Unresponsive)).actions,
        vec![Action::RefreshLeader]
    );
    // No replica could take over: keep the key and keep trying.
    let mut alone = v.clone();
    alone.members.retain(|name, _| *name == me);
    let d = decide(&Inputs {
        primary_start_overdue: true,
        ..inputs(&me, Some(&alone), &stopped)
    });
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::StartPrimary],
        "{}",
        d.reason
    );
}

/// F4: a switchover goes only to a candidate that holds every acknowledged commit: in
/// quorum mode too it must be listed in /sync, and it must be within
/// maximum_lag_on_failover of the primary.
#[test]
fn safety_f4_switchover_candidates_must_hold_every_acknowledged_commit() {
    let me = n("a");
    let pg = primary();
    let switchover_to = |mut v: ClusterView, c: &str| {
        v.leader = Some(Versioned {
            value: n("a"),
            revision: 5,
        });
        v.failover = Some(Versioned {
            value: FailoverKey {
                leader: Some("a".into()),
                member: Some(c.into()),
                scheduled_at: None,
            },
            revision: 9,
        });
        v
    };
    // Quorum mode, /sync lists only b: c is no candidate.
    let v = switchover_to(sync_view(json!("quorum"), "b", 1), "c");
    let d = decide(&inputs(&me, Some(&v), &pg));
    assert!(
        !d.actions.contains(&Action::Demote(DemoteMode::Graceful)),
        "{}",
        d.reason
    );
    let v = switchover_to(sync_view(json!("quorum"), "b", 1), "b");
    let d = decide(&inputs(&me, Some(&v), &pg));
    assert!(
        d.actions.contains(&Action::Demote(DemoteMode::Graceful)),
        "{}",
        d.reason
    );
    // Asynchronous, but the candidate lags by more than maximum_lag_on_failover.
    let mut v = switchover_to(view(Some("a")), "b");
    v.members.get_mut(&n("b")).unwrap().xlog_location = Some(0);
    let d = decide(&Inputs {
        maximum_lag_on_failover: 50,
        ..inputs(&me, Some(&v), &pg)
    });
    assert!(
        !d.actions.contains(&Action::Demote(DemoteMode::Graceful)),
        "{}",
        d.reason
    );
}

/// F4, the candidate's side: in quorum mode a member outside /sync that is named as a
/// switchover candidate does not take the free key.
#[test]
fn safety_f4_a_candidate_outside_sync_does_not_take_the_key_in_quorum_mode() {
    let mut v = sync_view(json!("quorum"), "b", 1);
    v.failover = Some(Versioned {
        value: FailoverKey {
            leader: Some("a".into()),
            member: Some("c".into()),
            scheduled_at: None,
        },
        revision: 9,
    });
    let me = n("c");
    let pg = replica(100, Some("a"));
    let d = decide(&inputs(&me, Some(&v), &pg));
    assert!(!d.actions.contains(&Action::AcquireLeader), "{}", d.reason);
}

/// F4, a failover in quorum mode: a member outside /sync does not take the free key while a
/// voter that can be promoted has at least its WAL, even when the quorum (0, one voter) would
/// let its vote count pass; with more WAL than the voter, or with the voter unable to be
/// promoted, it still may.
#[test]
fn safety_f4_a_non_voter_yields_to_a_voter_in_a_quorum_failover() {
    let v = sync_view(json!("quorum"), "b", 0);
    let d = race("c", &v, 100, vec![peer("b", 100, false, 1)]);
    assert!(!races(&d), "{}", d.reason);
    assert!(d.reason.contains("/sync"), "{}", d.reason);
    // The voter itself races.
    assert!(races(&race("b", &v, 100, vec![peer("c", 100, false, 1)])));
    // A voter behind the non-voter, or one that may not be promoted, does not hold it back.
    assert!(races(&race("c", &v, 100, vec![peer("b", 90, false, 1)])));
    assert!(races(&race("c", &v, 100, vec![peer("b", 100, false, 0)])));
}

/// A replica that stopped streaming from a leader whose member key has expired (the leader is
/// dead, its key not yet) is not restarted: it would be down just when the key expires and the
/// race needs it. With the leader's member key present it is restarted as before.
#[test]
fn a_stalled_replica_of_a_leader_without_member_key_waits_for_the_race() {
    let me = n("b");
    let stalled = PgState::Running(Running {
        primary: false,
        timeline: 1,
        wal: Lsn(100),
        following: Some(n("a")),
        streaming: false,
        stalled: true,
        receiver_timeline: None,
        replayed: Lsn(0),
    });
    let mut v = view(Some("a"));
    let d = decide(&inputs(&me, Some(&v), &stalled));
    assert!(
        matches!(d.actions.as_slice(), [Action::StartReplica { .. }]),
        "{d:?}"
    );
    v.members.remove(&n("a"));
    let d = decide(&inputs(&me, Some(&v), &stalled));
    assert!(d.actions.is_empty(), "{d:?}");
}

/// Issue 22, the total loss of the DCS with PostgreSQL intact (every Raft data directory
/// gone): the keyspace comes back empty, without `initialize`. The member running as the
/// primary adopts the cluster; standbys never race for it; with no primary running only the
/// member an operator names takes the key; nobody bootstraps beside a member that has data.
#[test]
fn a_lost_keyspace_is_adopted_by_the_running_primary_only() {
    let mut lost = view(None);
    lost.initialize = None;
    let mut chosen_b = lost.clone();
    chosen_b.failover = Some(Versioned {
        value: FailoverKey {
            leader: None,
            member: Some("b".into()),
            scheduled_at: None,
        },
        revision: 3,
    });
    let mut first_start = lost.clone();
    for m in first_start.members.values_mut() {
        m.role = "uninitialized".into();
        m.state = "stopped".into();
    }
    let stopped_primary = PgState::Stopped {
        clean: false,
        standby: false,
    };
    /// (name, me, view, pg, sysid known, expected actions, an operator is needed)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a ClusterView,
        PgState,
        bool,
        Vec<Action>,
        bool,
    );
    let cases: Vec<Row> = vec![
        (
            "the running primary takes the key",
            "a",
            &lost,
            primary(),
            true,
            vec![Action::AcquireLeader],
            false,
        ),
        (
            "a running primary whose system identifier is unknown waits",
            "a",
            &lost,
            primary(),
            false,
            vec![],
            false,
        ),
        (
            "a standby does not race, even with the most WAL and nobody answering",
            "b",
            &lost,
            replica(100, None),
            true,
            vec![],
            true,
        ),
        (
            "the standby an operator names takes the key and is promoted",
            "b",
            &chosen_b,
            replica(100, None),
            true,
            vec![
                Action::AcquireLeader,
                Action::ClearFailover { revision: 3 },
                Action::Promote,
            ],
            false,
        ),
        (
            "another standby leaves it to the named one",
            "c",
            &chosen_b,
            replica(100, None),
            true,
            vec![],
            true,
        ),
        (
            "a stopped former primary starts read-only, never as a primary",
            "a",
            &lost,
            stopped_primary,
            true,
            vec![Action::StartReplica { leader: None }],
            false,
        ),
        (
            "no bootstrap beside members that have data",
            "a",
            &lost,
            PgState::NoData,
            false,
            vec![],
            false,
        ),
        (
            "a first start (no member has data) still bootstraps",
            "a",
            &first_start,
            PgState::NoData,
            false,
            vec![Action::RaceInitialize, Action::Bootstrap],
            false,
        ),
    ];
    for (name, me, v, pg, sysid_known, expect, operator) in cases {
        let me = n(me);
        let d = decide(&Inputs {
            sysid: sysid_known.then_some(7000000000000000001),
            ..inputs(&me, Some(v), &pg)
        });
        assert_eq!(d.actions, expect, "{name}: {}", d.reason);
        assert_eq!(d.needs_operator, operator, "{name}: {}", d.reason);
    }
}

/// Converting a standalone (Patroni's existing_data procedure) when PostgreSQL is stopped:
/// with no cluster in the DCS, a primary's data directory that pgwarden never configured is
/// adopted (leader key, start as primary), and nothing else is: a former member's directory,
/// a standby's, one beside a member that has data, or on a member that may not lead.
#[test]
fn datain_a_stopped_standalone_is_adopted_and_nothing_else() {
    let mut empty = view(None);
    empty.initialize = None;
    for m in empty.members.values_mut() {
        m.role = "uninitialized".into();
        m.state = "stopped".into();
    }
    let mut with_data = view(None);
    with_data.initialize = None;
    let stopped = |standby| PgState::Stopped { clean: true, standby };
    let me = n("a");
    let run = |v: &ClusterView, pg: &PgState, standalone: bool, prio: i64| {
        decide(&Inputs {
            sysid: Some(7000000000000000001),
            standalone,
            failover_priority: prio,
            ..inputs(&me, Some(v), pg)
        })
    };
    let d = run(&empty, &stopped(false), true, 1);
    assert_eq!(
        d.actions,
        [Action::AcquireLeader, Action::StartPrimary],
        "{}",
        d.reason
    );
    for (why, v, pg, standalone, prio) in [
        ("configured by pgwarden before", &empty, stopped(false), false, 1),
        ("a standby's directory", &empty, stopped(true), true, 1),
        ("another member has data", &with_data, stopped(false), true, 1),
        ("nofailover", &empty, stopped(false), true, 0),
    ] {
        let d = run(v, &pg, standalone, prio);
        assert!(
            !d.actions.contains(&Action::StartPrimary) && !d.actions.contains(&Action::AcquireLeader),
            "{why}: {d:?}"
        );
    }
    // A cluster already in the DCS: the usual rules (start as a replica of nobody).
    let d = run(&view(None), &stopped(false), true, 1);
    assert_eq!(d.actions, [Action::StartReplica { leader: None }], "{}", d.reason);
}

/// Standby cluster: one decision for `me`, the remote primary as configured or not followed yet.
fn standby(
    me: &str,
    view: &ClusterView,
    pg: &PgState,
    following_remote: bool,
    peers: &[PeerStatus],
) -> Decision {
    let me = n(me);
    decide(&Inputs {
        standby_cluster: true,
        following_remote,
        peers,
        ..inputs(&me, Some(view), pg)
    })
}

/// The holder of the leader key in a standby cluster is the standby leader: a replica of the
/// remote primary, started and re-pointed as one, never promoted; a primary holding it (the
/// cluster was demoted) is restarted as one.
#[test]
fn standby_leader_follows_the_remote_primary_and_never_promotes() {
    let v = view(Some("a"));
    let d = standby("a", &v, &replica(100, None), false, &[]);
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::FollowRemote],
        "{}",
        d.reason
    );
    let d = standby("a", &v, &replica(100, None), true, &[]);
    assert_eq!(d.actions, vec![Action::RefreshLeader], "{}", d.reason);
    assert!(d.reason.contains("standby leader"), "{}", d.reason);
    let stopped = PgState::Stopped {
        clean: true,
        standby: true,
    };
    let d = standby("a", &v, &stopped, false, &[]);
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::StartStandbyLeader],
        "{}",
        d.reason
    );
    // A primary's data directory too: demote-cluster.
    let stopped_primary = PgState::Stopped {
        clean: true,
        standby: false,
    };
    let d = standby("a", &v, &stopped_primary, false, &[]);
    assert_eq!(d.actions, vec![Action::RefreshLeader, Action::StartStandbyLeader]);
    let d = standby("a", &v, &primary(), false, &[]);
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::StartStandbyLeader],
        "{}",
        d.reason
    );
    // Paused: the primary is left alone, as every other change in pause.
    let mut paused = v.clone();
    paused.config = Some(crate::ha::view::Versioned {
        value: crate::config::DynamicConfig::from_json(&serde_json::json!({"pause": true})).unwrap(),
        revision: 1,
    });
    let d = standby("a", &paused, &primary(), false, &[]);
    assert_eq!(d.actions, vec![Action::RefreshLeader], "{}", d.reason);
    // The same member in a primary cluster promotes.
    let d = decide_for("a", Some(&v), &replica(100, None), false);
    assert_eq!(d.actions, vec![Action::RefreshLeader, Action::Promote]);
}

/// Failover inside a standby cluster: the race and its rules are the usual ones, but the
/// winner takes the key as the standby leader and points at the remote primary.
#[test]
fn standby_failover_races_but_never_promotes() {
    let v = view(None);
    let d = standby(
        "b",
        &v,
        &replica(100, Some("a")),
        false,
        &[peer("c", 90, false, 1)],
    );
    assert_eq!(
        d.actions,
        vec![Action::AcquireLeader, Action::FollowRemote],
        "{}",
        d.reason
    );
    let d = standby(
        "b",
        &v,
        &replica(100, Some("a")),
        false,
        &[peer("c", 200, false, 1)],
    );
    assert_eq!(d.actions, vec![], "{}", d.reason);
    assert!(d.reason.contains("more WAL"), "{}", d.reason);
    // nofailover members never race.
    let me = n("b");
    let d = decide(&Inputs {
        standby_cluster: true,
        failover_priority: 0,
        ..inputs(&me, Some(&v), &replica(100, Some("a")))
    });
    assert_eq!(d.actions, vec![], "{}", d.reason);
    // Not even a manual failover in pause promotes.
    let mut paused = v.clone();
    paused.config = Some(crate::ha::view::Versioned {
        value: crate::config::DynamicConfig::from_json(&serde_json::json!({"pause": true})).unwrap(),
        revision: 1,
    });
    let d = standby("b", &paused, &replica(100, Some("a")), false, &[]);
    assert_eq!(d.actions, vec![], "{}", d.reason);
}

/// The other members cascade from the standby leader as from a primary; a member with no
/// data clones from it; a new standby cluster is bootstrapped by cloning the remote primary.
#[test]
fn standby_members_cascade_and_the_first_clones_the_remote() {
    let v = view(Some("a"));
    let d = standby("b", &v, &replica(100, Some("a")), false, &[]);
    assert_eq!(d.actions, vec![], "{}", d.reason);
    let d = standby("b", &v, &replica(100, None), false, &[]);
    assert_eq!(d.actions, vec![Action::Follow { leader: n("a") }], "{}", d.reason);
    let d = standby("b", &v, &PgState::NoData, false, &[]);
    assert!(
        matches!(d.actions.as_slice(), [Action::Clone { from, .. }, Action::StartReplica { .. }] if *from == n("a")),
        "{d:?}"
    );
    let mut fresh = ClusterView::default();
    fresh.members.clear();
    let d = standby("a", &fresh, &PgState::NoData, false, &[]);
    assert_eq!(
        d.actions,
        vec![Action::RaceInitialize, Action::BootstrapStandby],
        "{}",
        d.reason
    );
}

/// Patroni's "bootstrap (without leader)": with no leader, a member with no data creates a
/// replica only when a replica method needs no leader (a restore from a backup), then starts
/// read-only with no upstream; never while another member is bootstrapping, and never with
/// basebackup alone.
#[test]
fn no_leader_method_creates_a_replica_without_a_leader() {
    let me = n("b");
    let v = view(None);
    let d = decide(&Inputs {
        clone_without_leader: true,
        ..inputs(&me, Some(&v), &PgState::NoData)
    });
    assert_eq!(
        d.actions,
        vec![Action::CloneWithoutLeader, Action::StartReplica { leader: None }],
        "{}",
        d.reason
    );
    let d = decide(&inputs(&me, Some(&v), &PgState::NoData));
    assert!(d.actions.is_empty(), "basebackup needs a leader: {d:?}");
    let mut bootstrapping = view(None);
    bootstrapping.initialize = Some(String::new());
    let d = decide(&Inputs {
        clone_without_leader: true,
        ..inputs(&me, Some(&bootstrapping), &PgState::NoData)
    });
    assert!(d.actions.is_empty(), "another member is bootstrapping: {d:?}");
    // With a leader, the leader is cloned as before.
    let v = view(Some("a"));
    let d = decide(&Inputs {
        clone_without_leader: true,
        ..inputs(&me, Some(&v), &PgState::NoData)
    });
    assert!(matches!(d.actions[0], Action::Clone { .. }), "{d:?}");
}

/// A switchover to a named candidate in a paused cluster is carried out, as Patroni does:
/// the leader demotes gracefully; the old primary, stopped by that demotion, starts as a
/// replica although the cluster is paused; any other stopped member stays stopped.
#[test]
fn paused_switchover_to_a_named_candidate_is_carried_out() {
    let mut v = view(Some("a"));
    v.config = Some(Versioned {
        value: crate::config::DynamicConfig::from_json(&json!({"pause": true})).unwrap(),
        revision: 1,
    });
    v.failover = Some(Versioned {
        value: FailoverKey {
            leader: Some("a".into()),
            member: Some("b".into()),
            scheduled_at: None,
        },
        revision: 9,
    });
    let a = n("a");
    let pg = primary();
    let d = decide(&Inputs {
        scheduled_due: true,
        ..inputs(&a, Some(&v), &pg)
    });
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::Demote(DemoteMode::Graceful)],
        "{}",
        d.reason
    );
    // b took the key; a's PostgreSQL is stopped by the demotion.
    let mut after = v.clone();
    after.leader = Some(Versioned {
        value: n("b"),
        revision: 10,
    });
    let stopped = PgState::Stopped {
        standby: false,
        clean: true,
    };
    let d = decide(&Inputs {
        demoted_for_switchover: true,
        ..inputs(&a, Some(&after), &stopped)
    });
    assert_eq!(
        d.actions,
        vec![Action::StartReplica { leader: Some(n("b")) }],
        "{}",
        d.reason
    );
    let d = decide(&inputs(&a, Some(&after), &stopped));
    assert!(
        d.actions.is_empty(),
        "stopped by someone else: left alone in pause: {d:?}"
    );
}

/// A switchover inside a standby cluster: the standby leader releases the key for a healthy
/// candidate (it has nothing of its own to hand over), the candidate takes it and follows the
/// remote primary, never promoting, and the old standby leader does not race meanwhile; an
/// unhealthy candidate's request is cleared.
#[test]
fn standby_switchover_hands_the_standby_leader_role_over() {
    let switchover = |leader: Option<&str>| {
        let mut v = view(leader);
        v.failover = Some(crate::ha::view::Versioned {
            value: FailoverKey {
                leader: Some("a".into()),
                member: Some("b".into()),
                scheduled_at: None,
            },
            revision: 9,
        });
        v
    };
    let v = switchover(Some("a"));
    let d = standby("a", &v, &replica(100, None), true, &[peer("b", 100, false, 1)]);
    assert_eq!(d.actions, vec![Action::ReleaseLeader], "{}", d.reason);
    // The candidate, once the key is free.
    let free = switchover(None);
    let d = standby(
        "b",
        &free,
        &replica(100, Some("a")),
        false,
        &[peer("a", 100, false, 1)],
    );
    assert!(
        d.actions.contains(&Action::AcquireLeader)
            && d.actions.contains(&Action::FollowRemote)
            && !d.actions.contains(&Action::Promote),
        "{d:?}"
    );
    // The old standby leader leaves the key to the candidate.
    let d = standby("a", &free, &replica(100, None), true, &[peer("b", 100, false, 1)]);
    assert!(!d.actions.contains(&Action::AcquireLeader), "{d:?}");
    // A candidate that is not a healthy replica: the request is cleared, the role kept.
    let mut bad = switchover(Some("a"));
    bad.members.get_mut(&n("b")).unwrap().state = "stopped".into();
    let d = standby("a", &bad, &replica(100, None), true, &[]);
    assert_eq!(
        d.actions,
        vec![Action::RefreshLeader, Action::ClearFailover { revision: 9 }],
        "{}",
        d.reason
    );
}

/// A replica whose WAL receiver recovers along timeline 1 while the cluster is on timeline 2,
/// having replayed WAL past the point where the history ends timeline 1 (it received WAL a cut-off
/// former primary wrote after the promotion), is restarted with a rewind check. Found by the
/// 2 + 2 + witness test: the primary's site-mate, cut off with it, waited forever, its WAL
/// receiver reconnecting every 5 s, so it never counted as stalled. At or before that point,
/// without a WAL receiver, before the leader reports the new timeline, or in a standby
/// cluster, nothing changes.
#[test]
fn a_replica_past_the_end_of_its_timeline_is_restarted_with_a_rewind_check() {
    let mut v = view(Some("a"));
    v.history = vec![HistoryRow::new(
        1,
        0x600_0000,
        "no recovery target specified",
        None,
        None,
    )];
    v.members.get_mut(&n("a")).unwrap().timeline = Some(2);
    let me = n("b");
    let diverged = replica(0x600_0001, Some("a"));
    let d = decide(&inputs(&me, Some(&v), &diverged));
    assert_eq!(
        d.actions,
        vec![Action::StartReplica { leader: Some(n("a")) }],
        "{d:?}"
    );
    assert!(d.reason.contains("cannot follow a"), "{}", d.reason);

    let at_the_end = replica(0x600_0000, Some("a"));
    assert!(decide(&inputs(&me, Some(&v), &at_the_end)).actions.is_empty());
    // Received past the end but not replayed (a partial record the new primary never had,
    // which PostgreSQL discards when it switches timeline): no restart.
    let received_only = PgState::Running(Running {
        replayed: Lsn(0x600_0000),
        ..match replica(0x600_0100, Some("a")) {
            PgState::Running(r) => r,
            _ => unreachable!(),
        }
    });
    assert!(decide(&inputs(&me, Some(&v), &received_only)).actions.is_empty());
    let without_receiver = PgState::Running(Running {
        receiver_timeline: None,
        ..match replica(0x600_0001, Some("a")) {
            PgState::Running(r) => r,
            _ => unreachable!(),
        }
    });
    assert!(decide(&inputs(&me, Some(&v), &without_receiver))
        .actions
        .is_empty());
    let mut in_standby_cluster = inputs(&me, Some(&v), &diverged);
    in_standby_cluster.standby_cluster = true;
    assert!(!decide(&in_standby_cluster)
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartReplica { .. })));
    v.members.get_mut(&n("a")).unwrap().timeline = Some(1);
    assert!(
        decide(&inputs(&me, Some(&v), &diverged)).actions.is_empty(),
        "the leader does not report the cluster's timeline yet"
    );
}
