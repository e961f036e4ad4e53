//! The commands and configuration files the documentation shows work with the real tools.
//!
//! Every `pgwardenctl ...` line in a fenced code block of README.md and docs/*.md must parse
//! with pgwardenctl's own command line definition (clap, no daemon needed); every
//! `pgwarden ...` line must name a real subcommand and real options of the daemon (checked
//! against its `--help`, since its definition lives in the binary); and every YAML block
//! that is a whole pgwarden configuration must pass `pgwarden --validate-config`.

use pgwarden::ctl::cli::Cli;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of a code block: where, and the command text (continuations joined).
struct Line {
    place: String,
    text: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The fenced code blocks of a Markdown file: (info string, first line number, lines).
fn blocks(path: &Path) -> Vec<(String, usize, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<(String, usize, Vec<String>)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some((info.trim().to_string(), n + 2, Vec::new())),
            }
            continue;
        }
        if let Some(b) = &mut cur {
            b.2.push(line.to_string());
        }
    }
    out
}

/// The command lines of a block that start one of `tools`, after a prompt, `sudo`, and
/// environment assignments; a line ending in `\` continues on the next.
fn command_lines(path: &Path, tools: &[&str]) -> Vec<Line> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    for (_, first, lines) in blocks(path) {
        let mut i = 0;
        while i < lines.len() {
            let start = i;
            let mut text = lines[i].trim().to_string();
            while text.ends_with('\\') && i + 1 < lines.len() {
                text.pop();
                i += 1;
                text.push(' ');
                text.push_str(lines[i].trim());
            }
            i += 1;
            let Some(cmd) = strip_prefixes(&text) else {
                continue;
            };
            let word = cmd.split_whitespace().next().unwrap_or("");
            let tool = word.rsplit('/').next().unwrap_or(word);
            if tools.contains(&tool) {
                out.push(Line {
                    place: format!("{name}:{}", first + start),
                    text: cmd,
                });
            }
        }
    }
    out
}

/// The command itself: without a shell prompt, `sudo [-u user]`, `VAR=value` words, and
/// what follows a pipe, `&&`, `;`, a redirection or a comment.
fn strip_prefixes(line: &str) -> Option<String> {
    let mut s = line.trim();
    for p in ["$ ", "# ", "> "] {
        if let Some(r) = s.strip_prefix(p) {
            s = r.trim_start();
        }
    }
    let mut words = s.split_whitespace().peekable();
    let mut kept: Vec<&str> = Vec::new();
    while let Some(&w) = words.peek() {
        if w == "sudo" {
            words.next();
            if words.peek() == Some(&"-u") {
                words.next();
                words.next();
            }
        } else if w.contains('=') && !w.starts_with('-') && kept.is_empty() {
            words.next();
        } else {
            break;
        }
    }
    kept.extend(words);
    let mut joined = kept.join(" ");
    for cut in [" | ", " && ", " || ", "; ", " > ", " 2>", " >> ", " # ", " <<"] {
        if let Some(p) = joined.find(cut) {
            joined.truncate(p);
        }
    }
    (!joined.is_empty()).then_some(joined)
}

