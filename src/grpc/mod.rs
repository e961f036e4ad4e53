//! The gRPC admin API (`pgwarden.admin.v1.AdminService`), served on `ctl.listen`.
//!
//! - [`service`]: the tonic service. It answers from the same code as the REST API
//!   ([`crate::api::cluster`], [`crate::api::manual`], [`crate::api::actions`]), so both APIs
//!   give the same answers and refuse the same requests with the same texts.
//! - [`convert`]: the REST documents (GET /cluster, /history) as protobuf messages.
//! - [`forward`]: member actions (restart, reload, reinitialize) for another member are sent
//!   to that member's REST API, as patronictl does.
//! - [`dcs_ops`]: the DCS operations (`pgwardenctl dcs ...`): keys, each Raft member's
//!   state, raw repair writes behind `force`, consistent snapshots.
//! - [`watch`]: the event stream, a diff of successive cluster snapshots.
//! - [`auth`]: bearer token or client certificate on every call.
//! - [`serve`]: the listener loop.
//! - [`error`]: [`error::AdminError`] and its mapping to gRPC status codes.
pub mod auth;
pub mod convert;
pub mod dcs_ops;
pub mod error;
pub mod forward;
pub mod serve;
pub mod service;
pub mod watch;

/// The generated `pgwarden.admin.v1` types, which live in [`crate::pb`] so that the client CLI
/// does not import them from the server. Re-exported so `grpc::pb` paths keep resolving.
pub use crate::pb;
