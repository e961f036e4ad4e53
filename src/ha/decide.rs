//! The HA decision: a pure function of (cluster view, local PostgreSQL state, peers' answers,
//! time) returning the actions of one loop iteration and the reason, Patroni's decision table
//! (see docs/ha-decision-table.md). No I/O happens here; the runner executes the actions in
//! order and abandons the rest of the list at the first one that fails (a lost
//! compare-and-swap, a failed start), so a later cycle decides again from fresh facts.

use super::view::{ClusterView, SyncMode};
use crate::types::{Lsn, MemberName};

/// What the local PostgreSQL is, as observed this cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgState {
    /// No data directory, or an empty one.
    NoData,
    /// Data present, postmaster not running; `clean` after a clean shutdown.
    Stopped {
        /// Whether the last shutdown was clean.
        clean: bool,
    },
    /// Running and answering queries.
    Running(Running),
    /// The postmaster runs but does not answer (starting, recovering).
    Unresponsive,
}

/// A running instance's observed facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Not in recovery.
    pub primary: bool,
    /// Current timeline.
    pub timeline: u32,
    /// WAL position: the write position on a primary, max(receive, replay) on a replica.
    pub wal: Lsn,
    /// The member this replica was configured to follow (`None`: none, or a primary).
    pub following: Option<MemberName>,
    /// Whether its WAL receiver is streaming.
    pub streaming: bool,
    /// A replica that has not streamed for longer than the runner's grace period.
    pub stalled: bool,
}

/// How to stop being primary (patroni-behaviour §2, demote modes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DemoteMode {
    /// Switchover: fast stop with a shutdown checkpoint the replicas receive, then release
    /// the leader key and follow the candidate.
    Graceful,
    /// Another member holds the key, or our lease is gone: stop now, do not touch the key.
    ImmediateNoLock,
    /// The DCS is unreachable: fast stop and come back read-only with no upstream.
    Offline,
}

/// One step of an iteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create `initialize` = "" if absent; losing the race aborts the rest.
    RaceInitialize,
    /// initdb, start, roles, `initialize` = sysid, `config` = bootstrap.dcs, take the leader key.
    Bootstrap,
    /// Create the leader key if absent (TTL); failure aborts the rest.
    AcquireLeader,
    /// Compare-and-swap the leader key on our own name (TTL); failure aborts the rest.
    RefreshLeader,
    /// Delete the leader key if it still names us.
    ReleaseLeader,
    /// Write `{}` over a failover key that was acted on or cannot be honoured.
    ClearFailover {
        /// The revision read, for the compare-and-swap.
        revision: u64,
    },
    /// Clone the data directory from a member: one of `clonefrom` chosen at random when it
    /// lists any (the runner chooses, with [`clone_source`]), else `from`, the leader.
    Clone {
        /// The leader.
        from: MemberName,
        /// Running members tagged `clonefrom: true`, other than this one and the leader.
        clonefrom: Vec<MemberName>,
    },
    /// Start as primary (we hold the key).
    StartPrimary,
    /// Start (or restart) as a replica following `leader`, after crash recovery and a
    /// rewind check when needed; with `None`, read-only with no upstream.
    StartReplica {
        /// The upstream.
        leader: Option<MemberName>,
    },
    /// Point a running replica at a new upstream.
    Follow {
        /// The upstream.
        leader: MemberName,
    },
    /// Promote the local replica, then record history and checkpoint.
    Promote,
    /// Stop being primary.
    Demote(DemoteMode),
    /// Unrecoverable for this process (system id mismatch): stop the loop.
    Fatal(String),
}

/// A peer's answer to GET /patroni, polled only when the leader key is free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Member name.
    pub name: MemberName,
    /// Whether it is a running primary (not in recovery).
    pub primary: bool,
    /// Its WAL position.
    pub wal: Lsn,
    /// Its timeline.
    pub timeline: u32,
    /// Its failover priority (0: never).
    pub failover_priority: i64,
    /// It reports `watchdog_failed` (required watchdog unusable): it cannot be promoted, so
    /// it does not hold anybody back.
    pub watchdog_failed: bool,
}

