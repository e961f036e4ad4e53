//! The commands replicated through the Raft log and their results.
//!
//! Applying a command is a pure function of (keyspace, command, log index): no clock is
//! read, so every replica and every replay after a restart reaches the same keyspace.

use serde::{Deserialize, Serialize};

/// Largest value accepted in the keyspace. Patroni's values are small JSON documents
/// (a member key is well under 2 KiB); the cap keeps sled pages out of its unsynced
/// blob files and snapshots small.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// One stored key with its revisions. Revisions are the Raft log index of the entry
/// that created or last modified the key, so they are identical on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Full key, e.g. `/service/batman/leader`.
    pub key: String,
    /// The value as Patroni stores it (plain text or JSON text).
    pub value: String,
    /// Log index of the write that created the key.
    pub create_revision: u64,
    /// Log index of the last write to the key.
    pub mod_revision: u64,
    /// Time to live of the key, if it is a lease; re-armed by every write.
    pub ttl_ms: Option<u64>,
}

/// The precondition of a write, checked at apply time against the current key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Unconditional.
    Always,
    /// The key must not exist (acquire).
    Absent,
    /// The key must exist with exactly this value (Patroni's `prevValue`: refresh or
    /// release of the leader key by its holder).
    ValueEquals(String),
    /// The key must exist with this mod revision (Patroni's `prevIndex`); 0 means absent.
    ModRevisionEquals(u64),
}

impl Condition {
    /// Whether the condition holds for the current state of a key.
    pub fn holds(&self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Condition::Always, _) => true,
            (Condition::Absent, cur) => cur.is_none(),
            (Condition::ValueEquals(v), Some(cur)) => &cur.value == v,
            (Condition::ValueEquals(_), None) => false,
            (Condition::ModRevisionEquals(0), cur) => cur.is_none(),
            (Condition::ModRevisionEquals(r), Some(cur)) => cur.mod_revision == *r,
            (Condition::ModRevisionEquals(_), None) => false,
        }
    }
}

/// A keyspace command, the application data of a Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a key when `condition` holds.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Lease length; `None` for a permanent key.
        ttl_ms: Option<u64>,
        /// When the put takes effect.
        condition: Condition,
    },
    /// Delete a key when `condition` holds, or (with `prefix`) every key under it.
    Delete {
        /// The key, or the prefix.
        key: String,
        /// Whether `key` is a prefix.
        prefix: bool,
        /// When the delete takes effect (prefix deletes: always).
        condition: Condition,
    },
    /// Proposed only by the Raft leader's lease reaper: delete `key` if it still has
    /// `mod_revision`, i.e. nobody refreshed it since its deadline was armed.
    Expire {
        /// The key.
        key: String,
        /// The revision whose deadline passed.
        mod_revision: u64,
    },
}

/// The application data of one Raft log entry: one command, or several proposed together
/// by the leader (group commit: one log append and one fsync for all of them).
///
/// The commands of a batch touch distinct keys (no prefix delete is batched), so they
/// commute: each key changes at most once per entry, and its mod revision (the entry's
/// index) still names exactly one write. Serialized untagged, so a single command is
/// stored exactly as before batching existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Proposal {
    /// One command.
    One(Command),
    /// Commands applied in order at the same index.
    Batch(Vec<Command>),
}

impl Proposal {
    /// The commands, in apply order.
    pub fn commands(&self) -> &[Command] {
        match self {
            Proposal::One(c) => std::slice::from_ref(c),
            Proposal::Batch(cs) => cs,
        }
    }
}

impl Command {
    /// The key a batched command changes, or `None` if it must be proposed alone (a
    /// prefix delete can touch any key).
    pub fn batch_key(&self) -> Option<&str> {
        match self {
            Command::Put { key, .. } | Command::Expire { key, .. } => Some(key),
            Command::Delete {
                key, prefix: false, ..
            } => Some(key),
            Command::Delete { prefix: true, .. } => None,
        }
    }

    /// Checks sizes before the command is proposed, so a bad write fails at the caller
    /// with a clear error instead of being replicated.
    pub fn validate(&self) -> Result<(), CommandError> {
        let key = match self {
            Command::Put { key, value, .. } => {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(CommandError::ValueTooLarge {
                        key: key.clone(),
                        size: value.len(),
                        limit: MAX_VALUE_BYTES,
                    });
                }
                key
            }
            Command::Delete { key, .. } | Command::Expire { key, .. } => key,
        };
        if key.is_empty() {
            return Err(CommandError::EmptyKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(CommandError::KeyTooLarge {
                size: key.len(),
                limit: MAX_KEY_BYTES,
            });
        }
        if let Command::Delete {
            prefix: true,
            condition,
            ..
        } = self
        {
            if *condition != Condition::Always {
                return Err(CommandError::ConditionalPrefixDelete);
            }
        }
        Ok(())
    }
}

/// A command that must not be proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    /// The value exceeds [`MAX_VALUE_BYTES`].
    #[error("value of key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The key exceeds [`MAX_KEY_BYTES`].
    #[error("key is {size} bytes, over the limit of {limit} bytes")]
    KeyTooLarge {
        /// The key's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// Prefix deletes are unconditional by design.
    #[error("a prefix delete cannot carry a condition")]
    ConditionalPrefixDelete,
}

/// What applying a command did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Whether the condition held and the command took effect.
    pub succeeded: bool,
    /// The log index the command was applied at (the new mod revision on success).
    pub revision: u64,
    /// The key before the command (on failure: its current state, so a loser of a
    /// race learns who holds the key).
    pub prev: Option<KeyValue>,
    /// Number of keys deleted.
    pub deleted: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Command {
        Command::Put {
            key: key.into(),
            value: "v".into(),
            ttl_ms: Some(30_000),
            condition: Condition::ModRevisionEquals(7),
        }
    }

    #[test]
    fn a_single_proposal_is_stored_as_the_bare_command() {
        let one = Proposal::One(put("/a"));
        let bare = serde_json::to_string(&put("/a")).unwrap();
        assert_eq!(serde_json::to_string(&one).unwrap(), bare);
        // Entries written before batching existed decode as one command.
        assert_eq!(serde_json::from_str::<Proposal>(&bare).unwrap(), one);
        let batch = Proposal::Batch(vec![put("/a"), put("/b")]);
        let s = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<Proposal>(&s).unwrap(), batch);
        assert_eq!(batch.commands().len(), 2);
    }

    #[test]
    fn prefix_deletes_are_never_batched() {
        assert_eq!(put("/a").batch_key(), Some("/a"));
        let del = |prefix| Command::Delete {
            key: "/a".into(),
            prefix,
            condition: Condition::Always,
        };
        assert_eq!(del(false).batch_key(), Some("/a"));
        assert_eq!(del(true).batch_key(), None);
    }
}
