//! Three hosts from the .deb: the package is installed with `dpkg -i` (its maintainer scripts
//! run, its dependencies are checked), then three Linux network namespaces on a bridge stand
//! for three machines, each running the packaged `/usr/bin/pgwarden /etc/pgwarden/pgwarden.yml`
//! as the postgres user, as pgwarden.service would, with docs/install.md's configuration. The
//! test sees 1 leader + 2 streaming replicas from every host, through the REST API and
//! `pgwardenctl list` (and a row written on the leader on both replicas), cuts the leader's
//! host off the network (its bridge port goes down), sees another host take over (and take
//! writes) and the isolated one stop being a primary, heals the link and sees the old leader
//! rejoin as a streaming replica with the new leader's rows.
//!
//! What is per host, and how:
//! - the network: namespace `<prefix>-hN` with 10.200.0.N/24 on a veth whose peer is a port of
//!   a bridge in a fourth namespace `<prefix>-br`. Nothing is configured in the machine's own
//!   network namespace.
//! - /etc/pgwarden: `ip netns exec` bind-mounts /etc/netns/<ns>/pgwarden over /etc/pgwarden
//!   (iproute2's convention), so each host reads its own /etc/pgwarden/pgwarden.yml.
//! - /var/lib/pgwarden and /var/lib/postgresql: bind-mounted from a temporary directory in the
//!   private mount namespace `ip netns exec` creates for the host's process tree, so the
//!   configuration uses the packaged paths and the machine's own directories are not touched.
//!
//! The daemon is started the way the unit starts it: `setpriv` switches to postgres (uid, gid,
//! supplementary groups, a reset environment) and execs the binary, so the PID recorded is the
//! daemon's own. Every PID started here is killed by the guard; the namespaces (and with them
//! the veths and the bridge), /etc/netns entries and temporary directories are removed even on
//! failure; if the test installed the package, it purges it again.
//!
//! Needs root, iproute2, setpriv, PostgreSQL (postgresql-NN) and the .deb from
//! scripts/package.sh; skipped loudly otherwise (a failure under
//! PGWARDEN_REQUIRE_PACKAGE_TESTS=1, as scripts/test.sh sets).

mod packaging;

use packaging::{deb, have, run_limited, skip, stdout_of};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 3;
const QUICK: Duration = Duration::from_secs(60);
const REST_PORT: u16 = 8008;

fn host_ip(i: usize) -> String {
    format!("10.200.0.{}", i + 1)
}

fn host_name(i: usize) -> String {
    format!("host{}", i + 1)
}

/// The configuration written to /etc/pgwarden/pgwarden.yml on host `i`: docs/install.md's,
/// derived for each host as the page says, on this test's subnet and PostgreSQL version.
fn host_config(i: usize, pg_major: &str) -> String {
    // Never arm a watchdog on the machine running the test (it would reset the machine when a
    // daemon is killed). As postgres it could not open /dev/watchdog anyway unless a udev rule
    // allows it.
    packaging::documented_config(i + 1, "10.200.0", pg_major) + "\nwatchdog:\n  mode: off\n"
}

