//! Issue 18's stretched cluster: three sites, one data node each (and the 2 + 2 + witness
//! layout: two data sites of two members and a witness site), every site in a network
//! namespace of its own and every frame between two sites delayed by 20 ms one way (a 40 ms
//! round trip; the testkit's userspace switch delays it, because this kernel has no
//! sch_netem). The clients' namespace reaches every site without delay, so the times it
//! records are the cluster's, not the client's distance.
//!
//! Timers: these tests run the shipped timing (heartbeat 100 ms, election timeout
//! 500/1000 ms, ttl 4, loop_wait 2, retry_timeout 1), as every other cluster test does. At a
//! 40 ms round trip that is 2.5 round trips of heartbeat and 12.5 of election timeout: inside
//! the limits the daemon warns at (2 and 5, see `pgwarden::rtt`); against the rule
//! docs/multi-datacenter.md recommends for deployments ([`timers_for`], which the benchmark
//! below applies at every delay) only the heartbeat falls short (3 round trips: 150 ms
//! here). pg2's election timeout in the SIGKILL test is set under 5 round trips on purpose,
//! to show the warning.

use crate::harness::{Cluster, Options, Writer};
use pgwarden_testkit::{require_netns, require_pg, wait_for, NetLab};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One-way delay between two sites.
const ONE_WAY: Duration = Duration::from_millis(20);

/// One data node per site, three sites.
const THREE_SITES: [usize; 3] = [0, 1, 2];

/// Builds the sites (node `i` in site `sites[i]`; namespaces named after `tag`) and runs
/// `body` in the clients' namespace. The network goes after the cluster, also when the test
/// fails.
fn in_sites<F, Fut>(tag: &str, sites: &[usize], body: F)
where
    F: FnOnce(Arc<NetLab>) -> Fut + Send,
    Fut: std::future::Future<Output = ()>,
{
    let lab = Arc::new(NetLab::with_sites(&format!("pgw-{tag}"), sites, ONE_WAY).expect("build the sites"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || body(for_body));
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
    in_sites("t37-kill", &THREE_SITES, |lab| async move {
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
            let s = c.members_with_role(p, "sync_standby").await?;
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
        let last_old = last_ack_on(&w, p, kill);
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
            warning.contains("set raft.heartbeat_interval_ms to")
                && warning.contains("raft.election_timeout_min_ms to "),
            "no suggestion in {warning}"
        );
        for i in [0, 1] {
            assert!(
                !c.log(i).contains("Raft timers too short"),
                "pg{i} (shipped timers, 40 ms round trip) warned about its timers"
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
        lab.block_on_in(&ns, || {
            crate::harness::insert_loop(conn, first_id, Duration::from_secs(2), stop, a)
        })
    });
    (h, acks)
}

/// The last write node `p` acknowledged to `w` at or before `at` (the SIGKILL).
fn last_ack_on(w: &Writer, p: usize, at: Instant) -> Instant {
    w.ack_times
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, n)| *t <= at && *n == p)
        .map(|(t, _)| *t)
        .next_back()
        .expect("the old primary acknowledged writes")
}

