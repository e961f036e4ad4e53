//! Errors at the DCS boundary.

use crate::command::CommandError;
use std::time::Duration;

/// A DCS operation that did not complete. The HA loop treats every one of these as "the
/// DCS is unavailable" except [`DcsError::Invalid`], which is a bug in the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DcsError {
    /// No Raft leader is known or reachable, or it could not confirm a quorum.
    #[error("{op}: the DCS is unavailable: {reason}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The operation did not finish in time. For a write the outcome is unknown: it may
    /// still commit, so a caller must treat it as failed and must not assume it did not happen.
    #[error("{op}: no answer from the DCS within {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The time limit.
        after: Duration,
    },
    /// The command was refused before it was proposed.
    #[error("invalid DCS command")]
    Invalid(#[source] CommandError),
    /// The node is shutting down.
    #[error("{op}: the DCS node is shutting down")]
    ShuttingDown {
        /// The operation.
        op: &'static str,
    },
}

impl DcsError {
    /// Whether retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, DcsError::Invalid(_))
    }
}
