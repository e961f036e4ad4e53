//! Issue 18's stretched cluster: three sites, one data node each, every site in a network
//! namespace of its own and every frame between two sites delayed by 20 ms one way (a 40 ms
//! round trip; the testkit's userspace switch delays it, because this kernel has no
//! sch_netem). The clients' namespace reaches every site without delay, so the times it
//! records are the cluster's, not the client's distance.
//!
//! Timers follow the rule of docs/multi-datacenter.md: `raft.election_timeout_min_ms` at
//! least 10 round trips (400 ms here; the shipped 500 ms fits up to a 50 ms round trip),
//! `election_timeout_max_ms` twice that, the heartbeat under a fifth of the minimum and above
//! 2 round trips (shipped 100 ms), and the lease (ttl 4, loop_wait 2, retry_timeout 1) at
//! its shipped values, since retry_timeout is 25 round trips. So these tests run the shipped
//! timing, as every other cluster test does, except pg2's election timeout in the SIGKILL
//! test, set under 5 round trips on purpose to show the daemon's warning.

use crate::harness::{Cluster, Options, Writer};
use pgwarden_testkit::{require_netns, require_pg, wait_for, NetLab};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One-way delay between two sites.
const ONE_WAY: Duration = Duration::from_millis(20);

/// Builds the three sites (namespaces named after `tag`) and runs `body` in the clients'
/// namespace. The network goes after the cluster, also when the test fails.
fn in_sites<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Arc<NetLab>) -> Fut + Send,
    Fut: std::future::Future<Output = ()>,
{
    let lab =
        Arc::new(NetLab::with_site_delay(&format!("pgw-{tag}"), 3, ONE_WAY).expect("build the three sites"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || body(for_body));
}

/// GET /cluster from node `i`: the names whose role is `role`.
async fn members_with_role(c: &Cluster, i: usize, role: &str) -> Option<BTreeSet<String>> {
    let body: Value = c
        .http
        .get(format!("{}/cluster", c.rest_url(i)))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        body.get("members")?
            .as_array()?
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some(role))
            .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect(),
    )
}

/// The ids of `writes` on node `i`.
async fn rows_on(c: &Cluster, i: usize) -> BTreeSet<i64> {
    let client = c.connect(i).await.expect("connect to read the rows");
    let rows = client
        .query("SELECT id FROM writes", &[])
        .await
        .expect("read the rows");
    rows.iter().map(|r| r.get::<_, i64>(0)).collect()
}

/// Waits for a primary other than `old` (at most `limit`).
async fn wait_new_primary(c: &Cluster, old: usize, limit: Duration) -> usize {
    wait_for(limit, "a primary in another site", || async {
        c.primary().await.filter(|p| *p != old)
    })
    .await
}

/// The primary's site is lost at once (SIGKILL of its daemon and PostgreSQL) while a client
/// writes through `GET /primary`, in synchronous_mode (each commit waits for a standby in
/// another site): a member of another site promotes, the RTO (last acknowledgement by the
/// old primary → first by the new one) is printed, and no acknowledged write is lost. The
/// daemon's round-trip check measured about 40 ms to its partners (metric) and warned on
/// the node whose election timeout is under 5 round trips.
#[test]
fn stretched_three_sites_sigkill_failover() {
    require_pg!();
    require_netns!();
    in_sites("t37-kill", |lab| async move {
        let mut c = Cluster::new(Options {
            netns: Some(lab),
            dcs_extra: "    synchronous_mode: true\n".into(),
            raft_extra: vec![
                String::new(),
                String::new(),
                "  election_timeout_min_ms: 150\n  election_timeout_max_ms: 300\n".into(),
            ],
            ..Options::default()
        });
        c.start_all();
        let p = c.wait_healthy(Duration::from_secs(120)).await;
        let sync = wait_for(Duration::from_secs(60), "a synchronous standby", || async {
            let s = members_with_role(&c, p, "sync_standby").await?;
            (!s.is_empty()).then_some(s)
        })
        .await;
        eprintln!("pg{p} primary, synchronous standby {sync:?}, {ONE_WAY:?} one way between sites");
        let w = Writer::start_via_rest(&c).await;
        w.wait_more(100, Duration::from_secs(60)).await;
        let kill = Instant::now();
        c.kill9(p);
        let q = wait_new_primary(&c, p, Duration::from_secs(60)).await;
        w.wait_more(50, Duration::from_secs(60)).await;
        let last_old = w
            .ack_times
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, n)| *at <= kill && *n == p)
            .map(|(at, _)| *at)
            .next_back()
            .expect("the old primary acknowledged writes");
        let (first_new, _) = w
            .first_ack_after(kill, Some(p))
            .expect("the new primary acknowledged writes");
        let rto = first_new - last_old;
        let acked = w.stop().await;
        eprintln!(
            "STRETCHED RTO: {:.2} s (last ack on pg{p} → first ack on pg{q}; {ONE_WAY:?} one way, synchronous_mode), {} writes acknowledged",
            rto.as_secs_f64(),
            acked.len()
        );
        let present = rows_on(&c, q).await;
        let missing: Vec<&i64> = acked.difference(&present).take(10).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged writes missing on the new primary pg{q}, e.g. {missing:?}",
            acked.difference(&present).count()
        );
        assert!(rto < Duration::from_secs(30), "RTO {rto:?}");

        // The round-trip check: measured on a survivor, warned about on pg2 only (150 ms <
        // 5 × 40 ms), with the figures in the message.
        let rtt = c
            .metric(q, "pgwarden_raft_peer_rtt_seconds")
            .await
            .expect("pgwarden_raft_peer_rtt_seconds in /metrics");
        eprintln!(
            "pg{q} measured a round trip of {:.1} ms to a partner",
            rtt * 1000.0
        );
        assert!((0.035..0.5).contains(&rtt), "measured round trip {rtt} s");
        let warning = c
            .log(2)
            .lines()
            .find(|l| l.contains("raft.election_timeout_min_ms (150 ms) is under 5 round trips"))
            .map(str::to_owned)
            .expect("pg2 warned that its election timeout is too short for the round trip");
        eprintln!("pg2's warning: {warning}");
        assert!(
            warning.contains("set raft.election_timeout_min_ms to"),
            "no suggestion in {warning}"
        );
        for i in [0, 1] {
            assert!(
                !c.log(i).contains("is under 5 round trips"),
                "pg{i} (500 ms) warned about its election timeout"
            );
        }
    });
}

