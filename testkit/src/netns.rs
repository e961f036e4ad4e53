//! A network of Linux network namespaces for tests that need real partitions: one namespace
//! per node, one for the clients, and a bridge in a namespace of its own that joins them. The
//! machine's own network namespace is never configured; every address is in 10.201.0.0/24,
//! inside namespaces this module created. It owns the namespaces' life (leftovers of a crashed
//! run with the same names are removed first; everything goes on drop, also on panic) and the
//! faults injected into the links.
//!
//! Faults are tc filters on the egress of a node's veth (a clsact qdisc): a packet matching
//! a cut (its destination address) or a loss rule is redirected to a sink veth with no
//! address, where it dies. A silent drop, as a dead switch port or a partition does it: the
//! sender is told nothing and its TCP retransmits until it gives up (a `blackhole` route
//! would fail fast with an error, which real partitions do not). The redirect (act_mirred)
//! is used instead of `action drop` because the kernels this runs on may lack act_gact;
//! `netem` delay likewise needs sch_netem, which [`NetLab::delay`] reports when missing.
//!
//! Code that must talk to the nodes runs inside the client namespace through
//! [`NetLab::block_on_in`]: a thread joins the namespace and runs a Tokio runtime, whose
//! worker threads (and any process they spawn) inherit it.

use crate::delay_switch::DelaySwitch;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The interface each node and the client namespace reach the bridge through.
const LINK: &str = "eth0";
/// Where dropped packets are redirected to; its peer has no address and discards them.
const SINK: &str = "sink0";
const SINK_PEER: &str = "sink1";
/// tc filter preference of the random-loss rule; cuts use `CUT_PREF_BASE + destination`.
const LOSS_PREF: u32 = 5;
const CUT_PREF_BASE: u32 = 100;
/// tc filter preference of a node's cut towards the clients: above every node's cut
/// (at most 99 nodes, so `CUT_PREF_BASE + 98` is the highest of those).
const CLIENT_CUT_PREF: u32 = CUT_PREF_BASE + 99;
/// Limit of each `ip`/`tc` call: they answer at once or something is badly wrong.
const TOOL_LIMIT: Duration = Duration::from_secs(30);

/// What setting up or changing the test network can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("`{cmd}` could not be run: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{0}` did not finish within {TOOL_LIMIT:?}")]
    Hung(String),
    #[error("cannot enter network namespace {ns}: {reason}")]
    Enter { ns: String, reason: String },
    #[error("this kernel cannot {0}")]
    Unsupported(&'static str),
}

/// Whether this machine can build a [`NetLab`]: root, and iproute2's `ip` and `tc`.
pub fn netns_available() -> bool {
    nix::unistd::geteuid().is_root()
        && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]
            .iter()
            .any(|p| Path::new(p).exists())
        && ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"]
            .iter()
            .any(|p| Path::new(p).exists())
}

/// Skips (loudly) when network namespaces cannot be built here (not root, no `ip`/`tc`),
/// except in CI, where that is a failure.
#[macro_export]
macro_rules! require_netns {
    () => {
        if !$crate::netns::netns_available() {
            if $crate::env::in_ci() {
                panic!("network namespaces are needed: run as root with iproute2 installed");
            }
            eprintln!("SKIPPED: network namespaces need root, ip and tc (iproute2)");
            return;
        }
    };
}

/// One direction of a cut: packets from node `from` to node `to` are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cut {
    pub from: usize,
    pub to: usize,
}

/// The namespaces, bridge and veths of one test; removed on drop.
pub struct NetLab {
    prefix: String,
    nodes: usize,
    /// Namespaces created so far, in creation order (removed in reverse).
    created: Mutex<Vec<String>>,
    /// Cuts in force.
    cuts: Mutex<BTreeSet<Cut>>,
    /// Nodes with a loss rule in force.
    lossy: Mutex<BTreeSet<usize>>,
    /// Nodes whose packets to the clients are dropped.
    client_cuts: Mutex<BTreeSet<usize>>,
    /// With [`NetLab::with_site_delay`]: the userspace switch that replaces the bridge.
    switch: Mutex<Option<DelaySwitch>>,
}

