//! Shared by the packaging tests: where the built packages are, how to skip when they (or the
//! tools) are absent, and running commands with a time limit.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set by scripts/test.sh (CI): a missing package or tool is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "PGWARDEN_REQUIRE_PACKAGE_TESTS";
/// Directory holding the packages; scripts/package.sh's default output when unset.
pub const DIR_ENV: &str = "PGWARDEN_PACKAGE_DIR";

/// Skips the test loudly, or fails it when CI asked for the packaging tests to run.
pub fn skip(why: &str) {
    if std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") {
        panic!("{why} (and {REQUIRE_ENV}=1 requires this test to run)");
    }
    eprintln!("SKIPPED: {why}");
}

pub fn package_dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/packages"))
}

/// The newest file in the package directory named `<prefix><version><separator>...<suffix>`.
fn find(prefix: &str, suffix: &str) -> Option<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let start = format!("{prefix}{version}-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(package_dir())
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&start) && n.ends_with(suffix)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The .deb built by scripts/package.sh for this version.
pub fn deb() -> Option<PathBuf> {
    find("pgwarden_", ".deb")
}

/// The .rpm built by scripts/package.sh for this version.
pub fn rpm() -> Option<PathBuf> {
    find("pgwarden-", ".rpm")
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` to completion, killing it after `limit`. Returns None if it could not be spawned
/// or timed out (both reported on stderr).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let what = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot run {what}: {e}");
            return None;
        }
    };
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take()?;
    let mut err = child.stderr.take()?;
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("timed out after {limit:?}: {what}");
                return None;
            }
        }
    };
    Some(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Runs `program args` (at most `limit`) and returns stdout, panicking with the command, status
/// and stderr when it fails.
pub fn stdout_of(program: &str, args: &[&str], limit: Duration) -> String {
    let out = run_limited(Command::new(program).args(args), limit)
        .unwrap_or_else(|| panic!("{program} {args:?} did not complete"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The marker in docs/install.md above the YAML block that is host1's configuration.
const DOC_CONFIG_MARKER: &str = "<!-- The netns test (tests/packaging_netns.rs) runs this block";

/// host1's /etc/pgwarden/pgwarden.yml as docs/install.md gives it.
pub fn documented_host1_config() -> String {
    let doc = include_str!("../../docs/install.md");
    let after = doc
        .split_once(DOC_CONFIG_MARKER)
        .expect("docs/install.md lost the marker of the tested configuration")
        .1;
    let block = after
        .split_once("```yaml\n")
        .expect("no ```yaml block after the marker")
        .1;
    block
        .split_once("```")
        .expect("unterminated ```yaml block")
        .0
        .to_string()
}

/// The configuration of host `n` (1, 2 or 3) exactly as docs/install.md tells the reader to
/// derive it from host1's: the name, and the host's own 10.0.0.n address trading places with
/// 10.0.0.1. Then `subnet` replaces 10.0.0 and `pg_major` the PostgreSQL version 16.
pub fn documented_config(n: usize, subnet: &str, pg_major: &str) -> String {
    let own = format!("10.0.0.{n}:");
    let text = documented_host1_config()
        .replace("name: host1", &format!("name: host{n}"))
        .replace("10.0.0.1:", "\u{0}SELF")
        .replace(&own, "10.0.0.1:")
        .replace("\u{0}SELF", &own)
        .replace("10.0.0.", &format!("{subnet}."))
        .replace("/postgresql/16/", &format!("/postgresql/{pg_major}/"));
    assert!(!text.contains('\u{0}'));
    text
}
