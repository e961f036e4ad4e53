//! Every configuration key has a state (applied, no effect, refused, Patroni only) in the key
//! table, and the table drives the documentation and what `pgwarden --validate-config` says.
//!
//! - The "State" column of docs/configuration.md and the generated list of inert keys in
//!   docs/migrating-from-patroni.md match the table (`cargo test --test config_state --
//!   --ignored config_state_regenerate_docs` rewrites both after a key's state changes).
//! - Patroni sample files (tests/fixtures/patroni/, from the review of the DBA experience) run
//!   through the real binary and produce exactly the warnings and refusals the table predicts.
//! - Typos, tags, host checks, `keyfile_password` and the environment are reported as the
//!   validation rules say, by `--validate-config` and at start.

use pgwarden::config::keys::{self, KeySpec, Kind, RefuseWhen, State};
use pgwarden::config::Config;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIGURATION_MD: &str = "docs/configuration.md";
const MIGRATING_MD: &str = "docs/migrating-from-patroni.md";
const BEGIN: &str = "<!-- BEGIN inert keys: generated from the key table (tests/config_state.rs) -->";
const END: &str = "<!-- END inert keys -->";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- docs/configuration.md: the State column ------------------------------------------------

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// docs/configuration.md with the State column of every key table set from the key table
/// (inserted after Env where a table has none yet).
fn with_state_column(doc: &str) -> String {
    let mut out = Vec::new();
    // The State column of the current table, whether its rows still lack it, and the number
    // of cells a row has before that (a `|` inside a description's code is not a separator).
    let mut state_col: Option<(usize, bool, usize)> = None;
    for line in doc.lines() {
        if !line.trim_start().starts_with('|') {
            state_col = None;
            out.push(line.to_string());
            continue;
        }
        let mut c = cells(line);
        let Some((col, insert, ncols)) = state_col else {
            if c.first().is_some_and(|h| h == "Key") {
                let ncols = c.len();
                state_col = Some(match c.iter().position(|h| h == "State") {
                    Some(i) => (i, false, ncols),
                    None => {
                        let env = c.iter().position(|h| h == "Env").expect("key tables have Env");
                        c.insert(env + 1, "State".into());
                        (env + 1, true, ncols)
                    }
                });
                out.push(row(&c));
            } else {
                out.push(line.to_string());
            }
            continue;
        };
        if c.len() > ncols {
            let tail = c.split_off(ncols - 1).join("|");
            c.push(tail);
        }
        let value = if c[0].starts_with("---") {
            "---".to_string()
        } else {
            let key = c[0].trim_matches('`');
            keys::lookup(key).map_or_else(|| "?".to_string(), |k| k.state.label())
        };
        if insert {
            c.insert(col, value);
        } else {
            c[col] = value;
        }
        out.push(row(&c));
    }
    let mut s = out.join("\n");
    if doc.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The State cell of every documented key.
fn documented_states(doc: &str) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    let mut col: Option<usize> = None;
    for line in doc.lines() {
        if !line.trim_start().starts_with('|') {
            col = None;
            continue;
        }
        let c = cells(line);
        let Some(i) = col else {
            if c.first().is_some_and(|h| h == "Key") {
                col = Some(c.iter().position(|h| h == "State").unwrap_or(usize::MAX));
            }
            continue;
        };
        if c[0].starts_with("---") {
            continue;
        }
        let state = c.get(i).cloned().unwrap_or_else(|| "(no State column)".into());
        states.insert(c[0].trim_matches('`').to_string(), state);
    }
    states
}

