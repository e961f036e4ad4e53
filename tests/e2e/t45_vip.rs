//! Issue 19's virtual IP end to end, in network namespaces on one bridge: every node has
//! `vip:` for the same address on its `eth0`, PostgreSQL listens on the wildcard address, and
//! a client in its own namespace writes through the VIP. Each node's PostgreSQL has its own
//! port, so a write acknowledged through `VIP:port(k)` was accepted by node k, and by node k
//! only while it held the address. A poller lists every node namespace's addresses all along:
//! at no instant may two of them hold the VIP.

use crate::harness::{Cluster, Options, Writer};
use pgwarden_testkit::{require_netns, require_pg, wait_for, NetLab};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const VIP: &str = "10.201.0.100";

/// Each change of the holders: when, and which nodes held the address.
type Changes = Arc<Mutex<Vec<(Instant, Vec<bool>)>>>;

/// Every node namespace's view of the VIP, polled until stopped.
struct Holders {
    /// Each change: when, and which nodes held the address.
    changes: Changes,
    /// Polls that saw two holders or more.
    doubles: Arc<Mutex<Vec<Vec<bool>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn holds(ns: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show", "dev", "eth0"])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/"))
}

impl Holders {
    fn start(lab: &NetLab, n: usize) -> Holders {
        let names: Vec<String> = (0..n).map(|i| lab.node_ns(i)).collect();
        let changes: Changes = Arc::default();
        let doubles: Arc<Mutex<Vec<Vec<bool>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, d, s) = (changes.clone(), doubles.clone(), stop.clone());
        // Bounded by `stop`, which Drop sets.
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let now: Vec<bool> = names.iter().map(|ns| holds(ns)).collect();
                if now.iter().filter(|h| **h).count() > 1 {
                    d.lock().unwrap().push(now.clone());
                }
                let mut c = c.lock().unwrap();
                if c.last().map(|(_, l)| l) != Some(&now) {
                    c.push((Instant::now(), now));
                }
                drop(c);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Holders {
            changes,
            doubles,
            stop,
            thread: Some(thread),
        }
    }

    /// The one node holding the VIP at the last poll.
    fn holder(&self) -> Option<usize> {
        let c = self.changes.lock().unwrap();
        let (_, last) = c.last()?;
        let who: Vec<usize> = (0..last.len()).filter(|i| last[*i]).collect();
        (who.len() == 1).then(|| who[0])
    }

    /// When node `i` last started to hold the address.
    fn since(&self, i: usize) -> Option<Instant> {
        let c = self.changes.lock().unwrap();
        let mut at = None;
        let mut before = false;
        for (t, h) in c.iter() {
            if h[i] && !before {
                at = Some(*t);
            }
            before = h[i];
        }
        at
    }

    /// Whether node `i` held the address at `t` (by the polls around it: a write is checked
    /// against the poll before it and the one after it, so that the poll interval cannot hide
    /// a holder).
    fn held_around(&self, i: usize, t: Instant) -> bool {
        let c = self.changes.lock().unwrap();
        let before = c.iter().rev().find(|(at, _)| *at <= t).map(|(_, h)| h[i]);
        let after = c.iter().find(|(at, _)| *at > t).map(|(_, h)| h[i]);
        before.unwrap_or(false) || after.unwrap_or(false)
    }

    fn assert_never_two(&self) {
        let d = self.doubles.lock().unwrap();
        assert!(
            d.is_empty(),
            "two namespaces held the VIP at once: {:?}",
            d.first()
        );
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A cluster of `nodes` with the VIP configured on every node and PostgreSQL listening on all
/// addresses (so that it answers on the VIP once the address is added).
fn vip_cluster(lab: Arc<NetLab>, unprivileged: bool, nodes: usize) -> Cluster {
    let c = Cluster::new(Options {
        data_nodes: nodes,
        netns: Some(lab.clone()),
        unprivileged,
        raft_extra: if nodes == 1 {
            vec!["  single_node: true\n".into()]
        } else {
            vec![]
        },
        ..Options::default()
    });
    for (i, n) in c.nodes.iter().enumerate() {
        let path = n.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        let from = format!("  listen: {}:{}\n", lab.node_ip(i), n.spec.pg);
        assert!(
            text.contains(&from),
            "the PostgreSQL listen line is where expected"
        );
        let text = text.replace(&from, &format!("  listen: 0.0.0.0:{}\n", n.spec.pg));
        std::fs::write(&path, text).unwrap();
        c.append_config(i, &format!("vip:\n  address: {VIP}/24\n  interface: eth0\n"));
    }
    c
}

fn vip_conns(c: &Cluster) -> Vec<String> {
    c.nodes
        .iter()
        .map(|n| {
            format!(
                "host={VIP} port={} user=postgres password={} dbname=postgres connect_timeout=1",
                n.spec.pg,
                crate::harness::SUPERUSER_PASSWORD
            )
        })
        .collect()
}

/// Waits until node `want` (or, with `None`, any node other than `not`) is the one VIP holder.
async fn wait_holder(h: &Holders, want: Option<usize>, not: Option<usize>, limit: Duration) -> usize {
    wait_for(limit, "one VIP holder", || async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.holder()
            .filter(|x| want.is_none_or(|w| w == *x) && Some(*x) != not)
    })
    .await
}

