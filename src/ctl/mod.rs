//! pgwardenctl: patronictl's commands over the gRPC admin API.
//!
//! - [`cli`]: the clap definitions (also the source of the man page and completions).
//! - [`client`]: endpoints, credentials and TLS from the command line or the daemon's
//!   configuration file; connects to the first member that answers.
//! - [`cmd`]: the commands, one file per command group, printing what patronictl prints.
//! - [`render`]: `list`, `topology`, `history` and `members list` output, pure and golden-tested.
//! - [`pyfmt`]: Python's JSON and PyYAML's YAML text, which patronictl prints.
//! - [`prompt`]: click-style questions; [`diff`]: the edit-config diff.
//! - [`insecure`]: `-k`, TLS without verifying the member's certificate.
pub mod cli;
pub mod client;
pub mod cmd;
pub mod diff;
pub mod insecure;
pub mod prompt;
pub mod pyfmt;
pub mod render;

/// An error with its causes, `a: b: c`, for a message to a person.
pub fn chain(e: &dyn std::error::Error) -> String {
    pgwarden_raft::error_chain(e)
}
