//! The README's demo command, run non-interactively: it brings up 1 leader + 2 streaming
//! replicas, then stops every process it started and removes its directory; as root
//! (PostgreSQL then runs as `postgres`) and as an unprivileged user.

use std::process::Command;

fn base_port() -> u16 {
    // The demo uses twelve consecutive ports from its base.
    pgwarden_testkit::free_ports(12)
}

fn check(out: std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("cluster is up: 1 leader + 2 streaming"),
        "{stdout}"
    );
    assert!(stdout.contains("target_session_attrs=read-write"), "{stdout}");
    assert!(stdout.contains("removed the demo directory"), "{stdout}");
    let dir = stdout
        .lines()
        .find_map(|l| {
            l.split(" in ")
                .nth(1)
                .filter(|d| d.starts_with("/tmp/pgwarden-demo-"))
        })
        .expect("the demo names its directory");
    assert!(
        !std::path::Path::new(dir.trim()).exists(),
        "{dir} was not removed"
    );
    // No process of the demo is left: none has the directory in its command line.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(dir.trim()),
        "demo processes left behind"
    );
}

/// As the user running the tests (root in CI).
#[test]
fn e2e_demo_runs_and_cleans_up() {
    if !std::path::Path::new("/usr/lib/postgresql/15/bin/postgres").exists() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["demo", "--duration", "2", "--base-port", &base_port().to_string()])
        .output()
        .unwrap();
    check(out);
}

/// As an unprivileged user (needs root to switch to `postgres`; skipped loudly otherwise).
#[test]
fn e2e_demo_runs_as_an_unprivileged_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: not root, cannot switch to an unprivileged user (the other demo test ran as one)"
        );
        return;
    }
    if !std::path::Path::new("/usr/lib/postgresql/15/bin/postgres").exists() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    // The binary must be reachable by `postgres`: copy it to a world-readable place.
    let bin_dir = tempfile::Builder::new()
        .prefix("pgwarden-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("pgwarden");
    std::fs::copy(env!("CARGO_BIN_EXE_pgwarden"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&bin)
        .args(["demo", "--duration", "2", "--base-port", &base_port().to_string()])
        .current_dir("/tmp")
        .output()
        .unwrap();
    check(out);
}

/// `--failover-drill`: the primary is killed once the cluster is up, the failover, the old
/// primary's rejoin and a switchover back are narrated with timings, and everything is
/// cleaned up afterwards.
#[test]
fn e2e_demo_failover_drill_narrates_and_times_the_failover() {
    if !std::path::Path::new("/usr/lib/postgresql/15/bin/postgres").exists() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args([
            "demo",
            "--failover-drill",
            "--duration",
            "1",
            "--base-port",
            &base_port().to_string(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for expected in [
        "killed pg",
        "first write acknowledged by the new primary",
        "timing: failover",
        "rejoined as a streaming replica",
        "Successfully switched over to",
        "timing: switchover write gap",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    check(out);
}
