//! Newtypes shared across modules, parsed at the edge so that kinds cannot mix.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's name (Patroni's `name`): unique in the cluster, used as the DCS key
/// `members/<name>`, the leader key's value and the replica's `application_name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberName(String);

impl MemberName {
    /// Checks that a name is usable: not empty, no '/' (it is a key segment), no control characters.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidName {
                name,
                why: "it is empty",
            });
        }
        if name.contains('/') {
            return Err(InvalidName {
                name,
                why: "it contains '/', which separates DCS key segments",
            });
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(InvalidName {
                name,
                why: "it contains control characters",
            });
        }
        Ok(MemberName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member name that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid member name {name:?}: {why}")]
pub struct InvalidName {
    name: String,
    why: &'static str,
}
