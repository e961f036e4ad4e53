//! Patroni's `bootstrap.initdb` options, the SQL that creates the cluster's roles, and the
//! [`PgManager`] methods that create the roles and run the `post_bootstrap` command.

use super::conf::pgpass_line;
use super::error::{Error, Result};
use super::manager::PgManager;
use super::process::{split_command, SecretFile};
use super::query;
use super::settings::Credentials;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Options pgwarden sets itself (data directory, superuser, password file) or that would make the
/// result unsafe or not a cluster (nosync, sync-only, version): refused, as Patroni does.
const FORBIDDEN: &[&str] = &[
    "pgdata",
    "D",
    "nosync",
    "N",
    "pwfile",
    "sync-only",
    "S",
    "version",
    "V",
    "username",
    "U",
    "pwprompt",
    "W",
];

/// One `bootstrap.initdb` entry: a flag (`- data-checksums`) or a single-key map
/// (`- encoding: UTF8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitdbOption {
    /// `--name`.
    Flag(String),
    /// `--name=value`.
    Value(String, String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    B(bool),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOption {
    Flag(String),
    Map(BTreeMap<String, Scalar>),
}

impl<'de> Deserialize<'de> for InitdbOption {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match RawOption::deserialize(d)? {
            RawOption::Flag(f) => Ok(InitdbOption::Flag(f)),
            RawOption::Map(m) => {
                let mut it = m.into_iter();
                match (it.next(), it.next()) {
                    (Some((k, v)), None) => {
                        let v = match v {
                            Scalar::S(s) => s,
                            Scalar::I(i) => i.to_string(),
                            Scalar::B(b) => b.to_string(),
                        };
                        Ok(InitdbOption::Value(k, v))
                    }
                    _ => Err(serde::de::Error::custom(
                        "an initdb option map must have exactly one key, e.g. `- encoding: UTF8`",
                    )),
                }
            }
        }
    }
}

impl InitdbOption {
    fn name(&self) -> &str {
        match self {
            InitdbOption::Flag(n) | InitdbOption::Value(n, _) => n.trim_start_matches('-'),
        }
    }

