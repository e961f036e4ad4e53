//! The HA loop: observe → decide (pure) → act.
//!
//! - [`view`]: Patroni's DCS keys parsed into a [`view::ClusterView`].
//! - [`decide`]: the pure decision table.
//! - [`callbacks`]: the user scripts run around PostgreSQL events.
//! - [`watchdog`]: the kernel watchdog a primary keeps fed.
//! - [`failsafe`]: keeping a primary through a DCS outage on its members' word.
//! - [`slots`]: which replication slots a member keeps, and the leader's `status` key.
pub mod callbacks;
pub mod decide;
pub mod failsafe;
pub mod lease;
pub mod requests;
pub mod runner;
pub mod slots;
pub mod status;
pub mod sync;
pub mod view;
pub mod watchdog;
