//! The HA decision: a pure function of (cluster view, local PostgreSQL state, peers' answers,
//! time) returning the actions of one loop iteration and the reason, Patroni's decision table
//! (see docs/ha-decision-table.md). No I/O happens here; the runner executes the actions in
//! order and abandons the rest of the list at the first one that fails (a lost
//! compare-and-swap, a failed start), so a later cycle decides again from fresh facts.

use super::view::{ClusterView, SyncMode};
use crate::types::{Lsn, MemberName};
use crate::types::{MemberState, Role};

/// What the local PostgreSQL is, as observed this cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgState {
    /// No data directory, or an empty one.
    NoData,
    /// Data present, postmaster not running; `clean` after a clean shutdown.
    Stopped {
        /// Whether the last shutdown was clean.
        clean: bool,
        /// pg_control says the instance was a standby (shut down in recovery, or in archive
        /// recovery): it must not be started as a primary without a promotion.
        standby: bool,
    },
    /// Running and answering queries.
    Running(Running),
    /// The postmaster runs but does not answer (starting, recovering).
    Unresponsive,
    /// PostgreSQL is not running and its data directory could not be examined (pg_controldata
    /// failed, or the directory cannot be read). Never taken for "no data": that would lead to
    /// a bootstrap or a clone over a directory that may hold the cluster.
    Unknown(String),
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
    /// The timeline its WAL receiver asks its upstream for, while one runs
    /// (`pg_stat_wal_receiver.received_tli`): the timeline the replica is recovering along.
    pub receiver_timeline: Option<u32>,
    /// Replay position (a replica; 0 on a primary). Unlike the received position, it is
    /// never past a switchpoint on a healthy replica: WAL received but not replayed may end
    /// in a partial record the new primary never had, which PostgreSQL discards.
    pub replayed: Lsn,
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
    /// Create the data directory with no member to copy from, by the replica methods marked
    /// `no_leader` (Patroni's "bootstrap (without leader)": a restore from a backup).
    CloneWithoutLeader,
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
    /// Standby cluster: clone the data directory from the remote primary, start it as the
    /// standby leader, then `initialize` = sysid, `config` = bootstrap.dcs, the leader key.
    BootstrapStandby,
    /// Standby cluster: (stop and) start PostgreSQL as the standby leader, a replica of the
    /// remote primary; a running primary is demoted this way (demote-cluster).
    StartStandbyLeader,
    /// Standby cluster: point the running standby leader at the remote primary (reload).
    FollowRemote,
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
    /// This member holds the leader lease and its deadline (`sent + ttl − margin` of the last
    /// successful refresh) has not passed. No other member can take the key before then.
    pub lease_valid: bool,
    /// This member holds the key and has been trying to bring PostgreSQL up as the primary
    /// (start attempts, or a postmaster that does not answer) for `primary_start_timeout` or
    /// longer, counted from the first such observation (never reset by a retry).
    pub primary_start_overdue: bool,
    /// The stopped data directory was never configured by pgwarden: a standalone PostgreSQL,
    /// which may be adopted when the DCS holds no cluster (see `adopt_stopped_standalone`).
    pub standalone: bool,
    /// The dynamic configuration (the DCS's, else the file's `bootstrap.dcs`) makes this a
    /// standby cluster: its leader replicates from a remote primary and is never promoted.
    pub standby_cluster: bool,
    /// PostgreSQL's configuration was last written to replicate from the remote primary as
    /// the dynamic configuration names it now (standby leader).
    pub following_remote: bool,
    /// A replica method can run with no member to copy from (`no_leader: true`).
    pub clone_without_leader: bool,
    /// This member stopped PostgreSQL for a switchover and has not started it since.
    pub demoted_for_switchover: bool,
}

/// The actions of one iteration and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Steps, in order.
    pub actions: Vec<Action>,
    /// Why, for the log (one line per role change or action).
    pub reason: String,
    /// Nothing will change until an operator acts (the reason says how): the runner logs
    /// the reason as a warning rather than as information.
    pub needs_operator: bool,
}

fn decision(actions: Vec<Action>, reason: impl Into<String>) -> Decision {
    Decision {
        actions,
        reason: reason.into(),
        needs_operator: false,
    }
}

