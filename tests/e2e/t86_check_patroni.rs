//! The monitoring plugin check_patroni (PyPI), unchanged, against a real 3-node pgwarden
//! cluster: its cluster and node checks pass, and fail once a node is stopped.
//!
//! check_patroni is found through `PGWARDEN_CHECK_PATRONI`, else in the virtualenv that
//! `scripts/test.sh` creates under the target directory (`target/tools/check_patroni`).
//! Exit codes are Nagios's: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use crate::harness::{Cluster, Options};
use pgwarden_testkit::{require_pg, require_tool, wait_for};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const OK: i32 = 0;
const CRITICAL: i32 = 2;
const UNKNOWN: i32 = 3;

/// The check_patroni executable, if installed.
fn check_patroni_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGWARDEN_CHECK_PATRONI") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()?
        .join("tools/check_patroni/bin/check_patroni");
    p.is_file().then_some(p)
}

struct Plugin {
    bin: PathBuf,
}

impl Plugin {
    /// Runs one check against `endpoints` and returns its exit code and output. Bounded:
    /// the plugin's own timeout is 10 s, and a run that outlives 30 s is killed.
    async fn run(&self, endpoints: &[String], args: &[&str]) -> (i32, String) {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--timeout")
            .arg("10")
            .arg("-e")
            .arg(endpoints.join(","))
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("check_patroni {args:?} did not finish in 30 s"))
            .expect("run check_patroni");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A signal (no code) counts as UNKNOWN, which no assertion below expects.
        (out.status.code().unwrap_or(UNKNOWN), text.trim().to_string())
    }

    /// Runs a check and asserts its exit code, printing the plugin's one-line answer.
    async fn expect(&self, endpoints: &[String], args: &[&str], code: i32) -> String {
        let (got, text) = self.run(endpoints, args).await;
        eprintln!("check_patroni {} -> {got}: {text}", args.join(" "));
        assert_eq!(got, code, "check_patroni {args:?} against {endpoints:?}: {text}");
        text
    }
}

fn endpoint(c: &Cluster, i: usize) -> String {
    c.rest_url(i)
}

