//! The fence guard and the deadline file against a stand-in postmaster: a `sleep` started
//! under the name `postgres` (so /proc calls it a postgres process), never a real server.

use super::*;
use std::process::{Child, Command};
use std::time::Instant;

/// The `sleep` program.
pub(crate) fn sleep_binary() -> &'static str {
    ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no sleep binary")
}

/// A stand-in postmaster and its data directory (with a postmaster.pid naming it).
pub(crate) struct StandIn {
    /// Its data directory.
    pub(crate) dir: tempfile::TempDir,
    /// The process.
    pub(crate) child: Child,
}

impl StandIn {
    pub(crate) fn start() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("postgres");
        std::os::unix::fs::symlink(sleep_binary(), &exe).unwrap();
        let child = Command::new(&exe)
            .arg("60")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until the exec is done the child is still called after its parent.
        let t0 = Instant::now();
        while Proc::postmaster(pid).is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the stand-in never became `postgres`"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!("{pid}\n{}\n", dir.path().display()),
        )
        .unwrap();
        StandIn { dir, child }
    }

    pub(crate) fn proc(&self) -> Proc {
        Proc::postmaster(self.child.id() as i32).unwrap()
    }

    fn args(&self) -> GuardArgs {
        GuardArgs {
            pid_file: self.dir.path().join("postmaster.pid"),
            deadline_file: self.dir.path().join("fence-deadline"),
            guard_pid_file: self.dir.path().join("fence-guard.pid"),
            vip: None,
        }
    }

    /// Waits (at most `limit`) for the stand-in's exit: when, and by which signal.
    pub(crate) fn exit_within(&mut self, limit: Duration) -> Option<(Instant, Option<i32>)> {
        use std::os::unix::process::ExitStatusExt;
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some((Instant::now(), st.signal()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(n: u64) -> u64 {
    n * 1_000_000
}

#[test]
fn the_deadline_file_round_trips_and_reads_none_for_none_or_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let f = DeadlineFile::new(dir.path().join("d"));
    assert_eq!(f.read(), None, "missing file");
    let d = Deadline {
        target: Proc { pid: 12, start: 34 },
        at: 56,
    };
    f.write(Some(d)).unwrap();
    assert_eq!(f.read(), Some(d));
    f.write(None).unwrap();
    assert_eq!(f.read(), None);
    std::fs::write(f.path(), "12 x 56\n").unwrap();
    assert_eq!(f.read(), None);
}

/// The guard idles on "none" and on a deadline for another process, SIGQUITs its postmaster
/// within a poll of the deadline, and exits (removing its pid file) when the postmaster is gone.
#[test]
fn safety_daemon_death_the_guard_stops_its_postmaster_at_the_deadline_and_then_exits() {
    let mut pm = StandIn::start();
    let args = pm.args();
    let file = DeadlineFile::new(&args.deadline_file);
    file.write(None).unwrap();
    let guard = std::thread::spawn({
        let args = args.clone();
        move || run_guard(&args)
    });
    let pids = GuardPidFile::new(&args.guard_pid_file);
    let t0 = Instant::now();
    while pids.guard_of(pm.proc()).is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the guard never wrote its pid file"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A passed deadline for another process (the same pid, another start): ignored.
    let other = Proc {
        pid: pm.proc().pid,
        start: pm.proc().start + 1,
    };
    file.write(Some(Deadline {
        target: other,
        at: mono_now(),
    }))
    .unwrap();
    assert!(
        pm.exit_within(Duration::from_millis(300)).is_none(),
        "fired for another process"
    );

    let deadline = Instant::now() + Duration::from_millis(300);
    file.write(Some(Deadline {
        target: pm.proc(),
        at: mono_now() + ms(300),
    }))
    .unwrap();
    let (at, sig) = pm.exit_within(Duration::from_secs(5)).expect("not stopped");
    assert_eq!(sig, Some(nix::sys::signal::Signal::SIGQUIT as i32));
    assert!(at >= deadline, "fired {:?} early", deadline - at);
    assert!(
        at - deadline < Duration::from_millis(200),
        "fired {:?} late",
        at - deadline
    );
    guard.join().unwrap().unwrap();
    assert!(!args.guard_pid_file.exists(), "the guard's pid file outlived it");
}

/// A second guard for a postmaster that already has one leaves at once.
#[test]
fn safety_daemon_death_a_second_guard_for_the_same_postmaster_leaves() {
    let pm = StandIn::start();
    let args = pm.args();
    let first = std::thread::spawn({
        let args = args.clone();
        move || run_guard(&args)
    });
    let pids = GuardPidFile::new(&args.guard_pid_file);
    let t0 = Instant::now();
    while pids.guard_of(pm.proc()).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    run_guard(&args).unwrap();
    assert!(
        pids.guard_of(pm.proc()).is_some(),
        "the second guard removed the first one's pid file"
    );
    drop(pm);
    first.join().unwrap().unwrap();
}

/// Points `pm`'s postmaster.pid at `other` (a restarted postmaster in the same data directory).
fn repoint(pm: &StandIn, other: &StandIn) {
    std::fs::write(
        pm.dir.path().join("postmaster.pid"),
        format!("{}\n{}\n", other.proc().pid, pm.dir.path().display()),
    )
    .unwrap();
}

/// F3: a postmaster that appears after the deadline has passed (a restart that went on after
/// the fence fired) is stopped by the fence thread too, without a new deadline; once the lease
/// is renewed, a postmaster is left alone again until that deadline passes.
#[test]
fn safety_f3_the_fence_thread_stops_a_postmaster_started_after_the_deadline() {
    let stops_before = crate::ha::counters::COUNTERS.fence_stops();
    let mut first = StandIn::start();
    let fence = FenceThread::new();
    fence.start().unwrap();
    fence.set_target(Some(first.proc()));
    fence.watch_pid_file(first.dir.path().join("postmaster.pid"));
    fence.arm(mono_now() + ms(100));
    let (_, sig) = first
        .exit_within(Duration::from_secs(3))
        .expect("the first postmaster was not stopped");
    assert_eq!(sig, Some(nix::sys::signal::Signal::SIGQUIT as i32));

    // The same data directory, a new postmaster, no refresh: stopped at once.
    let mut second = StandIn::start();
    repoint(&first, &second);
    let t0 = Instant::now();
    let (at, sig) = second
        .exit_within(Duration::from_secs(3))
        .expect("a postmaster started after the deadline ran unfenced");
    assert_eq!(sig, Some(nix::sys::signal::Signal::SIGQUIT as i32));
    assert!(
        at - t0 < Duration::from_millis(500),
        "stopped only {:?} after it appeared",
        at - t0
    );
    // Both stops are counted for /metrics (`pgwarden_fence_stops_total`); the count follows
    // the signal, so it may lag the exit by a moment.
    let counted = Instant::now();
    while crate::ha::counters::COUNTERS.fence_stops() < stops_before + 2 {
        assert!(
            counted.elapsed() < Duration::from_secs(2),
            "fence stops counted: {}",
            crate::ha::counters::COUNTERS.fence_stops() - stops_before
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Renewed: the next postmaster runs until the new deadline.
    fence.arm(mono_now() + ms(60_000));
    let mut third = StandIn::start();
    repoint(&first, &third);
    assert!(
        third.exit_within(Duration::from_millis(400)).is_none(),
        "stopped under a renewed lease"
    );
    fence.stop();
}

/// F3, the guard's layer: while the lease's deadline is known, a change of postmaster is
/// published with the same deadline, so the new postmaster's guard holds it to that deadline
/// (and stops it at once if it has passed). Before, the file kept naming the old postmaster
/// until the next refresh, and the new postmaster's guard idled.
#[tokio::test(flavor = "current_thread")]
async fn safety_f3_the_published_deadline_follows_a_restarted_postmaster() {
    use crate::postgres::fake::FakePg;
    let first = StandIn::start();
    let second = StandIn::start();
    let pg = Arc::new(FakePg::new());
    pg.with_state(|s| {
        s.postmaster = PostmasterState::Running {
            pid: first.proc().pid,
        }
    });
    let info = crate::ha::status::DaemonInfo {
        version: "test".into(),
        scope: "t".into(),
        name: "a".into(),
    };
    let (tx, rx) = watch::channel(NodeStatus::initial(info, false));
    let file = DeadlineFile::new(first.dir.path().join("fence-deadline"));
    let task = tokio::spawn(publish_deadlines(rx, pg.clone(), file.clone()));
    // Let it take the state at start (no lease), which it does not publish.
    tokio::task::yield_now().await;
    let until = tokio::time::Instant::now() - Duration::from_secs(1);
    tx.send_modify(|s| s.lease_until = Some(until));
    let wait_for_target = |want: Proc| {
        let file = file.clone();
        async move {
            let t0 = Instant::now();
            loop {
                if let Some(d) = file.read().filter(|d| d.target == want) {
                    return d;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(3),
                    "the deadline was not published for {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let d1 = wait_for_target(first.proc()).await;
    // A restart: another postmaster, the lease's deadline unchanged.
    pg.with_state(|s| {
        s.postmaster = PostmasterState::Running {
            pid: second.proc().pid,
        }
    });
    let d2 = wait_for_target(second.proc()).await;
    // The same deadline, converted to CLOCK_MONOTONIC again (two clock reads apart).
    assert!(
        d1.at.abs_diff(d2.at) < ms(5),
        "the deadline itself changed: {} then {}",
        d1.at,
        d2.at
    );
    drop(tx);
    task.await.unwrap();
}

/// The VIP's removal hangs on the fence thread: it runs once when a deadline passes, and not
/// while the fence is disarmed.
#[test]
fn vip_the_fence_thread_runs_its_hook_when_the_deadline_passes() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let fired = Arc::new(AtomicU32::new(0));
    let f = FenceThread::new();
    let seen = fired.clone();
    f.on_fire(Box::new(move || {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    // No process can have this pid (pid_max is at most 2^22): nothing is signalled.
    f.set_target(Some(Proc {
        pid: 1 << 23,
        start: 1,
    }));
    f.start().unwrap();
    f.disarm();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fired.load(Ordering::SeqCst), 0, "fired while disarmed");
    f.arm(mono_now() + ms(50));
    let t0 = Instant::now();
    while fired.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the hook did not run at the deadline"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the hook ran twice for one deadline"
    );
    f.stop();
}