/// Every key of the table is documented with its state, and every documented key is in the table.
#[test]
fn config_state_every_key_has_its_state_in_the_docs() {
    let doc = read(CONFIGURATION_MD);
    let documented = documented_states(&doc);
    let mut wrong = Vec::new();
    for k in Config::known_keys() {
        match documented.get(&k.path) {
            None => wrong.push(format!("{}: not documented", k.path)),
            Some(s) if *s != k.state.label() => wrong.push(format!(
                "{}: State documented as {s:?}, the key table says {:?}",
                k.path,
                k.state.label()
            )),
            Some(_) => {}
        }
    }
    for key in documented.keys() {
        if keys::lookup(key).is_none() {
            wrong.push(format!("{key}: documented, but not in the key table"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n(run `cargo test --test config_state -- --ignored config_state_regenerate_docs`)",
        wrong.join("\n")
    );
    assert_eq!(
        with_state_column(&doc),
        doc,
        "the State column is not as generated"
    );
}

// ---- docs/migrating-from-patroni.md: the list of inert keys ---------------------------------

/// The key as the docs list it: the three roles of `postgresql.authentication` as one `<user>`.
fn doc_key(path: &str) -> String {
    for user in ["superuser", "replication", "rewind"] {
        let role = format!("postgresql.authentication.{user}.");
        if let Some(rest) = path.strip_prefix(&role) {
            return format!("postgresql.authentication.<user>.{rest}");
        }
    }
    path.to_string()
}

/// The generated block: one row per reason, with every key that has it.
fn inert_keys_block() -> String {
    let mut groups: Vec<(&'static str, &'static str, Vec<String>)> = Vec::new();
    for k in Config::known_keys() {
        let (label, why) = match k.state {
            State::NoEffect(why) => ("no effect", why),
            State::PatroniOnly(why) => ("Patroni only", why),
            _ => continue,
        };
        let key = format!("`{}`", doc_key(&k.path));
        match groups.iter_mut().find(|(l, w, _)| *l == label && *w == why) {
            Some((_, _, keys)) if keys.contains(&key) => {}
            Some((_, _, keys)) => keys.push(key),
            None => groups.push((label, why, vec![key])),
        }
    }
    let mut s = format!("{BEGIN}\n\n| Keys | State | Why |\n|---|---|---|\n");
    for (label, why, keys) in groups {
        s.push_str(&format!(
            "| {} | {label} | {} |\n",
            keys.join(", "),
            why.replace('|', "\\|")
        ));
    }
    s.push('\n');
    s.push_str(END);
    s
}

fn with_inert_block(doc: &str) -> Option<String> {
    let start = doc.find(BEGIN)?;
    let end = doc[start..].find(END)? + start + END.len();
    Some(format!("{}{}{}", &doc[..start], inert_keys_block(), &doc[end..]))
}

/// docs/migrating-from-patroni.md lists exactly the keys that the table says have no effect
/// (or mean something only to Patroni), each with the table's reason.
#[test]
fn config_state_migrating_lists_exactly_the_inert_keys() {
    let doc = read(MIGRATING_MD);
    let generated = with_inert_block(&doc).expect("docs/migrating-from-patroni.md has the generated block");
    assert!(
        generated == doc,
        "the list of inert keys in {MIGRATING_MD} is not the key table's; run \
         `cargo test --test config_state -- --ignored config_state_regenerate_docs`"
    );
    // And it sits in the section that a DBA checks before migrating.
    let section = doc
        .split("\n## Not supported yet\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a `Not supported yet` section");
    assert!(section.contains(BEGIN));
}

/// Rewrites the generated parts of the two pages from the key table.
#[test]
#[ignore = "rewrites docs/; run by hand after changing a key's state"]
fn config_state_regenerate_docs() {
    let conf = read(CONFIGURATION_MD);
    std::fs::write(repo_file(CONFIGURATION_MD), with_state_column(&conf)).unwrap();
    let mig = read(MIGRATING_MD);
    let new = with_inert_block(&mig).expect("the BEGIN/END markers are in place");
    std::fs::write(repo_file(MIGRATING_MD), new).unwrap();
}

// ---- What the table predicts for a file -----------------------------------------------------

#[derive(Debug, Default, PartialEq, Eq)]
struct Predicted {
    /// Keys warned about: no effect, or Patroni only (the outermost such key that is set).
    inert: BTreeSet<String>,
    /// Keys refused.
    refused: BTreeSet<String>,
}

fn predict(doc: &Value) -> Predicted {
    let mut replica = BTreeSet::new();
    for path in [
        "postgresql.create_replica_methods",
        "bootstrap.dcs.standby_cluster.create_replica_methods",
    ] {
        if let Some(Value::Array(l)) = get(doc, path) {
            replica.extend(l.iter().filter_map(Value::as_str).map(str::to_string));
        }
    }
    let bootstrap = get(doc, "bootstrap.method")
        .and_then(Value::as_str)
        .filter(|m| *m != "initdb")
        .map(str::to_string);
    let mut out = Predicted::default();
    predict_in(
        doc.as_object().unwrap(),
        "",
        false,
        &replica,
        bootstrap.as_deref(),
        &mut out,
    );
    out
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, s| v.get(s))
}

fn predict_in(
    obj: &Map<String, Value>,
    prefix: &str,
    inside_inert: bool,
    replica: &BTreeSet<String>,
    bootstrap: Option<&str>,
    out: &mut Predicted,
) {
    for (k, v) in obj {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let spec: Option<&KeySpec> = keys::lookup(&path).or_else(|| match prefix {
            "postgresql" if replica.contains(k) => keys::lookup("postgresql.<method>"),
            "bootstrap" if bootstrap == Some(k.as_str()) => keys::lookup("bootstrap.<method>"),
            _ => None,
        });
        let Some(spec) = spec else { continue };
        if v.is_null() {
            continue;
        }
        match spec.state {
            State::PatroniOnly(_) => {
                if !inside_inert {
                    out.inert.insert(path.clone());
                }
                continue;
            }
            State::NoEffect(_) if !inside_inert && !spec.is_what_happens(v) => {
                out.inert.insert(path.clone());
            }
            State::Refused(r) => {
                let refused = match r.when {
                    RefuseWhen::Set => true,
                    RefuseWhen::Except(allowed) => match v {
                        Value::Array(items) => items
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|i| !allowed.contains(&i)),
                        Value::String(s) => !allowed.contains(&s.as_str()),
                        _ => false,
                    },
                    RefuseWhen::AnyChild(children) => {
                        children.iter().any(|c| v.get(c).is_some_and(|x| !x.is_null()))
                    }
                    RefuseWhen::WithParent => false,
                };
                if refused {
                    out.refused.insert(path.clone());
                }
            }
            _ => {}
        }
        if let (Value::Object(child), Kind::Section | Kind::Open) = (v, spec.kind) {
            predict_in(
                child,
                &path,
                inside_inert || spec.state.is_inert(),
                replica,
                bootstrap,
                out,
            );
        }
    }
}

// ---- Running the binary ---------------------------------------------------------------------

/// What `pgwarden --validate-config` said.
#[derive(Debug)]
struct Outcome {
    valid: bool,
    inert: BTreeSet<String>,
    refused: BTreeSet<String>,
    /// Every other warning or error line, without the `pgwarden: ` prefixes.
    other: Vec<String>,
}

/// A scratch directory for one test; removed when dropped, also when the test fails.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(tempfile::tempdir().unwrap())
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    /// Writes `text` with `@TMP@` replaced by this directory, creating the empty TLS files the
    /// fixtures name (the host checks only read them).
    fn config(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.path().display().to_string();
        for f in [
            "pg1.pem",
            "pg1.key",
            "ca.pem",
            "rest.pem",
            "rest.key",
            "patronictl.pem",
            "patronictl.key",
        ] {
            std::fs::write(self.path().join(f), "").unwrap();
        }
        let file = self.path().join(name);
        std::fs::write(&file, text.replace("@TMP@", &dir)).unwrap();
        file
    }
}