/// Writes node `site`'s own PostgreSQL from inside its site (its namespace: a cut of the
/// site's link leaves this client connected), until `stop`; records when each commit was
/// acknowledged. Ids start after `first_id`.
fn write_inside_site(
    lab: Arc<NetLab>,
    site: usize,
    conn: String,
    first_id: i64,
    stop: tokio_util::sync::CancellationToken,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Vec<Instant>>>) {
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a = acks.clone();
    let h = std::thread::spawn(move || {
        let ns = lab.node_ns(site);
        lab.block_on_in(&ns, || async move {
            let mut id = first_id;
            let mut client = None;
            // Bounded by the stop token and 100k inserts.
            while !stop.is_cancelled() && id < first_id + 100_000 {
                if client.is_none() {
                    match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                        Ok((cl, conn)) => {
                            tokio::spawn(async move {
                                let _ = conn.await;
                            });
                            client = Some(cl);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let Some(cl) = &client else { continue };
                id += 1;
                let r = tokio::time::timeout(
                    Duration::from_secs(2),
                    cl.execute("INSERT INTO writes (id) VALUES ($1)", &[&id]),
                )
                .await;
                match r {
                    Ok(Ok(_)) => a.lock().unwrap().push(Instant::now()),
                    _ => client = None,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    });
    (h, acks)
}

/// The primary's site is cut off (every frame its link sends is dropped: to the other
/// sites and to the clients) while a client inside that site keeps writing to it and a
/// client outside writes through `GET /primary`. The other two sites elect a primary and
/// serve; the cut-off primary's last acknowledged commit comes before the first commit the
/// new primary acknowledges (margin printed). After the heal, the old primary follows the
/// new one on its timeline (rewound when it diverged).
#[test]
fn stretched_one_site_cut_off() {
    require_pg!();
    require_netns!();
    in_sites("t37-cut", |lab| async move {
        let mut c = Cluster::new(Options {
            netns: Some(lab.clone()),
            ..Options::default()
        });
        c.start_all();
        let p = c.wait_healthy(Duration::from_secs(120)).await;
        let ttl = c.ttl(p).await;
        let outside = Writer::start_via_rest(&c).await;
        outside.wait_more(50, Duration::from_secs(60)).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let (inside_thread, inside) =
            write_inside_site(lab.clone(), p, c.conn_str(p), 1_000_000, stop.clone());
        wait_for(Duration::from_secs(30), "the in-site client to write", || async {
            (inside.lock().unwrap().len() >= 20).then_some(())
        })
        .await;
        eprintln!("pg{p} primary, ttl {ttl:?}: cutting its site off");
        let cut = Instant::now();
        lab.isolate_from_all(p).expect("cut the primary's site off");
        let q = wait_new_primary(&c, p, Duration::from_secs(60)).await;
        let promoted_seen = Instant::now();
        outside.wait_more(20, Duration::from_secs(60)).await;
        let (first_new, _) = outside
            .first_ack_after(cut, Some(p))
            .expect("the new primary acknowledged writes");
        // The in-site client has had a lease's time to see any late commit.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last_inside = *inside.lock().unwrap().last().expect("in-site acks");
        let inside_after_cut = inside.lock().unwrap().iter().filter(|t| **t > cut).count();
        let secs = |a: Instant| a.duration_since(cut).as_secs_f64();
        eprintln!(
            "STRETCHED CUT: cut-off pg{p} last commit at +{:.2} s ({inside_after_cut} commits after the cut); \
             pg{q} first commit at +{:.2} s (seen primary at +{:.2} s); margin {:.2} s",
            secs(last_inside),
            secs(first_new),
            secs(promoted_seen),
            first_new.saturating_duration_since(last_inside).as_secs_f64()
        );
        assert!(
            last_inside < first_new,
            "the cut-off primary acknowledged a commit at +{:.2} s, after pg{q}'s first at +{:.2} s",
            secs(last_inside),
            secs(first_new)
        );
        // Stop the in-site client before the heal: its rows after the cut are the ones a
        // cut-off asynchronous primary acknowledges and the cluster loses.
        stop.cancel();
        let _ = inside_thread.join();

        lab.heal().expect("heal the site");
        let healthy = c.wait_healthy(Duration::from_secs(120)).await;
        assert_eq!(healthy, q, "the primary moved after the heal");
        let old = c.patroni(p).await.expect("the old primary's /patroni");
        eprintln!(
            "after the heal pg{p} is {} on timeline {}; rewound: {}",
            old["role"],
            old["timeline"],
            c.log(p).contains("pg_rewind")
        );
        let acked = outside.stop().await;
        // Asynchronous replication: a commit the old primary acknowledged in the last round
        // trip before the cut may not have reached pg{q}. Counted, not asserted (the
        // synchronous_mode test asserts none is lost).
        let present = rows_on(&c, q).await;
        eprintln!(
            "{} rows acknowledged to the outside client; {} of them not on pg{q}",
            acked.len(),
            acked.difference(&present).count()
        );
    });
}
