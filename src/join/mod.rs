//! Bootstrap and join: `pgwarden init` on the first host, `pgwarden join --token` on the
//! others, and the join listener the first host's daemon serves in between.
//!
//! This module owns the cluster's certificate authority (created by `init`, whose key stays
//! on the first host), the join tokens (their issue, pin and one-time consumption), the
//! exchange that hands a new member its certificate, the shared settings and the database
//! credentials, and the configuration files both commands write.
//!
//! - [`pki`]: the CA, the members' certificates, keys and the CA pin (SHA-256).
//! - [`token`]: the token string and the store of issued and consumed secrets.
//! - [`files`]: staged writes (all files renamed into place at the end, or none), modes and
//!   owners.
//! - [`config`]: the configuration file of a member written by `init` or `join`.
//! - [`init`]: `pgwarden init` and `pgwarden token create`.
//! - [`server`]: the join listener of the first host and the Raft additions it starts.
//! - [`client`]: `pgwarden join`.
//! - [`wire`]: the request and answer of the exchange.

pub mod client;
pub mod config;
pub mod files;
pub mod init;
pub mod pki;
pub mod server;
pub mod token;
pub mod wire;

use std::path::PathBuf;

/// The default port of the join listener (next to the Raft port 5010).
pub const DEFAULT_JOIN_PORT: u16 = 5011;

/// The default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Everything `init`, `join`, `token create` and the join listener can fail with. The texts
/// are what the operator reads: each names the problem and, where there is one, the way out.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A file that would be replaced exists and `--force` was not given.
    #[error("{} already exists; refusing to replace it (pass --force to overwrite)", path.display())]
    Exists { path: PathBuf },
    /// Reading, writing, renaming or changing the owner of a file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A command-line value that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The token string does not parse.
    #[error("malformed join token: {0} (copy the whole string `pgwarden init` or `pgwarden token create` printed)")]
    MalformedToken(String),
    /// Certificate or key generation or parsing.
    #[error("certificate: {0}")]
    Pki(String),
    /// TLS setup or handshake with the join server.
    #[error("TLS with the join server {addr}: {reason}")]
    Tls { addr: String, reason: String },
    /// The join server cannot be reached or the exchange broke off.
    #[error("join server {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The join server refused the request (wrong, expired or used token, taken name...).
    #[error("the join was refused: {0}")]
    Refused(String),
    /// The node's configuration (the join server's own) is unusable for joins.
    #[error("{0}")]
    Config(String),
}

impl JoinError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> JoinError {
        let path = path.into();
        move |source| JoinError::Io { path, source }
    }
}
