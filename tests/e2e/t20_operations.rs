//! Operating a running cluster: restart and reinitialize through REST, and SIGHUP
//! rereading the configuration file.

use crate::harness::{Cluster, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::json;
use std::time::Duration;

/// Restart and reinitialize through the REST API act on the member: a replica restarts
/// (new postmaster), the leader refuses to reinitialize, a replica reinitializes (its old
/// data directory moved aside, never deleted) and streams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_restart_and_reinitialize_through_rest() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let replica = (leader + 1) % 3;
    let pid = c.nodes[replica].postmaster_pid().unwrap();
    let (code, body) = c.post(replica, "/restart", json!({})).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "restarted successfully"));
    assert_ne!(c.nodes[replica].postmaster_pid(), Some(pid));
    let (code, body) = c
        .post(replica, "/restart", json!({"role": "primary"}))
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (503, "restart conditions are not satisfied")
    );

    let (code, body) = c.post(leader, "/reinitialize", json!({})).await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("I am the leader, can not reinitialize"), "{body}");
    let (code, body) = c
        .post(replica, "/reinitialize", json!({"force": true}))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    c.wait_healthy(Duration::from_secs(90)).await;
    let aside = std::fs::read_dir(&c.nodes[replica].dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("pgdata.") && e.path().is_dir());
    assert!(aside, "the old data directory was not kept");
}

/// The configuration file is re-read on SIGHUP (and POST /reload): a local PostgreSQL
/// parameter and a tag take effect on a running replica without a restart; a broken file
/// is refused with a clear log line and the running configuration is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sighup_rereads_the_configuration_file() {
    require_pg!();
    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let r = (leader + 1) % 3;
    let path = c.nodes[r].config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    // The file ends inside `postgresql:`; the tags section is new.
    std::fs::write(
        &path,
        format!("{original}  parameters:\n    work_mem: 7MB\ntags:\n  nofailover: true\n"),
    )
    .unwrap();
    let pid = c.nodes[r].child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        Duration::from_secs(30),
        "work_mem reloaded on the replica",
        || async {
            let client = c.connect(r).await?;
            let row = client.query_one("SHOW work_mem", &[]).await.ok()?;
            (row.get::<_, String>(0) == "7MB").then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "the nofailover tag published",
        || async {
            let s = c.patroni(r).await?;
            s.get("tags")?.get("nofailover")?.as_bool()?.then_some(())
        },
    )
    .await;

    std::fs::write(&path, "scope: [this is not\n").unwrap();
    let (code, _) = c.post(r, "/reload", json!({})).await.expect("reload answered");
    assert_eq!(code, 202);
    wait_for(
        Duration::from_secs(30),
        "the broken file to be refused",
        || async {
            c.log(r)
                .contains("keeping the running configuration")
                .then_some(())
        },
    )
    .await;
    assert!(c.patroni(r).await.is_some(), "the daemon keeps running");
    std::fs::write(&path, original).unwrap();
}
