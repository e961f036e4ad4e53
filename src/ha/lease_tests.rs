//! `LeaderLease` under paused time with the in-memory DCS, a fake PostgreSQL and a stand-in
//! watchdog: when the fence fires, what moves it, the release order, and long actions.

use super::*;
use crate::config::WatchdogMode;
use crate::dcs::MemDcs;
use crate::ha::watchdog::fake::FakeDriver;
use crate::postgres::fake::{Call, FakePg};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::sleep;

const PREFIX: &str = "/service/t/";
const TTL: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_secs(2);

struct Fixture {
    dcs: Arc<MemDcs>,
    pg: Arc<FakePg>,
    lease: LeaderLease<MemDcs>,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn fixture() -> Fixture {
    let dcs = Arc::new(MemDcs::new());
    let pg = Arc::new(FakePg::new());
    pg.with_state(|s| s.postmaster = PostmasterState::Running { pid: i32::MAX });
    let lease = LeaderLease::new(
        dcs.clone(),
        PREFIX,
        MemberName::new("a").unwrap(),
        LeaseTiming {
            ttl: TTL,
            loop_wait: Duration::from_secs(2),
            safety_margin: MARGIN,
            vouch: Duration::from_secs(4),
        },
    );
    let shutdown = CancellationToken::new();
    lease.spawn_fence(pg.clone(), shutdown.clone());
    Fixture {
        dcs,
        pg,
        lease,
        shutdown,
    }
}

fn fenced(pg: &FakePg) -> bool {
    pg.calls().contains(&Call::Stop(StopMode::Immediate))
}

async fn leader_value(dcs: &MemDcs) -> Option<String> {
    dcs.get(&format!("{PREFIX}leader"))
        .await
        .unwrap()
        .map(|kv| kv.value)
}

/// The fence stops PostgreSQL at `sent + ttl − margin` of the acquiring write, not a moment
/// before.
#[tokio::test(start_paused = true)]
async fn the_fence_fires_at_sent_plus_ttl_minus_margin_and_not_before() {
    let f = fixture();
    let sent = Instant::now();
    assert!(f.lease.acquire().await.unwrap());
    assert_eq!(f.lease.deadline(), Some(sent + TTL - MARGIN));
    sleep(TTL - MARGIN - Duration::from_millis(1)).await;
    assert!(!fenced(&f.pg), "fenced before the deadline");
    sleep(Duration::from_millis(2)).await;
    assert!(fenced(&f.pg), "not fenced at the deadline");
}

/// A refresh moves the deadline to its own send time + ttl − margin.
#[tokio::test(start_paused = true)]
async fn a_refresh_moves_the_fence() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    sleep(Duration::from_secs(5)).await;
    let sent = Instant::now();
    assert!(f.lease.refresh().await.unwrap());
    assert_eq!(f.lease.deadline(), Some(sent + TTL - MARGIN));
    sleep(TTL - MARGIN - Duration::from_millis(1)).await;
    assert!(!fenced(&f.pg), "the old deadline still fired");
    sleep(Duration::from_millis(2)).await;
    assert!(fenced(&f.pg));
}

/// A refresh that finds another member's name forgets the deadline at once (the caller stops
/// PostgreSQL); the fence then does not fire on a member that is stopping anyway.
#[tokio::test(start_paused = true)]
async fn a_lost_refresh_forgets_the_deadline() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    f.dcs
        .put(&format!("{PREFIX}leader"), "b", None, Condition::Always)
        .await
        .unwrap();
    assert!(!f.lease.refresh().await.unwrap());
    assert_eq!(f.lease.deadline(), None);
    assert_eq!(leader_value(&f.dcs).await.as_deref(), Some("b"));
}

/// Release forgets the deadline and disarms the watchdog before it deletes the key: with the
/// DCS down the delete fails, yet the watchdog is already closed and the fence disarmed.
#[tokio::test(start_paused = true)]
async fn a_release_disarms_before_it_deletes() {
    let f = fixture();
    let driver = FakeDriver::default();
    let wd = Arc::new(Watchdog::new(
        WatchdogMode::Required,
        "/dev/fake-watchdog".into(),
        5,
        Box::new(driver.clone()),
    ));
    f.lease.set_watchdog(wd.clone());
    assert!(f.lease.acquire().await.unwrap());
    wd.activate(f.lease.watchdog_timing()).unwrap();

    f.dcs.set_available(false);
    assert!(f.lease.release().await.is_err());
    assert_eq!(f.lease.deadline(), None);
    assert_eq!(driver.ops().last().map(String::as_str), Some("magic_close"));
    assert!(!wd.is_running());
    f.dcs.set_available(true);
    assert_eq!(
        leader_value(&f.dcs).await.as_deref(),
        Some("a"),
        "the failed delete left the key"
    );

    f.lease.release().await.unwrap();
    assert_eq!(leader_value(&f.dcs).await, None);
    sleep(TTL).await;
    assert!(!fenced(&f.pg), "a released lease must not fence");
}