/// Everything `decide` looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// This member.
    pub me: &'a MemberName,
    /// The cluster view; `None` when the DCS could not be read this cycle.
    pub view: Option<&'a ClusterView>,
    /// Local PostgreSQL.
    pub pg: &'a PgState,
    /// System identifier of the local data directory, when known.
    pub sysid: Option<u64>,
    /// Our failover priority (tags; 0 = nofailover).
    pub failover_priority: i64,
    /// Peers that answered GET /patroni this cycle (only polled when no leader).
    pub peers: &'a [PeerStatus],
    /// maximum_lag_on_failover, bytes.
    pub maximum_lag_on_failover: u64,
    /// Current wall-clock time as an RFC 3339 string comparison is not used; scheduled
    /// switchovers are due when this is true (computed by the runner from `scheduled_at`).
    pub scheduled_due: bool,
    /// This member's pre_promote script failed and it released the leader key less than
    /// ttl ago: it does not race (Patroni's back-off), so another member is chosen.
    pub pre_promote_backoff: bool,
    /// `false` when `watchdog.mode` is `required` and the device cannot be used: such a
    /// member never races for the leader key.
    pub watchdog_healthy: bool,
    /// The DCS could not be read, failsafe_mode is on, and every other member listed in
    /// `/failsafe` just accepted this primary's notice: it stays primary this cycle.
    pub failsafe_held: bool,
}

/// The actions of one iteration and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Steps, in order.
    pub actions: Vec<Action>,
    /// Why, for the log (one line per role change or action).
    pub reason: String,
}

fn decision(actions: Vec<Action>, reason: impl Into<String>) -> Decision {
    Decision {
        actions,
        reason: reason.into(),
    }
}

/// The decision table.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let Some(view) = i.view else {
        return match i.pg {
            PgState::Running(r) if r.primary && i.failsafe_held => decision(
                vec![],
                "continue to run as a leader because failsafe mode is enabled and all members are accessible",
            ),
            PgState::Running(r) if r.primary => decision(
                vec![Action::Demote(DemoteMode::Offline)],
                "DCS is not accessible: demoting, since a primary must not run without its lease",
            ),
            _ => decision(vec![], "DCS is not accessible: waiting"),
        };
    };
    let leader = view.leader_name();
    let i_hold = leader == Some(i.me);
    let paused = view.paused();

    // A data directory that belongs to another cluster is never touched.
    if let (Some(init), Some(sysid)) = (view.initialize.as_deref(), i.sysid) {
        if !init.is_empty() && init != sysid.to_string() {
            return decision(
                vec![Action::Fatal(format!(
                    "the data directory's system identifier {sysid} differs from the cluster's {init}: \
                     this data directory belongs to another cluster"
                ))],
                "system identifier mismatch",
            );
        }
    }

    match i.pg {
        PgState::NoData => {
            let mut actions = vec![];
            if i_hold {
                actions.push(Action::ReleaseLeader);
            }
            match view.initialize.as_deref() {
                // A leader without `initialize` (keys lost, or a cluster being adopted):
                // bootstrapping here would create a second, empty database.
                None if leader.is_some_and(|l| l != i.me) => decision(
                    actions,
                    "no initialize key but a leader exists: waiting for it to restore the key",
                ),
                None if i.failover_priority > 0 && !paused => {
                    actions.extend([Action::RaceInitialize, Action::Bootstrap]);
                    decision(actions, "no cluster yet: trying to bootstrap it")
                }
                None => decision(
                    actions,
                    "no cluster yet, and this member may not bootstrap it: waiting",
                ),
                Some("") => decision(actions, "another member is bootstrapping the cluster: waiting"),
                Some(_) => match leader.filter(|l| *l != i.me && view.members.contains_key(*l)) {
                    Some(l) => {
                        let clonefrom = clone_candidates(i.me, view, l);
                        let why = if clonefrom.is_empty() {
                            format!("no data directory: cloning from the leader {l}")
                        } else {
                            format!("no data directory: cloning from a member tagged clonefrom (the leader is {l})")
                        };
                        actions.extend([
                            Action::Clone {
                                from: l.clone(),
                                clonefrom,
                            },
                            Action::StartReplica {
                                leader: Some(l.clone()),
                            },
                        ]);
                        decision(actions, why)
                    }
                    None => decision(actions, "no data directory and no leader to clone from: waiting"),
                },
            }
        }
        PgState::Stopped { .. } => {
            if paused {
                return decision(
                    vec![],
                    "PostgreSQL is not running and the cluster is paused: not starting it",
                );
            }
            if i_hold {
                return decision(
                    vec![Action::RefreshLeader, Action::StartPrimary],
                    "PostgreSQL is not running on the leader: starting it as primary",
                );
            }
            match leader {
                Some(l) => {
                    let up = upstream(i.me, view, l);
                    decision(
                        vec![Action::StartReplica {
                            leader: Some(up.clone()),
                        }],
                        format!("PostgreSQL is not running: starting it as a replica of {up}"),
                    )
                }
                None => decision(
                    vec![Action::StartReplica { leader: None }],
                    "PostgreSQL is not running and there is no leader: starting it read-only",
                ),
            }
        }
        PgState::Unresponsive => {
            if i_hold {
                decision(
                    vec![Action::RefreshLeader],
                    "PostgreSQL is starting on the leader: keeping the lock",
                )
            } else {
                decision(vec![], "PostgreSQL is starting: waiting")
            }
        }
        PgState::Running(r) => decide_running(i, view, r, leader, i_hold, paused),
    }
}

