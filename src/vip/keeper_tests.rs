use super::*;
use crate::ha::status::DaemonInfo;
use crate::vip::{VipDriver, VipError, VipSpec};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// A driver that keeps the address in memory and records what was done.
#[derive(Default)]
struct Fake {
    present: AtomicBool,
    deny: AtomicBool,
    announced: AtomicU32,
    log: Mutex<Vec<&'static str>>,
}

impl VipDriver for Fake {
    fn holds(&self, _: &VipSpec) -> Result<bool, VipError> {
        Ok(self.present.load(Ordering::SeqCst))
    }
    fn add(&self, _: &VipSpec) -> Result<(), VipError> {
        if self.deny.load(Ordering::SeqCst) {
            return Err(VipError::Permission {
                what: "add the address",
                source: std::io::Error::from_raw_os_error(nix::libc::EPERM),
            });
        }
        self.present.store(true, Ordering::SeqCst);
        self.log.lock().unwrap().push("add");
        Ok(())
    }
    fn remove(&self, _: &VipSpec) -> Result<bool, VipError> {
        let was = self.present.swap(false, Ordering::SeqCst);
        if was {
            self.log.lock().unwrap().push("remove");
        }
        Ok(was)
    }
    fn announce(&self, _: &VipSpec) -> Result<(), VipError> {
        self.announced.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn in_subnet(&self, _: &VipSpec) -> Result<bool, VipError> {
        Ok(true)
    }
}

fn spec() -> VipSpec {
    VipSpec {
        on_standby_leader: false,
        addr: "10.0.0.10".parse::<IpAddr>().unwrap(),
        prefix: 24,
        interface: "eth0".into(),
        label: None,
        arp_count: 3,
        arp_interval: Duration::from_millis(10),
    }
}

fn status() -> NodeStatus {
    NodeStatus::initial(
        DaemonInfo {
            version: "t".into(),
            scope: "s".into(),
            name: "n".into(),
        },
        false,
    )
}

/// A writable primary holding the key for another `secs`.
fn primary(secs: u64) -> NodeStatus {
    let mut s = status();
    s.holds_lock = true;
    s.lease_until = Some(Instant::now() + Duration::from_secs(secs));
    s.role = Role::Primary;
    s.state = MemberState::Running;
    s
}

#[test]
fn vip_decide_holds_only_for_a_writable_leader_with_a_live_lease() {
    let now = Instant::now();
    assert_eq!(decide(&primary(10), now), Want::Hold);
    assert_eq!(
        decide(&status(), now),
        Want::Release("this member does not hold the leader key")
    );
    let mut s = primary(10);
    s.holds_lock = false;
    assert!(matches!(decide(&s, now), Want::Release(_)));
    let mut s = primary(10);
    s.lease_until = Some(now - Duration::from_millis(1));
    assert_eq!(decide(&s, now), Want::Release("the leader lease ran out"));
    s.lease_until = None;
    assert_eq!(decide(&s, now), Want::Release("the leader lease ran out"));
    // The key before promotion: PostgreSQL still a replica, or starting.
    let mut s = primary(10);
    s.role = Role::Replica;
    assert_eq!(
        decide(&s, now),
        Want::Release("PostgreSQL is not a writable primary")
    );
    let mut s = primary(10);
    s.state = MemberState::Stopped;
    assert_eq!(decide(&s, now), Want::Release("PostgreSQL is not running"));
    let mut s = primary(10);
    s.state = MemberState::Starting;
    assert!(matches!(decide(&s, now), Want::Release(_)));
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Setup {
    fake: Arc<Fake>,
    vip: Vip,
    tx: watch::Sender<NodeStatus>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn setup(fake: Fake, first: NodeStatus) -> Setup {
    let fake = Arc::new(fake);
    let vip = Vip::new(fake.clone());
    vip.configure(Some(spec()));
    let (tx, rx) = watch::channel(first);
    let stop = CancellationToken::new();
    let task = tokio::spawn(keep(vip.clone(), rx, stop.clone()));
    Setup {
        fake,
        vip,
        tx,
        stop,
        task,
    }
}

#[tokio::test]
async fn vip_keeper_follows_the_lease_promotion_and_demotion() {
    // Key held, PostgreSQL not promoted yet: no address.
    let mut s = primary(10);
    s.role = Role::Replica;
    let t = setup(Fake::default(), s);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !t.fake.present.load(Ordering::SeqCst),
        "added before PostgreSQL accepts writes"
    );
    // Promoted: added and announced arp_count times.
    t.tx.send_replace(primary(10));
    until("the add", || t.vip.held()).await;
    until("three announcements", || {
        t.fake.announced.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(
        t.vip.report().unwrap(),
        crate::vip::VipReport {
            address: "10.0.0.10/24".into(),
            interface: "eth0".into(),
            held: true,
            error: None
        }
    );
    // Demotion: the role changes while the key is still held.
    let mut s = primary(10);
    s.role = Role::Replica;
    t.tx.send_replace(s);
    until("the removal", || !t.fake.present.load(Ordering::SeqCst)).await;
    // Promoted again, then the lease is released (the status says so at once).
    t.tx.send_replace(primary(10));
    until("the add", || t.vip.held()).await;
    t.tx.send_modify(|s| {
        s.holds_lock = false;
        s.lease_until = None;
    });
    until("the removal", || !t.fake.present.load(Ordering::SeqCst)).await;
    assert_eq!(*t.fake.log.lock().unwrap(), ["add", "remove", "add", "remove"]);
    t.stop.cancel();
    t.task.await.unwrap();
}

#[tokio::test]
async fn vip_keeper_removes_when_the_deadline_passes_without_a_status_change() {
    let mut s = primary(10);
    s.lease_until = Some(Instant::now() + Duration::from_millis(400));
    let t = setup(Fake::default(), s);
    until("the add", || t.vip.held()).await;
    let at = std::time::Instant::now();
    until("the removal", || !t.fake.present.load(Ordering::SeqCst)).await;
    // At the deadline, within a tick or two.
    assert!(
        at.elapsed() < Duration::from_millis(400) + 3 * TICK,
        "{:?}",
        at.elapsed()
    );
    t.stop.cancel();
    t.task.await.unwrap();
}

#[tokio::test]
async fn vip_keeper_removes_a_leftover_address_at_start_and_its_own_at_shutdown() {
    let fake = Fake::default();
    fake.present.store(true, Ordering::SeqCst);
    let t = setup(fake, status());
    until("the leftover's removal", || {
        !t.fake.present.load(Ordering::SeqCst)
    })
    .await;
    t.tx.send_replace(primary(10));
    until("the add", || t.vip.held()).await;
    t.stop.cancel();
    t.task.await.unwrap();
    assert!(
        !t.fake.present.load(Ordering::SeqCst),
        "shutdown leaves the address"
    );
    assert!(!t.vip.held());
}

#[tokio::test]
async fn vip_keeper_without_the_capability_reports_the_error_and_goes_on() {
    let fake = Fake::default();
    fake.deny.store(true, Ordering::SeqCst);
    let t = setup(fake, primary(10));
    until("the error", || t.vip.report().unwrap().error.is_some()).await;
    let r = t.vip.report().unwrap();
    assert!(!r.held);
    assert!(r.error.unwrap().contains("CAP_NET_ADMIN"));
    // A removal by a fence on a member that never got the address is harmless.
    t.vip.remove("the leader lease ran out (fence thread)");
    t.stop.cancel();
    t.task.await.unwrap();
}

#[tokio::test]
async fn vip_fence_removal_is_not_undone_by_the_keeper() {
    // The fence thread removes at the deadline through the shared handle; the keeper, which
    // sees the same deadline passed, must not add the address back.
    let mut s = primary(10);
    s.lease_until = Some(Instant::now() + Duration::from_millis(300));
    let t = setup(Fake::default(), s);
    until("the add", || t.vip.held()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.vip.remove("the leader lease ran out (fence thread)");
    tokio::time::sleep(3 * TICK).await;
    assert!(!t.fake.present.load(Ordering::SeqCst));
    assert_eq!(*t.fake.log.lock().unwrap(), ["add", "remove"]);
    t.stop.cancel();
    t.task.await.unwrap();
}

#[test]
fn vip_reconfigure_moves_a_held_address() {
    let fake = Arc::new(Fake::default());
    let vip = Vip::new(fake.clone());
    vip.configure(Some(spec()));
    assert!(vip.add("test"));
    let mut other = spec();
    other.addr = "10.0.0.11".parse().unwrap();
    vip.configure(Some(other));
    assert!(!vip.held());
    assert!(!fake.present.load(Ordering::SeqCst));
    vip.configure(None);
    assert_eq!(vip.report(), None);
}

/// `vip.on: standby_leader`: the address follows the standby leader's live lease, and a
/// writable primary does not take it.
#[test]
fn standby_vip_on_standby_leader_follows_the_standby_leader() {
    let now = Instant::now();
    let mut s = primary(10);
    assert_eq!(decide_on(&s, now, Role::Primary), Want::Hold);
    assert!(matches!(
        decide_on(&s, now, Role::StandbyLeader),
        Want::Release(_)
    ));
    s.role = Role::StandbyLeader;
    assert_eq!(decide_on(&s, now, Role::StandbyLeader), Want::Hold);
    assert!(matches!(decide_on(&s, now, Role::Primary), Want::Release(_)));
    s.lease_until = Some(now - Duration::from_millis(1));
    assert_eq!(
        decide_on(&s, now, Role::StandbyLeader),
        Want::Release("the leader lease ran out")
    );
}