fn run_validate(file: &Path, env: &[(&str, &str)]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg("--validate-config")
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut o = Outcome {
        valid: out.status.success(),
        inert: BTreeSet::new(),
        refused: BTreeSet::new(),
        other: Vec::new(),
    };
    let file_prefix = format!("pgwarden: {}: ", file.display());
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(w) = line.strip_prefix("pgwarden: warning: ") {
            let inert = [
                ": accepted, but has no effect: ",
                ": accepted for Patroni compatibility, ignored: ",
            ]
            .iter()
            .find_map(|m| w.split_once(m).map(|(k, _)| k.to_string()));
            match inert {
                Some(k) => {
                    o.inert.insert(k);
                }
                None => o.other.push(w.to_string()),
            }
            continue;
        }
        let line = line.strip_prefix(&file_prefix).unwrap_or(line);
        if line.ends_with("problems in the configuration:") || line.is_empty() {
            continue;
        }
        match line
            .strip_prefix('`')
            .and_then(|l| l.split_once("`: not supported yet: "))
        {
            Some((k, _)) => {
                o.refused.insert(k.to_string());
            }
            None => o.other.push(line.to_string()),
        }
    }
    if o.valid {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("configuration is valid"),
            "{out:?}"
        );
    }
    o
}

fn fixture(name: &str) -> String {
    read(&format!("tests/fixtures/patroni/{name}"))
}

