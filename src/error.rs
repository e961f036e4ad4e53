//! How an error is written into a log line: the one renderer of an error and its causes.
//!
//! Every error type in pgwarden keeps its cause in `#[source]` and never repeats it in its own
//! message, so the chain has to be rendered once, where the error is handled and logged. That
//! is [`chain`]: `operation failed: cause: root cause`.

pub use pgwarden_raft::error_chain as chain;