fn decide_running(
    i: &Inputs<'_>,
    view: &ClusterView,
    r: &Running,
    leader: Option<&MemberName>,
    i_hold: bool,
    paused: bool,
) -> Decision {
    if i_hold {
        let mut actions = vec![Action::RefreshLeader];
        if let Some(f) = &view.failover {
            let wants_me_gone = f.value.leader.as_deref().is_none_or(|l| l == i.me.as_str());
            match f.value.member.as_deref() {
                Some(c) if c != i.me.as_str() && wants_me_gone && r.primary => {
                    if !i.scheduled_due {
                        return decision(
                            actions,
                            format!("switchover to {c} scheduled: waiting for its time"),
                        );
                    }
                    // In synchronous mode (not quorum) a switchover goes to a synchronous
                    // standby only: another one may lack acknowledged commits.
                    let in_sync = view.sync_active().is_none_or(|s| {
                        view.synchronous_mode() == SyncMode::Quorum
                            || f.value.leader.is_none()
                            || s.matches(c, false)
                    });
                    let healthy = in_sync
                        && view.members.iter().any(|(n, m)| {
                            n.as_str() == c
                                && m.state == "running"
                                && m.role == "replica"
                                && m.failover_priority() > 0
                        });
                    if healthy && !paused {
                        actions.push(Action::Demote(DemoteMode::Graceful));
                        return decision(actions, format!("switchover: handing the leader key to {c}"));
                    }
                    actions.push(Action::ClearFailover { revision: f.revision });
                    return decision(
                        actions,
                        format!("switchover to {c} is not possible: the candidate is not a healthy replica"),
                    );
                }
                Some(c) if c == i.me.as_str() => actions.push(Action::ClearFailover { revision: f.revision }),
                None if f.value.leader.as_deref() == Some(i.me.as_str()) && r.primary => {
                    // A switchover "from me" with no candidate: any healthy replica.
                    let any = view.members.iter().any(|(n, m)| {
                        n != i.me && m.state == "running" && m.role == "replica" && m.failover_priority() > 0
                    });
                    if any && i.scheduled_due && !paused {
                        actions.push(Action::Demote(DemoteMode::Graceful));
                        return decision(
                            actions,
                            "switchover: handing the leader key to the healthiest replica",
                        );
                    }
                    if i.scheduled_due {
                        actions.push(Action::ClearFailover { revision: f.revision });
                    }
                }
                _ => {}
            }
        }
        if r.primary {
            return decision(actions, "I am the leader with the lock");
        }
        if paused {
            return decision(
                actions,
                "I hold the lock but PostgreSQL is a replica, and the cluster is paused: not promoting",
            );
        }
        actions.push(Action::Promote);
        return decision(actions, "I hold the lock and PostgreSQL is a replica: promoting");
    }

    if let Some(l) = leader {
        if r.primary {
            if paused {
                return decision(
                    vec![],
                    format!("{l} holds the lock but the cluster is paused: leaving this primary alone"),
                );
            }
            return decision(
                vec![
                    Action::Demote(DemoteMode::ImmediateNoLock),
                    Action::StartReplica {
                        leader: Some(l.clone()),
                    },
                ],
                format!("{l} holds the leader key: demoting this primary"),
            );
        }
        let up = upstream(i.me, view, l);
        if r.following.as_ref() != Some(up) {
            let why = if up == l {
                format!("following the new leader {l}")
            } else {
                format!("following {up} (replicatefrom), the leader being {l}")
            };
            return decision(vec![Action::Follow { leader: up.clone() }], why);
        }
        if r.stalled {
            return decision(
                vec![Action::StartReplica {
                    leader: Some(up.clone()),
                }],
                format!("not streaming from {up} for too long: restarting, with a rewind check"),
            );
        }
        if up != l {
            return decision(
                vec![],
                format!("a replica cascading from {up} (the leader is {l})"),
            );
        }
        return decision(vec![], format!("a replica following the leader {l}"));
    }

    // Nobody holds the leader key.
    if paused {
        if r.primary {
            return decision(
                vec![Action::AcquireLeader],
                "the cluster is paused and this is a lock-less primary: taking the lock",
            );
        }
        return decision(vec![], "no leader, and the cluster is paused: not racing");
    }
    match healthiest(i, view, r) {
        Ok(()) => {
            let mut actions = vec![Action::AcquireLeader];
            if let Some(f) = &view.failover {
                actions.push(Action::ClearFailover { revision: f.revision });
            }
            if !r.primary {
                actions.push(Action::Promote);
            }
            decision(
                actions,
                "no leader: this member is the healthiest, taking the leader key",
            )
        }
        Err(why) => decision(vec![], format!("no leader, not racing: {why}")),
    }
}