/// A long action (longer than the lease) runs to its end while refreshes succeed, and the
/// fence never fires meanwhile.
#[tokio::test(start_paused = true)]
async fn a_long_action_keeps_the_lease_alive() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    let out = f
        .lease
        .keep_alive_while(Duration::from_secs(2), async {
            sleep(TTL * 3).await;
            7
        })
        .await;
    assert_eq!(out.unwrap(), 7);
    assert!(!fenced(&f.pg));
    assert!(f.lease.is_valid());
}

/// The member key, written with the ttl by the HA loop, does not expire during a long action:
/// it is rewritten with the leader key (Patroni's etcd3 DCS keeps it on the leader's lease).
#[tokio::test(start_paused = true)]
async fn a_long_action_keeps_the_member_key_alive() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    let key = format!("{PREFIX}members/a");
    f.dcs
        .put(&key, "{\"role\":\"primary\"}", Some(TTL), Condition::Always)
        .await
        .unwrap();
    f.lease
        .remember_member_record(key.clone(), "{\"role\":\"primary\"}".into());
    f.lease
        .keep_alive_while(Duration::from_secs(2), sleep(TTL * 3))
        .await
        .unwrap();
    let kv = f.dcs.get(&key).await.unwrap();
    assert_eq!(kv.map(|k| k.value).as_deref(), Some("{\"role\":\"primary\"}"));
}