fn yaml_value(text: &str) -> Value {
    serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(text).unwrap()).unwrap()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The review's Patroni sample files: each gives exactly the warnings and refusals that the key
/// table predicts, plus the few other lines listed here.
#[test]
fn config_state_patroni_samples_validate_as_the_table_predicts() {
    let scratch = Scratch::new();
    let https_note =
        "restapi.certfile: the REST API serves HTTPS, but members publish an http:// api_url, so \
                      the other members cannot poll this one during a leader race (see docs/rest-api.md)";
    let cases: [(&str, bool, &[&str]); 8] = [
        ("p1_postgres0.yml", true, &[]),
        (
            "p2a_etcd3.yml",
            false,
            &[
                "`etcd3`: not supported: pgwarden has its own DCS in the `raft:` section",
                "`raft.self_addr`: missing required key: this node's Raft address",
                "`raft.data_dir`: missing required key: where the Raft log is stored",
            ],
        ),
        (
            "p2b_production.yml",
            true,
            &[
                "postgresql.parameters.max_connections: cluster-wide GUC: only the value in the DCS \
               (bootstrap.dcs.postgresql.parameters) is used",
            ],
        ),
        ("p3_pgbackrest.yml", true, &[]),
        ("p3b_pitr.yml", true, &[]),
        ("p4_standby_cluster.yml", true, &[]),
        ("p5_callbacks_watchdog.yml", true, &[]),
        ("p6_logging_rest_tls.yml", true, &[https_note]),
    ];
    let mut report = Vec::new();
    for (name, valid, other) in cases {
        let text = fixture(name);
        let file = scratch.config(name, &text);
        let predicted = predict(&yaml_value(&text));
        let got = run_validate(&file, &[]);
        report.push(format!("{name}: {got:?}"));
        assert_eq!(got.valid, valid, "{name}: {got:?}");
        assert_eq!(got.refused, predicted.refused, "{name}: refusals");
        // Refusals stop loading, so the warnings of a refused file come once it is fixed.
        let inert = if predicted.refused.is_empty() {
            predicted.inert
        } else {
            BTreeSet::new()
        };
        assert_eq!(got.inert, inert, "{name}: warnings about inert keys");
        assert_eq!(got.other, other, "{name}: other lines");
    }
    // The predictor sees the keys the review found silent: each is predicted inert, or applied
    // by now (so flipping a key's state to `Applied` needs no change here).
    let silent = [
        (
            "p2b_production.yml",
            &[
                "bootstrap.dcs.check_timeline",
                "bootstrap.dcs.max_timelines_history",
                "bootstrap.dcs.primary_stop_timeout",
                "postgresql.config_dir",
                "postgresql.pg_ident",
            ][..],
        ),
        (
            "p6_logging_rest_tls.yml",
            &[
                "log.dir",
                "log.type",
                "log.traceback_level",
                "restapi.ciphers",
                "postgresql.authentication.replication.sslmode",
            ][..],
        ),
    ];
    for (name, keys_found) in silent {
        let p = predict(&yaml_value(&fixture(name)));
        for key in keys_found {
            let applied = keys::lookup(key).is_some_and(|k| k.state == State::Applied);
            assert!(
                p.inert.contains(*key) != applied,
                "{name}: {key}: {p:?}\n{report:#?}"
            );
        }
        assert!(!p.inert.contains("log.level"), "{p:?}");
    }
    // `ctl.insecure: false` is what pgwardenctl does anyway: no warning.
    let p6 = predict(&yaml_value(&fixture("p6_logging_rest_tls.yml")));
    assert!(!p6.inert.contains("ctl.insecure"), "{p6:?}");
    // Custom bootstrap and replica methods are applied.
    let p3b = predict(&yaml_value(&fixture("p3b_pitr.yml")));
    assert!(p3b.refused.is_empty(), "{p3b:?}");
    let p4 = predict(&yaml_value(&fixture("p4_standby_cluster.yml")));
    assert!(p4.refused.is_empty(), "{p4:?}");
}

