//! Voters chosen, not accumulated (issue 18): real daemons, mostly witnesses (the same
//! binary without PostgreSQL) to spare the machine. Five members on three sites keep three
//! voters, one per site; a voter SIGKILLed for longer than `raft.voter_replace_after` is
//! replaced by a learner of another site, the DCS keeps taking writes, and the killed
//! member, restarted, stays a learner; a data node that is a learner becomes the primary.

use crate::harness::{self, Cluster, CtlOut, Options};
use pgwarden_testkit::{require_pg, wait_for};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

async fn ctl(c: &Cluster, i: usize, args: &[&str]) -> CtlOut {
    let cfg = c.nodes[i].config_path();
    let mut all = vec!["-c", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    harness::pgwardenctl(&all, Duration::from_secs(60)).await
}

/// One row of `members list -f json`.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    role: String,
    site: String,
    vote: String,
}

impl Row {
    fn votes(&self) -> bool {
        self.role == "Leader" || self.role == "Voter"
    }
}

/// `members list` as node `i` gets it from the Raft leader, by member name.
async fn members(c: &Cluster, i: usize) -> Option<BTreeMap<String, Row>> {
    let o = ctl(c, i, &["members", "list", "-f", "json"]).await;
    if !o.ok {
        return None;
    }
    let v: Value = serde_json::from_str(&o.stdout).ok()?;
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    Some(
        v.as_array()?
            .iter()
            .map(|r| {
                let row = Row {
                    name: s(r, "Name"),
                    role: s(r, "Role"),
                    site: s(r, "Site"),
                    vote: s(r, "Vote"),
                };
                (row.name.clone(), row)
            })
            .collect(),
    )
}

fn voters(m: &BTreeMap<String, Row>) -> Vec<&Row> {
    m.values().filter(|r| r.votes()).collect()
}

fn voter_sites(m: &BTreeMap<String, Row>) -> BTreeSet<String> {
    voters(m).iter().map(|r| r.site.clone()).collect()
}

/// Waits until `members list` (asked of node `i`) has `n` members, three voters on three
/// sites and every other member a learner whose reason is given; returns it.
async fn settled(c: &Cluster, i: usize, n: usize, limit: Duration) -> BTreeMap<String, Row> {
    wait_for(
        limit,
        "3 voters on 3 sites, every other member a learner",
        || async {
            let m = members(c, i).await?;
            (m.len() == n
                && voters(&m).len() == 3
                && voter_sites(&m).len() == 3
                && m.values()
                    .filter(|r| !r.votes())
                    .all(|r| r.vote.starts_with("learner: ")))
            .then_some(m)
        },
    )
    .await
}

/// Each member's `raft:` lines: its site and a target of three voters (the default, five,
/// would make every one of five members vote).
fn site_lines(sites: &[&str]) -> Vec<String> {
    sites
        .iter()
        .map(|s| format!("  site: {s}\n  voters: 3\n"))
        .collect()
}

/// 1 data node + 4 witnesses on sites a, a, b, b, c, `raft.voters: 3`: all five bootstrap together (all
/// voting at first) and the Raft leader keeps three voters, one per site.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stretched_voters_five_members_on_three_sites_keep_three_voters() {
    require_pg!();
    let mut c = Cluster::new(Options {
        data_nodes: 1,
        witness: true,
        more_witnesses: 3,
        raft_extra: site_lines(&["a", "a", "b", "b", "c"]),
        ..Default::default()
    });
    c.start_all();
    c.wait_healthy(Duration::from_secs(120)).await;
    let m = settled(&c, 1, 5, Duration::from_secs(60)).await;
    assert_eq!(
        voter_sites(&m),
        BTreeSet::from(["a".to_string(), "b".into(), "c".into()]),
        "{m:#?}"
    );
    for r in m.values().filter(|r| !r.votes()) {
        assert_eq!(r.vote, "learner: voter set full (3)", "{m:#?}");
    }
    for r in voters(&m) {
        assert_eq!(r.vote, "voter", "{m:#?}");
    }
    // The set holds: a few seconds later it is the same (no flapping between equal choices).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = members(&c, 2).await.expect("members list");
    let names = |m: &BTreeMap<String, Row>| -> BTreeSet<String> {
        voters(m).iter().map(|r| r.name.clone()).collect()
    };
    assert_eq!(names(&again), names(&m), "{again:#?}");
    // The pretty table has the new columns after the old ones.
    let o = ctl(&c, 0, &["members", "list"]).await;
    assert!(o.ok, "{o:?}");
    let header = o
        .stdout
        .lines()
        .find(|l| l.contains("| Name "))
        .unwrap_or_default();
    let at = |col: &str| header.find(&format!("| {col} ")).unwrap_or(usize::MAX);
    assert!(
        at("Lag") < at("Site") && at("Site") < at("Vote") && at("Vote") < usize::MAX,
        "{}",
        o.stdout
    );
}

