//! Quiet logs (issue 15): with one member down, the others log a bounded number of lines
//! a minute, and the outage itself once, with its reason. Its own test binary because it
//! installs the process-wide tracing subscriber.

#[path = "common/mod.rs"]
mod common;
// Shared with the cluster tests, which use the rest of it.
#[allow(dead_code)]
#[path = "cluster/harness.rs"]
mod harness;

use harness::Cluster;
use pgwarden_raft::quiet_log::QuietOpenraft;
use pgwarden_raft::{Dcs, RaftTiming};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Every line that would be printed, with when it was logged.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Instant, String)>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        self.0.lock().unwrap().push((Instant::now(), line.0));
    }
}

/// One follower stops; the two others go on serving reads and writes (as the HA loop
/// does) for 20 s. After the first 10 s they log at most ~10 lines a minute about it
/// (here: at most 2 in 10 s), and the peer's outage is reported once, with a reason;
/// when it is back, that is reported once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_speed_quiet_logs_with_one_member_down() {
    let capture = Capture::default();
    // The daemon's default filter, with the layer it installs.
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,openraft=warn"))
        .with(QuietOpenraft::default())
        .with(capture.clone())
        .init();

    let timing = |cfg: &mut pgwarden_raft::NodeConfig| {
        cfg.timing = RaftTiming {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
        };
    };
    let mut c = Cluster::start_with(3, timing).await;
    let l = c.wait_leader(Duration::from_secs(5), None).await;
    let down = (l + 1) % 3;
    let up = (l + 2) % 3;
    c.kill(down).await;
    let killed = Instant::now();
    let (leader, other) = (c.node(l).clone(), c.node(up).clone());
    let mut i = 0u32;
    while killed.elapsed() < Duration::from_secs(20) {
        for n in [&leader, &other] {
            n.get("/s/c/leader").await.expect("a read with one member down");
        }
        i += 1;
        if i.is_multiple_of(4) {
            let v = i.to_string();
            let w = other.put("/s/c/optime", &v, None, pgwarden_raft::Condition::Always);
            assert!(w.await.expect("a write with one member down").succeeded);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lines = capture.0.lock().unwrap().clone();

    // Back: the end of the outage is logged too, once by each member that reported it.
    c.restart(down, timing).await;
    let back = |lines: &[(Instant, String)]| {
        lines
            .iter()
            .filter(|(_, l)| l.contains("Raft peer reachable again"))
            .count()
    };
    let reporters = lines
        .iter()
        .filter(|(_, l)| l.contains("Raft peer unreachable"))
        .count();
    let cap = capture.clone();
    common::wait_for(
        Duration::from_secs(20),
        "the peer reported reachable again",
        || {
            let n = back(&cap.0.lock().unwrap());
            async move { (n >= reporters).then_some(()) }
        },
    )
    .await;
    c.shutdown().await;
    assert_eq!(back(&capture.0.lock().unwrap()), reporters);

    let after = |s: u64| {
        lines
            .iter()
            .filter(move |(t, _)| *t >= killed + Duration::from_secs(s))
    };
    eprintln!(
        "{} lines in the first 10 s after the kill, {} in the next 10 s",
        lines.iter().filter(|(t, _)| *t >= killed).count() - after(10).count(),
        after(10).count()
    );
    for (t, l) in after(0) {
        eprintln!("  +{:?} {l}", t.saturating_duration_since(killed));
    }
    let late: Vec<&String> = after(10).map(|(_, l)| l).collect();
    assert!(
        late.len() <= 2,
        "{} lines from 10 to 20 s after the kill: {late:#?}",
        late.len()
    );
    let reports = lines
        .iter()
        .filter(|(_, l)| l.contains("Raft peer unreachable") && l.contains("reason="))
        .count();
    // The leader calls the peer (replication, read confirmations); the other member only
    // if it calls the peer too. Neither reports it twice.
    assert!(
        (1..=2).contains(&reports),
        "{reports} reports of the peer unreachable"
    );
}
