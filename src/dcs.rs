//! The DCS seen by the HA loop: the `pgwarden-raft` crate's `Dcs` trait, its real implementation and the in-memory fake.
pub use pgwarden_raft::dcs::*;
