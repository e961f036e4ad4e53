//! The packages under a real systemd: containers booted with systemd-nspawn, systemd 252 as
//! PID 1, from a Debian 12 root filesystem with PostgreSQL 15, each in its own network
//! namespace on one bridge, as separate hosts. On each the freshly built .deb is installed
//! with dpkg, the node is set up with the commands an operator types (`pgwarden init` on the
//! first host, `pgwarden join --token` on the others) and started with
//! `systemctl enable --now pgwarden`.
//!
//! Three data nodes (`field_systemd_three_hosts`): 1 leader + 2 streaming with Raft mutual
//! TLS, `pgwardenctl list` on every host with no flag, the unit active with the STATUS= of
//! READY-when-serving and its ExecReload; `systemctl reload` applies a changed
//! tag; host1 restarted after the joins runs with the joined members as Raft partners;
//! `systemctl stop` on the primary hands over and writes from a client resume within 3 s; the
//! daemon of the new primary killed with SIGKILL (its PostgreSQL left behind) → that
//! PostgreSQL takes no write after the lease and another member leads; a container powered
//! off and booted again rejoins as a replica. Two data nodes and a witness
//! (`field_systemd_two_data_nodes_and_a_witness`): the witness has no PostgreSQL, and a stop
//! of the primary hands over to the other data node. A rolling upgrade
//! (`field_systemd_rolling_upgrade_one_switchover`): three hosts installed from the previous
//! release's .deb (scripts/package-previous.sh), then, under a client writing throughout,
//! the replicas upgraded (install: the daemon keeps running; restart), one switchover to an
//! upgraded replica, and the old primary upgraded; no acknowledged write lost, one new
//! timeline, every host on the new version.
//!
//! How:
//! - The root filesystem is made once by mmdebstrap from the machine's Debian mirror and
//!   kept under the target directory (`field-root/`), with a stamp naming the suite and the
//!   package list: a change of either rebuilds it. Each container boots from an overlay
//!   mount on it (instant; a `cp -a` of the 470 MB root took about 3 s), so the cache stays
//!   clean.
//! - Network: the testkit's `NetLab` (shared with the other namespace tests): per host a
//!   namespace `<prefix>-nI` with 10.201.0.(I+1)/24 on a veth whose peer is a port of a bridge
//!   in namespace `<prefix>-br`; the test's client (the writer, REST reads) lives in
//!   `<prefix>-cl` (10.201.0.200). Nothing is configured in the machine's own namespace.
//! - A container is `systemd-nspawn -b --register=no --keep-unit`, a child of the test;
//!   commands run inside with `nsenter -t <its PID 1> -a` (one helper, [`Lab::sh`]).
//!
//! Cleanup on drop (also on panic): every nspawn is asked to power off (SIGTERM) and killed
//! if it does not, the overlays unmounted and their directories removed, the namespaces (and
//! with them veths and bridge) deleted. The cached root is never written.
//!
//! Needs root, systemd-nspawn (systemd-container), mmdebstrap, nsenter, tc and the .deb from
//! scripts/package.sh (the upgrade also the previous release's, from
//! scripts/package-previous.sh); skipped loudly otherwise (a failure under
//! PGWARDEN_REQUIRE_PACKAGE_TESTS=1, as scripts/test.sh sets).

mod packaging;

use packaging::{deb, have, run_limited, skip};
use pgwarden_testkit::netns::NetLab;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUITE: &str = "bookworm";
/// What the root holds besides Debian's essential packages: systemd as init, PostgreSQL 15,
/// and the .deb's other dependencies (adduser, libc, libgcc) so that dpkg -i needs no network.
const PACKAGES: &str = "systemd,systemd-sysv,dbus,postgresql-15,iproute2,adduser,procps,libc6,libgcc-s1";
/// postgresql-common creates and starts a cluster 15/main on port 5432: the port pgwarden's
/// PostgreSQL uses. The root drops it (the data directory is pgwarden's to create).
const CUSTOMIZE: &str = r#"chroot "$1" pg_dropcluster 15 main || true"#;
const QUICK: Duration = Duration::from_secs(60);
const SCOPE: &str = "field";

/// Host `i`'s address: the testkit network's node address.
fn host_ip(i: usize) -> String {
    format!("10.201.0.{}", i + 1)
}

fn host_name(i: usize) -> String {
    format!("host{}", i + 1)
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf()
}

