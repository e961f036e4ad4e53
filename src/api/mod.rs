//! The member's APIs: Patroni's REST API (axum).
pub mod rest;