// ---- Validation rules -----------------------------------------------------------------------

/// The smallest valid data-node file, with `@EXTRA@` replaced by extra top-level YAML and
/// `@PG@` by extra `postgresql` keys.
const BASE: &str = r#"
scope: batman
name: node1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
raft:
  data_dir: "@TMP@/raft"
  self_addr: 127.0.0.1:5010
  partner_addrs: [127.0.0.1:5011, 127.0.0.1:5012]
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: "@TMP@/pgdata"
@PG@
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
@EXTRA@
"#;

fn base(pg: &str, extra: &str) -> String {
    BASE.replace("@PG@\n", pg).replace("@EXTRA@", extra)
}

/// A misspelt section is reported as an unknown key with a suggestion, together with the
/// missing keys it explains, one error per line.
#[test]
fn config_state_a_typo_is_reported_with_the_missing_keys() {
    let scratch = Scratch::new();
    let text = base("", "").replace("  authentication:", "  authentification:");
    let got = run_validate(&scratch.config("typo.yml", &text), &[]);
    assert!(!got.valid);
    assert!(
        got.other.contains(
            &"`postgresql.authentification`: unknown key (did you mean `postgresql.authentication`?)"
                .to_string()
        ),
        "{got:?}"
    );
    for user in ["superuser", "replication"] {
        let missing = format!("`postgresql.authentication.{user}.username`: missing required key");
        assert!(
            got.other.iter().any(|l| l.starts_with(&missing)),
            "{missing}: {got:?}"
        );
    }
}

/// A custom tag one or two letters away from a known tag warns with the known name; real
/// custom tags do not.
#[test]
fn config_state_a_tag_close_to_a_known_tag_warns() {
    let scratch = Scratch::new();
    let tags =
        "tags:\n  nofailvoer: true\n  noloadbalnce: true\n  clonfrom: true\n  datacenter: dc1\n  rack: r1\n";
    let got = run_validate(&scratch.config("tags.yml", &base("", tags)), &[]);
    assert!(got.valid, "{got:?}");
    // In key order, as the file is read.
    let expected: Vec<String> = [
        ("clonfrom", "clonefrom"),
        ("nofailvoer", "nofailover"),
        ("noloadbalnce", "noloadbalance"),
    ]
    .iter()
    .map(|(typo, known)| {
        format!("tags.{typo}: a custom tag, not a known one (did you mean `tags.{known}`?); `tags.{known}` stays unset")
    })
    .collect();
    assert_eq!(got.other, expected);
}

