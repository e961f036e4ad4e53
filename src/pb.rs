//! Generated protobuf types and tonic stubs of `pgwarden.admin.v1` (built by `build.rs` from
//! `proto/pgwarden/admin/v1/admin.proto`).
//!
//! A top-level module rather than a child of [`crate::grpc`]: the server ([`crate::grpc`]) and
//! the client CLI ([`crate::ctl`]) both speak these types, and the client must not depend on the
//! server module to get them.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("pgwarden.admin.v1");
