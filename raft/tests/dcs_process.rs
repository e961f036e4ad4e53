//! Real member processes on loopback: SIGKILL of every member in the middle of writes
//! loses no acknowledged write; a member whose data directory was wiped rejoins through
//! the admin operation and catches up by snapshot.

mod common;

use common::{wait_for, ProcCluster};
use pgwarden_raft::wire::{AdminReply, AdminRequest};
use pgwarden_raft::Condition;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writers run against all three members; all three are SIGKILLed at once while writes
/// are in flight, then restarted: every acknowledged write is there, with its value, on
/// every member. Three rounds, each on the recovered cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_every_member_loses_no_acknowledged_write() {
    let mut c = ProcCluster::start(3).await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    for round in 0..3 {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut writers = vec![];
        for w in 0..6 {
            let client = c.client_of(w % 3);
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut i = 0u64;
                // Bounded: at most 100k writes or until stopped.
                while !stop.is_cancelled() && i < 100_000 {
                    let key = format!("/w/{round}/{w}/{i}");
                    let value = format!("v{w}-{i}");
                    if let Ok(r) = client.put(&key, &value, None, Condition::Absent).await {
                        if r.succeeded {
                            acked.lock().unwrap().insert(key, value);
                        }
                    }
                    i += 1;
                }
            }));
        }
        let target = 300 * (round + 1);
        wait_for(Duration::from_secs(30), "300 more acknowledged writes", || {
            let n = acked.lock().unwrap().len();
            async move { (n >= target).then_some(()) }
        })
        .await;
        for i in 0..3 {
            c.kill9(i);
        }
        stop.cancel();
        for w in writers {
            w.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "round {round}: {} writes acknowledged before every member was SIGKILLed",
            acked.len()
        );
        for i in 0..3 {
            c.start_member(i);
        }
        for i in 0..3 {
            let one = c.client_of(i);
            let all = wait_for(
                Duration::from_secs(20),
                "each restarted member to serve reads",
                || {
                    let cl = one.clone();
                    async move { cl.list("/w/").await.ok() }
                },
            )
            .await;
            let stored: BTreeMap<String, String> = all.into_iter().map(|kv| (kv.key, kv.value)).collect();
            let missing: Vec<_> = acked.iter().filter(|(k, v)| stored.get(*k) != Some(v)).collect();
            if !missing.is_empty() {
                c.dump_logs();
            }
            assert!(
                missing.is_empty(),
                "round {round}, member n{i}: {} acknowledged writes missing, e.g. {:?}",
                missing.len(),
                missing.first()
            );
        }
    }
}

/// A member whose data directory was wiped comes back under a new identity, waits without
/// initialising anything, and is let in by the admin operation, catching up by snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_process_rejoins_through_admin_and_catches_up() {
    let mut c = ProcCluster::start(3).await;
    let client = c.client();
    for i in 0..1300u32 {
        client
            .put(&format!("/k/{}", i % 40), &i.to_string(), None, Condition::Always)
            .await
            .unwrap();
    }
    let l = c.leader().await;
    let victim = (l + 1) % 3;
    let old_id = client.hello(&c.addrs[victim]).await.unwrap().node_id;
    c.kill9(victim);
    std::fs::remove_dir_all(c.data_dir(victim)).unwrap();
    c.start_member(victim);
    let hello = wait_for(Duration::from_secs(10), "the wiped member to answer", || {
        let cl = client.clone();
        let addr = c.addrs[victim].clone();
        async move { cl.hello(&addr).await.ok() }
    })
    .await;
    assert_ne!(
        hello.node_id, old_id,
        "a wiped member must come back as a new identity"
    );
    assert!(!hello.initialized);

    let reply = client
        .admin(AdminRequest::AddMember {
            addr: c.addrs[victim].clone(),
            replace: true,
        })
        .await
        .unwrap();
    assert!(
        matches!(reply, AdminReply::Added(ref m) if m.id == hello.node_id),
        "{reply:?}"
    );
    let only = c.client_of(victim);
    let v = wait_for(
        Duration::from_secs(15),
        "the rejoined member to serve the latest value",
        || {
            let cl = only.clone();
            async move { cl.get("/k/19").await.ok().flatten() }
        },
    )
    .await;
    assert_eq!(v.value, "1299");
    let AdminReply::Status(s) = client.admin(AdminRequest::Status).await.unwrap() else {
        panic!()
    };
    let voters: Vec<_> = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    assert_eq!(voters.len(), 3);
    assert!(voters.contains(&hello.node_id) && !voters.contains(&old_id));
    let log = std::fs::read_to_string(c.root.path().join(format!("n{victim}.log"))).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "the rejoined member did not catch up by snapshot"
    );
    assert!(
        log.contains("waiting to be added"),
        "the wiped member did not say it was waiting"
    );
}