/// The Debian mirror the machine's apt uses (deb822 `URIs:` or one-line `deb` entries whose
/// URI ends in /debian); Debian's own when none is found.
fn debian_mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for t in &texts {
        for line in t.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let uris: &[&str] = match words.first() {
                Some(&"URIs:") => &words[1..],
                Some(&"deb") => &words[1..words.len().min(2)],
                _ => &[],
            };
            if let Some(u) = uris
                .iter()
                .find(|u| u.starts_with("http") && u.trim_end_matches('/').ends_with("/debian"))
            {
                return u.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// The cached root filesystem, built by mmdebstrap when absent or made from another
/// package list. Returns the root and how long the build took (None: reused).
fn root_filesystem() -> (PathBuf, Option<Duration>) {
    let cache = target_dir().join("field-root");
    let root = cache.join("rootfs");
    let stamp_path = cache.join("stamp");
    let stamp = format!("{SUITE}\n{PACKAGES}\n{CUSTOMIZE}\n");
    if root.join("usr/lib/postgresql/15/bin/postgres").exists()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
    {
        return (root, None);
    }
    let started = Instant::now();
    std::fs::create_dir_all(&cache).unwrap();
    let fresh = cache.join("rootfs.new");
    // Leftovers of an interrupted build, and the stale root: caches, rebuilt below.
    for old in [&fresh, &root] {
        if old.exists() {
            std::fs::remove_dir_all(old).unwrap_or_else(|e| panic!("removing {}: {e}", old.display()));
        }
    }
    let _ = std::fs::remove_file(&stamp_path);
    let mirror = debian_mirror();
    eprintln!(
        "building the Debian {SUITE} root in {} from {mirror}",
        root.display()
    );
    let out = run_limited(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--include", PACKAGES])
            .arg(format!("--customize-hook={CUSTOMIZE}"))
            .arg(SUITE)
            .arg(&fresh)
            .arg(&mirror),
        Duration::from_secs(900),
    )
    .expect("mmdebstrap did not complete");
    assert!(
        out.status.success(),
        "mmdebstrap failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&fresh, &root).unwrap();
    std::fs::write(&stamp_path, stamp).unwrap();
    (root, Some(started.elapsed()))
}

/// Per-phase wall-clock times, printed as they end and at the end.
struct Phases {
    last: Instant,
    done: Vec<(String, Duration)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            last: Instant::now(),
            done: vec![],
        }
    }
    fn end(&mut self, name: &str) {
        let d = self.last.elapsed();
        eprintln!("PHASE {name}: {:.1} s", d.as_secs_f64());
        self.done.push((name.into(), d));
        self.last = Instant::now();
    }
    fn print(&self) {
        let total: Duration = self.done.iter().map(|(_, d)| *d).sum();
        eprintln!("phase timings:");
        for (n, d) in &self.done {
            eprintln!("  {n:<40} {:>6.1} s", d.as_secs_f64());
        }
        eprintln!("  {:<40} {:>6.1} s", "total", total.as_secs_f64());
    }
}

struct Container {
    /// The overlay's directory: upper/, work/, merged/ (the container's root), console.log.
    dir: PathBuf,
    mounted: bool,
    nspawn: Option<Child>,
    leader: Option<i32>,
}

/// Everything the test created, undone on drop (also when the test panics).
struct Lab {
    root: PathBuf,
    work: PathBuf,
    hosts: Vec<Container>,
    /// Declared last: dropped (namespaces deleted) after [`Lab`]'s drop has powered the
    /// containers off.
    net: NetLab,
}

impl Lab {
    fn new(root: PathBuf, hosts: usize) -> Lab {
        let prefix = format!("fld{}", std::process::id() % 100_000);
        let net = NetLab::new(&prefix, hosts).unwrap_or_else(|e| panic!("the test network: {e}"));
        let work = target_dir().join(format!("field-run-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let mut lab = Lab {
            root,
            work,
            hosts: vec![],
            net,
        };
        for i in 0..hosts {
            let dir = lab.work.join(host_name(i));
            for d in ["upper", "work", "merged"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            lab.hosts.push(Container {
                dir,
                mounted: false,
                nspawn: None,
                leader: None,
            });
            lab.mount(i);
        }
        lab
    }

    fn ns(&self, i: usize) -> String {
        self.net.node_ns(i)
    }
    fn client_ns(&self) -> String {
        self.net.client_ns()
    }
    fn merged(&self, i: usize) -> PathBuf {
        self.hosts[i].dir.join("merged")
    }

    fn mount(&mut self, i: usize) {
        let d = &self.hosts[i].dir;
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.root.display(),
            d.join("upper").display(),
            d.join("work").display()
        );
        packaging::stdout_of(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &opts,
                &d.join("merged").to_string_lossy(),
            ],
            QUICK,
        );
        self.hosts[i].mounted = true;
    }

    /// Boots container `i` and waits until systemd reports the boot finished.
    fn boot(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.hosts[i].dir.join("console.log"))
            .unwrap();
        let child = Command::new("systemd-nspawn")
            .arg("-b")
            .arg("-D")
            .arg(self.merged(i))
            .args(["--register=no", "--keep-unit", "--console=read-only"])
            .arg(format!("--network-namespace-path=/run/netns/{}", self.ns(i)))
            .arg(format!("--machine={}", host_name(i)))
            .arg(format!("--hostname={}", host_name(i)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        let pid = child.id() as i32;
        self.hosts[i].nspawn = Some(child);
        self.hosts[i].leader = None;
        // The container's PID 1 is a child of nspawn: the one that is PID 1 in its namespace.
        let leader = wait_for(QUICK, "the container's PID 1", || {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
                .find(|c| {
                    std::fs::read_to_string(format!("/proc/{c}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find(|l| l.starts_with("NSpid:"))
                                .map(|l| l.split_whitespace().last() == Some("1"))
                        })
                        .unwrap_or(false)
                })
        });
        self.hosts[i].leader = Some(leader);
        // Until systemd's own bus is up, systemctl cannot ask (it prints nothing or
        // "offline"); then --wait returns when the boot has finished.
        wait_for(QUICK, "the container's boot", || {
            let out = self.sh(i, "systemctl is-system-running --wait", QUICK);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (state == "running" || state == "degraded").then_some(())
        });
    }

    /// Runs `script` with sh inside container `i` (all its namespaces, a clean environment),
    /// as root. The one way the test runs anything inside a container.
    fn sh(&self, i: usize, script: &str, limit: Duration) -> Output {
        let leader = self.hosts[i].leader.expect("container not running");
        run_limited(
            Command::new("nsenter")
                .args(["-t", &leader.to_string(), "-a", "--", "env", "-i"])
                .args(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"])
                .args(["sh", "-c", script]),
            limit,
        )
        .unwrap_or_else(|| panic!("{}: `{script}` did not complete", host_name(i)))
    }

    /// `script` in container `i`, which must succeed; its stdout.
    fn ok(&self, i: usize, script: &str) -> String {
        let out = self.sh(i, script, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}: `{script}` failed ({}):\n{}{}",
            host_name(i),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for container `i`'s nspawn to exit (it was powered off from inside).
    fn wait_off(&mut self, i: usize, limit: Duration) {
        let child = self.hosts[i].nspawn.as_mut().expect("not running");
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{} did not power off", host_name(i));
            std::thread::sleep(Duration::from_millis(100));
        }
        self.hosts[i].nspawn = None;
        self.hosts[i].leader = None;
    }

    /// Powers container `i` off (SIGTERM makes nspawn ask systemd to), killing it after
    /// `limit`.
    fn power_off(&mut self, i: usize, limit: Duration) {
        let Some(mut child) = self.hosts[i].nspawn.take() else {
            return;
        };
        self.hosts[i].leader = None;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + limit;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn journal(&self, i: usize) -> String {
        match self.hosts[i].leader {
            Some(_) => {
                let out = self.sh(
                    i,
                    "journalctl -u pgwarden --no-pager -o short-precise | tail -n 60",
                    QUICK,
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            None => "(container not running)".into(),
        }
    }

    fn dump(&self) {
        for i in 0..self.hosts.len() {
            eprintln!(
                "===== {} journal (pgwarden) =====\n{}",
                host_name(i),
                self.journal(i)
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        for i in 0..self.hosts.len() {
            self.power_off(i, Duration::from_secs(30));
        }
        for h in &mut self.hosts {
            if h.mounted {
                let merged = h.dir.join("merged");
                let _ = Command::new("umount").arg(&merged).status();
                h.mounted = false;
            }
        }
        // The overlays' upper layers: copies of what the containers wrote, nothing else.
        let unmounted = self
            .hosts
            .iter()
            .all(|h| std::fs::read_dir(h.dir.join("merged")).is_ok_and(|mut d| d.next().is_none()));
        if unmounted {
            let _ = std::fs::remove_dir_all(&self.work);
        } else {
            eprintln!(
                "left {} in place: an overlay is still mounted",
                self.work.display()
            );
        }
    }
}

/// Polls `cond` every 250 ms until it returns Some, or panics after `limit` naming `what`.
fn wait_for<T>(limit: Duration, what: &str, cond: impl FnMut() -> Option<T>) -> T {
    pgwarden_testkit::wait::wait_blocking(Duration::from_millis(250), limit, what, cond)
}

fn rest_json(lab: &Lab, i: usize, path: &str) -> Option<Value> {
    let (code, body) = NetLab::http_get_in(&lab.client_ns(), &format!("{}:8008", host_ip(i)), path)?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// From host `i`'s REST API: the leader's index if /cluster shows exactly the data nodes
/// `members`, one leader running and every other one streaming on its timeline.
fn healthy_from(lab: &Lab, i: usize, members: &[usize]) -> Option<usize> {
    healthy_among(lab, i, members, true)
}

/// As [`healthy_from`], with `exact` false: members of the cluster other than `members` may be
/// listed too, in any state (a killed host whose daemon systemd has already restarted).
fn healthy_among(lab: &Lab, i: usize, members: &[usize], exact: bool) -> Option<usize> {
    let c = rest_json(lab, i, "/cluster")?;
    let names: Vec<String> = members.iter().map(|&j| host_name(j)).collect();
    let leader = pgwarden_testkit::http::healthy_leader(&c, &names, exact)?;
    members.iter().copied().find(|&j| host_name(j) == leader)
}

/// Waits until every member in `from` reports the same healthy cluster of `members`.
fn wait_healthy(lab: &Lab, from: &[usize], members: &[usize], limit: Duration, what: &str) -> usize {
    wait_for(limit, what, || {
        let seen: Vec<usize> = from
            .iter()
            .map(|&i| healthy_from(lab, i, members))
            .collect::<Option<_>>()?;
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0])
    })
}

/// The superuser password `pgwarden init` generated, read from host1's file.
fn superuser_password(lab: &Lab) -> String {
    let text = std::fs::read_to_string(lab.merged(0).join("etc/pgwarden/pgwarden.yml")).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    y["postgresql"]["authentication"]["superuser"]["password"]
        .as_str()
        .expect("superuser password in host1's file")
        .to_string()
}

/// A client in the client namespace inserting one row at a time through libpq-style
/// multi-host connection strings (`target_session_attrs=read-write`), recording when each
/// insert was acknowledged.
struct Writer {
    /// When each insert was acknowledged, and the number it inserted (1, 2, ... in the order
    /// tried; a number whose insert failed is never acknowledged).
    acked: Arc<Mutex<Vec<(Instant, i64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(lab: &Lab, hosts: &[usize], password: String) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ns_path = format!("/run/netns/{}", lab.client_ns());
        let host_list = hosts.iter().map(|&i| host_ip(i)).collect::<Vec<_>>().join(",");
        let conn = format!(
            "host={host_list} port=5432 user=postgres dbname=postgres password={password} \
             target_session_attrs=read-write connect_timeout=1"
        );
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&ns_path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                let mut n: i64 = 0;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    if client.is_none() {
                        match tokio::time::timeout(
                            Duration::from_secs(3),
                            tokio_postgres::connect(&conn, tokio_postgres::NoTls),
                        )
                        .await
                        {
                            Ok(Ok((c, connection))) => {
                                tokio::spawn(connection);
                                client = Some(c);
                            }
                            _ => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                    let Some(c) = &client else { continue };
                    n += 1;
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        c.batch_execute(&format!(
                            "CREATE TABLE IF NOT EXISTS field_writes (n bigint, at timestamptz default now()); \
                             INSERT INTO field_writes (n) VALUES ({n})"
                        )),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => a.lock().unwrap().push((Instant::now(), n)),
                        _ => client = None,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        Writer {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The longest time without an acknowledged write between `from` and the first
    /// acknowledgement after `until`.
    fn max_gap(&self, from: Instant, until: Instant) -> Duration {
        let acked = self.acked.lock().unwrap();
        let mut last = acked
            .iter()
            .rev()
            .map(|&(t, _)| t)
            .find(|&t| t <= from)
            .unwrap_or(from);
        let mut gap = Duration::ZERO;
        for t in acked.iter().map(|&(t, _)| t).filter(|&t| t > from) {
            gap = gap.max(t - last);
            last = t;
            if t > until {
                break;
            }
        }
        gap
    }

    /// The numbers of every acknowledged insert so far.
    fn acked_numbers(&self) -> Vec<i64> {
        self.acked.lock().unwrap().iter().map(|&(_, n)| n).collect()
    }

    /// Waits for `n` more acknowledged writes.
    fn wait_more(&self, n: usize, limit: Duration, what: &str) {
        let start = self.count();
        wait_for(limit, what, || (self.count() >= start + n).then_some(()));
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks the tools and the package; None (after saying why) when the test cannot run.
fn preconditions() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        skip("field_systemd needs root (network namespaces, mounts, systemd-nspawn)");
        return None;
    }
    for tool in ["systemd-nspawn", "mmdebstrap", "nsenter", "ip", "tc", "mount"] {
        if !have(tool) {
            skip(&format!(
                "{tool} not found (apt-get install systemd-container mmdebstrap util-linux iproute2)"
            ));
            return None;
        }
    }
    let Some(deb) = deb() else {
        skip("no .deb for this version in target/packages: run scripts/package.sh first");
        return None;
    };
    Some(deb)
}

/// Boots `hosts` containers and installs the .deb in each.
fn lab_with_package(phases: &mut Phases, deb: &Path, hosts: usize) -> Lab {
    let (root, built) = root_filesystem();
    match built {
        Some(d) => eprintln!("built the root filesystem in {:.1} s", d.as_secs_f64()),
        None => eprintln!("reusing the cached root filesystem {}", root.display()),
    }
    phases.end("root filesystem");
    let mut lab = Lab::new(root, hosts);
    for i in 0..hosts {
        lab.boot(i);
    }
    phases.end("network, overlays, boot");
    for i in 0..hosts {
        std::fs::copy(deb, lab.merged(i).join("root/pgwarden.deb")).unwrap();
        lab.ok(i, "dpkg -i /root/pgwarden.deb >/dev/null");
        // Installing neither enables nor starts the unit.
        let state = lab.sh(
            i,
            "systemctl is-enabled pgwarden; systemctl is-active pgwarden",
            QUICK,
        );
        let state = String::from_utf8_lossy(&state.stdout).to_string();
        assert!(
            state.contains("disabled") && state.contains("inactive"),
            "{}: after dpkg -i: {state}",
            host_name(i)
        );
    }
    phases.end("dpkg -i");
    lab
}

/// `pgwarden init` on host1 and a started unit there; returns a token per other host.
fn init_first_host(lab: &Lab, tokens: usize) -> Vec<String> {
    let out = lab.ok(
        0,
        &format!(
            "pgwarden init --scope {SCOPE} --name host1 --address {}",
            host_ip(0)
        ),
    );
    let mut tokens_out = vec![token_in(&out)];
    lab.ok(0, "systemctl enable --now pgwarden");
    for _ in 1..tokens {
        tokens_out.push(token_in(&lab.ok(0, "pgwarden token create")));
    }
    tokens_out
}

fn token_in(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("pgwj1."))
        .unwrap_or_else(|| panic!("no token in:\n{out}"))
        .to_string()
}

/// `pgwarden join` on each host of `joiners` (concurrently: the first join waits until a
/// third member has joined), then `systemctl enable --now pgwarden` on each.
fn join_and_start(lab: &Lab, joiners: &[(usize, bool)], tokens: &[String]) {
    std::thread::scope(|s| {
        let handles: Vec<_> = joiners
            .iter()
            .zip(tokens)
            .map(|(&(i, witness), token)| {
                let script = format!(
                    "pgwarden join --token {token} --name {} --address {}{}",
                    host_name(i),
                    host_ip(i),
                    if witness { " --witness" } else { "" }
                );
                s.spawn(move || lab.ok(i, &script))
            })
            .collect();
        for h in handles {
            let out = h.join().expect("join thread");
            assert!(!out.contains("password"), "join printed a credential:\n{out}");
        }
    });
    for &(i, _) in joiners {
        lab.ok(i, "systemctl enable --now pgwarden");
    }
}

/// The unit as systemd sees it on each host of `hosts`: active, with the STATUS= the daemon
/// sends with READY=1 once the node serves (not the one sent when it gave up waiting).
fn check_unit(lab: &Lab, hosts: &[usize]) {
    for &i in hosts {
        let show = lab.ok(
            i,
            "systemctl show -p ActiveState -p SubState -p StatusText -p ExecReload -p NRestarts pgwarden",
        );
        assert!(
            show.contains("ActiveState=active") && show.contains("SubState=running"),
            "{}: {show}",
            host_name(i)
        );
        assert!(
            show.contains("StatusText=serving REST on"),
            "{}: not READY as serving: {show}",
            host_name(i)
        );
        assert!(
            show.contains("kill -HUP"),
            "{}: no ExecReload: {show}",
            host_name(i)
        );
    }
}

/// `pgwardenctl list` as root with no option on every running host of `hosts`: it names every
/// data node of `members`, the leader, and `streaming` once per replica.
fn check_pgwardenctl(lab: &Lab, hosts: &[usize], members: &[usize], leader: usize) {
    for &i in hosts {
        let table = lab.ok(i, "pgwardenctl list");
        for &j in members {
            assert!(
                table.contains(&host_name(j)),
                "{} missing from:\n{table}",
                host_name(j)
            );
        }
        let leader_line = table
            .lines()
            .find(|l| l.contains(&host_name(leader)))
            .unwrap_or_default();
        assert!(
            leader_line.contains("Leader"),
            "{} not the Leader in:\n{table}",
            host_name(leader)
        );
        assert_eq!(
            table.matches("streaming").count(),
            members.len() - 1,
            "streaming replicas in:\n{table}"
        );
    }
}

/// `pgwardenctl members list` on host `i` shows three Raft voters: the leader and two others.
fn wait_voters(lab: &Lab, i: usize) {
    wait_for(QUICK, "three Raft voters", || {
        let out = lab.sh(i, "pgwardenctl members list", QUICK);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && t.matches("Leader").count() == 1 && t.matches("Voter").count() == 2)
            .then_some(())
    });
}

/// Raft mutual TLS and admin-API TLS in every member's file, and the files' modes.
fn check_tls_files(lab: &Lab, hosts: &[usize]) {
    for &i in hosts {
        let text = std::fs::read_to_string(lab.merged(i).join("etc/pgwarden/pgwarden.yml")).unwrap();
        let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        for k in ["certfile", "keyfile", "cafile"] {
            assert!(
                y["raft"][k].as_str().is_some(),
                "{}: raft.{k} not set",
                host_name(i)
            );
        }
        assert!(
            y["ctl"]["certfile"].as_str().is_some(),
            "{}: ctl TLS off",
            host_name(i)
        );
        let modes = lab.ok(
            i,
            "stat -c '%a %U' /etc/pgwarden/pgwarden.yml /etc/pgwarden/tls/node.key",
        );
        assert!(
            modes.lines().all(|l| l == "600 postgres"),
            "{}: modes {modes}",
            host_name(i)
        );
    }
}

/// Whether a PostgreSQL on host `i` (TCP, its address) accepts a write: Some(true) when the
/// insert commits, Some(false) when it is refused or read-only, None when it cannot be reached.
fn accepts_write(lab: &Lab, i: usize, password: &str) -> Option<bool> {
    let conn = format!(
        "host={} port=5432 user=postgres dbname=postgres password={password} connect_timeout=2",
        host_ip(i)
    );
    let ns_path = format!("/run/netns/{}", lab.client_ns());
    std::thread::spawn(move || -> Option<bool> {
        let f = std::fs::File::open(&ns_path).ok()?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async move {
            let (c, connection) = tokio::time::timeout(
                Duration::from_secs(3),
                tokio_postgres::connect(&conn, tokio_postgres::NoTls),
            )
            .await
            .ok()?
            .ok()?;
            tokio::spawn(connection);
            let r = tokio::time::timeout(
                Duration::from_secs(3),
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS field_fence (at timestamptz); \
                     INSERT INTO field_fence VALUES (now())",
                ),
            )
            .await
            .ok()?;
            Some(r.is_ok())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// Three data nodes from the .deb under systemd: see the module comment.
#[test]
fn field_systemd_three_hosts() {
    let Some(deb) = preconditions() else { return };
    let mut phases = Phases::new();
    let mut lab = lab_with_package(&mut phases, &deb, 3);
    let all = [0, 1, 2];

    // Three commands per host: install (above), init / join, start.
    let tokens = init_first_host(&lab, 2);
    join_and_start(&lab, &[(1, false), (2, false)], &tokens);
    let leader = wait_healthy(
        &lab,
        &all,
        &all,
        Duration::from_secs(180),
        "1 leader + 2 streaming",
    );
    assert_eq!(leader, 0, "host1 bootstrapped the cluster");
    check_tls_files(&lab, &all);
    check_unit(&lab, &all);
    check_pgwardenctl(&lab, &all, &all, leader);
    wait_voters(&lab, 0);
    phases.end("init, join, enable --now, healthy");

    // `systemctl reload`: the daemon re-reads its file (a tag added to host2's).
    lab.ok(
        1,
        "printf 'tags:\\n  zone: reloaded\\n' >> /etc/pgwarden/pgwarden.yml && systemctl reload pgwarden",
    );
    wait_for(Duration::from_secs(30), "the reloaded tag on host2", || {
        let p = rest_json(&lab, 1, "/patroni")?;
        (p["tags"]["zone"].as_str() == Some("reloaded")).then_some(())
    });
    phases.end("systemctl reload");

    // host1, restarted after the joins, runs with the joined members as its Raft partners.
    let main_pid = "systemctl show -p MainPID --value pgwarden";
    let before = lab.ok(0, main_pid);
    lab.ok(0, "systemctl restart pgwarden");
    assert_ne!(lab.ok(0, main_pid), before, "host1's daemon was not restarted");
    let leader = wait_healthy(
        &lab,
        &all,
        &all,
        Duration::from_secs(90),
        "healthy after host1's restart",
    );
    let journal = lab.ok(0, "journalctl -u pgwarden --no-pager -o cat");
    assert!(
        journal.contains("Raft partners from the join state"),
        "host1 did not take its partners from the join state:\n{}",
        lab.journal(0)
    );
    phases.end("host1 restart (partners)");

    // `systemctl stop` on the primary: a replica takes over, writes resume within 3 s.
    let password = superuser_password(&lab);
    let writer = Writer::start(&lab, &all, password.clone());
    writer.wait_more(20, QUICK, "writes before the stop");
    let stopped_at = Instant::now();
    lab.ok(leader, "systemctl stop pgwarden");
    let stop_took = stopped_at.elapsed();
    let others: Vec<usize> = all.iter().copied().filter(|&j| j != leader).collect();
    writer.wait_more(20, QUICK, "writes after the stop");
    let gap = writer.max_gap(stopped_at, Instant::now());
    let new_leader = wait_healthy(
        &lab,
        &others,
        &others,
        QUICK,
        "a new leader and one streaming replica",
    );
    eprintln!(
        "systemctl stop on {} took {:.2} s; write gap {:.2} s; new leader {}",
        host_name(leader),
        stop_took.as_secs_f64(),
        gap.as_secs_f64(),
        host_name(new_leader)
    );
    assert!(gap < Duration::from_secs(3), "writes stopped for {gap:?}");
    lab.ok(leader, "systemctl start pgwarden");
    assert_eq!(
        wait_healthy(
            &lab,
            &all,
            &all,
            Duration::from_secs(120),
            "the stopped host back as a replica"
        ),
        new_leader
    );
    phases.end("stop the primary (hand-over)");

    // SIGKILL to the new primary's daemon alone: its PostgreSQL takes no write after the
    // lease (ttl 30 s, the fence's deadline) and another member leads.
    let victim = new_leader;
    let postmaster = lab
        .ok(victim, "head -n 1 /var/lib/pgwarden/pgdata/postmaster.pid")
        .trim()
        .to_string();
    assert!(postmaster.parse::<u32>().is_ok(), "postmaster pid {postmaster:?}");
    let killed_at = Instant::now();
    lab.ok(victim, "systemctl kill -s SIGKILL --kill-who=main pgwarden");
    // Polled from the kill on: that postmaster gone and no write accepted on that host.
    // (KillMode=mixed: once the main process is dead, systemd kills the rest of the unit.)
    let probe = format!("kill -0 {postmaster}");
    let fenced_after = wait_for(
        Duration::from_secs(40),
        "the killed node's PostgreSQL gone and refusing writes",
        || {
            let alive = lab.sh(victim, &probe, QUICK).status.success();
            (!alive && accepts_write(&lab, victim, &password) != Some(true)).then(|| killed_at.elapsed())
        },
    );
    // The lease's ttl (30 s) is the deadline the fence guarantees; the unit does better.
    assert!(
        fenced_after < Duration::from_secs(30),
        "the killed node's PostgreSQL lived or took writes for {fenced_after:?}"
    );
    let survivors: Vec<usize> = all.iter().copied().filter(|&j| j != victim).collect();
    // Restart=on-failure may bring the killed host's daemon back meanwhile: it may be
    // listed, in any state; the survivors must agree on a leader among them.
    let next = wait_for(Duration::from_secs(90), "a failover after the SIGKILL", || {
        let l = healthy_among(&lab, survivors[0], &survivors, false)?;
        (healthy_among(&lab, survivors[1], &survivors, false)? == l).then_some(l)
    });
    let failover = killed_at.elapsed();
    // Never again a write on the killed node's old PostgreSQL (a restarted one is a replica).
    assert_ne!(accepts_write(&lab, victim, &password), Some(true));
    writer.wait_more(10, QUICK, "writes on the next leader");
    eprintln!(
        "SIGKILL of {}'s daemon: its PostgreSQL gone and refusing writes after {:.1} s; {} leads after {:.1} s",
        host_name(victim),
        fenced_after.as_secs_f64(),
        host_name(next),
        failover.as_secs_f64()
    );
    // Restart=on-failure brings the daemon back; it rejoins as a replica.
    assert_eq!(
        wait_healthy(
            &lab,
            &all,
            &all,
            Duration::from_secs(150),
            "the killed host back as a replica"
        ),
        next
    );
    phases.end("SIGKILL the primary's daemon");

    // Power the leader's container off and boot it again: it rejoins as a replica.
    let off = next;
    lab.sh(off, "systemctl poweroff", QUICK);
    lab.wait_off(off, QUICK);
    let rest: Vec<usize> = all.iter().copied().filter(|&j| j != off).collect();
    let after = wait_healthy(&lab, &rest, &rest, QUICK, "a leader while one host is off");
    lab.boot(off);
    assert_eq!(
        wait_healthy(
            &lab,
            &all,
            &all,
            Duration::from_secs(150),
            "the rebooted host back as a replica"
        ),
        after
    );
    let writes = writer.count();
    drop(writer);
    eprintln!("{writes} writes acknowledged");
    phases.end("power off and boot a host");
    phases.print();
}

/// Two data nodes and a witness from the .deb under systemd: see the module comment.
#[test]
fn field_systemd_two_data_nodes_and_a_witness() {
    let Some(deb) = preconditions() else { return };
    let mut phases = Phases::new();
    let lab = lab_with_package(&mut phases, &deb, 3);
    let data = [0, 1];
    let tokens = init_first_host(&lab, 2);
    join_and_start(&lab, &[(1, false), (2, true)], &tokens);
    let leader = wait_healthy(
        &lab,
        &data,
        &data,
        Duration::from_secs(180),
        "1 leader + 1 streaming",
    );
    check_tls_files(&lab, &[0, 1, 2]);
    check_unit(&lab, &[0, 1, 2]);
    check_pgwardenctl(&lab, &[0, 1, 2], &data, leader);
    wait_voters(&lab, 2);
    // The witness runs no PostgreSQL, and its file has no postgresql section.
    let ps = lab.sh(2, "pgrep -x postgres", QUICK);
    assert!(!ps.status.success(), "a postgres process runs on the witness");
    let witness_file = std::fs::read_to_string(lab.merged(2).join("etc/pgwarden/pgwarden.yml")).unwrap();
    assert!(
        !witness_file.contains("postgresql:"),
        "witness file:\n{witness_file}"
    );
    phases.end("init, join (witness), enable --now, healthy");

    let password = superuser_password(&lab);
    let writer = Writer::start(&lab, &data, password);
    writer.wait_more(20, QUICK, "writes before the stop");
    let stopped_at = Instant::now();
    lab.ok(leader, "systemctl stop pgwarden");
    let other = 1 - leader;
    writer.wait_more(20, QUICK, "writes after the stop");
    let gap = writer.max_gap(stopped_at, Instant::now());
    assert_eq!(
        wait_healthy(&lab, &[other], &[other], QUICK, "the other data node leading"),
        other
    );
    eprintln!(
        "2 + witness: stop of {}: write gap {:.2} s",
        host_name(leader),
        gap.as_secs_f64()
    );
    assert!(gap < Duration::from_secs(3), "writes stopped for {gap:?}");
    lab.ok(leader, "systemctl start pgwarden");
    assert_eq!(
        wait_healthy(
            &lab,
            &data,
            &data,
            Duration::from_secs(120),
            "the stopped host back as a replica"
        ),
        other
    );
    drop(writer);
    phases.end("stop the primary (hand-over)");
    phases.print();
}

/// The commit of the previous release (packaging/previous-release), which
/// scripts/package-previous.sh packages.
fn previous_release() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/previous-release");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The previous release's .deb from scripts/package-previous.sh; None (after saying why) when
/// it is not there. Without the git history that names the commit, it cannot be built: the
/// message says which commit is missing.
fn previous_deb() -> Option<PathBuf> {
    let commit = previous_release();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/packages/previous")
        .join(&commit);
    let found = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    });
    if found.is_none() {
        let in_history = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if in_history {
            skip(&format!(
                "no .deb of the previous release {commit} in {}: run scripts/package-previous.sh",
                dir.display()
            ));
        } else {
            // Not a failure even where the package tests are required (CI): a shallow clone
            // or a tarball cannot build that package, whatever the machine has.
            eprintln!(
                "SKIPPED: the previous release, commit {commit}, is not in this checkout's git \
                 history (a tarball or a shallow clone): its package cannot be built"
            );
        }
    }
    found
}

/// The integers of column `n` of `table` on host `i`'s PostgreSQL, read from the client
/// namespace.
fn numbers_on(lab: &Lab, i: usize, password: &str, sql: &str) -> Vec<i64> {
    let conn = format!(
        "host={} port=5432 user=postgres dbname=postgres password={password} connect_timeout=3",
        host_ip(i)
    );
    let ns_path = format!("/run/netns/{}", lab.client_ns());
    let query = sql.to_string();
    std::thread::spawn(move || -> Result<Vec<i64>, String> {
        let f = std::fs::File::open(&ns_path).map_err(|e| e.to_string())?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (c, connection) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(&conn, tokio_postgres::NoTls),
            )
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let rows = tokio::time::timeout(Duration::from_secs(20), c.query(&query, &[]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
        })
    })
    .join()
    .expect("query thread")
    .unwrap_or_else(|e| panic!("{}: `{sql}`: {e}", host_name(i)))
}

/// pgwarden's version as host `i`'s REST API reports it (`patroni.pgwarden_version`).
fn version_of(lab: &Lab, i: usize) -> Option<String> {
    let p = rest_json(lab, i, "/patroni")?;
    p["patroni"]["pgwarden_version"].as_str().map(str::to_owned)
}

/// Installs the new .deb on host `i` with the daemon running: the package must not restart it
/// (same main PID, still the old version). Then the restart the procedure asks for, and the
/// cluster healthy again with `leader` leading and host `i` on `version`.
fn upgrade_host(lab: &Lab, i: usize, deb: &Path, old: &str, new: &str, leader: usize) {
    let main_pid = "systemctl show -p MainPID --value pgwarden";
    let pid_before = lab.ok(i, main_pid);
    std::fs::copy(deb, lab.merged(i).join("root/pgwarden-new.deb")).unwrap();
    let said = lab.ok(i, "dpkg -i /root/pgwarden-new.deb 2>&1 >/dev/null");
    assert!(
        said.contains(&format!("upgraded from {old}-1"))
            && said.contains("keeps the old version until it is restarted"),
        "{}: dpkg -i said:\n{said}",
        host_name(i)
    );
    let installed = lab.ok(i, "dpkg-query -W -f '${Version}' pgwarden");
    assert_eq!(
        installed,
        format!("{new}-1"),
        "{}: installed version",
        host_name(i)
    );
    assert_eq!(
        lab.ok(i, main_pid),
        pid_before,
        "{}: installing the package restarted the daemon",
        host_name(i)
    );
    assert_eq!(
        version_of(lab, i).as_deref(),
        Some(old),
        "{}: the running daemon changed version on install",
        host_name(i)
    );
    lab.ok(i, "systemctl restart pgwarden");
    assert_ne!(lab.ok(i, main_pid), pid_before, "{}: not restarted", host_name(i));
    let all = [0, 1, 2];
    wait_for(
        Duration::from_secs(120),
        &format!("{} back on {new}, {} leading", host_name(i), host_name(leader)),
        || (version_of(lab, i)? == new && wait_healthy_once(lab, &all)? == leader).then_some(()),
    );
}

/// One look at the cluster from every host: the leader if all agree it is healthy.
fn wait_healthy_once(lab: &Lab, all: &[usize]) -> Option<usize> {
    let seen: Vec<usize> = all
        .iter()
        .map(|&i| healthy_from(lab, i, all))
        .collect::<Option<_>>()?;
    seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0])
}

/// The rows of the leader's `/history` (Patroni's list of timeline switches).
fn history_rows(lab: &Lab, i: usize) -> usize {
    rest_json(lab, i, "/history")
        .and_then(|h| h.as_array().map(Vec::len))
        .unwrap_or_else(|| panic!("{}: no /history", host_name(i)))
}

/// A rolling upgrade from the previous release's .deb to the new one under systemd, with a
/// client writing throughout: replicas first (install, restart), one switchover to an
/// upgraded replica, then the old primary. Old and new members share the Raft group for most
/// of it, which checks the wire and DCS formats across the version step live.
#[test]
fn field_systemd_rolling_upgrade_one_switchover() {
    let Some(new_deb) = preconditions() else { return };
    let Some(old_deb) = previous_deb() else { return };
    let new = env!("CARGO_PKG_VERSION");
    let mut phases = Phases::new();
    let lab = lab_with_package(&mut phases, &old_deb, 3);
    let all = [0, 1, 2];
    let old = lab.ok(0, "dpkg-query -W -f '${Version}' pgwarden");
    let old = old.trim_end_matches("-1").to_string();
    assert_ne!(
        old, new,
        "the previous release has this version: bump Cargo.toml's"
    );

    let tokens = init_first_host(&lab, 2);
    join_and_start(&lab, &[(1, false), (2, false)], &tokens);
    let leader = wait_healthy(
        &lab,
        &all,
        &all,
        Duration::from_secs(180),
        "1 leader + 2 streaming",
    );
    for &i in &all {
        assert_eq!(version_of(&lab, i).as_deref(), Some(old.as_str()));
    }
    phases.end("old version: init, join, enable --now, healthy");

    let password = superuser_password(&lab);
    let writer = Writer::start(&lab, &all, password.clone());
    writer.wait_more(20, QUICK, "writes before the upgrade");
    // The old version's keyspace, kept as the DCS fixture of tests/wire_compat.rs when asked.
    if let Some(out) = std::env::var_os("PGWARDEN_DCS_FIXTURE") {
        lab.ok(leader, "pgwardenctl dcs snapshot save /root/dcs-snapshot.json");
        std::fs::copy(lab.merged(leader).join("root/dcs-snapshot.json"), &out).unwrap();
        eprintln!("saved the {old} keyspace to {}", Path::new(&out).display());
    }
    let timeline_before = rest_json(&lab, leader, "/patroni").unwrap()["timeline"]
        .as_u64()
        .unwrap();
    let history_before = history_rows(&lab, leader);
    let started = Instant::now();

    // 1. The replicas, one at a time: install (the daemon keeps running), restart.
    let replicas: Vec<usize> = all.iter().copied().filter(|&j| j != leader).collect();
    for &r in &replicas {
        upgrade_host(&lab, r, &new_deb, &old, new, leader);
        writer.wait_more(10, QUICK, "writes after a replica's upgrade");
    }
    let replicas_done = Instant::now();
    phases.end("replicas: install, restart");

    // 2. One switchover, to an upgraded replica.
    let target = replicas[0];
    let switch_at = Instant::now();
    lab.ok(
        leader,
        &format!(
            "pgwardenctl switchover {SCOPE} --leader {} --candidate {} --force",
            host_name(leader),
            host_name(target)
        ),
    );
    assert_eq!(
        wait_healthy(&lab, &all, &all, Duration::from_secs(90), "the switchover"),
        target
    );
    writer.wait_more(10, QUICK, "writes after the switchover");
    let switch_gap = writer.max_gap(switch_at, Instant::now());
    phases.end("switchover to an upgraded replica");

    // 3. The old primary, now a replica.
    upgrade_host(&lab, leader, &new_deb, &old, new, target);
    writer.wait_more(20, QUICK, "writes after the last upgrade");
    let whole_gap = writer.max_gap(started, Instant::now());
    let replicas_gap = writer.max_gap(started, replicas_done);
    let acked = writer.acked_numbers();
    drop(writer);
    phases.end("old primary: install, restart");

    // Every acknowledged write is on the new primary.
    let stored = numbers_on(&lab, target, &password, "SELECT n FROM field_writes");
    let stored: std::collections::HashSet<i64> = stored.into_iter().collect();
    let lost: Vec<i64> = acked.iter().copied().filter(|n| !stored.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
    // Exactly one switchover: one new timeline, one more history row.
    let timeline_after = rest_json(&lab, target, "/patroni").unwrap()["timeline"]
        .as_u64()
        .unwrap();
    assert_eq!(timeline_after, timeline_before + 1, "timelines");
    assert_eq!(history_rows(&lab, target), history_before + 1, "history rows");
    // Every host on the new version, by its REST API and by pgwardenctl.
    let health = wait_healthy(&lab, &all, &all, QUICK, "1 leader + 2 streaming at the end");
    assert_eq!(health, target);
    check_pgwardenctl(&lab, &all, &all, target);
    for &i in &all {
        assert_eq!(version_of(&lab, i).as_deref(), Some(new), "{}", host_name(i));
        let v = lab.ok(i, &format!("pgwardenctl version {SCOPE}"));
        assert!(
            v.contains(&format!("pgwardenctl version {new}"))
                && all
                    .iter()
                    .all(|&j| v.contains(&format!("{}: pgwarden {new}", host_name(j)))),
            "{}: pgwardenctl version:\n{v}",
            host_name(i)
        );
    }
    eprintln!(
        "rolling upgrade {old} -> {new}: {} writes acknowledged, none lost; longest write gap: \
         {:.2} s during the replicas' restarts, {:.2} s at the switchover, {:.2} s overall; \
         timeline {timeline_before} -> {timeline_after}",
        acked.len(),
        replicas_gap.as_secs_f64(),
        switch_gap.as_secs_f64(),
        whole_gap.as_secs_f64()
    );
    phases.end("checks");
    phases.print();
}
