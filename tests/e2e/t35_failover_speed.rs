//! How fast the health checks follow a change of primary, as HAProxy sees them.

use crate::harness::{Cluster, Options};
use pgwarden_testkit::require_pg;
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
        clients.push((r, c.connect(r).await.expect("connect to a replica")));
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
            for (r, cl) in &clients {
                let probe = tokio::time::timeout(
                    Duration::from_millis(500),
                    cl.query_one("SELECT pg_is_in_recovery()", &[]),
                )
                .await;
                if let Ok(Ok(row)) = probe {
                    if !row.get::<_, bool>(0) {
                        writable = Some((Instant::now(), *r));
                    }
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