/// `data_dir` that is a file, or a PGDATA of another major version than the binaries, is an
/// error of `--validate-config`.
#[test]
fn config_state_a_data_dir_that_is_a_file_or_of_another_version_is_refused() {
    let scratch = Scratch::new();
    let text = base("", "");
    std::fs::write(scratch.path().join("pgdata"), "not a directory").unwrap();
    let got = run_validate(&scratch.config("file.yml", &text), &[]);
    assert!(!got.valid);
    let expected = format!(
        "`postgresql.data_dir`: `{}` exists and is not a directory",
        scratch.path().join("pgdata").display()
    );
    assert_eq!(got.other, [expected]);

    let Some(bin) = installed_bin_dir() else {
        eprintln!("no PostgreSQL binaries: the version half is skipped");
        return;
    };
    std::fs::remove_file(scratch.path().join("pgdata")).unwrap();
    std::fs::create_dir(scratch.path().join("pgdata")).unwrap();
    std::fs::write(scratch.path().join("pgdata/PG_VERSION"), "9.6\n").unwrap();
    let text = base(&format!("  bin_dir: {}\n", bin.display()), "");
    let got = run_validate(&scratch.config("version.yml", &text), &[]);
    assert!(!got.valid);
    assert_eq!(got.other.len(), 1, "{got:?}");
    assert!(
        got.other[0].starts_with("`postgresql.data_dir`: ")
            && got.other[0].contains("holds a PostgreSQL 9.6 cluster"),
        "{got:?}"
    );
    // The binaries' own version is accepted.
    let major = bin
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(scratch.path().join("pgdata/PG_VERSION"), format!("{major}\n")).unwrap();
    let got = run_validate(&scratch.config("version.yml", &text), &[]);
    assert!(got.valid, "{got:?}");
}

/// Debian's layout, as the test machines have it.
fn installed_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A `bin_dir` that does not exist, or lacks the programs, is an error of `--validate-config`.
#[test]
fn config_state_a_missing_bin_dir_is_refused() {
    let scratch = Scratch::new();
    let missing = scratch.path().join("nosuch/bin");
    let text = base(&format!("  bin_dir: {}\n", missing.display()), "");
    let got = run_validate(&scratch.config("missing.yml", &text), &[]);
    assert!(!got.valid);
    assert_eq!(
        got.other,
        [format!(
            "`postgresql.bin_dir`: `{}` is not a directory",
            missing.display()
        )]
    );

    let empty = scratch.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let text = base(&format!("  bin_dir: {}\n", empty.display()), "");
    let got = run_validate(&scratch.config("empty.yml", &text), &[]);
    assert!(!got.valid);
    assert_eq!(got.other.len(), 1, "{got:?}");
    assert!(
        got.other[0].starts_with("`postgresql.bin_dir`: ") && got.other[0].contains("postgres"),
        "{got:?}"
    );
}

/// A TLS file that cannot be read is an error naming the key and the OS error.
#[test]
fn config_state_an_unreadable_tls_file_is_refused() {
    let scratch = Scratch::new();
    let missing = scratch.path().join("nosuch.key");
    let extra = format!(
        "ctl:\n  certfile: {dir}\n  keyfile: {missing}\n",
        dir = scratch.path().display(),
        missing = missing.display()
    );
    let got = run_validate(&scratch.config("tls.yml", &base("", &extra)), &[]);
    assert!(!got.valid);
    assert_eq!(
        got.other,
        [
            format!(
                "`ctl.certfile`: cannot read `{}`: Is a directory (os error 21)",
                scratch.path().display()
            ),
            format!(
                "`ctl.keyfile`: cannot read `{}`: No such file or directory (os error 2)",
                missing.display()
            ),
        ]
    );
}

/// `restapi.keyfile_password` is refused by `--validate-config`, not only at start.
#[test]
fn config_state_keyfile_password_is_refused_by_validation() {
    let scratch = Scratch::new();
    let extra = "ctl:\n  keyfile_password: secret\n";
    let text = base("", extra).replace(
        "  connect_address: 127.0.0.1:8008\n",
        "  connect_address: 127.0.0.1:8008\n  certfile: @TMP@/rest.pem\n  keyfile: @TMP@/rest.key\n  keyfile_password: secret\n",
    );
    let got = run_validate(&scratch.config("pw.yml", &text), &[]);
    assert!(!got.valid);
    assert_eq!(
        got.refused,
        set(&["restapi.keyfile_password", "ctl.keyfile_password"])
    );
    assert!(got.other.is_empty(), "{got:?}");
}