/// A lab with nothing made yet, its namespaces' names taken: the ones an earlier, crashed
/// run left with those names are deleted first. What the builders create afterwards is
/// removed by its drop, also on an error half-way.
fn empty_lab(prefix: &str, nodes: usize) -> Result<NetLab, NetError> {
    assert!(nodes < 100, "at most 99 nodes");
    let lab = NetLab {
        prefix: prefix.to_string(),
        nodes,
        created: Mutex::new(Vec::new()),
        cuts: Mutex::new(BTreeSet::new()),
        lossy: Mutex::new(BTreeSet::new()),
        client_cuts: Mutex::new(BTreeSet::new()),
        switch: Mutex::new(None),
    };
    let mut all: Vec<String> = (0..nodes).map(|i| lab.node_ns(i)).collect();
    all.push(lab.client_ns());
    all.push(lab.bridge_ns());
    for ns in &all {
        if Path::new("/run/netns").join(ns).exists() {
            eprintln!("netns: removing namespace {ns} left by an earlier run");
            run("ip", &["netns", "del", ns])?;
        }
    }
    Ok(lab)
}

impl NetLab {
    /// Builds the network for `nodes` nodes and the clients, its namespaces named
    /// `<prefix>-n0`…, `<prefix>-cl` and `<prefix>-br`. `prefix` must be unique to the test:
    /// namespaces left with these names by an earlier, crashed run are deleted first.
    pub fn new(prefix: &str, nodes: usize) -> Result<NetLab, NetError> {
        let lab = empty_lab(prefix, nodes)?;
        // On any error below, the drop of `lab` removes what was created.
        let br = lab.bridge_ns();
        lab.add_namespace(&br)?;
        run("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            lab.attach(&lab.node_ns(i), &format!("p{i}"), lab.node_ip(i))?;
            lab.add_sink(i)?;
        }
        lab.attach(&lab.client_ns(), "pcl", lab.client_ip())?;
        Ok(lab)
    }

    /// Like [`NetLab::new`], for a stretched cluster: each node is a site of its own, and
    /// every frame between two nodes is delayed by `one_way` (a round trip of twice that);
    /// the clients' namespace reaches every node without delay. The nodes and the clients
    /// are joined by a userspace switch over TAP devices instead of the bridge (see
    /// [`crate::delay_switch`]: this works on kernels without `sch_netem`). Cuts and loss
    /// work as with [`NetLab::new`]; [`NetLab::delay`] does not (there is no bridge port).
    pub fn with_site_delay(prefix: &str, nodes: usize, one_way: Duration) -> Result<NetLab, NetError> {
        let sites: Vec<usize> = (0..nodes).collect();
        NetLab::with_sites(prefix, &sites, one_way)
    }

