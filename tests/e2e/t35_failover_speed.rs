//! How fast the health checks follow a change of primary, as HAProxy sees them.

use crate::harness::{conns, Cluster, Options, Writer};
use pgwarden_testkit::{require_pg, wait_for};
use std::time::Duration;
use tokio::time::Instant;

/// The primary's node is killed (daemon and postmaster), and the replicas are watched every
/// few milliseconds through `GET /primary` on every member and `pg_is_in_recovery()`: the
/// promoted replica's `/primary` answers 200 within 1 s of its PostgreSQL accepting writes
/// (the REST state changes when the promotion completes, not at the loop's next iteration),
/// and at no instant do two members answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_speed_primary_endpoint_follows_a_promotion_at_once() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let replicas: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut clients = vec![];
    for &r in &replicas {
        clients.push((r, Some(c.connect(r).await.expect("connect to a replica"))));
    }
    // Both replicas stream before the primary goes, so either may be promoted.
    pgwarden_testkit::wait_for(Duration::from_secs(30), "the replicas to stream", || async {
        for &r in &replicas {
            let p = c.patroni(r).await?;
            (p["replication_state"] == "streaming").then_some(())?;
        }
        Some(())
    })
    .await;

    c.kill9(leader);
    let killed = Instant::now();
    let mut writable: Option<(Instant, usize)> = None;
    let mut answered: Option<(Instant, usize)> = None;
    // Bounded: at most 60 s of probing, one round every 10 ms or so.
    while killed.elapsed() < Duration::from_secs(60) {
        let mut answering = vec![];
        for &r in &replicas {
            if c.http_status(r, "/primary").await == Some(200) {
                answering.push(r);
            }
        }
        let now = Instant::now();
        assert!(
            answering.len() <= 1,
            "two members answered GET /primary 200 at once: {answering:?}"
        );
        if let Some(&r) = answering.first() {
            answered.get_or_insert((now, r));
        }
        if writable.is_none() {
            for (r, cl) in clients.iter_mut() {
                // A replica may be restarted on the way (to follow the new primary): its old
                // connection is then gone for good, so a failed probe reconnects.
                let probe = match cl.as_ref() {
                    Some(client) => {
                        tokio::time::timeout(
                            Duration::from_millis(500),
                            client.query_one("SELECT pg_is_in_recovery()", &[]),
                        )
                        .await
                    }
                    None => {
                        *cl = tokio::time::timeout(Duration::from_millis(500), c.connect(*r))
                            .await
                            .ok()
                            .flatten();
                        continue;
                    }
                };
                match probe {
                    Ok(Ok(row)) => {
                        if !row.get::<_, bool>(0) {
                            writable = Some((Instant::now(), *r));
                        }
                    }
                    Ok(Err(_)) => *cl = None,
                    Err(_) => {}
                }
            }
        }
        if writable.is_some() && answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (writable_at, promoted) = writable.expect("no replica's PostgreSQL ever accepted writes");
    let (answered_at, answering) = answered.expect("no member ever answered GET /primary 200");
    assert_eq!(
        promoted, answering,
        "the writable member is not the one answering 200"
    );
    // The REST state is set as pg_promote() returns, so 200 may even come first.
    let late = answered_at.saturating_duration_since(writable_at);
    assert!(
        late < Duration::from_secs(1),
        "GET /primary answered 200 {late:?} after PostgreSQL accepted writes"
    );
}

/// The member whose Raft node is the leader, from each member's /metrics: `None` unless
/// exactly one member claims it (a cut-off former leader may still believe it leads).
async fn raft_leader(c: &Cluster) -> Option<usize> {
    let mut claims = vec![];
    for i in 0..c.nodes.len() {
        let url = format!("{}/metrics", c.rest_url(i));
        let text = c.http.get(url).send().await.ok()?.text().await.ok()?;
        let is_leader = text
            .lines()
            .any(|l| l.starts_with("pgwarden_raft_is_leader") && l.trim_end().ends_with(" 1"));
        if is_leader {
            claims.push(i);
        }
    }
    (claims.len() == 1).then(|| claims[0])
}

/// What must not change while the primary rides through a fault: which member it is, its
/// postmaster (no restart) and its timeline.
async fn primary_identity(c: &Cluster, i: usize) -> (Option<i32>, Option<u64>) {
    let tl = c.patroni(i).await.and_then(|p| p["timeline"].as_u64());
    (c.nodes[i].postmaster_pid(), tl)
}