/// `PATRONI_*` variables are named in a warning; values from `PGWARDEN_*` variables are named
/// by variable in errors and warnings.
#[test]
fn config_state_the_environment_is_named() {
    let scratch = Scratch::new();
    let file = scratch.config("env.yml", &base("", ""));
    let got = run_validate(
        &file,
        &[
            ("PATRONI_NAME", "node1"),
            ("PATRONI_SUPERUSER_PASSWORD", "x"),
            ("PATRONI_KUBERNETES_LABELS", "{}"),
        ],
    );
    assert!(got.valid, "{got:?}");
    assert_eq!(
        got.other,
        [
            "PATRONI_KUBERNETES_LABELS: ignored: pgwarden reads PGWARDEN_* variables; pgwarden has no equivalent",
            "PATRONI_NAME: ignored: pgwarden reads PGWARDEN_* variables; rename it PGWARDEN_NAME",
            "PATRONI_SUPERUSER_PASSWORD: ignored: pgwarden reads PGWARDEN_* variables; rename it \
             PGWARDEN_SUPERUSER_PASSWORD",
        ]
    );

    // The file names three voters; the variable leaves two.
    let got = run_validate(&file, &[("PGWARDEN_RAFT_PARTNER_ADDRS", "10.0.0.2:5010")]);
    assert!(!got.valid);
    assert_eq!(got.other.len(), 1, "{got:?}");
    assert!(
        got.other[0].starts_with("`raft.partner_addrs`: 2 voters")
            && got.other[0]
                .ends_with("(the value comes from the environment variable PGWARDEN_RAFT_PARTNER_ADDRS)"),
        "{got:?}"
    );

    // A key with no effect set by its variable: the warning names the variable. (Any such key
    // with a string value will do; the first in the table.)
    // A key inside an inert section is reported once, at the section: skip those.
    let keys = Config::known_keys();
    let inert_section = |path: &str| {
        keys.iter()
            .any(|p| path.starts_with(&format!("{}.", p.path)) && p.state.is_inert())
    };
    let Some(inert) = keys.iter().find(|k| {
        matches!(k.state, State::NoEffect(_))
            && k.env.is_some()
            && matches!(k.kind, Kind::Str | Kind::Path)
            && !inert_section(&k.path)
    }) else {
        panic!("no key with no effect that a variable can set: this part of the test has nothing to check");
    };
    let var = inert.env.clone().unwrap();
    let stderr = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg("--validate-config")
        .arg(&file)
        .env_clear()
        .env(&var, "/x")
        .output()
        .unwrap()
        .stderr;
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        stderr.contains(&format!("{}: accepted, but has no effect: ", inert.path))
            && stderr.contains(&format!("(set by the environment variable {var})")),
        "{stderr}"
    );
}

/// The daemon refuses at start what `--validate-config` refuses (host checks and refusals), and
/// exits before it binds a port; before that it logs the same warning per inert key.
#[test]
fn config_state_the_daemon_refuses_at_start_what_validation_refuses() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path().join("pgdata"), "not a directory").unwrap();
    let file = scratch.config("start.yml", &base("  custom_conf: /etc/custom.conf\n", ""));
    let stderr = run_daemon(&file);
    assert!(
        stderr.contains("`postgresql.data_dir`: ") && stderr.contains("exists and is not a directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("postgresql.custom_conf: accepted, but has no effect: "),
        "{stderr}"
    );
    std::fs::remove_file(scratch.path().join("pgdata")).unwrap();
    // A replica method listed without its section.
    let text = base("  create_replica_methods: [wal_g, basebackup]\n", "");
    let stderr = run_daemon(&scratch.config("start2.yml", &text));
    assert!(
        stderr.contains("`postgresql.wal_g`: the section is missing"),
        "{stderr}"
    );
}

/// Starts `pgwarden CONFIG`, which must exit with an error within 20 s; returns its stderr.
fn run_daemon(file: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the daemon accepted {}", file.display());
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not refuse {} within 20 s", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}