    /// Like [`NetLab::with_site_delay`], with several nodes per site: node `i` is in site
    /// `sites[i]`, frames between two nodes of one site are not delayed, frames between
    /// sites by `one_way`.
    pub fn with_sites(prefix: &str, sites: &[usize], one_way: Duration) -> Result<NetLab, NetError> {
        let nodes = sites.len();
        let lab = empty_lab(prefix, nodes)?;
        // Ports 0..nodes are the nodes, port `nodes` the clients.
        let mut ports = Vec::with_capacity(nodes + 1);
        for i in 0..=nodes {
            let (ns, ip) = if i < nodes {
                (lab.node_ns(i), lab.node_ip(i))
            } else {
                (lab.client_ns(), lab.client_ip())
            };
            lab.add_namespace(&ns)?;
            let tap = crate::delay_switch::open_tap(&ns, LINK).map_err(|reason| NetError::Enter {
                ns: ns.clone(),
                reason,
            })?;
            ports.push(tap);
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", LINK],
            )?;
            run("ip", &["-n", &ns, "link", "set", LINK, "up"])?;
            if i < nodes {
                lab.add_sink(i)?;
            }
        }
        let sites = sites.to_vec();
        let switch = DelaySwitch::start(ports, move |from, to| {
            if from < nodes && to < nodes && sites[from] != sites[to] {
                one_way
            } else {
                Duration::ZERO
            }
        });
        *lab.switch.lock().unwrap() = Some(switch);
        Ok(lab)
    }

    fn add_namespace(&self, ns: &str) -> Result<(), NetError> {
        run("ip", &["netns", "add", ns])?;
        self.created.lock().unwrap().push(ns.to_string());
        run("ip", &["-n", ns, "link", "set", "lo", "up"])
    }

    /// A namespace with `eth0` = `ip`/24, whose veth peer is bridge port `port`. Both ends
    /// are created inside namespaces of the lab, never in the machine's own.
    fn attach(&self, ns: &str, port: &str, ip: Ipv4Addr) -> Result<(), NetError> {
        let br = self.bridge_ns();
        self.add_namespace(ns)?;
        run(
            "ip",
            &[
                "-n", ns, "link", "add", LINK, "type", "veth", "peer", "name", port, "netns", &br,
            ],
        )?;
        run("ip", &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", LINK])?;
        run("ip", &["-n", ns, "link", "set", LINK, "up"])?;
        run("ip", &["-n", &br, "link", "set", port, "master", "br0"])?;
        run("ip", &["-n", &br, "link", "set", port, "up"])
    }

    /// Node `i`'s sink veth pair and the clsact qdisc its fault filters hang on.
    fn add_sink(&self, i: usize) -> Result<(), NetError> {
        let ns = self.node_ns(i);
        run(
            "ip",
            &[
                "-n", &ns, "link", "add", SINK, "type", "veth", "peer", "name", SINK_PEER,
            ],
        )?;
        run("ip", &["-n", &ns, "link", "set", SINK, "up"])?;
        run("ip", &["-n", &ns, "link", "set", SINK_PEER, "up"])?;
        run("tc", &["-n", &ns, "qdisc", "add", "dev", LINK, "clsact"])
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }
    pub fn client_ns(&self) -> String {
        format!("{}-cl", self.prefix)
    }
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }
    /// Node `i`'s address: 10.201.0.(i+1).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, 0, i as u8 + 1)
    }
    /// The clients' address.
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, 0, 200)
    }

    /// A command that runs `program` inside node `i`'s namespace (`ip netns exec`, which
    /// execs it: the child's PID is the program's own).
    pub fn command_in_node(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node_ns(i)]).arg(program);
        c
    }

    /// Drops every packet from node `from` to node `to` (one way; `to` still reaches `from`).
    pub fn cut_one_way(&self, from: usize, to: usize) -> Result<(), NetError> {
        let cut = Cut { from, to };
        if self.cuts.lock().unwrap().contains(&cut) {
            return Ok(());
        }
        let dst = format!("{}/32", self.node_ip(to));
        let pref = (CUT_PREF_BASE + to as u32).to_string();
        run(
            "tc",
            &[
                "-n",
                &self.node_ns(from),
                "filter",
                "add",
                "dev",
                LINK,
                "egress",
                "protocol",
                "ip",
                "pref",
                &pref,
                "u32",
                "match",
                "ip",
                "dst",
                &dst,
                "action",
                "mirred",
                "egress",
                "redirect",
                "dev",
                SINK,
            ],
        )?;
        self.cuts.lock().unwrap().insert(cut);
        Ok(())
    }

    /// Cuts node `a` and node `b` apart, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), NetError> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Cuts node `i` off from every other node, both ways; the clients still reach it.
    pub fn isolate(&self, i: usize) -> Result<(), NetError> {
        for j in (0..self.nodes).filter(|j| *j != i) {
            self.cut(i, j)?;
        }
        Ok(())
    }

    /// Drops every packet node `i` sends to the clients. The clients' packets still arrive,
    /// but no answer comes back: to a TCP client the node is as gone as behind a partition.
    pub fn cut_from_clients(&self, i: usize) -> Result<(), NetError> {
        if self.client_cuts.lock().unwrap().contains(&i) {
            return Ok(());
        }
        let dst = format!("{}/32", self.client_ip());
        run(
            "tc",
            &[
                "-n",
                &self.node_ns(i),
                "filter",
                "add",
                "dev",
                LINK,
                "egress",
                "protocol",
                "ip",
                "pref",
                &CLIENT_CUT_PREF.to_string(),
                "u32",
                "match",
                "ip",
                "dst",
                &dst,
                "action",
                "mirred",
                "egress",
                "redirect",
                "dev",
                SINK,
            ],
        )?;
        self.client_cuts.lock().unwrap().insert(i);
        Ok(())
    }

    /// Cuts node `i` off from everyone: the other nodes (both ways) and the clients.
    pub fn isolate_from_all(&self, i: usize) -> Result<(), NetError> {
        self.isolate(i)?;
        self.cut_from_clients(i)
    }

    /// Removes one direction of a cut.
    pub fn heal_one_way(&self, from: usize, to: usize) -> Result<(), NetError> {
        let cut = Cut { from, to };
        if !self.cuts.lock().unwrap().contains(&cut) {
            return Ok(());
        }
        let pref = (CUT_PREF_BASE + to as u32).to_string();
        run(
            "tc",
            &[
                "-n",
                &self.node_ns(from),
                "filter",
                "del",
                "dev",
                LINK,
                "egress",
                "pref",
                &pref,
            ],
        )?;
        self.cuts.lock().unwrap().remove(&cut);
        Ok(())
    }

    /// Removes every cut, those towards the clients included (loss rules stay:
    /// [`NetLab::clear_loss`]).
    pub fn heal(&self) -> Result<(), NetError> {
        let cuts: Vec<Cut> = self.cuts.lock().unwrap().iter().copied().collect();
        for c in cuts {
            self.heal_one_way(c.from, c.to)?;
        }
        let from_clients: Vec<usize> = self.client_cuts.lock().unwrap().iter().copied().collect();
        for i in from_clients {
            run(
                "tc",
                &[
                    "-n",
                    &self.node_ns(i),
                    "filter",
                    "del",
                    "dev",
                    LINK,
                    "egress",
                    "pref",
                    &CLIENT_CUT_PREF.to_string(),
                ],
            )?;
            self.client_cuts.lock().unwrap().remove(&i);
        }
        Ok(())
    }

    /// The cuts in force.
    pub fn cuts(&self) -> Vec<Cut> {
        self.cuts.lock().unwrap().iter().copied().collect()
    }

    /// Drops `percent` % of the packets node `i` sends (to anyone), at random: a classic BPF
    /// filter compares a random word with a threshold (sch_netem may be missing here).
    pub fn loss(&self, i: usize, percent: f64) -> Result<(), NetError> {
        self.clear_loss(i)?;
        let p = percent.clamp(0.0, 100.0) / 100.0;
        // Match when rand >= threshold, i.e. with probability p.
        let threshold = ((1.0 - p) * (u32::MAX as f64)) as u64;
        // ld rand (SKF_AD_OFF + SKF_AD_RANDOM); jge #threshold → match; ret 0 / ret -1.
        let program = format!("4,32 0 0 4294963256,53 0 1 {threshold},6 0 0 4294967295,6 0 0 0");
        run(
            "tc",
            &[
                "-n",
                &self.node_ns(i),
                "filter",
                "add",
                "dev",
                LINK,
                "egress",
                "protocol",
                "ip",
                "pref",
                &LOSS_PREF.to_string(),
                "bpf",
                "bytecode",
                &program,
                "action",
                "mirred",
                "egress",
                "redirect",
                "dev",
                SINK,
            ],
        )?;
        self.lossy.lock().unwrap().insert(i);
        Ok(())
    }

    /// Removes node `i`'s loss rule, if any.
    pub fn clear_loss(&self, i: usize) -> Result<(), NetError> {
        if !self.lossy.lock().unwrap().contains(&i) {
            return Ok(());
        }
        run(
            "tc",
            &[
                "-n",
                &self.node_ns(i),
                "filter",
                "del",
                "dev",
                LINK,
                "egress",
                "pref",
                &LOSS_PREF.to_string(),
            ],
        )?;
        self.lossy.lock().unwrap().remove(&i);
        Ok(())
    }

    /// Delays every packet towards node `i` by `delay` (netem on its bridge port's egress).
    /// Needs sch_netem: [`NetError::Unsupported`] on a kernel built without it.
    pub fn delay(&self, i: usize, delay: Duration) -> Result<(), NetError> {
        let ms = format!("{}ms", delay.as_millis());
        let r = run(
            "tc",
            &[
                "-n",
                &self.bridge_ns(),
                "qdisc",
                "replace",
                "dev",
                &format!("p{i}"),
                "root",
                "netem",
                "delay",
                &ms,
            ],
        );
        match r {
            Err(NetError::Command { stderr, .. }) if stderr.contains("qdisc kind is unknown") => {
                Err(NetError::Unsupported("delay packets (sch_netem is not built in)"))
            }
            other => other,
        }
    }

    /// Removes node `i`'s delay, if any.
    pub fn clear_delay(&self, i: usize) -> Result<(), NetError> {
        let _ = run(
            "tc",
            &[
                "-n",
                &self.bridge_ns(),
                "qdisc",
                "del",
                "dev",
                &format!("p{i}"),
                "root",
            ],
        );
        Ok(())
    }

    /// Runs the future `f` makes on a Tokio runtime (two workers) whose threads are all in
    /// namespace `ns`, and returns its output; a panic in it is resumed here. Sockets opened
    /// and processes spawned by the future are in `ns`.
    pub fn block_on_in<T, F, Fut>(&self, ns: &str, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
    {
        let path = Path::new("/run/netns").join(ns);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                enter(&path).unwrap_or_else(|reason| {
                    panic!(
                        "{}",
                        NetError::Enter {
                            ns: path.display().to_string(),
                            reason
                        }
                    )
                });
                // Built after setns: its worker threads inherit this thread's namespace.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(f())
            });
            match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// [`NetLab::block_on_in`] the client namespace.
    pub fn block_on_in_client<T, F, Fut>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
    {
        self.block_on_in(&self.client_ns(), f)
    }

    /// An HTTP/1.0 GET of `path` from `addr` (ip:port), made from inside namespace `ns` (any
    /// namespace under /run/netns, this lab's or not): a thread joins it, so only that
    /// thread changes namespace. Returns the status code and the body; None on any failure
    /// or after about 3 s, so that callers poll it in their own wait loops. Plain std I/O,
    /// no runtime: callers on a thread of their own (systemd containers, packaged daemons)
    /// use it as well as async tests.
    pub fn http_get_in(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let ns_path = Path::new("/run/netns").join(ns);
        let addr = addr.to_string();
        let path = path.to_string();
        std::thread::spawn(move || -> Option<(u16, String)> {
            enter(&ns_path).ok()?;
            let sock: std::net::SocketAddr = addr.parse().ok()?;
            let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf).into_owned();
            let (head, body) = text.split_once("\r\n\r\n")?;
            let code = head.split_whitespace().nth(1)?.parse().ok()?;
            Some((code, body.to_string()))
        })
        .join()
        .ok()
        .flatten()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // The switch first: closing its TAP files removes the devices.
        drop(self.switch.lock().unwrap_or_else(|e| e.into_inner()).take());
        // Deleting a namespace deletes its veth ends (and their peers), the bridge and the
        // filters with it.
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in created.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("netns: could not remove namespace {ns}: {e}");
            }
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

