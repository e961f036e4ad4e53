//! The member processes of one system under test, and what /proc says about them.
//!
//! Every child is started from the main thread with `PR_SET_PDEATHSIG(SIGKILL)` and in a
//! process group of its own: the bench kills and reaps them itself on every exit path
//! (`Drop`), a Ctrl-C in the terminal reaches only the bench (which then cleans up), and if
//! the bench itself is SIGKILLed the kernel kills the members instead of leaving them
//! running on the machine.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The two systems compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// pgwarden's embedded DCS (`pgwarden-dcs`).
    Pgwarden,
    /// etcd.
    Etcd,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`, so width and alignment in format strings apply.
        f.pad(match self {
            System::Pgwarden => "pgwarden",
            System::Etcd => "etcd",
        })
    }
}

/// One member process.
pub struct Member {
    /// Member name, e.g. `n0`.
    pub name: String,
    /// Where clients connect, `127.0.0.1:port` (pgwarden: its peer service; etcd: its
    /// client URL).
    pub client_addr: String,
    log: PathBuf,
    child: Child,
}

impl Member {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `n` lines of the member's log, for error reports.
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(s) => {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }
}

/// A 3-member cluster of one system, with its data under a directory of the bench's temp dir.
pub struct Cluster {
    /// Which system.
    pub system: System,
    /// Its members, in start order.
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `pgwarden-dcs` members at `addrs` (one per address), with default settings:
    /// only what a member needs to find its partners is passed.
    pub fn start_pgwarden(bin: &Path, root: &Path, addrs: &[String]) -> Result<Cluster> {
        let mut c = Cluster {
            system: System::Pgwarden,
            members: Vec::new(),
        };
        for (i, addr) in addrs.iter().enumerate() {
            let name = format!("n{i}");
            let dir = root.join(format!("pgwarden-{name}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let partners: Vec<&str> = addrs.iter().filter(|a| *a != addr).map(String::as_str).collect();
            let mut cmd = Command::new(bin);
            cmd.args(["--name", &name, "--self-addr", addr])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .arg(format!("--partners={}", partners.join(",")))
                // Its default log filter, whatever the caller's environment says.
                .env_remove("RUST_LOG");
            c.spawn(cmd, name, addr.clone(), dir.join("member.log"))?;
        }
        Ok(c)
    }

    /// Starts etcd members, `client_addrs[i]` and `peer_addrs[i]` for member i, with
    /// etcd's defaults for everything but the addresses and the initial cluster (fsync on,
    /// default heartbeat and election timeouts, default snapshot count and logging).
    pub fn start_etcd(
        bin: &Path,
        root: &Path,
        client_addrs: &[String],
        peer_addrs: &[String],
        token: &str,
    ) -> Result<Cluster> {
        let mut c = Cluster {
            system: System::Etcd,
            members: Vec::new(),
        };
        let initial: Vec<String> = peer_addrs
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://{p}"))
            .collect();
        for (i, (client, peer)) in client_addrs.iter().zip(peer_addrs).enumerate() {
            let name = format!("e{i}");
            let dir = root.join(format!("etcd-{name}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut cmd = Command::new(bin);
            cmd.args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .arg(format!("--listen-client-urls=http://{client}"))
                .arg(format!("--advertise-client-urls=http://{client}"))
                .arg(format!("--listen-peer-urls=http://{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--initial-cluster-state=new");
            // etcd reads every ETCD_* variable as a flag: keep the caller's out of the run.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(k);
                }
            }
            c.spawn(cmd, name, client.clone(), dir.join("member.log"))?;
        }
        Ok(c)
    }

    fn spawn(&mut self, mut cmd: Command, name: String, client_addr: String, log: PathBuf) -> Result<()> {
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(log_err);
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (setpgid, prctl, getppid).
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The bench died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the bench exited during spawn"));
                }
                Ok(())
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} member {name} ({program})", self.system))?;
        self.members.push(Member {
            name,
            client_addr,
            log,
            child,
        });
        Ok(())
    }

    /// The client addresses of all members.
    pub fn client_addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_addr.clone()).collect()
    }

    /// Fails, naming the member and showing its log, if any member has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for m in &mut self.members {
            if let Some(status) = m.child.try_wait().context("checking a member process")? {
                bail!(
                    "{} member {} exited ({status}); its log ends with:\n{}",
                    self.system,
                    m.name,
                    m.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// Prints every member's log tail to stderr.
    pub fn print_log_tails(&self, n: usize) {
        for m in &self.members {
            eprintln!("---- {} {} log ({}) ----", self.system, m.name, m.log.display());
            eprintln!("{}", m.log_tail(n));
        }
    }

    /// Kills and reaps every member.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            // The whole process group, not just the pid: a wrapper given as the binary
            // (strace, a profiler, an LD_PRELOAD script that does not exec) may have forked
            // the real member, which PR_SET_PDEATHSIG (set on the wrapper) does not cover.
            // The group id is the member's pid (setpgid(0, 0) at spawn). Only a group that
            // is already gone (ESRCH) is expected; anything else is worth a line, not a panic.
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(-(m.pid() as libc::pid_t), libc::SIGKILL) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    eprintln!(
                        "dcs-bench: killing {} {} (pid {}): {e}",
                        self.system,
                        m.name,
                        m.pid()
                    );
                }
            }
            if let Err(e) = m.child.wait() {
                eprintln!(
                    "dcs-bench: reaping {} {} (pid {}): {e}",
                    self.system,
                    m.name,
                    m.pid()
                );
            }
        }
        self.members.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` distinct free ports on 127.0.0.1. All are held open until every one is chosen, so
/// none is handed out twice; another process could still take one before the member
/// binds it, in which case that member fails to start with a clear error.
pub fn free_addrs(n: usize) -> Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding a free port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.to_string()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reading a bound port")
}

/// Memory of a process from /proc/<pid>/status, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub hwm_kib: u64,
}

/// Reads a process's memory figures.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status(&s).with_context(|| format!("parsing {path}"))
}

fn parse_status(s: &str) -> Result<Memory> {
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("no {name} line"))?;
        let kib = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad {name} value {line:?}"))?;
        Ok(kib)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system, all threads) a process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&s).with_context(|| format!("parsing {path}"))
}

/// The bench's own CPU time, in clock ticks.
pub fn self_cpu_ticks() -> Result<u64> {
    cpu_ticks(std::process::id())
}

fn parse_stat_ticks(s: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')': the fixed
    // fields start after the last ')'. There, field 3 (state) is index 0, so utime
    // (field 14) is index 11 and stime (field 15) index 12.
    let rest = &s[s.rfind(')').context("no ')' in stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("stat line too short")?
            .parse::<u64>()
            .context("bad tick count")
    };
    Ok(get(11)? + get(12)?)
}

/// Clock ticks per second, for the figures in /proc/<pid>/stat.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The file system a path lives on (type and device), from /proc/self/mounts, so the
/// report says whether fsync went to a disk or to tmpfs.
pub fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces_and_parens() {
        let line = "1234 (pg (dcs) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_ticks(line).unwrap(), 42);
    }

    #[test]
    fn status_memory_fields() {
        let s = "Name:\tetcd\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(s).unwrap(),
            Memory {
                rss_kib: 10240,
                hwm_kib: 20480
            }
        );
        assert!(parse_status("Name:\tx\n").is_err());
    }
}
