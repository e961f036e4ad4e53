//! Callbacks end to end: real daemons and PostgreSQL 15, every member configured with
//! scripts that append their arguments to a per-member file.

use crate::harness::{Cluster, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// A directory for the scripts and their logs, writable by the user the daemons run
/// scripts as (`postgres` when the tests run as root). Removed on drop.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-cb-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let s = Scripts { dir };
        // Appends "<action> <role> <scope>" (its arguments after the log path) to the log.
        s.script("record.sh", "log=$1; shift; echo \"$*\" >> \"$log\"\n");
        // pre_promote: fails (and says so in the log) while the flag file exists.
        s.script(
            "fence.sh",
            "log=$1; flag=$2; if [ -e \"$flag\" ]; then echo pre_promote-failed >> \"$log\"; exit 1; fi\n\
             echo pre_promote-ok >> \"$log\"\n",
        );
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn script(&self, name: &str, body: &str) {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn log(&self, node: usize) -> PathBuf {
        self.path(&format!("pg{node}.log"))
    }

    fn flag(&self, node: usize) -> PathBuf {
        self.path(&format!("fail-pg{node}"))
    }

    fn lines(&self, node: usize) -> Vec<String> {
        std::fs::read_to_string(self.log(node))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `postgresql:` lines for node `i`: every callback and pre_promote.
    fn pg_extra(&self, i: usize) -> String {
        let rec = format!("{} {}", self.path("record.sh").display(), self.log(i).display());
        format!(
            "  callbacks:\n    on_start: {rec}\n    on_stop: {rec}\n    on_restart: {rec}\n    \
             on_reload: {rec}\n    on_role_change: {rec}\n  pre_promote: {fence} {log} {flag}\n",
            fence = self.path("fence.sh").display(),
            log = self.log(i).display(),
            flag = self.flag(i).display(),
        )
    }
}

fn options(s: &Scripts) -> Options {
    Options {
        pg_extra: (0..3).map(|i| s.pg_extra(i)).collect(),
        ..Options::default()
    }
}

async fn wait_line(s: &Scripts, node: usize, line: &str, limit: Duration) {
    let what = format!("pg{node}'s callback log to contain {line:?}");
    wait_for(limit, &what, || async {
        s.lines(node).iter().any(|l| l == line).then_some(())
    })
    .await;
}

fn count(s: &Scripts, node: usize, line: &str) -> usize {
    s.lines(node).iter().filter(|l| *l == line).count()
}

/// Callbacks get Patroni's arguments `<action> <role> <scope>`: on_start as primary on the
/// bootstrapping member and as replica on the others; on a switchover the candidate runs
/// pre_promote then on_role_change primary, and the old primary on_stop primary then
/// on_role_change replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_callbacks_fire_with_patroni_arguments_on_a_role_change() {
    require_pg!();
    let s = Scripts::new();
    let mut c = Cluster::new(options(&s));
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(90)).await;
    wait_line(&s, p, "on_start primary e2e", Duration::from_secs(10)).await;
    for r in (0..3).filter(|r| *r != p) {
        wait_line(&s, r, "on_start replica e2e", Duration::from_secs(10)).await;
    }

    let candidate = (p + 1) % 3;
    let (code, body) = c
        .post(
            p,
            "/switchover",
            json!({"leader": format!("pg{p}"), "candidate": format!("pg{candidate}")}),
        )
        .await
        .expect("switchover answered");
    assert_eq!(code, 200, "switchover: {body}");
    let new = c.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(new, candidate);
    wait_line(
        &s,
        candidate,
        "on_role_change primary e2e",
        Duration::from_secs(10),
    )
    .await;
    wait_line(&s, p, "on_role_change replica e2e", Duration::from_secs(10)).await;
    let cand = s.lines(candidate);
    let pre = cand.iter().position(|l| l == "pre_promote-ok");
    let change = cand.iter().position(|l| l == "on_role_change primary e2e");
    assert!(
        pre.is_some() && pre < change,
        "pre_promote runs before on_role_change: {cand:?}"
    );
    let old = s.lines(p);
    let stop = old.iter().position(|l| l == "on_stop primary e2e");
    let demoted = old.iter().position(|l| l == "on_role_change replica e2e");
    assert!(
        stop.is_some() && stop < demoted,
        "on_stop before on_role_change: {old:?}"
    );
    assert_eq!(
        count(&s, p, "on_start replica e2e"),
        0,
        "a demotion is a role change: {old:?}"
    );
}

/// A member whose pre_promote fails takes the leader key, does not promote, releases the
/// key and backs off; another member becomes primary and the failed one follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_failing_pre_promote_stops_the_promotion_and_another_member_is_chosen() {
    require_pg!();
    let s = Scripts::new();
    let mut c = Cluster::new(options(&s));
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(90)).await;
    let fenced = (p + 1) % 3;
    std::fs::write(s.flag(fenced), "").unwrap();

    // A switchover to the fenced member makes it the one to take the key first.
    let (code, body) = c
        .post(
            p,
            "/switchover",
            json!({"leader": format!("pg{p}"), "candidate": format!("pg{fenced}")}),
        )
        .await
        .expect("switchover answered");
    eprintln!("switchover answer: {code} {body}");
    wait_line(&s, fenced, "pre_promote-failed", Duration::from_secs(60)).await;
    let new = wait_for(
        Duration::from_secs(90),
        "a primary other than the fenced member",
        || async {
            let n = c.primary().await?;
            (n != fenced).then_some(n)
        },
    )
    .await;
    let healthy = c.wait_healthy(Duration::from_secs(90)).await;
    assert_eq!(healthy, new, "the fenced member follows the new primary");
    assert_eq!(
        count(&s, fenced, "on_role_change primary e2e"),
        0,
        "the fenced member was never promoted: {:?}",
        s.lines(fenced)
    );
    wait_line(&s, new, "on_role_change primary e2e", Duration::from_secs(10)).await;
    let log = c.log(fenced);
    assert!(
        log.contains("pre-promote script failed"),
        "the fenced member logs why it gave the key up"
    );
}
