//! Test support shared by the tests of `pgwarden` and `pgwarden-raft` (a dev-dependency of
//! both, never published).
//!
//! Module map: [`wait`] polls a condition until it holds or a limit passes (the one
//! `wait_for`); [`compat`] compares what an older version wrote with what this one writes;
//! [`ca`] is the test certificate authority that issues PEM certificates for
//! TLS tests; [`ports`] hands out loopback ports no other test process is given; [`http`]
//! holds the small REST calls the end-to-end tests repeat (status codes, JSON bodies);
//! [`env`] says whether PostgreSQL 15 is installed and whether this is a CI run, with the
//! `require_pg!` and `require_tool!` skip macros built on them; [`netns`] builds networks of
//! Linux network namespaces (a namespace per node, one for the clients, a bridge) and cuts
//! their links silently, for partition tests (`require_netns!` skips without root); [`lincheck`] checks that a recorded history of
//! get / put / compare-and-swap on a key-value store is linearizable (the DCS tests of both
//! crates record one).
//!
//! The process-cluster harness of the end-to-end tests is not here: it starts the
//! `pgwarden` binary (known only to the root package's tests, as `CARGO_BIN_EXE_pgwarden`)
//! and writes node configurations with the library's own writer, so it lives beside those
//! tests in `tests/e2e/harness.rs`.

pub mod ca;
pub mod compat;
pub mod delay_switch;
pub mod env;
pub mod http;
pub mod lincheck;
pub mod netns;
pub mod ports;
pub mod wait;

pub use ca::{Ca, Leaf};
pub use env::{in_ci, pg_available};
pub use netns::{netns_available, NetError, NetLab};
pub use ports::{free_addr, free_port, free_ports};
pub use wait::{poll, wait_for, wait_for_every, TimedOut};