/// The hardware address of `eth0` in namespace `ns`.
fn mac_in(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", "eth0"])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(!mac.is_empty(), "no hardware address on eth0 in {ns}: {text}");
    mac
}

/// Waits until the client namespace's ARP entry for the VIP names node `i`'s hardware
/// address: the gratuitous ARP (or the client's own resolution) replaced the old holder's.
async fn wait_client_arp(lab: &NetLab, i: usize) {
    let want = mac_in(&lab.node_ns(i));
    let client = lab.client_ns();
    wait_for(
        Duration::from_secs(5),
        "the client's ARP entry for the VIP",
        || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let out = std::process::Command::new("ip")
                .args(["-n", &client, "neigh", "show", VIP])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).contains(&want).then_some(())
        },
    )
    .await;
}

/// Every write acknowledged through the VIP by node k came while k held the address.
fn assert_writes_on_the_holder(acks: &[(Instant, usize)], h: &Holders) {
    for (at, node) in acks {
        assert!(
            h.held_around(*node, *at),
            "a write through the VIP was acknowledged by pg{node}, which did not hold it"
        );
    }
}

/// The first acknowledgement by `node` after `from`, and the longest write gap since `from`.
fn moved(w: &Writer, from: Instant, node: usize) -> (Duration, Duration) {
    let first = w
        .ack_times
        .lock()
        .unwrap()
        .iter()
        .find(|(at, n)| *at > from && *n == node)
        .map(|(at, _)| *at - from)
        .unwrap_or_default();
    (first, w.longest_gap_after(from))
}