/// Everything the test created, undone on drop (also when the test panics).
struct Lab {
    prefix: String,
    root: PathBuf,
    namespaces: Vec<String>,
    etc_netns: Vec<PathBuf>,
    /// /etc/netns did not exist before: remove it at the end if empty.
    remove_etc_netns: bool,
    daemons: Vec<Option<Child>>,
    /// Per host, the datagram socket standing in for systemd's NOTIFY_SOCKET.
    notify: Vec<Option<UnixDatagram>>,
    /// The package was not installed before: purge it at the end.
    purge_package: bool,
    /// /var/lib/pgwarden did not exist before: remove it at the end if still empty.
    remove_state_dir: bool,
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("{}-h{}", self.prefix, i + 1)
    }
    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }
    fn host_dir(&self, i: usize) -> PathBuf {
        self.root.join(host_name(i))
    }
    fn log_path(&self, i: usize) -> PathBuf {
        self.host_dir(i).join("pgwarden.log")
    }

    fn ip(&self, args: &[&str]) {
        stdout_of("ip", args, QUICK);
    }

    fn add_namespace(&mut self, name: &str) {
        self.ip(&["netns", "add", name]);
        self.namespaces.push(name.to_string());
        self.ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// A bridge in its own namespace, and per host a namespace with eth0 = 10.200.0.N/24 whose
    /// veth peer is a bridge port named hN.
    fn build_network(&mut self) {
        let br = self.bridge_ns();
        self.add_namespace(&br);
        self.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        self.ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 0..HOSTS {
            let ns = self.ns(i);
            self.add_namespace(&ns);
            let port = format!("h{}", i + 1);
            // Created inside the host namespace with its peer inside the bridge namespace:
            // neither end ever exists in the machine's own namespace.
            self.ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &br,
            ]);
            self.ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host_ip(i)),
                "dev",
                "eth0",
            ]);
            self.ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            self.ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            self.ip(&["-n", &br, "link", "set", &port, "up"]);
        }
    }

    /// Cuts host `i` off (its bridge port down, as a failed switch port) or reconnects it.
    fn set_link(&self, i: usize, up: bool) {
        let port = format!("h{}", i + 1);
        self.ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ]);
    }

    /// Per-host /etc/pgwarden (through /etc/netns) and state directories.
    fn prepare_host(&mut self, i: usize, pg_major: &str) {
        let etc = Path::new("/etc/netns").join(self.ns(i));
        std::fs::create_dir_all(etc.join("pgwarden")).unwrap();
        self.etc_netns.push(etc.clone());
        let cfg = etc.join("pgwarden/pgwarden.yml");
        std::fs::write(&cfg, host_config(i, pg_major)).unwrap();
        // As the package leaves /etc/pgwarden/pgwarden.yml: root:postgres 0640.
        chown(&cfg, "root", "postgres");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();

        let dir = self.host_dir(i);
        for d in ["var-lib-pgwarden", "var-lib-postgresql"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::create_dir_all(dir.join("var-lib-postgresql").join(pg_major)).unwrap();
        for d in [
            "var-lib-pgwarden".to_string(),
            "var-lib-postgresql".to_string(),
            format!("var-lib-postgresql/{pg_major}"),
        ] {
            chown(&dir.join(&d), "postgres", "postgres");
            std::fs::set_permissions(dir.join(&d), std::fs::Permissions::from_mode(0o750)).unwrap();
        }
    }

    /// Starts host `i`'s daemon as the unit would: /usr/bin/pgwarden /etc/pgwarden/pgwarden.yml
    /// as postgres, in the host's network namespace and its own view of the state directories.
    fn start(&mut self, i: usize) {
        let dir = self.host_dir(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        // What systemd gives a Type=notify service: a datagram socket in NOTIFY_SOCKET.
        let notify_path = dir.join("notify");
        let _ = std::fs::remove_file(&notify_path);
        let sock = UnixDatagram::bind(&notify_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        // The daemon runs as postgres and must be allowed to send to it.
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
        self.notify[i] = Some(sock);
        // `ip netns exec` unshares the mount namespace and execs sh, which binds the host's
        // directories and execs setpriv, which execs env, which execs pgwarden: one PID
        // throughout.
        let script = r#"mount --bind "$1" /var/lib/pgwarden && mount --bind "$2" /var/lib/postgresql && exec setpriv --reuid=postgres --regid=postgres --init-groups --reset-env env NOTIFY_SOCKET="$3" /usr/bin/pgwarden /etc/pgwarden/pgwarden.yml"#;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), "sh", "-c", script, "sh"])
            .arg(dir.join("var-lib-pgwarden"))
            .arg(dir.join("var-lib-postgresql"))
            .arg(&notify_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec");
        eprintln!("{}: pgwarden started, pid {}", host_name(i), child.id());
        self.daemons[i] = Some(child);
    }

    /// Waits up to `limit` for a notification from host `i`'s daemon that contains `want`
    /// (e.g. READY=1); returns every message seen until then.
    fn wait_notify(&self, i: usize, want: &str, limit: Duration) -> Vec<String> {
        let sock = self.notify[i]
            .as_ref()
            .expect("host started with a notify socket");
        let deadline = Instant::now() + limit;
        let mut seen = vec![];
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == want);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
        }
        panic!(
            "{}: no {want} on NOTIFY_SOCKET within {limit:?}; got {seen:?}",
            host_name(i)
        );
    }

    /// SIGTERM (the unit's stop), then waits up to `limit` before SIGKILL.
    fn stop(&mut self, i: usize, limit: Duration) -> bool {
        let Some(mut c) = self.daemons[i].take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// PID of host `i`'s postmaster, from its postmaster.pid, if it is still a postgres process.
    fn postmaster_pid(&self, i: usize) -> Option<i32> {
        let base = self.host_dir(i).join("var-lib-postgresql");
        for entry in std::fs::read_dir(&base).ok()?.flatten() {
            let pidfile = entry.path().join("main/postmaster.pid");
            let Ok(text) = std::fs::read_to_string(&pidfile) else {
                continue;
            };
            let pid: i32 = text.lines().next()?.trim().parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if matches!(comm.trim(), "postgres" | "postmaster") {
                return Some(pid);
            }
        }
        None
    }

    fn dump_logs(&self) {
        for i in 0..HOSTS {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            eprintln!("==== {} pgwarden log (last 80 lines) ====", host_name(i));
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in 0..self.daemons.len() {
            if let Some(mut c) = self.daemons[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // A postmaster whose daemon was killed: ours, by its pid file in our directory.
            if let Some(pid) = self.postmaster_pid(i) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // Deleting a namespace deletes the veth ends and the bridge inside it (and their peers).
        for ns in self.namespaces.drain(..).rev() {
            let _ = run_limited(Command::new("ip").args(["netns", "del", &ns]), QUICK);
        }
        for d in self.etc_netns.drain(..) {
            let _ = std::fs::remove_dir_all(&d);
        }
        if self.remove_etc_netns {
            let _ = std::fs::remove_dir("/etc/netns");
        }
        // PostgreSQL's children may need a moment to exit after the postmaster's SIGKILL
        // before their files can all be removed.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.root).is_ok() || !self.root.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.purge_package {
            let _ = run_limited(Command::new("dpkg").args(["--purge", "pgwarden"]), QUICK);
        }
        if self.remove_state_dir {
            let _ = std::fs::remove_dir("/var/lib/pgwarden");
        }
    }
}

fn chown(path: &Path, user: &str, group: &str) {
    stdout_of(
        "chown",
        &[&format!("{user}:{group}"), &path.to_string_lossy()],
        QUICK,
    );
}

/// An HTTP GET made from inside network namespace `ns` (the testkit's, shared with the
/// systemd field test).
fn get_in_ns(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    pgwarden_testkit::netns::NetLab::http_get_in(ns, addr, path)
}

/// GET /cluster on host `i`'s own REST API, from inside host `i`.
fn cluster_from(lab: &Lab, i: usize) -> Option<Value> {
    let (code, body) = get_in_ns(&lab.ns(i), &format!("{}:{REST_PORT}", host_ip(i)), "/cluster")?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// From host `i`: the leader's name if /cluster shows exactly `members` members, one leader
/// in state running and every other member streaming on the leader's timeline.
fn healthy_from(lab: &Lab, i: usize, members: &[usize]) -> Option<String> {
    let c = cluster_from(lab, i)?;
    let names: Vec<String> = members.iter().map(|&j| host_name(j)).collect();
    pgwarden_testkit::http::healthy_leader(&c, &names, true)
}

/// The superuser password of docs/install.md's configuration.
const SUPERUSER_PASSWORD: &str = "change-me-too";

/// Runs `sql` with psql from inside host `i`, over TCP to host `j`'s PostgreSQL as the
/// superuser; its output (unaligned, tuples only), or None if it failed.
fn psql(lab: &Lab, pg_major: &str, i: usize, j: usize, sql: &str) -> Option<String> {
    let out = run_limited(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns(i), "env"])
            .arg(format!("PGPASSWORD={SUPERUSER_PASSWORD}"))
            .arg("PGCONNECT_TIMEOUT=3")
            .arg(format!("/usr/lib/postgresql/{pg_major}/bin/psql"))
            .args([
                "-h",
                &host_ip(j),
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        Duration::from_secs(30),
    )?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The ids in the test table on host `j`, read from host `i`.
fn ids_on(lab: &Lab, pg_major: &str, i: usize, j: usize) -> Option<String> {
    psql(
        lab,
        pg_major,
        i,
        j,
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM packaging_netns",
    )
}

/// Polls `cond` every 500 ms until it returns Some, or panics after `limit` naming `what`.
fn wait_for<T>(limit: Duration, what: &str, cond: impl FnMut() -> Option<T>) -> T {
    pgwarden_testkit::wait::wait_blocking(Duration::from_millis(500), limit, what, cond)
}

/// Waits until every host in `from` reports the same healthy cluster of `members`; returns the
/// leader's index.
fn wait_healthy(lab: &Lab, from: &[usize], members: &[usize], limit: Duration, what: &str) -> usize {
    let leader = wait_for(limit, what, || {
        let seen: Vec<String> = from
            .iter()
            .map(|&i| healthy_from(lab, i, members))
            .collect::<Option<_>>()?;
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0].clone())
    });
    (0..HOSTS)
        .find(|&i| host_name(i) == leader)
        .unwrap_or_else(|| panic!("unknown leader {leader}"))
}

/// `pgwardenctl list` on host `i`, as postgres, with no option: it reads its default
/// /etc/pgwarden/pgwarden.yml (ctl.listen, the scope) as an administrator's call would.
fn pgwardenctl_list(lab: &Lab, i: usize) -> String {
    let out = run_limited(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(i),
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
            ])
            .args(["--init-groups", "--reset-env", "/usr/bin/pgwardenctl", "list"]),
        QUICK,
    )
    .expect("pgwardenctl did not complete");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgwardenctl list failed on {} ({}):\n{stdout}{}",
        host_name(i),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn check_pgwardenctl(lab: &Lab, leader: usize) {
    for i in 0..HOSTS {
        let table = pgwardenctl_list(lab, i);
        eprintln!("{}: pgwardenctl list\n{table}", host_name(i));
        for j in 0..HOSTS {
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
            2,
            "two streaming replicas in:\n{table}"
        );
    }
}

fn installed_version() -> Option<String> {
    let out = run_limited(
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status} ${Version}", "pgwarden"]),
        QUICK,
    )?;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.strip_prefix("installed ").map(str::to_string)
}

/// Processes running the packaged binary, other than ours.
fn packaged_daemons() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new("/usr/bin/pgwarden"))
        })
        .collect()
}

