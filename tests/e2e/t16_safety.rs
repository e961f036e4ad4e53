//! Safety regressions that need real PostgreSQL (issue 14's findings).

use crate::harness::{Cluster, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// F2: PostgreSQL on the primary crashes and cannot start again (a parameter it refuses:
/// a preload library that does not exist), with the default primary_start_timeout of 300 s.
/// The lock holder gives the key up as soon as its start fails (Patroni's post_recover), so a
/// replica is promoted within seconds instead of the cluster staying without a primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_f2_a_primary_that_cannot_start_hands_over_at_once() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let (code, body) = c
        .patch_config(
            leader,
            json!({"postgresql": {"parameters": {"shared_preload_libraries": "pgwarden_no_such_library"}}}),
        )
        .await
        .expect("PATCH /config answered");
    assert_eq!(code, 200, "{body}");
    // Every member has the parameter pending a restart before the crash.
    wait_for(
        Duration::from_secs(30),
        "the parameter pending on the primary",
        || async {
            let p = c.patroni(leader).await?;
            (p["pending_restart"] == true).then_some(())
        },
    )
    .await;
    c.kill9_postmaster(leader).expect("postmaster pid");
    let crashed = Instant::now();
    let new_leader = wait_for(Duration::from_secs(60), "another member promoted", || async {
        c.primary().await.filter(|p| *p != leader)
    })
    .await;
    // Well below primary_start_timeout (300 s): the key was released at the failed start.
    // The bound leaves room for the failed start itself and a promotion on a busy machine.
    let took = crashed.elapsed();
    assert!(
        took < Duration::from_secs(40),
        "a replica was promoted only after {took:?}"
    );
    assert!(
        c.log(leader).contains("failed to start as primary"),
        "the old primary did not report its failed start"
    );
    assert_ne!(new_leader, leader);
}
