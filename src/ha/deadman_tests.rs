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
