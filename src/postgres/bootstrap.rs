//! Patroni's `bootstrap.initdb` options and the SQL that creates the cluster's roles.

use super::error::{Error, Result};
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

#[cfg(test)]
mod tests {
    use super::*;

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
