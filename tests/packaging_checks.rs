//! Checks of the built .deb and .rpm (scripts/package.sh writes them into target/packages):
//! lintian has no error, the file lists, modes, conffiles and dependencies are the expected
//! ones, the maintainer scripts never start, stop or delete anything, and systemd accepts the
//! unit. Each test names what it checks, so a CI failure says what broke. Skipped loudly when
//! the packages or tools are absent, unless PGWARDEN_REQUIRE_PACKAGE_TESTS=1 (scripts/test.sh).

mod packaging;

use packaging::{deb, have, rpm, run_limited, skip, stdout_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(60);

/// The files both packages must carry, as absolute paths.
const COMMON_FILES: &[&str] = &[
    "/usr/bin/pgwarden",
    "/usr/bin/pgwardenctl",
    "/etc/pgwarden/pgwarden.yml",
    "/usr/lib/systemd/system/pgwarden.service",
    "/usr/share/man/man1/pgwarden.1.gz",
    "/usr/share/man/man1/pgwarden-demo.1.gz",
    "/usr/share/bash-completion/completions/pgwarden",
    "/usr/share/fish/vendor_completions.d/pgwarden.fish",
    "/usr/share/man/man1/pgwardenctl.1.gz",
    "/usr/share/man/man1/pgwardenctl-list.1.gz",
    "/usr/share/bash-completion/completions/pgwardenctl",
    "/usr/share/fish/vendor_completions.d/pgwardenctl.fish",
    "/usr/share/doc/pgwarden/README.md",
    "/usr/share/doc/pgwarden/install.md",
    "/usr/share/doc/pgwarden/monitoring.md",
    "/usr/share/pgwarden/monitoring/grafana-dashboard.json",
    "/usr/share/pgwarden/monitoring/prometheus-alerts.yml",
    "/usr/share/doc/pgwarden/vip.md",
    "/usr/share/doc/pgwarden/backups-pgbackrest.md",
    "/usr/share/doc/pgwarden/multi-datacenter.md",
    "/usr/share/pgwarden/systemd/vip.conf",
];

/// The Debian dependency on a PostgreSQL server: any supported major version, from Debian or
/// from apt.postgresql.org, which both name the server package postgresql-NN.
const DEB_PG_DEPENDENCY: &str =
    "postgresql-18 | postgresql-17 | postgresql-16 | postgresql-15 | postgresql-14";

fn expected_files(zsh_dir: &str) -> Vec<String> {
    let mut v: Vec<String> = COMMON_FILES.iter().map(|s| s.to_string()).collect();
    v.push(format!("{zsh_dir}/_pgwarden"));
    v.push(format!("{zsh_dir}/_pgwardenctl"));
    v
}

fn need_deb() -> Option<PathBuf> {
    let Some(d) = deb() else {
        skip(&format!(
            "no pgwarden_{}-*.deb in {} (run scripts/package.sh)",
            env!("CARGO_PKG_VERSION"),
            packaging::package_dir().display()
        ));
        return None;
    };
    eprintln!("checking {}", d.display());
    Some(d)
}

fn need_rpm() -> Option<PathBuf> {
    if !have("rpm") {
        skip("the rpm tool is not installed (apt-get install rpm)");
        return None;
    }
    let Some(r) = rpm() else {
        skip(&format!(
            "no pgwarden-{}-*.rpm in {} (run scripts/package.sh)",
            env!("CARGO_PKG_VERSION"),
            packaging::package_dir().display()
        ));
        return None;
    };
    eprintln!("checking {}", r.display());
    Some(r)
}

/// Lines of a maintainer script that are not comments.
fn code_lines(script: &str) -> impl Iterator<Item = &str> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// What maintainer scripts must never do: start/stop/restart/enable the service, touch a
/// PostgreSQL cluster, or delete data.
fn assert_script_is_harmless(name: &str, script: &str) {
    let forbidden = [
        "systemctl start",
        "systemctl stop",
        "systemctl restart",
        "systemctl try-restart",
        "systemctl reload",
        "systemctl enable",
        "systemctl disable",
        "--now",
        "deb-systemd-invoke",
        "invoke-rc.d",
        "service pgwarden",
        "pg_ctl",
        "pg_ctlcluster",
        "pg_dropcluster",
        "pg_createcluster",
        "initdb",
        "rm -",
        "rmdir",
        "userdel",
    ];
    for line in code_lines(script) {
        for f in forbidden {
            assert!(
                !line.contains(f),
                "maintainer script {name} must not run `{f}`: {line}"
            );
        }
    }
}

fn assert_contains_all(listing: &[String], expected: &[String], what: &str) {
    let missing: Vec<&String> = expected.iter().filter(|e| !listing.contains(e)).collect();
    assert!(
        missing.is_empty(),
        "{what} lacks {missing:?}; it has:\n{}",
        listing.join("\n")
    );
}

/// lintian finds no error in the .deb (warnings and notes are printed, not failed on).
#[test]
fn lintian_reports_no_errors_on_the_deb() {
    let Some(deb) = need_deb() else { return };
    if !have("lintian") {
        return skip("lintian is not installed (apt-get install lintian)");
    }
    let out = run_limited(
        Command::new("lintian")
            .args(["--no-tag-display-limit", "--display-info"])
            .arg(&deb),
        Duration::from_secs(600),
    )
    .expect("lintian did not complete");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("lintian ({}):\n{text}", out.status);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    // lintian exits 0 when nothing at or above its default fail-on level (error) was found.
    assert!(out.status.success(), "lintian failed: {text}");
}

/// The .deb carries the binaries, the conffile, the unit, man pages and completions with the
/// intended modes; /etc/pgwarden/pgwarden.yml is a conffile.
#[test]
fn the_deb_carries_the_expected_files_and_conffile() {
    let Some(deb) = need_deb() else { return };
    let d = deb.to_string_lossy();
    let listing = stdout_of("dpkg-deb", &["--contents", &d], QUICK);
    let entries: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let mode = f.next()?.to_string();
            let path = f.nth(4)?.trim_start_matches('.').to_string();
            Some((mode, path))
        })
        .collect();
    let paths: Vec<String> = entries.iter().map(|(_, p)| p.clone()).collect();
    assert_contains_all(
        &paths,
        &expected_files("/usr/share/zsh/vendor-completions"),
        "the .deb",
    );
    let mode_of = |p: &str| entries.iter().find(|(_, q)| q == p).map(|(m, _)| m.as_str());
    assert_eq!(mode_of("/usr/bin/pgwarden"), Some("-rwxr-xr-x"));
    assert_eq!(mode_of("/usr/bin/pgwardenctl"), Some("-rwxr-xr-x"));
    // The example carries placeholder passwords only; postinst makes it root:postgres 0640
    // with a dpkg-statoverride, which dpkg also applies to every later version of the file.
    assert_eq!(mode_of("/etc/pgwarden/pgwarden.yml"), Some("-rw-r--r--"));
    assert!(paths.contains(&"/usr/share/doc/pgwarden/changelog.Debian.gz".to_string()));
    assert_eq!(
        mode_of("/usr/lib/systemd/system/pgwarden.service"),
        Some("-rw-r--r--")
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/var/lib/pgwarden")),
        "/var/lib/pgwarden must not be a package file (dpkg would delete it on purge)"
    );

    let conffiles = stdout_of("dpkg-deb", &["--info", &d, "conffiles"], QUICK);
    assert_eq!(conffiles.trim(), "/etc/pgwarden/pgwarden.yml", "conffiles");
}