/// 2 data nodes + 3 witnesses on four sites (a, a, b, c, d), `raft.voters: 3`,
/// `raft.voter_replace_after: 5`.
/// A data node that is a learner takes over as primary (switchover: its HA loop writes the
/// leader key through the Raft leader). Then a voter is SIGKILLed: after 5 s a learner of
/// a site that holds no voter takes its vote, the DCS keeps taking writes, and the killed
/// member, restarted, stays a learner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stretched_voters_a_lost_voter_is_replaced_by_a_learner() {
    require_pg!();
    let raft_extra: Vec<String> = site_lines(&["a", "a", "b", "c", "d"])
        .into_iter()
        .map(|s| format!("{s}  voter_replace_after: 5\n"))
        .collect();
    let mut c = Cluster::new(Options {
        data_nodes: 2,
        witness: true,
        more_witnesses: 2,
        raft_extra,
        ..Default::default()
    });
    c.start_all();
    let p = c.wait_healthy(Duration::from_secs(120)).await;
    let m = settled(&c, 2, 5, Duration::from_secs(60)).await;

    // A learner data node becomes the primary. At most one of pg0/pg1 (both site a) votes.
    let learner = ["pg0", "pg1"]
        .into_iter()
        .find(|n| !m[*n].votes())
        .expect("a data node is a learner");
    let l = usize::from(learner == "pg1");
    // Through a switchover into the learner: first away from it if it already is primary
    // (it bootstrapped while every member still voted).
    if p == l {
        switchover(&c, l, 1 - l).await;
    }
    switchover(&c, 1 - l, l).await;
    let m = members(&c, 2).await.expect("members list");
    assert!(!m[learner].votes(), "{learner} became a voter on the way: {m:#?}");
    let ok = c.query_i64(l, "SELECT 1::bigint").await;
    assert_eq!(ok, Some(1));

    // Kill a witness that votes and is not the Raft leader.
    let raft_leader = c.raft_leader().await;
    let victim = (2..5)
        .find(|i| m[&c.nodes[*i].spec.name].votes() && Some(*i) != raft_leader)
        .expect("a voting witness that does not lead");
    let victim_name = c.nodes[victim].spec.name.clone();
    let victim_site = m[&victim_name].site.clone();
    let asker = (2..5).find(|i| *i != victim).unwrap();
    let killed_at = Instant::now();
    c.kill9(victim);
    let after = wait_for(
        Duration::from_secs(60),
        "a learner to take the lost vote",
        || async {
            let m = members(&c, asker).await?;
            (!m[&victim_name].votes() && voters(&m).len() == 3).then_some(m)
        },
    )
    .await;
    let took = killed_at.elapsed();
    eprintln!("voter {victim_name} replaced {took:?} after its SIGKILL: {after:#?}");
    assert!(
        took >= Duration::from_secs(5),
        "replaced before raft.voter_replace_after: {took:?}"
    );
    let sites = voter_sites(&after);
    assert_eq!(sites.len(), 3, "{after:#?}");
    assert!(
        !sites.contains(&victim_site),
        "the new voter is on the lost voter's site: {after:#?}"
    );
    assert!(
        after[&victim_name]
            .vote
            .starts_with("learner: replaced after unreachable "),
        "{after:#?}"
    );

    // The DCS takes writes (through any member) and reads them back.
    let o = ctl(
        &c,
        asker,
        &["dcs", "put", "voters-check", "after-replace", "--force"],
    )
    .await;
    assert!(o.ok, "{o:?}");
    let o = ctl(&c, 0, &["dcs", "get", "voters-check", "-f", "json"]).await;
    assert!(o.ok && o.stdout.contains("after-replace"), "{o:?}");

    // Restarted, the replaced member catches up and stays a learner.
    c.start(victim);
    wait_for(
        Duration::from_secs(60),
        "the restarted member to be caught up",
        || async {
            let m = members(&c, asker).await?;
            (m[&victim_name].vote.starts_with("learner: replaced")
                && members_lag(&c, asker, &victim_name).await? < 100)
                .then_some(())
        },
    )
    .await;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let m = members(&c, asker).await.expect("members list");
        assert!(
            !m[&victim_name].votes(),
            "the replaced member got its vote back: {m:#?}"
        );
        assert_eq!(voters(&m).len(), 3, "{m:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The primary still serves.
    assert_eq!(c.primary().await, Some(l));
}

/// The Lag column of one member in `members list` (`None`: unknown yet).
async fn members_lag(c: &Cluster, i: usize, name: &str) -> Option<i64> {
    let o = ctl(c, i, &["members", "list", "-f", "json"]).await;
    let v: Value = serde_json::from_str(&o.stdout).ok()?;
    v.as_array()?
        .iter()
        .find(|r| r["Name"] == name)?
        .get("Lag")?
        .as_i64()
}

/// `pgwardenctl switchover` from data node `from` to data node `to`, waited for.
async fn switchover(c: &Cluster, from: usize, to: usize) {
    let o = ctl(
        c,
        to,
        &[
            "switchover",
            "--leader",
            &format!("pg{from}"),
            "--candidate",
            &format!("pg{to}"),
            "--force",
        ],
    )
    .await;
    assert!(o.ok, "{o:?}");
    wait_for(
        Duration::from_secs(90),
        &format!("pg{to} to be the primary"),
        || async { (c.primary().await == Some(to)).then_some(()) },
    )
    .await;
}