    /// The command-line argument, after validation.
    pub fn to_arg(&self) -> Result<String> {
        let name = self.name();
        let shown = match self {
            InitdbOption::Flag(n) | InitdbOption::Value(n, _) => n.clone(),
        };
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('=') {
            return Err(Error::InvalidInitdbOption {
                option: shown,
                why: "an option name must be one word without '=' (use a map for values)",
            });
        }
        if FORBIDDEN.contains(&name) {
            return Err(Error::ForbiddenInitdbOption {
                option: name.to_owned(),
            });
        }
        Ok(match self {
            InitdbOption::Flag(_) => format!("--{name}"),
            InitdbOption::Value(_, v) => format!("--{name}={v}"),
        })
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal as an E'' string, correct whatever standard_conforming_strings is.
pub fn quote_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Patroni's grants letting a non-superuser rewind role run pg_rewind against this server.
pub const REWIND_GRANTS: &[&str] = &[
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

impl PgManager {
    /// Creates or updates the superuser, replication and rewind roles.
    pub(super) async fn ensure_roles(&self) -> Result<()> {
        let s = &self.settings;
        let t = s.timeouts.query;
        let c = self.client().await?;
        // Keep passwords out of the server log whatever the logging settings are.
        query::timed(
            "silence statement logging",
            t,
            c.batch_execute("SET log_statement TO 'none'; SET log_min_duration_statement TO -1; SET log_min_error_statement TO 'log'"),
        )
        .await?;
        let ensure = |creds: &Credentials, attrs: &'static str| {
            let password = creds
                .password
                .as_deref()
                .map(|p| format!(" PASSWORD {}", quote_literal(p)))
                .unwrap_or_default();
            let name = quote_ident(&creds.username);
            let c = c.clone();
            let user = creds.username.clone();
            async move {
                let exists = query::timed(
                    "look up a role",
                    t,
                    c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user]),
                )
                .await?
                .is_some();
                let verb = if exists { "ALTER" } else { "CREATE" };
                query::timed(
                    "create or update a role",
                    t,
                    c.batch_execute(&format!("{verb} ROLE {name} WITH {attrs}{password}")),
                )
                .await?;
                tracing::info!(role = %user, created = !exists, "role ready");
                Ok::<_, Error>(())
            }
        };
        ensure(&s.superuser, "SUPERUSER LOGIN").await?;
        ensure(&s.replication, "LOGIN REPLICATION").await?;
        if let Some(rw) = &s.rewind {
            if rw.username != s.superuser.username {
                ensure(rw, "LOGIN").await?;
                for f in REWIND_GRANTS {
                    let sql = format!("GRANT EXECUTE ON FUNCTION {f} TO {}", quote_ident(&rw.username));
                    query::timed("grant pg_rewind functions", t, c.batch_execute(&sql)).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs the `post_bootstrap` command with the superuser connection URL as its argument.
    pub(super) async fn post_bootstrap(&self, command: &str) -> Result<()> {
        let s = &self.settings;
        let words = split_command(command)?;
        let pass = SecretFile::create(
            &self.secret_dir(),
            &self.secret_prefix(),
            &pgpass_line("*", s.port, &s.superuser),
            &self.spawner.ids,
        )?;
        let mut cmd = self.spawner.external(&words[0]);
        cmd.args(&words[1..])
            .arg(format!(
                "postgres://{}@{}:{}/postgres",
                s.superuser.username, s.listen_host, s.port
            ))
            .env("PGPASSFILE", pass.path());
        self.spawner
            .output("run the post_bootstrap command", cmd, s.timeouts.initdb)
            .await?;
        tracing::info!("post_bootstrap command done");
        Ok(())
    }
}

/// A custom bootstrap method (`bootstrap.method: NAME` and its `bootstrap.NAME` section):
/// a command that fills the empty data directory (a restore from a backup) instead of initdb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomBootstrap {
    /// The method's name (for logs).
    pub name: String,
    /// The command; gets `--scope=... --datadir=...` unless `no_params`.
    pub command: String,
    /// `no_params`.
    pub no_params: bool,
    /// `keep_existing_recovery_conf`: a recovery.signal the command wrote is kept, so the
    /// recovery settings it wrote (pgBackRest: postgresql.auto.conf) apply at the first start.
    pub keep_existing_recovery_conf: bool,
    /// `recovery_conf`: settings for the archive recovery of the first start
    /// (restore_command, recovery_target_time, recovery_target_action...).
    pub recovery_conf: BTreeMap<String, String>,
    /// Every other key of the section, passed as `--key=value`.
    pub params: BTreeMap<String, String>,
}

impl CustomBootstrap {
    /// The command's argument vector: its own words, then `--scope` and `--datadir` (Patroni's
    /// two parameters of a bootstrap method) unless `no_params`, then the extra keys.
    pub fn argv(&self, scope: &str, data_dir: &std::path::Path) -> Result<Vec<String>> {
        let mut argv = split_command(&self.command)?;
        if !self.no_params {
            argv.push(format!("--scope={scope}"));
            argv.push(format!("--datadir={}", data_dir.display()));
        }
        argv.extend(self.params.iter().map(|(k, v)| format!("--{k}={v}")));
        Ok(argv)
    }
}

impl PgManager {
    /// Runs a custom bootstrap command into the empty data directory (created if absent).
    /// Returns whether it left a recovery.signal behind.
    pub(super) async fn run_custom_bootstrap(&self, m: &CustomBootstrap) -> Result<bool> {
        let argv = m.argv(&self.settings.scope, self.data_dir())?;
        self.prepare_empty_data_dir("run a custom bootstrap method")?;
        let mut cmd = self.spawner.external(&argv[0]);
        cmd.args(&argv[1..]);
        tracing::info!(method = %m.name, command = %argv.join(" "), "running the custom bootstrap method");
        self.spawner
            .output(
                "run the custom bootstrap method",
                cmd,
                self.settings.timeouts.clone,
            )
            .await?;
        self.check_data_dir()?;
        Ok(self.data_dir().join("recovery.signal").is_file())
    }

    /// Puts the data directory in targeted archive recovery for its next start: recovery.signal
    /// (written) instead of standby.signal (removed), so that PostgreSQL ends recovery at the
    /// target instead of staying a standby.
    pub(super) fn archive_recovery_signal(&self) -> Result<()> {
        let dir = self.data_dir();
        super::process::write_file_atomic(&dir.join("recovery.signal"), "", 0o600, &self.spawner.ids)?;
        match std::fs::remove_file(dir.join("standby.signal")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir.join("standby.signal"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datain_custom_bootstrap_argv() {
        let mut m = CustomBootstrap {
            name: "pitr".into(),
            command: "pgbackrest --stanza=main restore".into(),
            ..Default::default()
        };
        let d = std::path::Path::new("/data/pg");
        assert_eq!(
            m.argv("demo", d).unwrap(),
            [
                "pgbackrest",
                "--stanza=main",
                "restore",
                "--scope=demo",
                "--datadir=/data/pg"
            ]
        );
        m.no_params = true;
        assert_eq!(
            m.argv("demo", d).unwrap(),
            ["pgbackrest", "--stanza=main", "restore"]
        );
    }

    #[test]
    fn options_parse_from_patroni_yaml_and_forbidden_ones_are_refused() {
        let opts: Vec<InitdbOption> = serde_yaml::from_str(
            "- data-checksums\n- encoding: UTF8\n- locale: C.UTF-8\n- wal-segsize: 16\n",
        )
        .unwrap();
        let args: Vec<String> = opts.iter().map(|o| o.to_arg().unwrap()).collect();
        assert_eq!(
            args,
            vec![
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--wal-segsize=16"
            ]
        );
        for bad in [
            "- nosync",
            "- pgdata: /x",
            "- --pwfile=/x",
            "- sync-only",
            "- version",
            "- username: x",
        ] {
            let o: Vec<InitdbOption> = serde_yaml::from_str(bad).unwrap();
            let err = o[0].to_arg().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::ForbiddenInitdbOption { .. } | Error::InvalidInitdbOption { .. }
                ),
                "{bad}: {err}"
            );
        }
        assert!(serde_yaml::from_str::<Vec<InitdbOption>>("- {a: 1, b: 2}").is_err());
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal(r"it's \x"), r"E'it''s \\x'");
    }
}
