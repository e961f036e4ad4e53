//! Operating the DCS after the loss of its majority (issue 22), with real member
//! processes: `force_new_cluster` on a survivor whose two partners are gone for good, and
//! its refusal while the partners still run.

mod common;

use common::{wait_for, ProcCluster};
use pgwarden_raft::dr::{force_new_cluster, DrError};
use pgwarden_raft::log_store::SledStore;
use pgwarden_raft::network::PeerClients;
use pgwarden_raft::wire::{AdminReply, AdminRequest};
use pgwarden_raft::Condition;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The TTL of the lease key written before the loss.
const TTL: Duration = Duration::from_secs(6);

fn others(c: &ProcCluster, i: usize) -> Vec<String> {
    c.addrs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, a)| a.clone())
        .collect()
}

/// With both partners running, force-new-cluster on a stopped member is refused, names
/// them, and leaves the store byte-for-byte as it was (its dump is unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_ops_force_new_cluster_is_refused_while_the_others_run() {
    let mut c = ProcCluster::start(3).await;
    let client = c.client();
    client.put("/k/a", "1", None, Condition::Always).await.unwrap();
    c.kill9(0);
    let dir = c.data_dir(0);
    let before = SledStore::open(&dir).unwrap().dump();
    let peers = PeerClients::new(0, None);
    let err = force_new_cluster(&dir, &others(&c, 0), &peers, Some("/service/s/config"))
        .await
        .expect_err("must refuse beside a live majority");
    let DrError::PeersAlive { alive } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(alive.len(), 2, "{alive:?}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(SledStore::open(&dir).unwrap().dump(), before);
    // The member rejoins as before: its membership was not touched.
    c.start_member(0);
    let v = wait_for(Duration::from_secs(15), "n0 to serve reads again", || {
        let cl = c.client_of(0);
        async move { cl.get("/k/a").await.ok().flatten() }
    })
    .await;
    assert_eq!(v.value, "1");
    let AdminReply::Status(s) = client.admin(AdminRequest::Status).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.members.iter().filter(|m| m.voter).count(), 3);
}

/// Two of three members SIGKILLed and their data directories deleted: the survivor can
/// never reach a majority again. force-new-cluster makes it a one-voter cluster holding
/// every write it had, the lease key lives one TTL from the start (no key that never
/// expires, no expiry at once), and two fresh members join through `members replace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_ops_force_new_cluster_on_the_survivor_of_a_lost_majority() {
    let mut c = ProcCluster::start(3).await;
    let client = c.client();
    let mut acked = BTreeMap::new();
    for i in 0..1200u32 {
        let (k, v) = (format!("/k/{}", i % 50), i.to_string());
        client.put(&k, &v, None, Condition::Always).await.unwrap();
        acked.insert(k, v);
    }
    client
        .put("/service/s/leader", "n1", Some(TTL), Condition::Always)
        .await
        .unwrap();
    // The survivor must hold every acknowledged write: wait until it applied the last.
    wait_for(Duration::from_secs(10), "n0 to apply the lease key", || {
        let cl = c.client_of(0);
        async move { cl.get("/service/s/leader").await.ok().flatten() }
    })
    .await;
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 1..3 {
        std::fs::remove_dir_all(c.data_dir(i)).unwrap();
    }

    let peers = PeerClients::new(0, None);
    let report = force_new_cluster(&c.data_dir(0), &others(&c, 0), &peers, Some("/service/s/config"))
        .await
        .unwrap();
    assert_eq!(report.me.name, "n0");
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.probed.len(), 2, "{:?}", report.probed);
    assert!(report.paused);
    // The 52 keys written, plus the configuration key set to pause.
    assert_eq!((report.keys, report.ttl_keys), (53, 1), "{report:?}");

    let started = Instant::now();
    c.start_member(0);
    let only = c.client_of(0);
    wait_for(Duration::from_secs(15), "the survivor to accept a write", || {
        let cl = only.clone();
        async move {
            cl.put("/after", "1", None, Condition::Always)
                .await
                .ok()
                .filter(|r| r.succeeded)
        }
    })
    .await;
    let stored: BTreeMap<String, String> = only
        .list("/k/")
        .await
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(stored, acked, "the survivor lost acknowledged writes");
    let config = only
        .get("/service/s/config")
        .await
        .unwrap()
        .expect("the config key");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&config.value).unwrap()["pause"],
        serde_json::json!(true),
        "the survivor must start paused: {}",
        config.value
    );
    assert!(
        only.get("/service/s/leader").await.unwrap().is_some() || started.elapsed() >= TTL,
        "the lease key expired at once"
    );
    wait_for(
        Duration::from_secs(30),
        "the lease key of the lost leader to expire",
        || {
            let cl = only.clone();
            async move { cl.get("/service/s/leader").await.ok().filter(Option::is_none) }
        },
    )
    .await;
    let lived = started.elapsed();
    assert!(
        lived >= TTL,
        "the lease key expired {lived:?} after the start, before its TTL {TTL:?}"
    );
    eprintln!("lease key expired {lived:?} after the survivor started (TTL {TTL:?})");

    // Two fresh members start with the old partner lists, find the survivor's cluster and
    // wait; `replace` lets each in under its old name.
    for i in 1..3 {
        c.start_member(i);
        let addr = c.addrs[i].clone();
        let reply = wait_for(Duration::from_secs(60), "the new member to be added", || {
            let cl = only.clone();
            let addr = addr.clone();
            async move {
                cl.admin(AdminRequest::AddMember { addr, replace: true })
                    .await
                    .ok()
            }
        })
        .await;
        assert!(matches!(reply, AdminReply::Added(_)), "{reply:?}");
    }
    let AdminReply::Status(s) = only.admin(AdminRequest::Status).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.members.iter().filter(|m| m.voter).count(), 3, "{s:?}");
    for i in 1..3 {
        let v = wait_for(Duration::from_secs(15), "a new member to serve reads", || {
            let cl = c.client_of(i);
            async move { cl.get("/k/49").await.ok().flatten() }
        })
        .await;
        assert_eq!(v.value, acked["/k/49"]);
    }
    // The survivor alone no longer makes a quorum: the three are one cluster.
    c.kill9(0);
    wait_for(
        Duration::from_secs(20),
        "n1 and n2 to accept a write without n0",
        || {
            let cl = c.client_of(1);
            async move {
                cl.put("/without-n0", "1", None, Condition::Always)
                    .await
                    .ok()
                    .filter(|r| r.succeeded)
            }
        },
    )
    .await;
}