/// Patroni's clone sources: running members tagged `clonefrom: true`, except `me` and the
/// leader (the fallback source).
pub fn clone_candidates(me: &MemberName, view: &ClusterView, leader: &MemberName) -> Vec<MemberName> {
    view.members
        .iter()
        .filter(|(n, m)| *n != me && *n != leader && m.tag_true("clonefrom") && m.state == "running")
        .map(|(n, _)| n.clone())
        .collect()
}

/// The member to clone from: `candidates[r % len]` (the runner passes a random `r`), or the
/// leader when there is no candidate.
pub fn clone_source<'a>(candidates: &'a [MemberName], leader: &'a MemberName, r: usize) -> &'a MemberName {
    if candidates.is_empty() {
        leader
    } else {
        &candidates[r % candidates.len()]
    }
}

/// Where a replica streams from: the member its `replicatefrom` tag names while that member
/// runs as a replica (cascading replication), otherwise the leader — so when the named
/// member is promoted, fails or goes away, the replica is re-pointed at the leader.
pub fn upstream<'a>(me: &MemberName, view: &'a ClusterView, leader: &'a MemberName) -> &'a MemberName {
    let named = view
        .members
        .get(me)
        .and_then(|m| m.tags.get("replicatefrom"))
        .and_then(serde_json::Value::as_str);
    match named.and_then(|n| view.members.iter().find(|(k, _)| k.as_str() == n)) {
        Some((name, m))
            if name != me
                && name != leader
                && m.state == "running"
                && m.role == "replica"
                && m.tags.get("replicatefrom").and_then(serde_json::Value::as_str) != Some(me.as_str()) =>
        {
            name
        }
        _ => leader,
    }
}