/// A refresh that finds the key taken stops the action at once.
#[tokio::test(start_paused = true)]
async fn a_lost_refresh_during_a_long_action_stops_it() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    f.dcs
        .put(&format!("{PREFIX}leader"), "b", None, Condition::Always)
        .await
        .unwrap();
    let finished = AtomicBool::new(false);
    let started = Instant::now();
    let out = f
        .lease
        .keep_alive_while(Duration::from_secs(2), async {
            sleep(TTL * 3).await;
            finished.store(true, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(out, Err(LeaseLost::Taken)), "{out:?}");
    assert!(!finished.load(Ordering::SeqCst));
    assert!(started.elapsed() <= Duration::from_secs(2));
}

/// Refreshes that fail (DCS down) let the action run only until the deadline; then it is
/// stopped, and the fence stops PostgreSQL at that same moment.
#[tokio::test(start_paused = true)]
async fn failing_refreshes_stop_a_long_action_at_the_deadline() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    let deadline = f.lease.deadline().unwrap();
    f.dcs.set_available(false);
    let finished = AtomicBool::new(false);
    let out = f
        .lease
        .keep_alive_while(Duration::from_secs(2), async {
            sleep(TTL * 3).await;
            finished.store(true, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(out, Err(LeaseLost::Expired)), "{out:?}");
    assert_eq!(Instant::now(), deadline);
    assert!(!finished.load(Ordering::SeqCst));
    tokio::task::yield_now().await;
    assert!(fenced(&f.pg));
}

/// F7: with the runtime blocked (a current-thread runtime whose only thread sleeps inside a
/// task, as a worker stuck in fsync or in a log write would), the fence thread still sends
/// SIGQUIT to the postmaster (a stand-in process) at the deadline, within 200 ms; the tokio
/// fence could not run at all meanwhile.
#[test]
fn safety_f7_the_fence_thread_stops_the_postmaster_while_the_runtime_is_blocked() {
    use crate::ha::deadman::tests::StandIn;
    let mut pm = StandIn::start();
    let target = pm.proc();
    let pid = target.pid;
    // Watches from its own thread when the stand-in dies (a zombie counts as dead).
    let died = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while target.is_alive() && t0.elapsed() < Duration::from_secs(6) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::time::Instant::now()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pg, window) = rt.block_on(async {
        let pg = Arc::new(FakePg::new());
        pg.with_state(|s| s.postmaster = PostmasterState::Running { pid });
        let lease = LeaderLease::new(
            Arc::new(MemDcs::new()),
            PREFIX,
            MemberName::new("a").unwrap(),
            LeaseTiming {
                ttl: Duration::from_secs(2),
                loop_wait: Duration::from_secs(1),
                safety_margin: Duration::from_secs(1),
                vouch: Duration::from_secs(4),
            },
        );
        let shutdown = CancellationToken::new();
        lease.spawn_fence(pg.clone(), shutdown.clone());
        let before = std::time::Instant::now();
        assert!(lease.acquire().await.unwrap());
        let after = std::time::Instant::now();
        // Blocks the runtime's one thread well past the deadline (sent + 2 s − 1 s).
        std::thread::sleep(Duration::from_secs(2));
        shutdown.cancel();
        (
            pg,
            (before + Duration::from_secs(1), after + Duration::from_secs(1)),
        )
    });
    let (_, sig) = pm
        .exit_within(Duration::from_secs(3))
        .expect("the stand-in postmaster was not stopped");
    let at = died.join().unwrap();
    assert_eq!(sig, Some(nix::sys::signal::Signal::SIGQUIT as i32));
    let (earliest, latest) = window;
    assert!(at >= earliest, "fired {:?} before the deadline", earliest - at);
    assert!(
        at <= latest + Duration::from_millis(200),
        "fired {:?} after the deadline",
        at - latest
    );
    assert!(
        !fenced(&pg),
        "the tokio fence ran although the runtime was blocked"
    );
}

/// The keep-alive refreshes on its own cadence (ttl/8) while the loop's last refresh vouches
/// for the primary, and stops when the vouching runs out: a loop that hangs still loses the key
/// and the fence fires `vouch + ttl − margin` after the loop's last refresh at the latest.
#[tokio::test(start_paused = true)]
async fn failover_speed_keepalive_refreshes_only_while_the_loop_vouches() {
    let f = fixture();
    f.lease.spawn_keepalive(f.shutdown.clone());
    let vouched_at = Instant::now();
    assert!(f.lease.acquire().await.unwrap());
    // Well past the acquiring write's own deadline, still inside the vouch (4 s): refreshed.
    sleep(Duration::from_secs(3)).await;
    let d = f.lease.deadline().expect("held");
    assert!(
        d >= vouched_at + Duration::from_secs(3) + TTL - MARGIN - TTL / 8,
        "the keep-alive did not refresh: deadline {:?} after the acquire",
        d - vouched_at
    );
    // The loop never vouches again: the last keep-alive refresh is before vouched_at + 4 s,
    // and the fence fires by then + ttl − margin.
    sleep(Duration::from_secs(4) + TTL - MARGIN + Duration::from_millis(10)).await;
    assert!(fenced(&f.pg), "a lease nobody vouches for was kept alive");
}

/// A keep-alive refresh that finds the key taken leaves the deadline alone: the fence must
/// still fire on time (the loop, woken by the watch, demotes), rather than being disarmed while
/// PostgreSQL still runs as a primary.
#[tokio::test(start_paused = true)]
async fn failover_speed_keepalive_never_disarms_the_fence() {
    let f = fixture();
    f.lease.spawn_keepalive(f.shutdown.clone());
    let sent = Instant::now();
    assert!(f.lease.acquire().await.unwrap());
    f.dcs
        .put(&format!("{PREFIX}leader"), "b", None, Condition::Always)
        .await
        .unwrap();
    sleep(TTL / 2).await;
    assert_eq!(f.lease.deadline(), Some(sent + TTL - MARGIN));
    sleep(TTL / 2 - MARGIN + Duration::from_millis(1)).await;
    assert!(fenced(&f.pg), "the fence did not fire after the key was taken");
}

/// A write answered after a forget does not bring the lease back: the keep-alive's refresh
/// runs beside the loop, which may have released the key meanwhile.
#[tokio::test(start_paused = true)]
async fn failover_speed_a_write_answered_after_a_forget_does_not_extend_the_lease() {
    let f = fixture();
    assert!(f.lease.acquire().await.unwrap());
    f.dcs.set_write_delay(Duration::from_millis(500));
    let lease = f.lease.clone();
    let refresh = tokio::spawn(async move { lease.refresh().await });
    sleep(Duration::from_millis(100)).await;
    f.lease.forget();
    assert!(
        !refresh.await.unwrap().unwrap(),
        "a refresh across a forget counted as held"
    );
    assert_eq!(f.lease.deadline(), None);
}

/// The VIP's hook runs in a release before the key is deleted (so nobody can take the key
/// while this member still has the address), and in a forget of a lost key.
#[tokio::test]
async fn vip_the_forget_hook_runs_before_the_release_deletes_the_key() {
    let f = fixture();
    type Seen = Vec<(&'static str, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (s, dcs) = (seen.clone(), f.dcs.clone());
    f.lease.on_fence(Arc::new(move |why| {
        // The key as the DCS holds it at the moment of the hook.
        let key = futures::executor::block_on(dcs.get(&format!("{PREFIX}leader")))
            .ok()
            .flatten()
            .map(|v| v.value);
        s.lock().unwrap().push((why, key));
    }));
    assert!(f.lease.acquire().await.unwrap());
    f.lease.release().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [("the leader lease was released or lost", Some("a".to_string()))]
    );
    assert_eq!(leader_value(&f.dcs).await, None);
}
