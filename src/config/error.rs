//! The configuration module's error and warning types.
//!
//! Every variant that concerns one setting carries its dotted key path (`postgresql.data_dir`), because
//! an operator fixing a config file needs to know *where* before *what*.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be used. Returned by [`super::Config::load`] and the `validate`
/// functions; the daemon refuses to start on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("failed to read config file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid YAML (the source carries line and column).
    #[error("config file `{path}` is not valid YAML")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },

    /// The top level of the document is not a mapping.
    #[error("the configuration must be a YAML mapping at the top level, found {found}")]
    NotAMapping { found: &'static str },

    /// A `PGWARDEN_*` environment variable could not be turned into a value for its key.
    #[error("environment variable {var} (for `{key}`): {why}")]
    Env { var: String, key: String, why: String },

    /// A DCS section from Patroni that pgwarden does not implement (`etcd`, `consul`, ...).
    #[error("`{section}`: not supported: pgwarden has its own DCS in the `raft:` section")]
    UnsupportedDcs { section: String },

    /// A key that Patroni used to accept and pgwarden refuses, with what to do instead.
    #[error("`{key}`: {why}")]
    Removed { key: String, why: &'static str },

    /// A Patroni feature pgwarden accepts the syntax of but has not built: running with it would
    /// silently build a different cluster than the one asked for, so it is refused until it exists.
    #[error("`{key}`: not supported yet: {why}")]
    NotBuilt { key: String, why: String },

    /// A key the table does not know: an error under strict loading (`pgwarden --validate-config`),
    /// and at start when the file has errors anyway (a misspelt section explains missing keys).
    #[error("`{key}`: unknown key{}", .hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownKey { key: String, hint: Option<String> },

    /// A file the configuration names that cannot be used on this host (a certificate that cannot
    /// be read, a data directory that is a file, a `bin_dir` without the programs).
    #[error("`{key}`: {why}")]
    Host { key: String, why: String },

    /// A problem with a value that came from an environment variable: the variable is named,
    /// since the file may say something else.
    #[error("{error} (the value comes from the environment variable {var})")]
    FromEnv { var: String, error: Box<ConfigError> },

    /// A key holds a value of the wrong shape.
    #[error("`{key}`: wrong type: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },

    /// A required key is absent.
    #[error("`{key}`: missing required key: {why}")]
    Missing { key: String, why: &'static str },

    /// A `host:port` value that does not parse.
    #[error("`{key}`: bad address {value:?}: {why}")]
    BadAddress { key: String, value: String, why: String },

    /// A duration that is neither a number of seconds nor a number with a unit.
    #[error("`{key}`: bad duration {value:?}: expected seconds (e.g. 30) or a number with a unit (ms, s, min, h, d)")]
    BadDuration { key: String, value: String },

    /// A value of the right type that is not acceptable (range, enum, forbidden option, ...).
    #[error("`{key}`: {why}")]
    Invalid { key: String, why: String },

    /// Exactly two Raft voters: a majority of two is two, so losing either node stops the DCS.
    #[error(
        "`raft.partner_addrs`: 2 voters (this node and {partner}) tolerate no failure: losing either one \
         stops the DCS and so every failover. Add a third voter; it can be a witness (same binary, \
         `raft.witness: true`, no PostgreSQL) on any small host"
    )]
    TwoVoters { partner: String },

    /// Fewer than three voters without `raft.single_node: true`.
    #[error(
        "`raft.partner_addrs`: {voters} voter(s) configured; high availability needs at least 3 (this node \
         plus 2 partners). For a deliberate one-node cluster without failover set `raft.single_node: true`"
    )]
    TooFewVoters { voters: usize },

    /// `raft.single_node` together with partners: the two settings contradict each other.
    #[error("`raft.single_node`: a single-node cluster cannot list `raft.partner_addrs` ({count} given)")]
    SingleNodeWithPartners { count: usize },

    /// serde rejected the document after the key walk accepted it (a shape the walk does not check).
    #[error("`{key}`: {message}")]
    Deserialize { key: String, message: String },

    /// Several problems at once, so an operator can fix them all in one pass.
    #[error("{} problems in the configuration:\n  {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The dotted key path the error is about, where there is exactly one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Env { key, .. }
            | ConfigError::Removed { key, .. }
            | ConfigError::NotBuilt { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Missing { key, .. }
            | ConfigError::BadAddress { key, .. }
            | ConfigError::BadDuration { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Deserialize { key, .. }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::Host { key, .. } => Some(key),
            ConfigError::FromEnv { error, .. } => error.key(),
            ConfigError::UnsupportedDcs { section } => Some(section),
            ConfigError::TwoVoters { .. } | ConfigError::TooFewVoters { .. } => Some("raft.partner_addrs"),
            ConfigError::SingleNodeWithPartners { .. } => Some("raft.single_node"),
            ConfigError::Read { .. }
            | ConfigError::Syntax { .. }
            | ConfigError::NotAMapping { .. }
            | ConfigError::Several(_) => None,
        }
    }

    /// The individual errors: the inner list for [`ConfigError::Several`], else just this one.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        match self {
            ConfigError::Several(list) => list.iter().collect::<Vec<_>>().into_iter(),
            one => vec![one].into_iter(),
        }
    }

    /// Folds a list of problems into one error: `None` when empty, the error itself when alone.
    pub(crate) fn from_list(mut list: Vec<ConfigError>) -> Option<ConfigError> {
        match list.len() {
            0 => None,
            1 => list.pop(),
            _ => Some(ConfigError::Several(list)),
        }
    }
}

