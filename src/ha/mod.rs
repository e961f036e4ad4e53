//! The HA loop: observe → decide (pure) → act, around the leader lease.
//!
//! Pure (no I/O, tested by tables):
//! - [`view`]: Patroni's DCS keys parsed into a [`view::ClusterView`], with the typed dynamic
//!   configuration every reader goes through.
//! - [`decide`]: the decision table: what this member does next.
//! - [`sync`]: synchronous replication: who is synchronous, SSN, the order of changes.
//! - [`slots`]: which replication slots a member keeps, and the leader's `status` key.
//! - [`failsafe`]: keeping a primary through a DCS outage on its members' word (the state and
//!   the list are pure; asking the members is its one HTTP call).
//! - [`requests`]: the loop's inbox: requests from the REST API (restart, reload, reinitialize).
//! - [`status`]: the member's state as the REST API publishes it.
//! - [`rejoin`]: rewind, reinitialize or stay stopped when the data diverged (Patroni's
//!   `use_pg_rewind` and `remove_data_directory_*`).
//!
//! Effects:
//! - [`lease`]: the leader lease: the leader key, its deadline, the fence and the watchdog feed.
//! - [`deadman`]: the fence without the runtime (a dedicated thread) and without the daemon
//!   (the `fence-guard` process next to the postmaster, fed through a deadline file).
//! - [`runner`]: the loop itself, which carries the decisions out on PostgreSQL and the DCS.
//! - [`callbacks`]: the user scripts run around PostgreSQL events.
//! - [`watchdog`]: the kernel watchdog a primary keeps fed.
//! - [`counters`]: fence stops, promotions and demotions, for /metrics.
pub mod callbacks;
pub mod counters;
pub mod deadman;
pub mod decide;
pub mod failsafe;
pub mod lease;
pub mod rejoin;
pub mod requests;
pub mod runner;
pub mod slots;
pub mod status;
pub mod sync;
pub mod view;
pub mod watchdog;