/// Patroni's is_healthiest_node, for the rules pgwarden implements.
fn healthiest(i: &Inputs<'_>, view: &ClusterView, r: &Running) -> Result<(), String> {
    // Patroni checks the back-off first, before any manual failover request.
    if i.pre_promote_backoff {
        return Err("backing off for ttl seconds after the pre_promote script failed".into());
    }
    // Synchronous replication: in mode `on` only the standbys listed in /sync (and the
    // primary that wrote it) hold every acknowledged commit, so only they may race, and
    // only against each other; in quorum mode anyone may race but needs `quorum` votes.
    let sync = view.sync_active();
    let quorum_mode = view.synchronous_mode() == SyncMode::Quorum;
    let not_listed = sync.is_some_and(|s| !quorum_mode && !s.matches(i.me.as_str(), true));
    if let Some(f) = &view.failover {
        if not_listed && f.value.leader.is_some() {
            return Err("synchronous mode: only a synchronous standby listed in /sync may take over".into());
        }
        if let Some(c) = f.value.member.as_deref() {
            if c == i.me.as_str() {
                return Ok(());
            }
            let candidate_alive = i.peers.iter().any(|p| p.name.as_str() == c);
            if candidate_alive {
                return Err(format!("a failover to {c} was requested"));
            }
        }
    }
    if i.failover_priority <= 0 {
        return Err("nofailover is set (failover_priority 0)".into());
    }
    if r.primary {
        return Ok(());
    }
    if !i.watchdog_healthy {
        return Err("watchdog.mode is required and the watchdog device is not usable".into());
    }
    // Failsafe: the primary only asks the members in /failsafe before it keeps running
    // through a DCS outage; one that was not asked could be racing against a live primary.
    if let Some(l) = view
        .failsafe
        .as_ref()
        .filter(|l| view.failsafe_mode() && !l.is_empty())
    {
        if !l.contains_key(i.me.as_str()) {
            return Err("failsafe mode: this member is not listed in /failsafe".into());
        }
    }
    if not_listed {
        return Err("synchronous mode: this member is not a synchronous standby in /sync".into());
    }
    if let Some(optime) = view.optime {
        let lag = optime.saturating_sub(r.wal.0);
        if lag > i.maximum_lag_on_failover {
            return Err(format!(
                "lagging {lag} bytes behind the last known leader position, over maximum_lag_on_failover {}",
                i.maximum_lag_on_failover
            ));
        }
    }
    if r.timeline < view.timeline().saturating_sub(1) {
        return Err(format!(
            "on timeline {}, behind the cluster's {}",
            r.timeline,
            view.timeline()
        ));
    }
    // Quorum votes: our own membership counts as the first.
    let mut votes: i64 = if sync.is_some_and(|s| s.matches(i.me.as_str(), false)) {
        0
    } else {
        -1
    };
    for p in i.peers {
        if p.name == *i.me {
            continue;
        }
        if p.primary {
            return Err(format!("{} is still running as a primary", p.name));
        }
        let voter = sync.is_some_and(|s| quorum_mode && s.matches(p.name.as_str(), false));
        if let Some(s) = sync {
            if !s.matches(p.name.as_str(), true) {
                // Not synchronous: it cannot hold a commit we lack, and must not block us.
                continue;
            }
            if p.wal > r.wal && s.leader.as_deref() == Some(p.name.as_str()) {
                // The former primary's extra WAL was never acknowledged.
                continue;
            }
        }
        if (p.failover_priority <= 0 || p.watchdog_failed) && !voter {
            continue;
        }
        if p.timeline > r.timeline {
            return Err(format!("{} is on a newer timeline {}", p.name, p.timeline));
        }
        if p.wal > r.wal {
            return Err(format!("{} has more WAL ({} > {})", p.name, p.wal, r.wal));
        }
        if p.wal == r.wal && p.failover_priority > i.failover_priority && p.failover_priority > 0 {
            return Err(format!(
                "{} has the same WAL and a higher failover_priority",
                p.name
            ));
        }
        if voter && p.wal.0 > 0 {
            votes += 1;
        }
    }
    if let (true, Some(s)) = (quorum_mode, sync) {
        let needed = s.quorum.unwrap_or(0) as i64;
        let former_leader = s.leader.as_deref() == Some(i.me.as_str());
        if votes < needed && !former_leader {
            return Err(format!(
                "quorum commit: {} votes from the voters in /sync, {needed} needed",
                votes.max(0)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::view::{FailoverKey, MemberRecord, Versioned};
    use super::*;
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
            me: &me,
            view: c.view.as_ref(),
            pg: &c.pg,
            sysid: Some(7000000000000000001),
            failover_priority: c.prio,
            peers: &c.peers,
            maximum_lag_on_failover: 1 << 20,
            scheduled_due: true,
            pre_promote_backoff: false,
            watchdog_healthy: true,
            failsafe_held: false,
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

        let cases = vec![
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
                pg: PgState::Stopped { clean: false },
                prio: 1,
                peers: vec![],
                expect: vec![Action::RefreshLeader, Action::StartPrimary],
            },
            Case {
                name: "stopped replica: start following the leader",
                me: "b",
                view: Some(view(Some("a"))),
                pg: PgState::Stopped { clean: true },
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
                name: "paused: a stopped member is not started",
                me: "b",
                view: Some(paused),
                pg: PgState::Stopped { clean: true },
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
            me: &me,
            view: Some(&v),
            pg: &replica(1, Some("a")),
            sysid: Some(42),
            failover_priority: 1,
            peers: &[],
            maximum_lag_on_failover: 0,
            scheduled_due: true,
            pre_promote_backoff: false,
            watchdog_healthy: true,
            failsafe_held: false,
        });
        assert!(matches!(d.actions.as_slice(), [Action::Fatal(m)] if m.contains("42")));
    }
    fn race_local(me: &str, pg: &PgState, backoff: bool, watchdog_healthy: bool) -> Decision {
        let v = view(None);
        let me = n(me);
        decide(&Inputs {
            me: &me,
            view: Some(&v),
            pg,
            sysid: Some(7000000000000000001),
            failover_priority: 1,
            peers: &[],
            maximum_lag_on_failover: 1 << 20,
            scheduled_due: true,
            pre_promote_backoff: backoff,
            watchdog_healthy,
            failsafe_held: false,
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
            me: &me,
            view,
            pg,
            sysid: Some(7000000000000000001),
            failover_priority: 1,
            peers: &[],
            maximum_lag_on_failover: 1 << 20,
            scheduled_due: true,
            pre_promote_backoff: false,
            watchdog_healthy: true,
            failsafe_held,
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
}