/// Cuts node `i`'s Raft links for `how_long`, then heals, while a writer keeps writing
/// through whichever member is the primary. Returns the longest write gap from the cut on.
async fn cut_raft_links(c: &Cluster, i: usize, how_long: Duration) -> Duration {
    let w = Writer::start(conns(c)).await;
    w.wait_more(20, Duration::from_secs(30)).await;
    let cut = Instant::now();
    c.isolate(i);
    tokio::time::sleep(how_long).await;
    c.heal();
    // Writes after the heal, so that a gap at the very end would be seen.
    w.wait_more(100, Duration::from_secs(60)).await;
    let gap = w.longest_gap_after(cut);
    w.stop().await;
    gap
}

/// The Raft leader's node, when it is not the primary's, is cut off from the other two for
/// longer than an election: a new Raft leader is elected and the primary, which keeps a
/// majority, notices nothing but a short pause of DCS writes. It stays primary, PostgreSQL
/// is not restarted, and the longest write gap is under 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_speed_a_raft_leader_change_does_not_cost_the_primary_its_role() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let primary = c.wait_healthy(Duration::from_secs(90)).await;
    // Move the Raft leadership off the primary's node first, if it is there: a short cut of
    // the primary's Raft links makes the others elect a leader. Half the lease (2 s at the
    // default ttl): a longer one, started just after a refresh, outlasts what the lease rides
    // through once the election is counted; a shorter one may end before the election.
    let mut target = None;
    let began = Instant::now();
    // Bounded: at most 60 s of trying.
    while target.is_none() && began.elapsed() < Duration::from_secs(60) {
        match raft_leader(&c).await {
            Some(l) if l != primary => target = Some(l),
            Some(l) => {
                c.isolate(l);
                tokio::time::sleep(Duration::from_secs(2)).await;
                c.heal();
                wait_for(Duration::from_secs(20), "one Raft leader again", || async {
                    raft_leader(&c).await
                })
                .await;
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let target = target.expect("the Raft leadership never left the primary's node");
    assert_eq!(
        c.primary().await,
        Some(primary),
        "the preparation changed the primary"
    );
    let before = primary_identity(&c, primary).await;
    let gap = cut_raft_links(&c, target, Duration::from_secs(8)).await;
    assert_eq!(c.primary().await, Some(primary), "the primary changed");
    assert_eq!(
        primary_identity(&c, primary).await,
        before,
        "PostgreSQL was restarted or promoted"
    );
    eprintln!("Raft leader's node cut off: longest write gap {gap:?}");
    assert!(gap < Duration::from_secs(1), "longest write gap {gap:?}");
}

/// The primary's own Raft links are cut for half its lease (2 s at the default ttl of 4 s):
/// it keeps serving on its lease and refreshes it once healed. No demotion, no restart, write
/// gap under 1 s. (Riding through a cut as long as the lease is impossible by construction:
/// to the other members it looks like a node loss, which must fail over within about ttl.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_speed_a_primary_cut_off_for_less_than_its_lease_rides_through() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let primary = c.wait_healthy(Duration::from_secs(90)).await;
    let before = primary_identity(&c, primary).await;
    let gap = cut_raft_links(&c, primary, Duration::from_secs(2)).await;
    assert_eq!(c.primary().await, Some(primary), "the primary changed");
    assert_eq!(
        primary_identity(&c, primary).await,
        before,
        "PostgreSQL was restarted or promoted"
    );
    assert!(gap < Duration::from_secs(1), "longest write gap {gap:?}");
}

/// `systemctl stop` on the primary (SIGTERM to its daemon): PostgreSQL is stopped (fast), the
/// replicas receive its shutdown checkpoint, the key is released at once, and a replica takes
/// writes again within 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_speed_sigterm_of_the_primary_hands_over_within_3_s() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let primary = c.wait_healthy(Duration::from_secs(90)).await;
    let w = Writer::start(conns(&c)).await;
    w.wait_more(20, Duration::from_secs(30)).await;
    let stopped = Instant::now();
    c.stop(primary).await;
    let (first_new, node) = wait_for(Duration::from_secs(30), "writes on another member", || async {
        w.first_ack_after(stopped, Some(primary))
    })
    .await;
    w.wait_more(20, Duration::from_secs(30)).await;
    let gap = w.longest_gap_after(stopped);
    w.stop().await;
    assert_ne!(node, primary);
    let resumed = first_new.saturating_duration_since(stopped);
    eprintln!("SIGTERM of the primary: writes resumed after {resumed:?}, longest gap {gap:?}");
    assert!(
        gap < Duration::from_secs(3),
        "longest write gap {gap:?} (writes resumed on pg{node} {resumed:?} after the SIGTERM)"
    );
}