/// Every cluster check check_patroni has (bar the standby-cluster variants) and every node
/// check on each member of a healthy 3-node cluster answer OK, and the role checks answer
/// CRITICAL on the members that do not hold that role. Each check then fails when its
/// condition does: a changed configuration, a scheduled switchover, maintenance mode, a
/// replica whose PostgreSQL is down (CRITICAL), and a stopped member (the cluster checks
/// that count members or replicas turn CRITICAL; the node checks against it fail, as
/// UNKNOWN because its API is unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_patroni_cluster_and_node_checks_pass_and_fail_for_a_stopped_node() {
    require_pg!();
    let bin = check_patroni_bin();
    require_tool!(
        bin.is_some(),
        "check_patroni (python3 -m venv target/tools/check_patroni; pip install check_patroni)"
    );
    let plugin = Plugin { bin: bin.unwrap() };

    let mut c = Cluster::new(Options::default());
    c.start_all();
    let leader = c.wait_healthy(Duration::from_secs(90)).await;
    let replicas: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let all: Vec<String> = (0..3).map(|i| endpoint(&c, i)).collect();
    // Member keys are written every loop_wait: let the replicas' published lag settle first,
    // so `--max-lag` below judges the cluster, not a member key from before streaming began.
    wait_for(
        Duration::from_secs(30),
        "replica lags in /cluster under 1 MiB",
        || async {
            let v: Value = c
                .http
                .get(format!("{}/cluster", all[leader]))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let members = v["members"].as_array()?;
            (members.len() == 3
                && members
                    .iter()
                    .filter(|m| m["role"] != "leader")
                    .all(|m| m["lag"].as_u64().is_some_and(|l| l < 1 << 20)))
            .then_some(())
        },
    )
    .await;

    // Cluster checks, over every member's API as a monitoring system would list them.
    plugin.expect(&all, &["cluster_has_leader"], OK).await;
    plugin
        .expect(&all, &["cluster_has_replica", "--critical", "2:"], OK)
        .await;
    plugin
        .expect(
            &all,
            &[
                "cluster_node_count",
                "--critical",
                "3:",
                "--healthy-critical",
                "3:",
            ],
            OK,
        )
        .await;
    plugin.expect(&all, &["cluster_is_in_maintenance"], OK).await;
    plugin.expect(&all, &["cluster_has_scheduled_action"], OK).await;

    // The configuration hash: the first run saves it (and reports a change from "no hash",
    // as check_patroni does against Patroni), the next finds it unchanged, a PATCH changes it.
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("check_patroni.state");
    let sf = state_file.to_str().unwrap();
    plugin
        .expect(
            &all,
            &["cluster_config_has_changed", "--state-file", sf, "--save"],
            CRITICAL,
        )
        .await;
    plugin
        .expect(&all, &["cluster_config_has_changed", "--state-file", sf], OK)
        .await;
    let (code, body) = c
        .patch_config(leader, json!({"maximum_lag_on_failover": 2097152}))
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "PATCH /config: {body}");
    plugin
        .expect(
            &all,
            &["cluster_config_has_changed", "--state-file", sf],
            CRITICAL,
        )
        .await;

    // Node checks on each member.
    let version = c.patroni(leader).await.unwrap()["patroni"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..3 {
        let me = [endpoint(&c, i)];
        let tl = c.patroni(i).await.unwrap()["timeline"]
            .as_u64()
            .unwrap()
            .to_string();
        plugin.expect(&me, &["node_is_alive"], OK).await;
        plugin
            .expect(&me, &["node_patroni_version", "--patroni-version", &version], OK)
            .await;
        plugin
            .expect(&me, &["node_tl_has_changed", "--timeline", &tl], OK)
            .await;
        plugin.expect(&me, &["node_is_pending_restart"], OK).await;
        let (primary, replica) = if i == leader {
            (OK, CRITICAL)
        } else {
            (CRITICAL, OK)
        };
        plugin.expect(&me, &["node_is_primary"], primary).await;
        plugin.expect(&me, &["node_is_leader"], primary).await;
        plugin.expect(&me, &["node_is_replica"], replica).await;
        plugin
            .expect(&me, &["node_is_replica", "--max-lag", "10MB"], replica)
            .await;
        plugin
            .expect(&me, &["node_is_replica", "--is-async"], replica)
            .await;
    }
    // A wrong expectation fails: another version, another timeline.
    let leader_ep = [endpoint(&c, leader)];
    plugin
        .expect(
            &leader_ep,
            &["node_patroni_version", "--patroni-version", "1.0.0"],
            CRITICAL,
        )
        .await;
    plugin
        .expect(
            &leader_ep,
            &["node_tl_has_changed", "--timeline", "999"],
            CRITICAL,
        )
        .await;

    // A scheduled switchover is a scheduled action until it is deleted.
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (code, body) = c
        .post(
            leader,
            "/switchover",
            json!({"leader": format!("pg{leader}"), "scheduled_at": at}),
        )
        .await
        .expect("POST /switchover answered");
    assert_eq!(code, 202, "scheduled switchover: {body}");
    plugin
        .expect(&all, &["cluster_has_scheduled_action"], CRITICAL)
        .await;
    let r = c
        .http
        .delete(format!("{}/switchover", all[leader]))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("DELETE /switchover");
    assert_eq!(r.status().as_u16(), 200);
    plugin.expect(&all, &["cluster_has_scheduled_action"], OK).await;

    // Maintenance mode, and in it a replica whose PostgreSQL is down (a paused pgwarden
    // leaves it down): the daemon is alive, but the member is no longer a running replica.
    let (code, body) = c
        .patch_config(leader, json!({"pause": true}))
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "PATCH pause: {body}");
    wait_for(
        Duration::from_secs(20),
        "every member to report pause",
        || async {
            for i in 0..3 {
                if c.patroni(i).await?["pause"] != json!(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    plugin
        .expect(&all, &["cluster_is_in_maintenance"], CRITICAL)
        .await;
    let down = replicas[1];
    c.kill9_postmaster(down)
        .expect("the replica's postmaster was running");
    let down_ep = [endpoint(&c, down)];
    wait_for(
        Duration::from_secs(20),
        "the member to report PostgreSQL down",
        || async { (c.patroni(down).await?["state"] != json!("running")).then_some(()) },
    )
    .await;
    plugin.expect(&down_ep, &["node_is_alive"], OK).await;
    plugin.expect(&down_ep, &["node_is_replica"], CRITICAL).await;
    let text = wait_for(
        Duration::from_secs(20),
        "cluster_node_count to count 2 healthy",
        || async {
            let (code, text) = plugin
                .run(&all, &["cluster_node_count", "--healthy-critical", "3:"])
                .await;
            (code == CRITICAL).then_some(text)
        },
    )
    .await;
    eprintln!("paused, one replica's PostgreSQL down: cluster_node_count -> 2: {text}");
    // cluster_has_replica fails too, though as UNKNOWN: with PostgreSQL down a member key has
    // no timeline (Patroni's touch_member writes one only while PostgreSQL runs), and
    // check_patroni 2.2.0 reads member["timeline"] of an "unknown"-lag replica (KeyError).
    // Patroni 4.1.5 gets the same answer.
    let (code, text) = plugin
        .run(&all, &["cluster_has_replica", "--critical", "2:"])
        .await;
    eprintln!("paused, one replica's PostgreSQL down: cluster_has_replica -> {code}: {text}");
    assert_ne!(code, OK, "{text}");
    // Resumed, pgwarden starts it again and the cluster heals.
    let (code, body) = c
        .patch_config(leader, json!({"pause": null}))
        .await
        .expect("PATCH /config");
    assert_eq!(code, 200, "PATCH resume: {body}");
    assert_eq!(c.wait_healthy(Duration::from_secs(60)).await, leader);
    plugin.expect(&all, &["cluster_is_in_maintenance"], OK).await;
    plugin
        .expect(&all, &["cluster_has_replica", "--critical", "2:"], OK)
        .await;

    // Stop one replica (SIGTERM: pgwarden stops PostgreSQL and exits). check_patroni reports
    // an API it cannot reach as UNKNOWN ("Connection failed for all provided endpoints"),
    // whatever answers there: Patroni or pgwarden.
    let stopped = replicas[0];
    c.stop(stopped).await;
    let gone = [endpoint(&c, stopped)];
    for check in [
        "node_is_alive",
        "node_is_replica",
        "node_is_pending_restart",
        "node_tl_has_changed",
    ] {
        let args: Vec<&str> = if check == "node_tl_has_changed" {
            vec![check, "--timeline", "1"]
        } else {
            vec![check]
        };
        let (code, text) = plugin.run(&gone, &args).await;
        eprintln!("stopped node: check_patroni {check} -> {code}: {text}");
        assert_eq!(code, UNKNOWN, "{check} against a stopped node: {text}");
        assert!(text.contains("Connection failed"), "{check}: {text}");
    }
    // The surviving members' view: the stopped replica no longer counts, within the ttl.
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != stopped)
        .map(|i| endpoint(&c, i))
        .collect();
    for args in [
        &["cluster_has_replica", "--critical", "2:"][..],
        &[
            "cluster_node_count",
            "--critical",
            "3:",
            "--healthy-critical",
            "3:",
        ][..],
    ] {
        let last = wait_for(
            Duration::from_secs(40),
            "the cluster check to turn CRITICAL",
            || async {
                let (code, text) = plugin.run(&survivors, args).await;
                (code == CRITICAL).then_some(text)
            },
        )
        .await;
        eprintln!(
            "one replica stopped: check_patroni {} -> 2: {last}",
            args.join(" ")
        );
    }
    // What does not depend on the stopped replica still passes.
    plugin.expect(&survivors, &["cluster_has_leader"], OK).await;
    plugin
        .expect(&survivors, &["cluster_has_replica", "--critical", "1:"], OK)
        .await;
    plugin
        .expect(&[endpoint(&c, leader)], &["node_is_primary"], OK)
        .await;
}