/// Something in the configuration that the daemon accepts but an operator should hear about.
/// Logged once at start (WARN); `pgwarden --validate-config` prints them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A key no part of pgwarden reads; usually a typo. Under strict loading this is an error instead.
    UnknownKey { key: String, hint: Option<String> },
    /// A key that means something only to Patroni's Python process: accepted, nothing corresponds.
    Ignored { key: String, why: &'static str },
    /// A key pgwarden accepts so that Patroni files load, but does not act on (yet); `var` is the
    /// environment variable that set it, if one did.
    NoEffect {
        key: String,
        why: &'static str,
        var: Option<String>,
    },
    /// A custom tag whose name is close to a known tag: probably a misspelling that leaves the
    /// known tag unset (`nofailvoer`).
    NearKnownTag { key: String, known: String },
    /// A `PATRONI_*` environment variable, which pgwarden does not read; `instead` is the
    /// `PGWARDEN_*` variable that it has in its place, if any.
    PatroniEnv { var: String, instead: Option<String> },
    /// A value below its minimum was raised to it (Patroni does the same, with a warning).
    RaisedToMinimum { key: String, value: i64, minimum: i64 },
    /// `loop_wait + 2*retry_timeout <= ttl` did not hold and was repaired (Patroni's exact rule and wording).
    TimingAdjusted(String),
    /// `nofailover` and `failover_priority` disagree; the boolean wins, as in Patroni.
    TagConflict(String),
    /// Anything else worth one line: a setting that works but is deprecated or does nothing here.
    Note { key: String, message: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { key, hint: None } => write!(f, "{key}: unknown key"),
            ConfigWarning::UnknownKey { key, hint: Some(h) } => write!(f, "{key}: unknown key ({h})"),
            ConfigWarning::Ignored { key, why } => {
                write!(f, "{key}: accepted for Patroni compatibility, ignored: {why}")
            }
            ConfigWarning::NoEffect { key, why, var } => {
                write!(f, "{key}: accepted, but has no effect: {why}")?;
                match var {
                    Some(v) => write!(f, " (set by the environment variable {v})"),
                    None => Ok(()),
                }
            }
            ConfigWarning::NearKnownTag { key, known } => write!(
                f,
                "{key}: a custom tag, not a known one (did you mean `{known}`?); `{known}` stays unset"
            ),
            ConfigWarning::PatroniEnv { var, instead } => {
                write!(f, "{var}: ignored: pgwarden reads PGWARDEN_* variables")?;
                match instead {
                    Some(v) => write!(f, "; rename it {v}"),
                    None => write!(f, "; pgwarden has no equivalent"),
                }
            }
            ConfigWarning::RaisedToMinimum { key, value, minimum } => {
                write!(f, "{key}={value} can't be smaller than {minimum}, adjusting...")
            }
            ConfigWarning::TimingAdjusted(text) | ConfigWarning::TagConflict(text) => f.write_str(text),
            ConfigWarning::Note { key, message } => write!(f, "{key}: {message}"),
        }
    }
}
