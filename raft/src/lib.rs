//! pgwarden-raft: the embedded DCS.
pub mod dcs;