/// A backup of a running cluster's keys, restored into a fresh directory, becomes a
/// one-voter cluster with the same keys and values, which two fresh members join. A
/// backup of another scope, a damaged file and an occupied directory are refused, each
/// naming the file or directory; `force` moves the old store aside, never deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_ops_a_backup_restored_into_a_fresh_cluster_holds_the_same_keys() {
    use pgwarden_raft::backup::DcsBackup;
    use pgwarden_raft::dr::{check_backup, restore};
    use pgwarden_raft::Node;

    let prefix = "/service/batman/";
    let old = ProcCluster::start(3).await;
    let client = old.client();
    for i in 0..30u32 {
        let key = format!("{prefix}members/m{i}");
        client
            .put(&key, &format!("{{\"i\":{i}}}"), None, Condition::Always)
            .await
            .unwrap();
    }
    client
        .put(&format!("{prefix}leader"), "m1", Some(TTL), Condition::Always)
        .await
        .unwrap();
    client
        .put("/service/other/leader", "x", None, Condition::Always)
        .await
        .unwrap();
    let keys = client.list(prefix).await.unwrap();
    let backup = DcsBackup {
        scope: "batman".into(),
        prefix: prefix.into(),
        revision: keys.iter().map(|k| k.mod_revision).max().unwrap(),
        taken_at: "now".into(),
        keys: keys.clone(),
    };
    drop(old);

    // The new cluster: three fresh addresses and directories, nothing running yet.
    let mut c = ProcCluster {
        procs: vec![None, None, None],
        addrs: (0..3).map(|_| common::free_addr()).collect(),
        root: tempfile::tempdir().unwrap(),
    };
    let file = c.root.path().join("batman.snap");
    backup.write(&file, false).unwrap();
    let read = DcsBackup::read(&file).unwrap();
    assert_eq!(read, backup);
    let e = check_backup(&file, &read, "robin", "/service/robin/").unwrap_err();
    assert!(matches!(e, DrError::OtherScope { .. }), "{e}");
    assert!(e.to_string().contains("batman.snap"), "{e}");
    check_backup(&file, &read, "batman", prefix).unwrap();
    let mut damaged = std::fs::read(&file).unwrap();
    let n = damaged.len();
    damaged[n - 3] ^= 0x20;
    let e = DcsBackup::from_bytes(&file, &damaged).unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");

    let me = Node {
        name: "n0".into(),
        addr: c.addrs[0].clone(),
        site: None,
    };
    let dir = c.data_dir(0);
    let first = restore(&dir, &file, &read, me.clone(), false).await.unwrap();
    assert_eq!(first.keys, 31);
    assert!(first.index > backup.revision);
    // Now the directory holds a store: refused without force, moved aside with it.
    let e = restore(&dir, &file, &read, me.clone(), false).await.unwrap_err();
    assert!(matches!(e, DrError::NotEmpty { .. }), "{e}");
    let again = restore(&dir, &file, &read, me.clone(), true).await.unwrap();
    let aside = again.moved_aside.expect("the old store was moved aside");
    assert!(aside.join("db").exists(), "the old store must still exist");
    std::fs::remove_dir_all(&aside).unwrap();

    c.start_member(0);
    let only = c.client_of(0);
    wait_for(
        Duration::from_secs(15),
        "the restored member to accept a write",
        || {
            let cl = only.clone();
            async move {
                cl.put("/after", "1", None, Condition::Always)
                    .await
                    .ok()
                    .filter(|r| r.succeeded)
            }
        },
    )
    .await;
    let restored = only.list(prefix).await.unwrap();
    let strip = |kvs: &[pgwarden_raft::KeyValue]| -> BTreeMap<String, (String, Option<u64>)> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), (kv.value.clone(), kv.ttl_ms)))
            .collect()
    };
    assert_eq!(strip(&restored), strip(&keys));
    assert!(only.list("/service/other/").await.unwrap().is_empty());
    assert!(restored.iter().all(|kv| kv.mod_revision > backup.revision));

    for i in 1..3 {
        c.start_member(i);
        let addr = c.addrs[i].clone();
        wait_for(Duration::from_secs(30), "a fresh member to be added", || {
            let cl = only.clone();
            let addr = addr.clone();
            async move {
                cl.admin(AdminRequest::AddMember { addr, replace: false })
                    .await
                    .ok()
            }
        })
        .await;
    }
    let v = wait_for(Duration::from_secs(15), "a joined member to serve reads", || {
        let cl = c.client_of(2);
        async move { cl.get(&format!("{prefix}members/m7")).await.ok().flatten() }
    })
    .await;
    assert_eq!(v.value, "{\"i\":7}");
}