/// The .deb depends on any supported postgresql-NN (Debian's or PGDG's), on adduser (postinst)
/// and on libc (computed by dpkg-shlibdeps).
#[test]
fn the_deb_depends_on_any_supported_postgresql_server() {
    let Some(deb) = need_deb() else { return };
    let d = deb.to_string_lossy();
    let depends = stdout_of("dpkg-deb", &["--field", &d, "Depends"], QUICK);
    eprintln!("Depends: {}", depends.trim());
    let groups: Vec<&str> = depends.split(',').map(str::trim).collect();
    assert!(
        groups.contains(&DEB_PG_DEPENDENCY),
        "Depends lacks `{DEB_PG_DEPENDENCY}`: {depends}"
    );
    assert!(groups.contains(&"adduser"), "Depends lacks adduser: {depends}");
    assert!(
        groups.iter().any(|g| g.starts_with("libc6")),
        "Depends lacks libc6: {depends}"
    );
    let field = |f: &str| {
        stdout_of("dpkg-deb", &["--field", &d, f], QUICK)
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "pgwarden");
    assert_eq!(field("Section"), "database");
}

/// postinst and postrm never start, stop or enable anything, never touch a cluster and never
/// delete data; there is no preinst or prerm.
#[test]
fn the_deb_maintainer_scripts_never_start_stop_or_delete() {
    let Some(deb) = need_deb() else { return };
    let dir = tempfile::tempdir().unwrap();
    stdout_of(
        "dpkg-deb",
        &["--control", &deb.to_string_lossy(), &dir.path().to_string_lossy()],
        QUICK,
    );
    for absent in ["preinst", "prerm"] {
        assert!(!dir.path().join(absent).exists(), "unexpected {absent}");
    }
    for name in ["postinst", "postrm"] {
        let path = dir.path().join(name);
        let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_script_is_harmless(name, &script);
        stdout_of("sh", &["-n", &path.to_string_lossy()], QUICK);
    }
    let postinst = std::fs::read_to_string(dir.path().join("postinst")).unwrap();
    assert!(
        postinst.contains("/var/lib/pgwarden"),
        "postinst creates /var/lib/pgwarden"
    );
    assert!(
        postinst.contains("getent passwd postgres"),
        "postinst creates postgres only if missing"
    );
}