/// Runs `program args`, with a time limit, failing with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let cmd = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    let deadline = std::time::Instant::now() + TOOL_LIMIT;
    // Bounded by TOOL_LIMIT.
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetError::Hung(cmd));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Err(NetError::Command {
        cmd,
        stderr: stderr.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// Connects from the client namespace or from node `from` to `to:port`.
    fn connects(lab: &NetLab, ns: &str, to: Ipv4Addr, port: u16) -> bool {
        let ns = ns.to_string();
        lab.block_on_in(&ns, || async move {
            let addr = SocketAddr::from((to, port));
            tokio::task::spawn_blocking(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
            })
            .await
            .unwrap()
        })
    }

    /// Time of a TCP handshake (one round trip) from `ns` to `to:port`.
    fn handshake(lab: &NetLab, ns: &str, to: Ipv4Addr, port: u16) -> Duration {
        let ns = ns.to_string();
        lab.block_on_in(&ns, || async move {
            let addr = SocketAddr::from((to, port));
            tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
                t.elapsed()
            })
            .await
            .unwrap()
        })
    }

    /// With a site delay, a handshake between two nodes takes two one-way delays, one from
    /// the clients takes none; cuts still cut; everything goes on drop.
    #[test]
    fn site_delay_delays_node_links_only_and_cuts_still_cut() {
        crate::require_netns!();
        let lab = NetLab::with_site_delay("pgwtk-sd", 2, Duration::from_millis(20)).unwrap();
        let ip1 = lab.node_ip(1);
        let listener = lab.block_on_in(&lab.node_ns(1), || async move {
            TcpListener::bind(SocketAddr::from((ip1, 0))).unwrap()
        });
        let port = listener.local_addr().unwrap().port();
        // The first handshake also resolves ARP (a broadcast, delayed too): measure the second.
        let n0 = lab.node_ns(0);
        handshake(&lab, &n0, ip1, port);
        let between = handshake(&lab, &n0, ip1, port);
        assert!(
            between >= Duration::from_millis(40) && between < Duration::from_millis(200),
            "node-to-node handshake took {between:?}"
        );
        handshake(&lab, &lab.client_ns(), ip1, port);
        let client = handshake(&lab, &lab.client_ns(), ip1, port);
        assert!(
            client < Duration::from_millis(20),
            "client handshake took {client:?}"
        );
        lab.isolate(1).unwrap();
        assert!(
            !connects(&lab, &n0, ip1, port),
            "the cut let a connection through"
        );
        lab.heal().unwrap();
        assert!(
            connects(&lab, &n0, ip1, port),
            "the heal did not restore the link"
        );
        let names = [lab.node_ns(0), lab.node_ns(1), lab.client_ns()];
        drop(lab);
        for n in names {
            assert!(!Path::new("/run/netns").join(&n).exists(), "{n} left behind");
        }
    }

    /// A cut drops silently (a connect times out rather than being refused), spares the
    /// clients, is one-way when asked, and heals; the namespaces are gone after the drop.
    #[test]
    fn cuts_are_silent_spare_the_clients_and_heal() {
        crate::require_netns!();
        let lab = NetLab::new("pgwtk-cut", 2).unwrap();
        let ip1 = lab.node_ip(1);
        // A listener in node 1 (the thread that binds it is in node 1's namespace).
        let listener = lab.block_on_in(&lab.node_ns(1), || async move {
            TcpListener::bind(SocketAddr::from((ip1, 0))).unwrap()
        });
        let port = listener.local_addr().unwrap().port();
        let n0 = lab.node_ns(0);
        assert!(connects(&lab, &n0, ip1, port), "no link before any cut");
        lab.isolate(1).unwrap();
        let started = std::time::Instant::now();
        assert!(
            !connects(&lab, &n0, ip1, port),
            "the cut let a connection through"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "the cut failed fast instead of dropping silently"
        );
        assert!(
            connects(&lab, &lab.client_ns(), ip1, port),
            "the clients were cut too"
        );
        lab.heal().unwrap();
        assert!(
            connects(&lab, &n0, ip1, port),
            "the heal did not restore the link"
        );
        // One way, from node 1 to node 0: node 0's SYN arrives, the SYN-ACK is dropped.
        lab.cut_one_way(1, 0).unwrap();
        assert!(
            !connects(&lab, &n0, ip1, port),
            "the one-way cut let a handshake through"
        );
        lab.heal().unwrap();
        // From everyone: the clients' connections time out too, until the heal.
        lab.isolate_from_all(1).unwrap();
        assert!(
            !connects(&lab, &lab.client_ns(), ip1, port),
            "the clients still reach a node isolated from everyone"
        );
        lab.heal().unwrap();
        assert!(
            connects(&lab, &lab.client_ns(), ip1, port),
            "the heal did not restore the clients' link"
        );
        lab.loss(0, 100.0).unwrap();
        assert!(
            !connects(&lab, &n0, ip1, port),
            "100 % loss let a handshake through"
        );
        lab.clear_loss(0).unwrap();
        assert!(
            connects(&lab, &n0, ip1, port),
            "clearing the loss did not restore the link"
        );
        let names = [lab.node_ns(0), lab.node_ns(1), lab.client_ns(), lab.bridge_ns()];
        drop(lab);
        for n in names {
            assert!(!Path::new("/run/netns").join(&n).exists(), "{n} left behind");
        }
    }
}