fn operator_needed(reason: impl Into<String>) -> Decision {
    Decision {
        needs_operator: true,
        ..decision(vec![], reason)
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
            // Nobody can take the key before our deadline, so a DCS blip shorter than the
            // lease costs nothing: the primary keeps serving, and the fence stops it at the
            // deadline if the DCS is still out of reach then.
            PgState::Running(r) if r.primary && i.lease_valid => decision(
                vec![],
                "DCS is not accessible: still the primary while the lease is valid",
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

    if i.standby_cluster {
        if let Some(d) = decide_standby_cluster(i, view, leader, i_hold, paused) {
            return d;
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
                // A keyspace lost with every Raft data directory, while the members kept
                // their PostgreSQL: a bootstrap here would make a second, empty cluster,
                // take the leader key, and demote the real primary under it.
                None if leader.is_none() && member_with_data(i.me, view).is_some() => decision(
                    actions,
                    format!(
                        "no initialize key, but {} has a PostgreSQL data directory: not bootstrapping \
                         a second cluster, waiting for the existing one to be adopted",
                        member_with_data(i.me, view).map_or("another member", |m| m.as_str())
                    ),
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
                    // Patroni's "bootstrap (without leader)": a method that restores from a
                    // backup needs no running member. Not while another member is
                    // bootstrapping (`initialize` empty, matched above).
                    None if i.clone_without_leader => {
                        actions.extend([Action::CloneWithoutLeader, Action::StartReplica { leader: None }]);
                        decision(
                            actions,
                            "no data directory and no leader: creating a replica with the methods that need none (no_leader)",
                        )
                    }
                    None => decision(actions, "no data directory and no leader to clone from: waiting"),
                },
            }
        }
        PgState::Stopped { .. } => {
            if let Some(d) = adopt_stopped_standalone(i, view) {
                return d;
            }
            if paused {
                // Patroni's graceful demotion starts the old primary as a replica itself,
                // paused or not: a switchover in a paused cluster must not leave it down.
                if i.demoted_for_switchover && !i_hold {
                    return decision(
                        vec![Action::StartReplica {
                            leader: leader.cloned(),
                        }],
                        "demoted by a switchover in a paused cluster: starting as a replica",
                    );
                }
                return decision(
                    vec![],
                    "PostgreSQL is not running and the cluster is paused: not starting it",
                );
            }
            if i_hold && i.primary_start_overdue && failover_possible(i, view) {
                return decision(
                    vec![Action::ReleaseLeader],
                    "PostgreSQL did not start as primary within primary_start_timeout and a replica can take over: releasing the leader key",
                );
            }
            if i_hold && matches!(i.pg, PgState::Stopped { standby: true, .. }) {
                // Patroni's rule: a standby's data directory never starts as a primary
                // directly (it would open on the old timeline, without a promotion, and fork
                // it). It starts read-only; the next iteration promotes it.
                return decision(
                    vec![Action::RefreshLeader, Action::StartReplica { leader: None }],
                    "PostgreSQL is not running on the leader and its data directory is a standby's: starting it read-only to promote it",
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
        PgState::Unknown(why) => {
            if i_hold {
                // A primary cannot be started from a data directory that cannot be read; a
                // replica may take over.
                decision(
                    vec![Action::ReleaseLeader],
                    format!("the data directory cannot be examined ({why}): releasing the leader key"),
                )
            } else {
                decision(
                    vec![],
                    format!("the data directory cannot be examined ({why}): doing nothing until it can"),
                )
            }
        }
        PgState::Unresponsive => {
            if i_hold && i.primary_start_overdue && failover_possible(i, view) {
                decision(
                    vec![Action::Demote(DemoteMode::ImmediateNoLock), Action::ReleaseLeader],
                    "PostgreSQL on the leader has not answered within primary_start_timeout and a replica can take over: stopping it and releasing the leader key",
                )
            } else if i_hold {
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

/// Whether another member could take over: a running replica that may be promoted.
pub fn failover_possible(i: &Inputs<'_>, view: &ClusterView) -> bool {
    view.members
        .iter()
        .any(|(n, m)| n != i.me && m.is_failover_candidate())
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
                    // In every synchronous mode (quorum included) the candidate must be listed in
                    // /sync: a member outside it may lack acknowledged commits. And, as Patroni's
                    // is_lagging, it must be within maximum_lag_on_failover of this primary.
                    let in_sync = view.sync_active().is_none_or(|s| s.matches(c, false));
                    let healthy = in_sync
                        && view.members.iter().any(|(n, m)| {
                            n.as_str() == c
                                && m.is_failover_candidate()
                                && m.xlog_location
                                    .is_some_and(|x| r.wal.0.saturating_sub(x) <= i.maximum_lag_on_failover)
                        });
                    // Patroni carries out a switchover to a named candidate in a paused
                    // cluster too (its API refuses one without a candidate there).
                    if healthy {
                        actions.push(Action::Demote(DemoteMode::Graceful));
                        return decision(actions, format!("switchover: handing the leader key to {c}"));
                    }
                    actions.push(Action::ClearFailover { revision: f.revision });
                    return decision(
                        actions,
                        format!("switchover to {c} is not possible: the candidate is not a healthy replica"),
                    );
                }
                // Done once we are the primary; in pause the key is what makes a lock
                // holder that is still a replica promote, so it stays until then.
                Some(c) if c == i.me.as_str() && (r.primary || !paused) => {
                    actions.push(Action::ClearFailover { revision: f.revision })
                }
                None if f.value.leader.as_deref() == Some(i.me.as_str()) && r.primary => {
                    // A switchover "from me" with no candidate: any healthy replica.
                    let any = view
                        .members
                        .iter()
                        .any(|(n, m)| n != i.me && m.is_failover_candidate());
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
            if manual_failover_to_me(i, view) {
                actions.push(Action::Promote);
                return decision(
                    actions,
                    "manual failover to this member in a paused cluster: promoting",
                );
            }
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
        if let Some(end) = diverged_replica(i, view, r, l) {
            return decision(
                vec![Action::StartReplica {
                    leader: Some(up.clone()),
                }],
                format!(
                    "this replica replayed WAL up to {} on timeline {}, past {} where the cluster's history ends that timeline: \
                     it cannot follow {l}; restarting, with a rewind check",
                    r.replayed,
                    r.receiver_timeline.unwrap_or(r.timeline),
                    Lsn(end)
                ),
            );
        }
        if r.following.as_ref() != Some(up) {
            let why = if up == l {
                format!("following the new leader {l}")
            } else {
                format!("following {up} (replicatefrom), the leader being {l}")
            };
            return decision(vec![Action::Follow { leader: up.clone() }], why);
        }
        if r.stalled && !view.members.contains_key(up) {
            // The upstream's member key has expired: it is most likely dead, and its address is
            // gone with the key. Restarting now would only take this replica down just when
            // the leader key expires and the race needs it (a replica with less WAL could
            // win); the leader key runs out within ttl.
            return decision(
                vec![],
                format!(
                    "not streaming from {up}, whose member key is gone: waiting for its leader key to expire"
                ),
            );
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
        // Patroni's manual_failover_process_no_leader: in pause nobody races, but a manual
        // failover names its candidate, and that member takes the key and promotes (the
        // way out after `force-new-cluster`, whose survivor starts paused). The failover key
        // stays until the promotion is done, so that a promotion that fails is tried again
        // rather than leaving a lock holder that is a replica.
        if manual_failover_to_me(i, view) {
            return decision(
                vec![Action::AcquireLeader, Action::Promote],
                "manual failover to this member in a paused cluster: taking the leader key and promoting",
            );
        }
        return decision(vec![], "no leader, and the cluster is paused: not racing");
    }
    // The DCS holds no cluster (no `initialize`) but PostgreSQL has data here: the keyspace was
    // lost (every Raft data directory gone) or wiped. The cluster is adopted around the member
    // that runs as the primary; the usual race among standbys is off, since one could win it
    // before the primary's daemon is back, and its promotion would fork the timeline for
    // nothing. With no primary running, which standby holds the most is not something the
    // members can tell alone (the lost keys held the last optime and history): an operator
    // names it, and only that member takes the key.
    let adopting = view.initialize.is_none();
    if adopting {
        if !r.primary && !manual_failover_to_me(i, view) {
            return operator_needed(
                "the DCS holds no cluster (no initialize key) and this member's PostgreSQL is a standby: \
                 not racing for the leader key. A member running as primary takes it when its daemon \
                 is up; if none runs as primary, an operator must choose the new primary: \
                 pgwardenctl failover --candidate <member>",
            );
        }
        if r.primary && i.sysid.is_none() {
            return decision(
                vec![],
                "the DCS holds no cluster and this member runs as primary, but its system identifier \
                 is not known yet: waiting",
            );
        }
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
            let why = match (adopting, r.primary) {
                (true, true) => {
                    "the DCS holds no cluster and this member runs as primary: adopting the cluster \
                     around it (the leader key, then initialize from its system identifier)"
                }
                (true, false) => {
                    "the DCS holds no cluster and an operator chose this member: taking the leader key \
                     and promoting"
                }
                _ => "no leader: this member is the healthiest, taking the leader key",
            };
            decision(actions, why)
        }
        Err(why) => decision(vec![], format!("no leader, not racing: {why}")),
    }
}

/// Patroni's "convert a standalone" for a stopped PostgreSQL: the DCS holds no cluster (no
/// `initialize`, no leader), this member's data directory is a primary's (pg_control does not
/// say it was a standby) that pgwarden never configured, and no other member reports a data
/// directory. A directory pgwarden configured before is a former member's, maybe a primary
/// that was failed over: after a lost keyspace it only starts read-only (issue 22). The member takes the
/// leader key and starts it as the primary with no promotion (no new timeline); the leader's
/// upkeep then records its system identifier as `initialize`. Patroni writes `initialize`
/// first, starts the directory read-only and promotes it through the leader race.
/// A standby's data directory is never adopted this way (see the running case below), nor
/// while paused, nor by a member that may not become the leader.
fn adopt_stopped_standalone(i: &Inputs<'_>, view: &ClusterView) -> Option<Decision> {
    let PgState::Stopped { standby: false, .. } = i.pg else {
        return None;
    };
    let adoptable = view.initialize.is_none()
        && view.leader_name().is_none()
        && !view.paused()
        && i.failover_priority > 0
        && i.standalone
        // A standby cluster's leader follows the remote primary: never a writable adoption.
        && !i.standby_cluster
        && i.sysid.is_some()
        && member_with_data(i.me, view).is_none();
    adoptable.then(|| {
        decision(
            vec![Action::AcquireLeader, Action::StartPrimary],
            "the DCS holds no cluster and this member has a stopped primary's data directory: adopting it \
             (the leader key, start as primary, then initialize from its system identifier)",
        )
    })
}

/// The rules of a standby cluster (Patroni's `is_standby_cluster` paths) that differ from a
/// primary cluster's: the holder of the leader key is the standby leader, a replica of the
/// remote primary, and nothing here ever promotes. `None`: the usual rules apply (a member
/// that does not hold the key cascades from the standby leader as from a primary).
fn decide_standby_cluster(
    i: &Inputs<'_>,
    view: &ClusterView,
    leader: Option<&MemberName>,
    i_hold: bool,
    paused: bool,
) -> Option<Decision> {
    match i.pg {
        PgState::NoData => {
            let fresh = view.initialize.is_none()
                && leader.is_none()
                && member_with_data(i.me, view).is_none()
                && i.failover_priority > 0
                && !paused;
            fresh.then(|| {
                decision(
                    vec![Action::RaceInitialize, Action::BootstrapStandby],
                    "standby cluster with no data yet: trying to bootstrap it by cloning the remote primary",
                )
            })
        }
        PgState::Stopped { .. } if i_hold && !paused => {
            if i.primary_start_overdue && failover_possible(i, view) {
                return None;
            }
            Some(decision(
                vec![Action::RefreshLeader, Action::StartStandbyLeader],
                "PostgreSQL is not running on the standby leader: starting it as a replica of the remote primary",
            ))
        }
        PgState::Running(r) if i_hold => {
            let mut actions = vec![Action::RefreshLeader];
            // A failover key naming this member is done: it holds the key.
            if let Some(f) = view
                .failover
                .as_ref()
                .filter(|f| f.value.member.as_deref() == Some(i.me.as_str()))
            {
                actions.push(Action::ClearFailover { revision: f.revision });
            }
            // A switchover (or failover) to another member: the standby leader has written
            // nothing of its own (it replays the remote primary's WAL), so handing the role
            // over is releasing the key. The candidate takes it and follows the remote; this
            // member then cascades from it, as any member without the key does.
            if let Some(f) = view.failover.as_ref() {
                let wants_me_gone = f.value.leader.as_deref().is_none_or(|l| l == i.me.as_str());
                if let Some(c) = f.value.member.as_deref().filter(|c| *c != i.me.as_str()) {
                    if wants_me_gone && !r.primary {
                        if !i.scheduled_due {
                            return Some(decision(
                                actions,
                                format!("switchover to {c} scheduled: waiting for its time"),
                            ));
                        }
                        let healthy = view
                            .members
                            .iter()
                            .any(|(n, m)| n.as_str() == c && m.is_failover_candidate());
                        if healthy {
                            return Some(decision(
                                vec![Action::ReleaseLeader],
                                format!("switchover: handing the standby leader role to {c}"),
                            ));
                        }
                        actions.push(Action::ClearFailover { revision: f.revision });
                        return Some(decision(
                            actions,
                            format!(
                                "switchover to {c} is not possible: the candidate is not a healthy replica"
                            ),
                        ));
                    }
                }
            }
            if r.primary && paused {
                return Some(decision(
                    actions,
                    "the cluster is paused: leaving the primary of what is now a standby cluster alone",
                ));
            }
            if r.primary {
                actions.push(Action::StartStandbyLeader);
                return Some(decision(
                    actions,
                    "this is a standby cluster now: demoting the primary to a standby leader of the remote primary",
                ));
            }
            if !i.following_remote {
                actions.push(Action::FollowRemote);
                return Some(decision(
                    actions,
                    "I am the standby leader: pointing PostgreSQL at the remote primary",
                ));
            }
            Some(decision(
                actions,
                "no action: I am the standby leader with the lock",
            ))
        }
        PgState::Running(r) if leader.is_none() => {
            if paused {
                return Some(decision(
                    vec![],
                    "no standby leader, and the cluster is paused: not racing",
                ));
            }
            if view.initialize.is_none() && !r.primary {
                return Some(operator_needed(
                    "the DCS holds no cluster (no initialize key) and this is a standby cluster: not \
                     racing for the leader key; re-create the cluster or restore the DCS",
                ));
            }
            Some(match healthiest(i, view, r) {
                Ok(()) => {
                    let mut actions = vec![Action::AcquireLeader];
                    if let Some(f) = &view.failover {
                        actions.push(Action::ClearFailover { revision: f.revision });
                    }
                    actions.push(if r.primary {
                        Action::StartStandbyLeader
                    } else {
                        Action::FollowRemote
                    });
                    decision(
                        actions,
                        "no standby leader: this member is the healthiest, taking the leader key as the \
                         standby leader (a standby cluster never promotes)",
                    )
                }
                Err(why) => decision(vec![], format!("no standby leader, not racing: {why}")),
            })
        }
        _ => None,
    }
}

/// Another member whose key says its PostgreSQL has a data directory (a primary or a
/// standby, running or not), whatever the DCS says about the cluster.
fn member_with_data<'a>(me: &MemberName, view: &'a ClusterView) -> Option<&'a MemberName> {
    view.members
        .iter()
        .find(|(n, m)| {
            *n != me && (m.role.is_primary() || m.role == Role::Replica || m.role == Role::StandbyLeader)
        })
        .map(|(n, _)| n)
}

/// Whether the failover key asks, now, for this member to become the leader: it names this
/// member as candidate, is not scheduled, and this member may be promoted (not `nofailover`).
fn manual_failover_to_me(i: &Inputs<'_>, view: &ClusterView) -> bool {
    i.failover_priority > 0
        && view.failover.as_ref().is_some_and(|f| {
            f.value.member.as_deref() == Some(i.me.as_str()) && f.value.scheduled_at.is_none()
        })
}

/// Patroni's clone sources: running members tagged `clonefrom: true`, except `me` and the
/// leader (the fallback source).
pub fn clone_candidates(me: &MemberName, view: &ClusterView, leader: &MemberName) -> Vec<MemberName> {
    view.members
        .iter()
        .filter(|(n, m)| {
            *n != me && *n != leader && m.tag_true("clonefrom") && m.state == MemberState::Running
        })
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
                && m.state == MemberState::Running
                && m.role == Role::Replica
                && m.tags.get("replicatefrom").and_then(serde_json::Value::as_str) != Some(me.as_str()) =>
        {
            name
        }
        _ => leader,
    }
}

/// A replica that can never follow the leader: its WAL receiver recovers along timeline T,
/// older than the cluster's, and it has replayed WAL past the point where the cluster's
/// history ends T. It received that WAL from a former primary after the promotion that ended T (a
/// replica cut off together with that primary, or one that lagged the new one's race);
/// PostgreSQL then only logs "new timeline forked off ... before current recovery point"
/// and waits, while its WAL receiver keeps reconnecting (so it never counts as stalled).
/// Patroni's diverged-LSN check of a replica after a leader change. Returns the end of T.
///
/// Only in a primary cluster whose leader reports the cluster's timeline, so that the
/// history key describes the leader's line (a standby cluster's or a demoted cluster's rows
/// can describe another one).
fn diverged_replica(i: &Inputs<'_>, view: &ClusterView, r: &Running, leader: &MemberName) -> Option<u64> {
    if i.standby_cluster || r.primary {
        return None;
    }
    let tl = r.receiver_timeline?;
    let cluster = view.timeline();
    if tl >= cluster || view.members.get(leader)?.timeline? != cluster {
        return None;
    }
    let end = view.history.iter().find(|h| h.timeline == tl)?.lsn;
    (r.replayed.0 > end).then_some(end)
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
                // A switchover's candidate must be in /sync in every synchronous mode,
                // quorum included: outside it, it may lack acknowledged commits.
                if f.value.leader.is_some() && sync.is_some_and(|s| !s.matches(i.me.as_str(), false)) {
                    return Err(
                        "a switchover to this member was requested, but it is not listed in /sync".into(),
                    );
                }
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
        // Patroni's guard: a primary on an older timeline than the cluster's is a former
        // primary whose daemon was away while another member was promoted. Taking the free key
        // back would discard everything acknowledged on the newer timeline.
        let cluster = view.timeline();
        if r.timeline < cluster {
            return Err(format!(
                "this primary is on timeline {} but the cluster is on {cluster}: a newer primary was promoted",
                r.timeline
            ));
        }
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
    // Patroni's check_timeline: a replica behind the cluster's timeline (the last history
    // row's + 1) does not race. Without it pgwarden still refuses one more than a timeline
    // behind, and lets one timeline behind through (its replay of the switch may lag).
    if view.dynamic().check_timeline() && r.timeline < view.timeline() {
        return Err(format!(
            "check_timeline: on timeline {}, behind the cluster's {}",
            r.timeline,
            view.timeline()
        ));
    }
    if r.timeline < view.timeline().saturating_sub(1) {
        return Err(format!(
            "on timeline {}, behind the cluster's {}",
            r.timeline,
            view.timeline()
        ));
    }
    // Quorum votes: our own membership counts as the first.
    let i_vote = sync.is_some_and(|s| s.matches(i.me.as_str(), false));
    let mut votes: i64 = if i_vote { 0 } else { -1 };
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
        // Quorum mode: a member outside /sync yields to a voter that can take over and has
        // at least its WAL. The voter is known to hold every acknowledged commit; this member
        // only as far as the WAL it has seen, and its vote count can be met with the quorum at
        // 0 (one voter), so without this it could win a tie against the voter.
        if voter && !i_vote && p.failover_priority > 0 && !p.watchdog_failed && p.wal >= r.wal {
            return Err(format!(
                "{} is listed in /sync, has at least this member's WAL and can take over",
                p.name
            ));
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
#[path = "decide_tests.rs"]
mod tests;
