//! Mutual TLS on the peer transport: three in-process nodes with certificates from one CA
//! form a cluster and serve a TLS client; clients whose certificate or trust comes from
//! another CA are refused.

use pgwarden_raft::client::RaftClient;
use pgwarden_raft::tls::PeerTls;
use pgwarden_raft::{Condition, NodeConfig, RaftNode};
use pgwarden_testkit::Ca;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;

/// Writes `<name>.pem`, `<name>.key` (signed by `ca`, IP SAN 127.0.0.1) and `<name>-ca.pem`.
fn issue(dir: &Path, ca: &Ca, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (c, k) = ca.issue_loopback_files(dir, name);
    let a = dir.join(format!("{name}-ca.pem"));
    ca.write_cert(&a);
    (c, k, a)
}

fn tls(dir: &Path, ca: &Ca, name: &str) -> PeerTls {
    let (c, k, a) = issue(dir, ca, name);
    PeerTls::from_files(&c, &k, &a).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_forms_and_refuses_other_cas() {
    let pki = tempfile::tempdir().unwrap();
    let cluster_ca = Ca::new("cluster CA");
    let other_ca = Ca::new("another CA");
    let mut listeners = vec![];
    let mut addrs = vec![];
    for _ in 0..3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let mut dirs = vec![];
    let mut nodes = vec![];
    for (i, l) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let partners = addrs.iter().filter(|a| **a != addrs[i]).cloned().collect();
        let mut cfg = NodeConfig::new(&format!("n{i}"), dir.path(), &addrs[i], partners);
        cfg.op_timeout = Duration::from_secs(3);
        cfg.tls = Some(tls(pki.path(), &cluster_ca, &format!("n{i}")));
        nodes.push(RaftNode::start(cfg, Some(l)).await.unwrap());
        dirs.push(dir);
    }

    // A client with the cluster's certificates writes and reads through any member.
    let good = RaftClient::new(addrs.clone(), Duration::from_secs(3))
        .with_tls(Some(tls(pki.path(), &cluster_ca, "client").client_config()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match good.put("/k", "v", None, Condition::Always).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the TLS cluster did not take a write: {e}"),
        }
    }
    assert_eq!(good.get("/k").await.unwrap().unwrap().value, "v");
    let leaders: std::collections::HashSet<_> = nodes.iter().map(|n| n.metrics().current_leader).collect();
    assert_eq!(leaders.len(), 1, "all members agree on one leader");

    // Trusting another CA: the members' certificates are not accepted.
    let foreign = RaftClient::new(addrs.clone(), Duration::from_secs(2))
        .with_tls(Some(tls(pki.path(), &other_ca, "intruder").client_config()));
    let e = foreign.get("/k").await.unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Trusting the cluster's CA but presenting a foreign certificate: the read fails.
    let (c, k, _) = issue(pki.path(), &other_ca, "intruder2");
    let (_, _, cluster_ca_file) = issue(pki.path(), &cluster_ca, "unused");
    let mixed = PeerTls::from_files(&c, &k, &cluster_ca_file).unwrap();
    let spy = RaftClient::new(addrs.clone(), Duration::from_secs(2)).with_tls(Some(mixed.client_config()));
    assert!(
        spy.get("/k").await.is_err(),
        "a foreign client certificate must not read the keyspace"
    );

    // Without TLS at all: refused too.
    let plain = RaftClient::new(addrs.clone(), Duration::from_secs(2));
    assert!(plain.get("/k").await.is_err());

    for n in nodes {
        n.shutdown().await;
    }
}

#[test]
fn bad_pem_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = PeerTls::from_files(&junk, &junk, &junk).unwrap_err().to_string();
    assert!(e.contains("junk.pem") && e.contains("certificate"), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = PeerTls::from_files(&missing, &junk, &junk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pem") && e.contains("cannot read"), "{e}");
}