/// A site cut under writes: a client outside writes through `GET /primary`, another inside
/// primary `p`'s site writes to it (a cut of the site leaves it connected); `cut` runs, a new
/// primary is awaited, and the cut-off primary's last acknowledged commit must come before the
/// new primary's first (times and margin printed after `label`). The in-site client is
/// stopped before returning: its rows after the cut are the ones a cut-off asynchronous
/// primary acknowledges and the cluster loses. Returns the outside writer, still writing, and
/// the new primary.
async fn cut_while_writing(
    c: &Cluster,
    lab: &Arc<NetLab>,
    p: usize,
    label: &str,
    cut: impl FnOnce(),
) -> (Writer, usize) {
    let outside = Writer::start_via_rest(c).await;
    outside.wait_more(50, Duration::from_secs(60)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (inside_thread, inside) = write_inside_site(lab.clone(), p, c.conn_str(p), 1_000_000, stop.clone());
    wait_for(Duration::from_secs(30), "the in-site client to write", || async {
        (inside.lock().unwrap().len() >= 20).then_some(())
    })
    .await;
    let at = Instant::now();
    cut();
    let q = wait_new_primary(c, p, Duration::from_secs(60)).await;
    let promoted_seen = Instant::now();
    outside.wait_more(20, Duration::from_secs(60)).await;
    let (first_new, _) = outside
        .first_ack_after(at, Some(p))
        .expect("the new primary acknowledged writes");
    // The in-site client has had a lease's time to see any late commit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_inside = *inside.lock().unwrap().last().expect("in-site acks");
    let inside_after_cut = inside.lock().unwrap().iter().filter(|t| **t > at).count();
    let secs = |a: Instant| a.duration_since(at).as_secs_f64();
    eprintln!(
        "{label}: cut-off pg{p} last commit at +{:.2} s ({inside_after_cut} commits after the cut); \
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
    stop.cancel();
    let _ = inside_thread.join();
    (outside, q)
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
    in_sites("t37-cut", &THREE_SITES, |lab| async move {
        let mut c = Cluster::new(Options {
            netns: Some(lab.clone()),
            ..Options::default()
        });
        c.start_all();
        let p = c.wait_healthy(Duration::from_secs(120)).await;
        let ttl = c.ttl(p).await;
        eprintln!("pg{p} primary, ttl {ttl:?}: cutting its site off");
        let (outside, q) = cut_while_writing(&c, &lab, p, "STRETCHED CUT", || {
            lab.isolate_from_all(p).expect("cut the primary's site off")
        })
        .await;

        lab.heal().expect("heal the site");
        let healthy = c.wait_healthy(Duration::from_secs(120)).await;
        assert_eq!(healthy, q, "the primary moved after the heal");
        let old = c.patroni(p).await.expect("the old primary's /patroni");
        eprintln!(
            "after the heal pg{p} is {} on timeline {}; rewound: {}",
            old["role"],
            old["timeline"],
            c.log(p).contains("pg_rewind done")
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

/// The other layout of docs/multi-datacenter.md: two data sites of two members each and a
/// witness in a third site (sites a, a, b, b, c; `raft.site` set, so five voters, one
/// failure of a whole data site tolerated). The primary's site is cut off from the other
/// sites and from the clients (its two members still reach each other): a member of the
/// other data site promotes, the cut-off primary's last commit comes before the new
/// primary's first, its site-mate (cut off with it, two of five voters) never promotes, and
/// after the heal both rejoin as replicas of the new primary.
#[test]
fn stretched_two_data_sites_and_a_witness_lose_a_data_site() {
    require_pg!();
    require_netns!();
    const SITES: [usize; 5] = [0, 0, 1, 1, 2];
    in_sites("t37-2s", &SITES, |lab| async move {
        let mut c = Cluster::new(Options {
            data_nodes: 4,
            witness: true,
            netns: Some(lab.clone()),
            raft_extra: SITES
                .iter()
                .map(|s| format!("  site: {}\n", ["a", "b", "c"][*s]))
                .collect(),
            ..Options::default()
        });
        c.start_all();
        let p = c.wait_healthy(Duration::from_secs(120)).await;
        let site_of = |i: usize| SITES[i];
        let mate = (0..4)
            .find(|i| *i != p && site_of(*i) == site_of(p))
            .expect("the primary's site-mate");
        let voters = c.metric(p, "pgwarden_raft_voters").await;
        eprintln!(
            "pg{p} primary in site {}, with pg{mate}; Raft voters {voters:?}",
            site_of(p)
        );
        assert_eq!(voters, Some(5.0), "five members, five voters by default");
        let (outside, q) = cut_while_writing(&c, &lab, p, "2+2+WITNESS CUT", || {
            for a in [p, mate] {
                for b in (0..SITES.len()).filter(|b| site_of(*b) != site_of(p)) {
                    lab.cut(a, b).expect("cut the site off from the others");
                }
                lab.cut_from_clients(a)
                    .expect("cut the site off from the clients");
            }
        })
        .await;
        assert_ne!(site_of(q), site_of(p), "pg{q}, in the cut-off site, promoted");
        // The site-mate saw the same cut: it holds no lease and never promoted.
        assert!(
            !c.log(mate).contains("promoted to primary"),
            "pg{mate}, cut off with the primary, promoted"
        );

        lab.heal().expect("heal the site");
        let healthy = c.wait_healthy(Duration::from_secs(120)).await;
        assert_eq!(healthy, q, "the primary moved after the heal");
        // Both received WAL the old primary wrote after the cut (the site-mate by streaming):
        // both must have been rewound to follow the new timeline.
        for i in [p, mate] {
            let s = c.patroni(i).await.expect("/patroni of a healed member");
            assert_eq!(s["role"], "replica", "pg{i} after the heal: {s}");
            let log = c.log(i);
            eprintln!(
                "pg{i} after the heal: replica on timeline {}; rewound: {}; restarted as a diverged replica: {}",
                s["timeline"],
                log.contains("pg_rewind done"),
                log.contains("cannot follow")
            );
            assert!(log.contains("pg_rewind done"), "pg{i} follows without a rewind");
        }
        let acked = outside.stop().await;
        let present = rows_on(&c, q).await;
        eprintln!(
            "{} rows acknowledged to the outside client; {} of them not on pg{q} (asynchronous replication)",
            acked.len(),
            acked.difference(&present).count()
        );
    });
}

// ---- Benchmarks (ignored; scripts/bench-multidc.sh runs them and docs/benchmarks.md has
// ---- the figures) -------------------------------------------------------------------------

/// A comma-separated list of numbers from environment variable `var`, else `default`.
fn env_list(var: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {s:?} is not a whole number"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// (median, min, max) of `v` (not empty).
fn spread(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// The timers of docs/multi-datacenter.md for a round trip of `rtt`: the Raft configuration
/// (heartbeat at least 3 round trips, rounded up to 50 ms, never under the shipped 100 ms;
/// election timeout at least 10 round trips and 5 heartbeats, rounded up to 100 ms, never
/// under the shipped 500 ms; the max twice that) and the lease's bootstrap.dcs lines
/// (loop_wait 2, retry_timeout at least 10 round trips and 1 s, ttl at least loop_wait plus
/// two election_timeout_max, so that a Raft re-election, which takes up to max + max, fits
/// between two renewals; never under the shipped 4 s).
fn timers_for(rtt: Duration) -> (String, String) {
    let ms = |d: Duration| d.as_millis() as u64;
    let heartbeat = (ms(rtt * 3).div_ceil(50) * 50).max(100);
    let min = (ms(rtt * 10).max(heartbeat * 5).div_ceil(100) * 100).max(500);
    let max = min * 2;
    let retry = ms(rtt * 10).div_ceil(1000).max(1);
    let ttl = (2 + (2 * max).div_ceil(1000)).max(4);
    (
        format!(
            "  heartbeat_interval_ms: {heartbeat}\n  election_timeout_min_ms: {min}\n  election_timeout_max_ms: {max}\n"
        ),
        format!("    ttl: {ttl}\n    loop_wait: 2\n    retry_timeout: {retry}\n"),
    )
}

/// The stretched cluster's failover RTO at several one-way delays between the sites
/// (`PGWARDEN_BENCH_DELAYS_MS`, default 1,10,50), `PGWARDEN_BENCH_ROUNDS` SIGKILLs of the
/// primary's site each (default 3), in synchronous_mode, with the timers of the rule ([`timers_for`]). The
/// killed node is started again and the next round waits for it to stream.
#[test]
#[ignore = "benchmark: scripts/bench-multidc.sh"]
fn bench_multidc_stretched_rto() {
    require_pg!();
    require_netns!();
    let delays = env_list("PGWARDEN_BENCH_DELAYS_MS", &[1, 10, 50]);
    let rounds = env_list("PGWARDEN_BENCH_ROUNDS", &[3])[0] as usize;
    let mut table = vec![];
    for ms in delays {
        let one_way = Duration::from_millis(ms);
        let lab = Arc::new(
            NetLab::with_site_delay(&format!("pgw-bmd{ms}"), 3, one_way).expect("build the three sites"),
        );
        let for_body = lab.clone();
        let rtos = lab.block_on_in_client(move || async move {
            let (timers, lease) = timers_for(one_way * 2);
            eprintln!("BENCH timers at {ms} ms one way: {}", format!("{timers}{lease}").split_whitespace().collect::<Vec<_>>().join(" "));
            let mut c = Cluster::new(Options {
                netns: Some(for_body),
                dcs_extra: format!("    synchronous_mode: true\n{lease}"),
                raft_extra: vec![timers.clone(), timers.clone(), timers],
                ..Options::default()
            });
            c.start_all();
            let mut rtos = vec![];
            for round in 0..rounds {
                let p = c.wait_healthy(Duration::from_secs(180)).await;
                wait_for(Duration::from_secs(60), "a synchronous standby", || async {
                    let s = c.members_with_role(p, "sync_standby").await?;
                    (!s.is_empty()).then_some(())
                })
                .await;
                let w = Writer::start_via_rest(&c).await;
                w.wait_more(50, Duration::from_secs(60)).await;
                let kill = Instant::now();
                c.kill9(p);
                let q = wait_new_primary(&c, p, Duration::from_secs(90)).await;
                w.wait_more(20, Duration::from_secs(60)).await;
                let last_old = last_ack_on(&w, p, kill);
                let (first_new, _) = w.first_ack_after(kill, Some(p)).expect("a write on the new primary");
                let acked = w.stop().await;
                let lost = acked.difference(&rows_on(&c, q).await).count();
                let rto = first_new - last_old;
                eprintln!(
                    "BENCH round: {ms} ms one way, round {round}: pg{p} killed, pg{q} first ack, RTO {:.2} s, kill → first ack {:.2} s, {lost} acknowledged writes lost",
                    rto.as_secs_f64(),
                    (first_new - kill).as_secs_f64()
                );
                assert_eq!(lost, 0, "acknowledged writes lost");
                rtos.push(rto);
                c.start(p);
            }
            rtos
        });
        let (med, min, max) = spread(&rtos);
        table.push(format!(
            "| {ms} ms | {} ms | {} | {:.2} s | {:.2} s | {:.2} s |",
            ms * 2,
            rounds,
            med.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64()
        ));
    }
    eprintln!("BENCH | one way | round trip | rounds | RTO median | min | max |");
    eprintln!("BENCH |---|---|---|---|---|---|");
    for row in table {
        eprintln!("BENCH {row}");
    }
}

/// Replication lag of a standby cluster (2 data nodes + witness) following a primary
/// cluster (2 data nodes + witness) through a permanent slot, on loopback, while pgbench
/// (`PGWARDEN_BENCH_PGBENCH_SECONDS`, default 30; 4 clients, scale 10) writes to the
/// primary: sampled every 500 ms on the primary for the standby leader's walsender (bytes
/// and PostgreSQL's replay_lag), and the time the cascading member takes to replay the
/// primary's last position once pgbench stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-multidc.sh"]
async fn bench_multidc_standby_lag() {
    require_pg!();
    const SLOT: &str = "bench_dc2";
    let seconds = env_list("PGWARDEN_BENCH_PGBENCH_SECONDS", &[30])[0];
    let mut a = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        dcs_extra: format!("    slots:\n      {SLOT}:\n        type: physical\n"),
        ..Options::default()
    });
    a.start_all();
    let pa = a.wait_healthy(Duration::from_secs(90)).await;
    let remote_port = a.nodes[pa].spec.pg;
    let mut b = Cluster::new(Options::standby_of(remote_port, SLOT));
    b.start_all();
    let lag_sql = format!(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::int8, \
         (COALESCE(extract(epoch FROM r.replay_lag), 0) * 1000)::int8 \
         FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid \
         WHERE s.slot_name = '{SLOT}'"
    );
    let sample = |a: &Cluster| {
        let a_conn = a.conn_str(pa);
        let sql = lag_sql.clone();
        async move {
            let (cl, conn) = tokio_postgres::connect(&a_conn, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let row = cl.query_opt(&sql, &[]).await.ok()??;
            Some((row.get::<_, i64>(0), row.get::<_, i64>(1)))
        }
    };
    wait_for(
        Duration::from_secs(120),
        "the standby leader streaming through the slot",
        || sample(&a),
    )
    .await;
    wait_for(
        Duration::from_secs(120),
        "both standby members streaming",
        || async {
            for i in 0..2 {
                let st = b.patroni(i).await?;
                if st.get("replication_state")?.as_str()? != "streaming" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let pgbench = "/usr/lib/postgresql/15/bin/pgbench";
    let host = "127.0.0.1".to_string();
    let port = remote_port.to_string();
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(pgbench);
        cmd.args(["-h", &host, "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .env("PGPASSWORD", crate::harness::SUPERUSER_PASSWORD)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let init = tokio::time::timeout(
        Duration::from_secs(300),
        run(vec!["-i".into(), "-s".into(), "10".into(), "-q".into()]).output(),
    )
    .await
    .expect("pgbench -i within 5 minutes")
    .expect("run pgbench -i");
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let bench = run(vec![
        "-c".into(),
        "4".into(),
        "-j".into(),
        "2".into(),
        "-T".into(),
        seconds.to_string(),
    ])
    .spawn()
    .expect("start pgbench");
    let started = Instant::now();
    let mut bytes = vec![];
    let mut millis = vec![];
    // Bounded by pgbench's run time.
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Some((b, ms)) = sample(&a).await {
            bytes.push(b);
            millis.push(ms);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(60), bench.wait_with_output())
        .await
        .expect("pgbench to finish")
        .expect("pgbench output");
    let tps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps: not reported")
        .to_string();
    // Catch-up: the primary's position at the end, replayed by every standby member.
    let end = {
        let cl = a.connect(pa).await.expect("connect to the primary");
        let row = cl
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("the primary's position");
        row.get::<_, String>(0)
    };
    let stopped = Instant::now();
    wait_for(
        Duration::from_secs(120),
        "both standby members to replay the primary's last position",
        || async {
            for i in 0..2 {
                let cl = b.connect(i).await?;
                let row = cl
                    .query_one(
                        &format!("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{end}') >= 0"),
                        &[],
                    )
                    .await
                    .ok()?;
                if !row.get::<_, bool>(0) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let catch_up = stopped.elapsed();
    bytes.sort();
    millis.sort();
    let pct = |v: &[i64], p: usize| v.get((v.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0);
    eprintln!("BENCH pgbench -c 4 -j 2 -T {seconds} (scale 10) on the primary cluster: {tps}");
    eprintln!("BENCH | standby leader lag | median | p95 | max | samples |");
    eprintln!("BENCH |---|---|---|---|---|");
    eprintln!(
        "BENCH | bytes (primary's position − replay_lsn) | {} | {} | {} | {} |",
        pct(&bytes, 50),
        pct(&bytes, 95),
        pct(&bytes, 100),
        bytes.len()
    );
    eprintln!(
        "BENCH | replay_lag (ms) | {} | {} | {} | {} |",
        pct(&millis, 50),
        pct(&millis, 95),
        pct(&millis, 100),
        millis.len()
    );
    eprintln!(
        "BENCH both standby members replayed the primary's last position {:.2} s after pgbench ended",
        catch_up.as_secs_f64()
    );
}
