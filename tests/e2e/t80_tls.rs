//! TLS on all gRPC traffic, with real processes on loopback: three pgwarden daemons with
//! mutual TLS between Raft peers (certificates from one CA, IP SAN 127.0.0.1) form a
//! cluster and serve pgwardenctl over TLS on the admin API; a daemon and a pgwardenctl
//! with certificates from another CA are refused, and the members' logs say why.

use crate::harness::{Cluster, CtlOut, Options};
use pgwarden_testkit::{require_pg, wait_for, Ca};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tls_lines(cert: &Path, key: &Path, ca: &Path) -> String {
    format!(
        "  certfile: {}\n  keyfile: {}\n  cafile: {}\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

/// Runs pgwardenctl with a time limit (killed past it).
async fn ctl(args: &[&str]) -> CtlOut {
    crate::harness::pgwardenctl(args, Duration::from_secs(60)).await
}

/// A daemon this test started outside the harness; killed (by its PID) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_cluster_forms_and_refuses_foreign_certificates() {
    require_pg!();
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    let cluster_ca = Ca::new("pgwarden cluster CA");
    let other_ca = Ca::new("some other CA");
    let ca_file = dir.join("ca.pem");
    cluster_ca.write_cert(&ca_file);
    let raft_extra = (0..3)
        .map(|i| {
            let (c, k) = cluster_ca.issue_loopback_files(dir, &format!("pg{i}-raft"));
            tls_lines(&c, &k, &ca_file)
        })
        .collect();
    // One admin certificate for all members (all listen on 127.0.0.1); pgwardenctl run
    // with a member's config presents it as its client certificate.
    let (admin_cert, admin_key) = cluster_ca.issue_loopback_files(dir, "admin");
    let ctl_extra = format!(
        "  certfile: {}\n  keyfile: {}\n  cacert: {}\n  verify_client: required\n",
        admin_cert.display(),
        admin_key.display(),
        ca_file.display()
    );
    let mut c = Cluster::new(Options {
        ctl_extra,
        raft_extra,
        ..Default::default()
    });
    c.start_all();

    // The cluster forms over mutual TLS; pgwardenctl lists it over TLS.
    let cfg0 = c.nodes[0].config_path();
    let cfg0 = cfg0.to_str().unwrap();
    let leader = wait_for(
        Duration::from_secs(150),
        "1 leader and 2 streaming replicas (pgwardenctl list over TLS)",
        || async {
            let o = ctl(&["-c", cfg0, "list", "-f", "json"]).await;
            if !o.ok {
                return None;
            }
            let ms = serde_json::from_str::<Value>(&o.stdout)
                .ok()?
                .as_array()
                .cloned()?;
            let leader = ms.iter().find(|m| m["Role"] == "Leader")?;
            let streaming = ms.iter().filter(|m| m["State"] == "streaming").count();
            (ms.len() == 3 && streaming == 2).then(|| leader["Member"].as_str().unwrap_or("").to_string())
        },
    )
    .await;
    let table = ctl(&["-c", cfg0, "list"]).await;
    assert!(table.ok && table.stdout.contains(&leader), "{table:?}");

    // The round-trip check works over TLS: every member measured its partners, and its
    // probes (a full TLS handshake, closed cleanly) made no partner log a refusal.
    for i in 0..3 {
        let rtt = wait_for(
            Duration::from_secs(30),
            "a round trip to a Raft partner measured over TLS",
            || async { c.metric(i, "pgwarden_raft_peer_rtt_seconds").await },
        )
        .await;
        assert!(rtt > 0.0 && rtt < 1.0, "pg{i}: round trip {rtt} s on loopback");
    }
    for i in 0..3 {
        let log = c.log(i);
        let noise: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("refused a Raft peer connection") || l.contains("TLS handshake with"))
            .collect();
        assert!(
            noise.is_empty(),
            "pg{i} logged TLS refusals among members: {noise:#?}"
        );
    }

    // A 4th daemon with a certificate from another CA (trusting both CAs, so the only
    // thing in its way is its own certificate) cannot join: the members refuse it.
    let intruder_dir = tempfile::tempdir().unwrap();
    let (ic, ik) = other_ca.issue_loopback_files(dir, "intruder");
    let both = dir.join("both-cas.pem");
    std::fs::write(&both, format!("{}{}", other_ca.cert_pem(), cluster_ca.cert_pem())).unwrap();
    let partners: Vec<String> = c.nodes.iter().map(|n| n.raft_addr()).collect();
    let intruder_cfg = intruder_dir.path().join("pgwarden.yml");
    std::fs::write(
        &intruder_cfg,
        format!(
            "scope: e2e\nname: intruder\nrestapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
             ctl:\n  listen: 127.0.0.1:{ctlp}\n\
             raft:\n  data_dir: {d}/raft\n  self_addr: 127.0.0.1:{raft}\n  partner_addrs: [{p}]\n  witness: true\n{tls}",
            rest = pgwarden_testkit::free_port(),
            ctlp = pgwarden_testkit::free_port(),
            raft = pgwarden_testkit::free_port(),
            d = intruder_dir.path().display(),
            p = partners.join(", "),
            tls = tls_lines(&ic, &ik, &both),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(intruder_dir.path().join("daemon.log")).unwrap();
    let _intruder = Daemon(
        Command::new(env!("CARGO_BIN_EXE_pgwarden"))
            .arg(&intruder_cfg)
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the intruder"),
    );
    let line = wait_for(
        Duration::from_secs(30),
        "a member's log to refuse the intruder's Raft connection",
        || async {
            (0..3).find_map(|i| {
                c.log(i)
                    .lines()
                    .find(|l| l.contains("refused a Raft peer connection from 127.0.0.1:"))
                    .map(str::to_string)
            })
        },
    )
    .await;
    assert!(
        line.contains("TLS handshake failed") && line.contains("UnknownIssuer"),
        "the refusal says why: {line}"
    );
    // It never became a member: the Raft membership still has the three voters.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = ctl(&["-c", cfg0, "members", "list"]).await;
    assert!(m.ok && !m.stdout.contains("intruder"), "{m:?}");
    let o = ctl(&["-c", cfg0, "list", "-f", "json"]).await;
    assert!(o.ok && !o.stdout.contains("intruder"), "{o:?}");

    // pgwardenctl with a client certificate from another CA: refused, non-zero exit, and
    // the member's log names the client and the reason.
    let endpoint = format!("127.0.0.1:{}", c.nodes[0].spec.ctl);
    let bad = ctl(&[
        "-d",
        &endpoint,
        "--cacert",
        ca_file.to_str().unwrap(),
        "--certfile",
        ic.to_str().unwrap(),
        "--keyfile",
        ik.to_str().unwrap(),
        "list",
    ])
    .await;
    eprintln!("foreign client certificate: {bad:?}");
    assert!(!bad.ok, "{bad:?}");
    assert!(
        bad.stderr.contains("refused the TLS connection") && bad.stderr.contains("client certificate"),
        "the message says the certificate was refused: {bad:?}"
    );
    let refused = wait_for(
        Duration::from_secs(10),
        "the admin API's refusal in the log",
        || async {
            c.log(0)
                .lines()
                .find(|l| l.contains("refused a gRPC admin API connection from 127.0.0.1:"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // pgwardenctl trusting another CA: the member's certificate is not trusted.
    let other_ca_file = dir.join("other-ca.pem");
    other_ca.write_cert(&other_ca_file);
    let distrust = ctl(&[
        "-d",
        &endpoint,
        "--cacert",
        other_ca_file.to_str().unwrap(),
        "--certfile",
        admin_cert.to_str().unwrap(),
        "--keyfile",
        admin_key.to_str().unwrap(),
        "list",
    ])
    .await;
    eprintln!("foreign CA: {distrust:?}");
    assert!(!distrust.ok, "{distrust:?}");
    assert!(
        distrust
            .stderr
            .contains("invalid peer certificate: UnknownIssuer"),
        "{distrust:?}"
    );

    // Plain gRPC against the TLS listener: refused too.
    let plain = ctl(&["-d", &endpoint, "list"]).await;
    assert!(!plain.ok, "{plain:?}");
}