/// rpm -qpl lists the expected files; the configuration is %config(noreplace), root:postgres
/// 0640.
#[test]
fn rpm_lists_the_expected_files_and_config() {
    let Some(rpm) = need_rpm() else { return };
    let r = rpm.to_string_lossy();
    let listing = stdout_of("rpm", &["-qpl", &r], QUICK);
    eprintln!("rpm -qpl:\n{listing}");
    let paths: Vec<String> = listing.lines().map(str::to_string).collect();
    assert_contains_all(
        &paths,
        &expected_files("/usr/share/zsh/site-functions"),
        "rpm -qpl",
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/var/lib/pgwarden")),
        "/var/lib/pgwarden must not be a package file (rpm -e would delete it)"
    );

    let config = stdout_of("rpm", &["-qpc", &r], QUICK);
    assert_eq!(config.trim(), "/etc/pgwarden/pgwarden.yml", "rpm -qpc");
    let details = stdout_of(
        "rpm",
        &[
            "-qp",
            "--queryformat",
            "[%{FILENAMES}\t%{FILEFLAGS:fflags}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEMODES:perms}\n]",
            &r,
        ],
        QUICK,
    );
    let line = details
        .lines()
        .find(|l| l.starts_with("/etc/pgwarden/pgwarden.yml\t"))
        .unwrap_or_else(|| panic!("no config line in:\n{details}"));
    let f: Vec<&str> = line.split('\t').collect();
    assert!(
        f[1].contains('c') && f[1].contains('n'),
        "not %config(noreplace): {line}"
    );
    assert_eq!((f[2], f[3], f[4]), ("root", "postgres", "-rw-r-----"), "{line}");
    let bin = details
        .lines()
        .find(|l| l.starts_with("/usr/bin/pgwarden\t"))
        .unwrap_or_else(|| panic!("no /usr/bin/pgwarden in:\n{details}"));
    assert!(bin.ends_with("\troot\troot\t-rwxr-xr-x"), "{bin}");

    // The payload is intact (digests cover it), not only the header rpm -q reads.
    let check = stdout_of("rpm", &["--checksig", "--nosignature", &r], QUICK);
    assert!(check.contains("digests OK"), "rpm --checksig: {check}");
}

/// rpm -qpR: postgresql-server (which PGDG's postgresqlNN-server also provides), shadow-utils
/// for %pre, /bin/sh for the scriptlets, and libc.
#[test]
fn rpm_requires_postgresql_server() {
    let Some(rpm) = need_rpm() else { return };
    let r = rpm.to_string_lossy();
    let requires = stdout_of("rpm", &["-qpR", &r], QUICK);
    eprintln!("rpm -qpR:\n{requires}");
    let reqs: Vec<&str> = requires.lines().map(str::trim).collect();
    for want in ["postgresql-server", "shadow-utils", "/bin/sh"] {
        assert!(reqs.contains(&want), "rpm -qpR lacks {want}");
    }
    assert!(
        reqs.iter().any(|r| r.starts_with("libc.so.6")),
        "rpm -qpR lacks libc.so.6"
    );
}

/// The rpm scriptlets never start, stop or enable anything, never touch a cluster and never
/// delete data.
#[test]
fn rpm_scriptlets_never_start_stop_or_delete() {
    let Some(rpm) = need_rpm() else { return };
    let scripts = stdout_of("rpm", &["-qp", "--scripts", &rpm.to_string_lossy()], QUICK);
    eprintln!("rpm --scripts:\n{scripts}");
    assert_script_is_harmless("rpm scriptlets", &scripts);
    assert!(scripts.contains("preinstall scriptlet"), "no %pre");
    assert!(scripts.contains("postinstall scriptlet"), "no %post");
    assert!(!scripts.contains("preuninstall scriptlet"), "unexpected %preun");
}

/// Extracts the .deb into a temporary root.
fn extract(deb: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    stdout_of(
        "dpkg-deb",
        &[
            "--extract",
            &deb.to_string_lossy(),
            &root.path().to_string_lossy(),
        ],
        QUICK,
    );
    root
}