/// Shell words: single and double quotes, backslash escapes.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => cur.extend(chars.next()),
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, '\\') => cur.extend(chars.next()),
            // A command substitution is one word here: `$(date +%F)`.
            (None, '$') if chars.clone().next() == Some('(') => {
                let mut depth = 0;
                cur.push('$');
                for c in chars.by_ref() {
                    cur.push(c);
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        break;
                    }
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Every pgwardenctl line in the docs parses with pgwardenctl's command line definition.
#[test]
fn ctl_docs_pgwardenctl_lines_parse() {
    let mut seen = 0;
    let mut bad = Vec::new();
    for f in doc_files() {
        for l in command_lines(&f, &["pgwardenctl"]) {
            // A synopsis (`pgwardenctl [-c CONFIG] ... COMMAND`) is not a command.
            if l.text.contains(" [-") {
                continue;
            }
            seen += 1;
            let mut words = shell_words(&l.text);
            words[0] = "pgwardenctl".into();
            if let Err(e) = Cli::try_parse_args(&words) {
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayVersion
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) {
                    continue;
                }
                let first = e.to_string().lines().next().unwrap_or("").to_string();
                bad.push(format!("{}: `{}`: {first}", l.place, l.text));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} pgwardenctl lines found: is the extraction broken?"
    );
    assert!(
        bad.is_empty(),
        "{} of {seen} lines do not parse:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The daemon's `--help` (of the subcommand when one is given).
fn daemon_help(sub: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    if let Some(s) = sub {
        cmd.arg(s);
    }
    let out = cmd.arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every pgwarden line in the docs names a subcommand and options the daemon has.
#[test]
fn ctl_docs_pgwarden_lines_name_real_commands_and_options() {
    let top = daemon_help(None);
    let subs: Vec<&str> = [
        "demo",
        "force-new-cluster",
        "restore-dcs",
        "generate",
        "fence-guard",
        "init",
        "join",
        "token",
        "convert-patroni-config",
    ]
    .to_vec();
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in doc_files() {
        for l in command_lines(&f, &["pgwarden"]) {
            seen += 1;
            let words = shell_words(&l.text);
            let sub = words.get(1).filter(|w| subs.contains(&w.as_str())).cloned();
            let help = match &sub {
                Some(s) => daemon_help(Some(s)),
                None => top.clone(),
            };
            for w in &words[1..] {
                let flag = w.split('=').next().unwrap_or(w);
                let known = if flag.starts_with("--") {
                    help.contains(&format!("{flag} "))
                        || help.contains(&format!("{flag}\n"))
                        || help.contains(&format!("{flag},"))
                } else if flag.len() == 2 && flag.starts_with('-') {
                    help.contains(&format!("{flag},")) || help.contains(&format!("{flag} "))
                } else {
                    true
                };
                if !known {
                    bad.push(format!(
                        "{}: `{}`: {flag} is not an option of pgwarden{}",
                        l.place,
                        l.text,
                        sub.as_deref().map(|s| format!(" {s}")).unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(
        seen > 3,
        "only {seen} pgwarden lines found: is the extraction broken?"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Every YAML block that is a whole configuration (it has `scope:` and `postgresql:` at the
/// top level) passes `pgwarden --validate-config`.
#[test]
fn ctl_docs_yaml_configurations_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    let mut bad = Vec::new();
    for f in doc_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for (info, first, lines) in blocks(&f) {
            if !(info == "yaml" || info == "yml") {
                continue;
            }
            let top = |k: &str| lines.iter().any(|l| l.starts_with(k));
            if !(top("scope:") && top("postgresql:")) {
                continue;
            }
            seen += 1;
            let path = dir.path().join(format!("{name}-{first}.yml"));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
                .arg("--validate-config")
                // The files describe the docs' example hosts, not this machine.
                .arg("--skip-host-checks")
                .arg(&path)
                .output()
                .unwrap();
            if !out.status.success() {
                bad.push(format!(
                    "{name}:{first}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(seen > 0, "no whole configuration found in the docs' YAML blocks");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The extraction itself: prompts, sudo, environment, pipes and quotes.
#[test]
fn ctl_docs_extraction_reads_shell_lines() {
    assert_eq!(
        strip_prefixes("$ sudo -u postgres PGWARDENCTL_TOKEN=x pgwardenctl list -f json | jq .").as_deref(),
        Some("pgwardenctl list -f json")
    );
    assert_eq!(
        shell_words(r#"pgwardenctl edit-config -s 'a.b=1 2' -p "x=\"y\"""#),
        vec!["pgwardenctl", "edit-config", "-s", "a.b=1 2", "-p", "x=\"y\""]
    );
    assert_eq!(
        shell_words("save f-$(date +%F).snap"),
        vec!["save", "f-$(date +%F).snap"]
    );
    // The parse fails on what the old command line rejected.
    assert!(Cli::try_parse_args(["pgwardenctl", "flush", "batman", "node1", "restart"]).is_ok());
    assert!(Cli::try_parse_args(["pgwardenctl", "list", "-f", "yml"]).is_ok());
    assert!(Cli::try_parse_args(["pgwardenctl", "lsit"]).is_err());
}
