//! pgwardenctl: patronictl's commands over the gRPC admin API.
//!
//! - [`render`]: `list`, `topology` and `history` output, pure and golden-tested.
//! - [`pyfmt`]: Python's JSON and PyYAML's YAML text, which patronictl prints.
pub mod pyfmt;
pub mod render;