/// From node `i`'s log: how long after its last promotion ended (PostgreSQL accepts writes)
/// it added the VIP. Asserted under 1 s (issue 19's bound).
fn promotion_to_vip(c: &Cluster, i: usize) -> Duration {
    let log = c.log(i);
    let at = |l: &str| {
        chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let mut promoted = None;
    let mut added = None;
    for l in log.lines() {
        if l.contains("promoted: recovery ended") {
            promoted = at(l);
            added = None;
        } else if l.contains("VIP added") && promoted.is_some() && added.is_none() {
            added = at(l);
        }
    }
    let (Some(p), Some(a)) = (promoted, added) else {
        panic!("pg{i}: no promotion followed by a VIP add in its log");
    };
    let d = (a - p).to_std().unwrap_or_default();
    assert!(
        d < Duration::from_secs(1),
        "pg{i} added the VIP {d:?} after its promotion"
    );
    d
}

async fn switchover(c: &Cluster, from: usize, to: usize) {
    let body = serde_json::json!({"leader": format!("pg{from}"), "candidate": format!("pg{to}")});
    wait_for(
        Duration::from_secs(60),
        "the switchover to be accepted",
        || async {
            match c.post(from, "/switchover", body.clone()).await {
                Some((200, _)) => Some(()),
                _ => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
            }
        },
    )
    .await;
}

/// A switchover, a SIGKILL of the primary's node (daemon and PostgreSQL together) and a
/// partition of the primary's node: the VIP follows the primary each time, writes through it
/// land only on the node holding it, two namespaces never hold it at once, and a healed
/// former primary does not take it back.
#[test]
fn vip_follows_the_primary_across_switchover_kill_and_partition() {
    require_pg!();
    require_netns!();
    let lab = Arc::new(NetLab::new("pgw-t45-vip", 3).expect("build the test network"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || async move {
        let lab = for_body;
        let mut c = vip_cluster(lab.clone(), false, 3);
        let h = Holders::start(&lab, 3);
        c.start_all();
        let p0 = c.wait_healthy(Duration::from_secs(120)).await;
        wait_holder(&h, Some(p0), None, Duration::from_secs(10)).await;
        let v = c.patroni(p0).await.unwrap();
        assert_eq!(v["vip"]["held"], true, "/patroni: {v}");
        assert_eq!(c.metric(p0, "pgwarden_vip_held").await, Some(1.0));
        let other = (0..3).find(|i| *i != p0).unwrap();
        assert_eq!(c.metric(other, "pgwarden_vip_held").await, Some(0.0));

        let w = Writer::start(vip_conns(&c)).await;
        w.wait_more(50, Duration::from_secs(30)).await;

        // 1. Switchover.
        let p1 = (0..3).find(|i| *i != p0).unwrap();
        let t = Instant::now();
        switchover(&c, p0, p1).await;
        wait_holder(&h, Some(p1), None, Duration::from_secs(30)).await;
        wait_client_arp(&lab, p1).await;
        w.wait_more(50, Duration::from_secs(30)).await;
        let (first, gap) = moved(&w, t, p1);
        let added = promotion_to_vip(&c, p1);
        eprintln!("vip: switchover pg{p0} -> pg{p1}: VIP added {added:?} after the promotion; first write through the VIP on pg{p1} after {first:?}, longest write gap {gap:?}");

        // 2. SIGKILL of the primary's daemon and PostgreSQL: its fence guard removes the
        // address at the lease's deadline, before the key can be taken.
        c.wait_healthy(Duration::from_secs(60)).await;
        let t = Instant::now();
        c.kill9(p1);
        let p2 = wait_holder(&h, None, Some(p1), Duration::from_secs(30)).await;
        wait_client_arp(&lab, p2).await;
        w.wait_more(50, Duration::from_secs(30)).await;
        let (first, gap) = moved(&w, t, p2);
        let since = h.since(p2).map(|s| s - t).unwrap_or_default();
        let added = promotion_to_vip(&c, p2);
        eprintln!("vip: SIGKILL of pg{p1}: VIP on pg{p2} after {since:?} ({added:?} after its promotion), first write there after {first:?}, longest write gap {gap:?}");
        c.start(p1);
        c.wait_healthy(Duration::from_secs(90)).await;

        // 3. Partition of the primary's node from the other nodes (the client still reaches
        // it): its lease runs out, the fence removes the address, another member takes it.
        let t = Instant::now();
        c.isolate(p2);
        let p3 = wait_holder(&h, None, Some(p2), Duration::from_secs(30)).await;
        wait_client_arp(&lab, p3).await;
        w.wait_more(50, Duration::from_secs(30)).await;
        let (first, gap) = moved(&w, t, p3);
        let since = h.since(p3).map(|s| s - t).unwrap_or_default();
        let added = promotion_to_vip(&c, p3);
        eprintln!("vip: partition of pg{p2}: VIP on pg{p3} after {since:?} ({added:?} after its promotion), first write there after {first:?}, longest write gap {gap:?}");
        c.heal();
        // Healed, the former primary rejoins as a replica and does not take the address back.
        c.wait_healthy(Duration::from_secs(90)).await;
        w.wait_more(50, Duration::from_secs(30)).await;
        assert_eq!(h.holder(), Some(p3), "after the heal the VIP must stay on pg{p3}");
        let v = c.patroni(p2).await.unwrap();
        assert_eq!(v["vip"]["held"], false, "/patroni of the healed pg{p2}: {v}");

        let acks = w.ack_times.clone();
        w.stop().await;
        assert_writes_on_the_holder(&acks.lock().unwrap(), &h);
        h.assert_never_two();
        for i in 0..3 {
            c.stop(i).await;
        }
        // Daemon shutdown removes the address.
        wait_for(Duration::from_secs(10), "no VIP after shutdown", || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (!(0..3).any(|i| holds(&lab.node_ns(i)))).then_some(())
        })
        .await;
        h.assert_never_two();
    });
}

/// A member without CAP_NET_ADMIN and CAP_NET_RAW (the daemon runs as `postgres`): a clear
/// error in the log, the member runs as primary all the same, and /patroni and /metrics say
/// that it has no VIP and why.
#[test]
fn vip_without_the_capability_reports_it_and_keeps_running() {
    require_pg!();
    require_netns!();
    let lab = Arc::new(NetLab::new("pgw-t45-cap", 1).expect("build the test network"));
    let for_body = lab.clone();
    lab.block_on_in_client(move || async move {
        let lab = for_body;
        let mut c = vip_cluster(lab.clone(), true, 1);
        c.start_all();
        let p = c.wait_healthy(Duration::from_secs(120)).await;
        let v = wait_for(Duration::from_secs(20), "the VIP error in /patroni", || async {
            let v = c.patroni(p).await?;
            v["vip"]["error"].is_string().then_some(v)
        })
        .await;
        assert_eq!(v["vip"]["held"], false, "{v}");
        assert_eq!(v["role"], "primary", "{v}");
        assert!(
            v["vip"]["error"].as_str().unwrap().contains("CAP_NET_ADMIN"),
            "{v}"
        );
        assert_eq!(c.metric(p, "pgwarden_vip_held").await, Some(0.0));
        assert_eq!(c.metric(p, "pgwarden_vip_error").await, Some(1.0));
        assert!(
            c.log(p).contains("running without the VIP"),
            "no clear error in the log"
        );
        assert!(!holds(&lab.node_ns(0)));
        c.stop(p).await;
    });
}