/// The newest PostgreSQL major version installed the Debian way (/usr/lib/postgresql/NN).
fn pg_major() -> Option<String> {
    let mut v: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|n| Path::new(&format!("/usr/lib/postgresql/{n}/bin/postgres")).exists())
        .collect();
    v.sort();
    v.pop().map(|n| n.to_string())
}

/// Installed from the .deb on three namespaced hosts: 1 leader + 2 streaming replicas seen from
/// every host, a failover when the leader's host is cut off (which stops being a primary), the
/// old leader rejoining after the link heals, and the package purged without removing data.
#[test]
fn three_hosts_from_the_deb_fail_over_when_the_leader_is_cut_off() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (network namespaces, dpkg -i, running as postgres)");
    }
    for tool in ["ip", "dpkg", "setpriv", "mount"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let Some(deb) = deb() else {
        return skip(&format!(
            "no pgwarden_{}-*.deb in {} (run scripts/package.sh)",
            env!("CARGO_PKG_VERSION"),
            packaging::package_dir().display()
        ));
    };
    let Some(pg_major) = pg_major() else {
        return skip("no PostgreSQL server in /usr/lib/postgresql (apt-get install postgresql-15)");
    };
    eprintln!("package {} with PostgreSQL {pg_major}", deb.display());
    let t0 = Instant::now();

    let before = installed_version();
    let state_dir_existed = Path::new("/var/lib/pgwarden").exists();
    let root = tempfile::Builder::new()
        .prefix("pgwarden-netns-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut lab = Lab {
        prefix: format!("pgwt{}", std::process::id() % 100_000),
        root,
        namespaces: vec![],
        etc_netns: vec![],
        remove_etc_netns: !Path::new("/etc/netns").exists(),
        daemons: (0..HOSTS).map(|_| None).collect(),
        notify: (0..HOSTS).map(|_| None).collect(),
        purge_package: before.is_none(),
        remove_state_dir: !state_dir_existed,
    };

    // 1. Install the package for real: maintainer scripts, dependencies, conffile.
    let out = run_limited(
        Command::new("dpkg").args(["-i"]).arg(&deb),
        Duration::from_secs(300),
    )
    .expect("dpkg -i did not complete");
    assert!(
        out.status.success(),
        "dpkg -i {} failed:\n{}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("installed (was {before:?}): {:?}", installed_version());
    let meta = std::fs::metadata("/var/lib/pgwarden").expect("postinst creates /var/lib/pgwarden");
    {
        use std::os::unix::fs::MetadataExt;
        let pg_uid = nix::unistd::User::from_name("postgres")
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        if !state_dir_existed {
            assert_eq!(meta.uid(), pg_uid, "/var/lib/pgwarden owned by postgres");
            assert_eq!(meta.mode() & 0o777, 0o750, "/var/lib/pgwarden mode");
        }
        let conf = std::fs::metadata("/etc/pgwarden/pgwarden.yml").unwrap();
        let pg_gid = nix::unistd::Group::from_name("postgres")
            .unwrap()
            .unwrap()
            .gid
            .as_raw();
        assert_eq!(conf.gid(), pg_gid, "/etc/pgwarden/pgwarden.yml group postgres");
        assert_eq!(conf.mode() & 0o777, 0o640, "/etc/pgwarden/pgwarden.yml mode");
    }
    if before.is_none() {
        assert_eq!(
            packaged_daemons(),
            Vec::<i32>::new(),
            "installing must not start pgwarden"
        );
    }
    stdout_of("/usr/bin/pgwarden", &["--version"], QUICK);

    // 2. Three hosts.
    lab.build_network();
    for i in 0..HOSTS {
        lab.prepare_host(i, &pg_major);
    }
    // Each host validates its own /etc/pgwarden/pgwarden.yml, as an administrator would.
    for i in 0..HOSTS {
        let out = run_limited(
            Command::new("ip").args([
                "netns",
                "exec",
                &lab.ns(i),
                "/usr/bin/pgwarden",
                "--validate-config",
                "/etc/pgwarden/pgwarden.yml",
            ]),
            QUICK,
        )
        .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            host_name(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The hosts reach each other through the bridge.
    let ping = |from: usize, to: usize| {
        run_limited(
            Command::new("ip").args(["netns", "exec", &lab.ns(from), "ping", "-c1", "-W2", &host_ip(to)]),
            QUICK,
        )
        .is_some_and(|o| o.status.success())
    };
    if have("ping") {
        assert!(
            ping(0, 1) && ping(1, 2) && ping(2, 0),
            "hosts cannot reach each other"
        );
    }
    eprintln!(
        "[{:>5.1}s] network of {HOSTS} hosts up",
        t0.elapsed().as_secs_f64()
    );

    // 3. Start in the documented order (host1, host2, host3) and wait for the cluster.
    let t_start = Instant::now();
    for i in 0..HOSTS {
        lab.start(i);
    }
    // Type=notify: each daemon reports READY=1 once Raft and the REST API serve, before the
    // cluster has formed.
    for i in 0..HOSTS {
        let msgs = lab.wait_notify(i, "READY=1", Duration::from_secs(60));
        eprintln!(
            "[{:>5.1}s] {}: {:?} after {:.1}s",
            t0.elapsed().as_secs_f64(),
            host_name(i),
            msgs.last().map(|m| m.replace('\n', " ")),
            t_start.elapsed().as_secs_f64()
        );
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    let leader = wait_healthy(
        &lab,
        &all,
        &all,
        Duration::from_secs(180),
        "1 leader + 2 streaming replicas seen from every host",
    );
    eprintln!(
        "[{:>5.1}s] cluster healthy after {:.1}s: leader {}",
        t0.elapsed().as_secs_f64(),
        t_start.elapsed().as_secs_f64(),
        host_name(leader)
    );
    check_pgwardenctl(&lab, leader);
    assert!(
        packaging::documented_host1_config().contains(SUPERUSER_PASSWORD),
        "docs/install.md's superuser password changed"
    );
    // A row written on the leader reaches both replicas.
    psql(
        &lab,
        &pg_major,
        leader,
        leader,
        "CREATE TABLE packaging_netns (id int PRIMARY KEY, note text); \
         INSERT INTO packaging_netns VALUES (1, 'before the cut')",
    )
    .expect("write on the leader");
    for i in all.iter().copied().filter(|&i| i != leader) {
        wait_for(Duration::from_secs(30), "the first row on every replica", || {
            (ids_on(&lab, &pg_major, i, i)? == "1").then_some(())
        });
    }

    // Installing the package again while the cluster runs (what an upgrade does: prerm,
    // unpack, postinst configure) keeps a locally edited /etc/pgwarden/pgwarden.yml and
    // neither stops nor restarts anything.
    let conf = Path::new("/etc/pgwarden/pgwarden.yml");
    let edited = format!(
        "{}# edited by the administrator\n",
        std::fs::read_to_string(conf).unwrap()
    );
    std::fs::write(conf, &edited).unwrap();
    let pids: Vec<u32> = lab.daemons.iter().map(|c| c.as_ref().unwrap().id()).collect();
    let out = run_limited(
        Command::new("dpkg").args(["-i", "--force-confold"]).arg(&deb),
        Duration::from_secs(300),
    )
    .expect("dpkg -i (again) did not complete");
    assert!(
        out.status.success(),
        "reinstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(conf).unwrap(),
        edited,
        "reinstall replaced the edited conffile"
    );
    for (i, c) in lab.daemons.iter_mut().enumerate() {
        let c = c.as_mut().unwrap();
        assert!(
            matches!(c.try_wait(), Ok(None)),
            "{} exited during the reinstall",
            host_name(i)
        );
        assert_eq!(c.id(), pids[i]);
    }
    assert_eq!(
        healthy_from(&lab, leader, &all).as_deref(),
        Some(host_name(leader).as_str()),
        "the cluster changed during the reinstall"
    );
    eprintln!(
        "[{:>5.1}s] reinstalled the package under the running cluster",
        t0.elapsed().as_secs_f64()
    );

    // 4. Cut the leader's host off; the two others elect a new leader.
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let t_cut = Instant::now();
    lab.set_link(leader, false);
    eprintln!(
        "[{:>5.1}s] {} cut off",
        t0.elapsed().as_secs_f64(),
        host_name(leader)
    );
    let new_leader = wait_for(
        Duration::from_secs(90),
        "a new leader among the connected hosts",
        || {
            let seen: Vec<String> = others
                .iter()
                .map(|&i| {
                    let c = cluster_from(&lab, i)?;
                    let l = c
                        .get("members")?
                        .as_array()?
                        .iter()
                        .find(|m| m.get("role").and_then(Value::as_str) == Some("leader"))?;
                    (l.get("state")?.as_str()? == "running")
                        .then(|| l.get("name")?.as_str().map(str::to_string))
                        .flatten()
                })
                .collect::<Option<_>>()?;
            let first = seen[0].clone();
            (seen.iter().all(|s| *s == first) && first != host_name(leader)).then_some(first)
        },
    );
    let failover = t_cut.elapsed();
    eprintln!(
        "[{:>5.1}s] failover to {new_leader} in {:.1}s",
        t0.elapsed().as_secs_f64(),
        failover.as_secs_f64()
    );
    let new_idx = (0..HOSTS).find(|&i| host_name(i) == new_leader).unwrap();
    // The new leader takes writes, and has the row written before the cut.
    wait_for(Duration::from_secs(30), "a write on the new leader", || {
        psql(
            &lab,
            &pg_major,
            new_idx,
            new_idx,
            "INSERT INTO packaging_netns VALUES (2, 'after the failover')",
        )
    });
    assert_eq!(ids_on(&lab, &pg_major, new_idx, new_idx).as_deref(), Some("1,2"));
    // By the time another host holds the leader key, the isolated one's lease has run out and
    // it must refuse writes (ARCHITECTURE.md, invariant 1): no waiting here.
    assert_eq!(
        psql(
            &lab,
            &pg_major,
            leader,
            leader,
            "INSERT INTO packaging_netns VALUES (3, 'split brain')",
        ),
        None,
        "the isolated old leader accepted a write after {new_leader} took over"
    );
    // The isolated host stops being a writable primary (its lease ran out).
    wait_for(
        Duration::from_secs(60),
        "the isolated old leader to stop answering /primary with 200",
        || {
            let r = get_in_ns(
                &lab.ns(leader),
                &format!("{}:{REST_PORT}", host_ip(leader)),
                "/primary",
            );
            matches!(r, Some((code, _)) if code != 200).then_some(())
        },
    );
    eprintln!(
        "[{:>5.1}s] isolated {} is no longer a primary",
        t0.elapsed().as_secs_f64(),
        host_name(leader)
    );

    // 5. Heal: the old leader rejoins as a streaming replica of the new one.
    let t_heal = Instant::now();
    lab.set_link(leader, true);
    let after = wait_healthy(
        &lab,
        &all,
        &all,
        Duration::from_secs(180),
        "the old leader to rejoin: 1 leader + 2 streaming replicas from every host",
    );
    assert_eq!(
        host_name(after),
        new_leader,
        "leadership moved again after the heal"
    );
    eprintln!(
        "[{:>5.1}s] {} rejoined as a replica in {:.1}s",
        t0.elapsed().as_secs_f64(),
        host_name(leader),
        t_heal.elapsed().as_secs_f64()
    );
    check_pgwardenctl(&lab, after);
    // The rejoined old leader replays the new leader's history.
    wait_for(
        Duration::from_secs(30),
        "both rows on the rejoined old leader",
        || (ids_on(&lab, &pg_major, leader, leader)? == "1,2").then_some(()),
    );

    // 6. Stop like `systemctl stop` (SIGTERM), replicas first.
    let mut order: Vec<usize> = all.iter().copied().filter(|&i| i != after).collect();
    order.push(after);
    for i in order {
        assert!(
            lab.stop(i, Duration::from_secs(60)),
            "{} did not stop within 60 s of SIGTERM",
            host_name(i)
        );
        lab.wait_notify(i, "STOPPING=1", Duration::from_secs(1));
    }
    eprintln!("[{:>5.1}s] all stopped", t0.elapsed().as_secs_f64());

    // 7. A purge keeps the data.
    if lab.purge_package {
        stdout_of("dpkg", &["--purge", "pgwarden"], Duration::from_secs(120));
        lab.purge_package = false;
        assert!(
            Path::new("/var/lib/pgwarden").is_dir(),
            "purge removed /var/lib/pgwarden"
        );
        assert!(
            !Path::new("/usr/bin/pgwarden").exists(),
            "purge left /usr/bin/pgwarden"
        );
    }
    eprintln!(
        "[{:>5.1}s] done: failover {:.1}s after the cut",
        t0.elapsed().as_secs_f64(),
        failover.as_secs_f64()
    );
}
