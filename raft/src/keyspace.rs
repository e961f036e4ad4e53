//! The keyspace and the deterministic apply function.

use crate::command::{Command, CommandResult, KeyValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A change made by applying one command, published to watchers and to the lease
/// tracker after the state lock is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A key was created or replaced.
    Put(KeyValue),
    /// A key was deleted at `revision`; `expired` when the lease reaper removed it.
    Delete {
        /// The key.
        key: String,
        /// The log index of the deletion.
        revision: u64,
        /// Whether the lease reaper deleted it.
        expired: bool,
    },
}

/// All keys, ordered so prefix listing is a range scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyspace {
    keys: BTreeMap<String, KeyValue>,
}

impl Keyspace {
    /// One key.
    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.keys.get(key)
    }

    /// Every key under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<KeyValue> {
        self.keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// All keys (snapshots, lease re-arming).
    pub fn iter(&self) -> impl Iterator<Item = &KeyValue> {
        self.keys.values()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Applies `cmd` as the entry at log `index`. Pure: the outcome depends only on the
    /// keyspace, the command and the index, never on a clock.
    pub fn apply(&mut self, index: u64, cmd: &Command, changes: &mut Vec<Change>) -> CommandResult {
        match cmd {
            Command::Put {
                key,
                value,
                ttl_ms,
                condition,
            } => {
                let current = self.keys.get(key);
                if !condition.holds(current) {
                    return CommandResult {
                        succeeded: false,
                        revision: index,
                        prev: current.cloned(),
                        deleted: 0,
                    };
                }
                let prev = current.cloned();
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(index, |p| p.create_revision),
                    mod_revision: index,
                    ttl_ms: *ttl_ms,
                };
                self.keys.insert(key.clone(), kv.clone());
                changes.push(Change::Put(kv));
                CommandResult {
                    succeeded: true,
                    revision: index,
                    prev,
                    deleted: 0,
                }
            }
            Command::Delete {
                key, prefix: true, ..
            } => {
                let doomed: Vec<String> = self
                    .keys
                    .range(key.clone()..)
                    .take_while(|(k, _)| k.starts_with(key.as_str()))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &doomed {
                    self.keys.remove(k);
                    changes.push(Change::Delete {
                        key: k.clone(),
                        revision: index,
                        expired: false,
                    });
                }
                CommandResult {
                    succeeded: true,
                    revision: index,
                    prev: None,
                    deleted: doomed.len() as u32,
                }
            }
            Command::Delete {
                key,
                prefix: false,
                condition,
            } => {
                let current = self.keys.get(key);
                if current.is_none() || !condition.holds(current) {
                    return CommandResult {
                        succeeded: false,
                        revision: index,
                        prev: current.cloned(),
                        deleted: 0,
                    };
                }
                let prev = self.keys.remove(key);
                changes.push(Change::Delete {
                    key: key.clone(),
                    revision: index,
                    expired: false,
                });
                CommandResult {
                    succeeded: true,
                    revision: index,
                    prev,
                    deleted: 1,
                }
            }
            Command::Expire { key, mod_revision } => match self.keys.get(key) {
                Some(cur) if cur.mod_revision == *mod_revision => {
                    let prev = self.keys.remove(key);
                    changes.push(Change::Delete {
                        key: key.clone(),
                        revision: index,
                        expired: true,
                    });
                    CommandResult {
                        succeeded: true,
                        revision: index,
                        prev,
                        deleted: 1,
                    }
                }
                cur => CommandResult {
                    succeeded: false,
                    revision: index,
                    prev: cur.cloned(),
                    deleted: 0,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Condition;

    fn put(key: &str, value: &str, condition: Condition) -> Command {
        Command::Put {
            key: key.into(),
            value: value.into(),
            ttl_ms: Some(1000),
            condition,
        }
    }

    /// Acquire, refresh by value, and a lost CAS reporting the current holder.
    #[test]
    fn leader_key_acquire_refresh_and_lost_race() {
        let mut ks = Keyspace::default();
        let mut ch = vec![];
        assert!(
            ks.apply(1, &put("/s/c/leader", "a", Condition::Absent), &mut ch)
                .succeeded
        );
        let lost = ks.apply(2, &put("/s/c/leader", "b", Condition::Absent), &mut ch);
        assert!(!lost.succeeded);
        assert_eq!(lost.prev.unwrap().value, "a");
        let refresh = ks.apply(
            3,
            &put("/s/c/leader", "a", Condition::ValueEquals("a".into())),
            &mut ch,
        );
        assert!(refresh.succeeded);
        let kv = ks.get("/s/c/leader").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (1, 3));
    }

    /// Expire deletes only the revision whose deadline passed: a refresh in between wins.
    #[test]
    fn expire_is_conditional_on_mod_revision() {
        let mut ks = Keyspace::default();
        let mut ch = vec![];
        ks.apply(1, &put("k", "a", Condition::Always), &mut ch);
        ks.apply(2, &put("k", "a", Condition::Always), &mut ch);
        let stale = ks.apply(
            3,
            &Command::Expire {
                key: "k".into(),
                mod_revision: 1,
            },
            &mut ch,
        );
        assert!(!stale.succeeded);
        assert!(ks.get("k").is_some());
        let fresh = ks.apply(
            4,
            &Command::Expire {
                key: "k".into(),
                mod_revision: 2,
            },
            &mut ch,
        );
        assert!(fresh.succeeded);
        assert!(ks.get("k").is_none());
        assert!(matches!(ch.last(), Some(Change::Delete { expired: true, .. })));
    }

    /// Conditions: mod-revision CAS (0 = absent), value-equals delete, prefix delete and listing.
    #[test]
    fn conditions_and_prefixes() {
        let mut ks = Keyspace::default();
        let mut ch = vec![];
        assert!(
            ks.apply(1, &put("/a/x", "1", Condition::ModRevisionEquals(0)), &mut ch)
                .succeeded
        );
        assert!(
            !ks.apply(2, &put("/a/x", "2", Condition::ModRevisionEquals(7)), &mut ch)
                .succeeded
        );
        assert!(
            ks.apply(3, &put("/a/x", "2", Condition::ModRevisionEquals(1)), &mut ch)
                .succeeded
        );
        ks.apply(4, &put("/a/y", "1", Condition::Always), &mut ch);
        ks.apply(5, &put("/b/z", "1", Condition::Always), &mut ch);
        assert_eq!(ks.list("/a/").len(), 2);
        let del = Command::Delete {
            key: "/a/x".into(),
            prefix: false,
            condition: Condition::ValueEquals("1".into()),
        };
        assert!(!ks.apply(6, &del, &mut ch).succeeded);
        let res = ks.apply(
            7,
            &Command::Delete {
                key: "/a/".into(),
                prefix: true,
                condition: Condition::Always,
            },
            &mut ch,
        );
        assert_eq!(res.deleted, 2);
        assert_eq!(ks.list("/").len(), 1);
    }

    /// A value over the limit is refused before it is proposed, naming the key.
    #[test]
    fn oversized_value_is_refused_with_key_name() {
        let cmd = Command::Put {
            key: "/s/c/config".into(),
            value: "x".repeat(crate::command::MAX_VALUE_BYTES + 1),
            ttl_ms: None,
            condition: Condition::Always,
        };
        let err = cmd.validate().unwrap_err().to_string();
        assert!(err.contains("/s/c/config") && err.contains("limit"), "{err}");
    }
}