/// `systemd-analyze verify` accepts the packaged unit, resolving its ExecStart= against the
/// packaged binary (the package's files in a temporary root).
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some(deb) = need_deb() else { return };
    if !have("systemd-analyze") {
        return skip("systemd-analyze is not installed (apt-get install systemd)");
    }
    let root = extract(&deb);
    // The units the packaged one refers to (sysinit.target, network-online.target, ...) come
    // from this machine's systemd, copied beside it; the package's own unit is not replaced.
    let units = root.path().join("usr/lib/systemd/system");
    stdout_of(
        "cp",
        &[
            "-a",
            "--no-clobber",
            "/usr/lib/systemd/system/.",
            &units.to_string_lossy(),
        ],
        QUICK,
    );
    // ExecReload= runs /bin/kill (procps on Debian, a dependency of the .deb; util-linux on
    // RHEL), which is not the package's: this machine's, copied in the same way.
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    stdout_of(
        "cp",
        &["-L", "/bin/kill", &root.path().join("bin/kill").to_string_lossy()],
        QUICK,
    );
    let unit = "/usr/lib/systemd/system/pgwarden.service";
    let out = run_limited(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg("--man=no")
            .arg(unit),
        QUICK,
    )
    .expect("systemd-analyze did not complete");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("systemd-analyze verify ({}): {text}", out.status);
    assert!(
        out.status.success(),
        "systemd-analyze verify rejected the unit:\n{text}"
    );
    // verify exits 0 on unknown keys or unparsable values, which it reports as
    // "<path>/pgwarden.service:<line>: ..." and then ignores.
    assert!(
        !text.contains("pgwarden.service:"),
        "systemd-analyze verify complained about the unit:\n{text}"
    );
    let security = run_limited(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(unit),
        QUICK,
    );
    if let Some(s) = security {
        let text = String::from_utf8_lossy(&s.stdout);
        if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
            eprintln!("systemd-analyze security: {}", line.trim());
        }
    }
}

/// The unit runs as postgres with sd_notify readiness, restarts on failure, raises the file
/// limit and is hardened, and installing it does not enable anything by itself.
#[test]
fn the_unit_has_the_agreed_settings() {
    let text = include_str!("../packaging/systemd/pgwarden.service");
    let settings: Vec<&str> = code_lines(text).collect();
    for want in [
        "Type=notify",
        "User=postgres",
        "Group=postgres",
        "ExecStart=/usr/bin/pgwarden /etc/pgwarden/pgwarden.yml",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=full",
        "StateDirectory=pgwarden",
        "WantedBy=multi-user.target",
    ] {
        assert!(settings.contains(&want), "unit lacks {want}");
    }
    // These would break PostgreSQL: JIT needs W+X pages, RemoveIPC deletes its shared memory,
    // a strict read-only /var breaks data directories the unit does not know about.
    for never in [
        "MemoryDenyWriteExecute=yes",
        "RemoveIPC=yes",
        "ProtectSystem=strict",
        "PrivateUsers=yes",
    ] {
        assert!(!settings.contains(&never), "unit must not set {never}");
    }
}

/// The three host configurations docs/install.md gives are valid (strict: unknown keys are
/// errors), and differ exactly where the page's table says.
#[test]
fn the_documented_host_configurations_are_valid() {
    use pgwarden::config::{Config, Strictness};
    let mut loaded = vec![];
    for n in 1..=3 {
        let text = packaging::documented_config(n, "10.0.0", "16");
        let l = Config::from_yaml_str(
            &text,
            Path::new("docs/install.md"),
            Strictness::Strict,
            std::iter::empty(),
        )
        .unwrap_or_else(|e| panic!("host{n}: {e:#}\n{text}"));
        assert!(l.warnings.is_empty(), "host{n}: {:?}", l.warnings);
        loaded.push(l.config);
    }
    let table = [
        ("10.0.0.2:5010", "[10.0.0.1:5010, 10.0.0.3:5010]"),
        ("10.0.0.3:5010", "[10.0.0.2:5010, 10.0.0.1:5010]"),
    ];
    for (c, (self_addr, partners)) in loaded[1..].iter().zip(table) {
        assert_eq!(c.raft.self_addr.to_string(), self_addr);
        let p: Vec<String> = c.raft.partner_addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(format!("[{}]", p.join(", ")), partners);
    }
    let doc = include_str!("../docs/install.md");
    for row in [
        "| `raft.partner_addrs` | `[10.0.0.1:5010, 10.0.0.3:5010]` | `[10.0.0.2:5010, 10.0.0.1:5010]` |",
        "| `raft.self_addr` | `10.0.0.2:5010` | `10.0.0.3:5010` |",
    ] {
        assert!(doc.contains(row), "docs/install.md lacks the row {row}");
    }
}
