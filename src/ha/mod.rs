//! The HA loop: observe → decide (pure) → act.
//!
//! - [`view`]: Patroni's DCS keys parsed into a [`view::ClusterView`].
//! - [`decide`]: the pure decision table.
pub mod decide;
pub mod runner;
pub mod status;
pub mod sync;
pub mod view;