/// `dcs get`'s time left on a lease is the Raft leader's, the reaper's clock: asked through
/// a follower that restarted after the write (so its own tracker re-armed the key at a full
/// TTL), the answer is still the leader's deadline, less the time that has passed. A
/// revision other than the one the deadline was armed by gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_ops_lease_time_left_is_the_raft_leaders() {
    let mut c = ProcCluster::start(3).await;
    let client = c.client();
    client
        .put("/service/s/leader", "n1", Some(TTL), Condition::Always)
        .await
        .unwrap();
    let written = Instant::now();
    let rev = client
        .get("/service/s/leader")
        .await
        .unwrap()
        .unwrap()
        .mod_revision;
    let l = c.leader().await;
    let f = (l + 1) % 3;
    // Part of the lease passes before the follower restarts: its own tracker then counts a
    // full TTL from its start, the leader's what is really left.
    tokio::time::sleep(TTL / 3).await;
    c.kill9(f);
    c.start_member(f);
    let ask = |keys: Vec<(String, u64)>| {
        let cl = c.client_of(f);
        async move {
            // The leader applied the write before the put returned, so at least this much
            // of the lease has passed when it answers.
            let passed = written.elapsed();
            match cl.admin(AdminRequest::LeaseLeft { keys }).await {
                Ok(AdminReply::LeaseLeft(v)) => Some((passed, v)),
                _ => None,
            }
        }
    };
    let (passed, left) = wait_for(
        Duration::from_secs(15),
        "the restarted follower to answer",
        || ask(vec![("/service/s/leader".into(), rev)]),
    )
    .await;
    let bound = TTL.saturating_sub(passed).as_millis() as u64;
    let ms = left[0].expect("the leader's deadline");
    assert!(ms <= bound, "{ms} ms left, more than the leader's {bound} ms");
    let (_, left) = ask(vec![("/service/s/leader".into(), rev + 1)]).await.unwrap();
    assert_eq!(left, vec![None]);
}
