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

/// A PostgreSQL WAL position (`pg_lsn`), shown the way PostgreSQL and Patroni print it: `X/Y`, the
/// high and low 32 bits in upper-case hexadecimal. Serialised as that string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid/zero position, `0/0`.
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Text that is not an `X/Y` WAL position.
#[derive(Debug, thiserror::Error)]
#[error("invalid LSN {text:?}: expected two hexadecimal numbers of at most 8 digits separated by '/'")]
pub struct InvalidLsn {
    text: String,
}

impl std::str::FromStr for Lsn {
    type Err = InvalidLsn;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidLsn { text: s.to_owned() };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A PostgreSQL timeline (`TimeLineID`): 1 after initdb, incremented by every promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimelineId(pub u32);

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Defines an enum for one of Patroni's vocabularies: each variant is written as Patroni's exact
/// string, and any other string read from the DCS or a peer is kept as `Other` (never an error:
/// another writer's word must not make a whole member key unreadable).
macro_rules! patroni_words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A word pgwarden does not know, kept as written.
            Other(String),
        }

        impl $name {
            /// Every known word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Patroni's string.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// The word for this string (`Other` when unknown).
            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::parse(&String::deserialize(d)?))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::parse(s)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

patroni_words! {
    /// A member's PostgreSQL state, as Patroni names it (member keys, GET /patroni, /metrics'
    /// `patroni_postgres_state` index follows this order).
    MemberState {
        /// Bootstrapping a new cluster with initdb.
        InitializingNewCluster => "initializing new cluster",
        /// initdb failed.
        InitdbFailed => "initdb failed",
        /// A custom bootstrap script runs.
        RunningCustomBootstrapScript => "running custom bootstrap script",
        /// The custom bootstrap script failed.
        CustomBootstrapFailed => "custom bootstrap failed",
        /// Cloning from another member.
        CreatingReplica => "creating replica",
        /// Up and answering.
        Running => "running",
        /// Started, not answering yet.
        Starting => "starting",
        /// Starting after a custom bootstrap.
        StartingAfterCustomBootstrap => "starting after custom bootstrap",
        /// The start failed.
        StartFailed => "start failed",
        /// A restart is under way.
        Restarting => "restarting",
        /// The restart failed.
        RestartFailed => "restart failed",
        /// Being stopped.
        Stopping => "stopping",
        /// Stopped cleanly.
        Stopped => "stopped",
        /// The stop failed.
        StopFailed => "stop failed",
        /// Stopped without a clean shutdown.
        Crashed => "crashed",
    }
}

impl Default for MemberState {
    fn default() -> Self {
        MemberState::Other(String::new())
    }
}

patroni_words! {
    /// A member's role, as Patroni names it.
    Role {
        /// The writable primary (Patroni before 3.0 said `master`).
        Primary => "primary",
        /// A streaming or archive-replaying standby.
        Replica => "replica",
        /// The leader of a standby cluster.
        StandbyLeader => "standby_leader",
        /// No data directory yet.
        Uninitialized => "uninitialized",
        /// Patroni 2's word for the primary, still written by old members.
        Master => "master",
        /// pgwarden's witness: a Raft vote, no PostgreSQL.
        Witness => "witness",
    }
}

impl Role {
    /// The primary, in Patroni's current or former word.
    pub fn is_primary(&self) -> bool {
        matches!(self, Role::Primary | Role::Master)
    }
}

impl Default for Role {
    fn default() -> Self {
        Role::Other(String::new())
    }
}

patroni_words! {
    /// A replication slot's type (`pg_replication_slots.slot_type`).
    SlotType {
        /// A physical slot (a standby's).
        Physical => "physical",
        /// A logical slot (decoding for a consumer).
        Logical => "logical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips_in_patroni_format() {
        for (text, value) in [
            ("0/0", 0u64),
            ("0/3000148", 0x300_0148),
            ("1/0", 1 << 32),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value));
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap().to_string(), "16/B374D848");
    }

    #[test]
    fn lsn_rejects_malformed_text() {
        for bad in ["", "0", "/0", "0/", "x/1", "1/123456789", "1/2/3"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn lsn_serialises_as_a_string() {
        let json = serde_json::to_string(&Lsn(0x1_0000_00A0)).unwrap();
        assert_eq!(json, "\"1/A0\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(0x1_0000_00A0));
        assert!(serde_json::from_str::<Lsn>("\"zz\"").is_err());
        assert_eq!(serde_json::to_string(&TimelineId(3)).unwrap(), "3");
    }

    /// Patroni's words round-trip exactly, and an unknown word is kept, not refused.
    #[test]
    fn patroni_words_keep_their_strings() {
        for st in MemberState::ALL {
            let text = serde_json::to_string(st).unwrap();
            assert_eq!(serde_json::from_str::<MemberState>(&text).unwrap(), *st);
        }
        assert_eq!(
            serde_json::to_string(&MemberState::CreatingReplica).unwrap(),
            "\"creating replica\""
        );
        assert_eq!(MemberState::ALL.len(), 15);
        assert_eq!(
            serde_json::from_str::<Role>("\"leader\"").unwrap(),
            Role::Other("leader".into())
        );
        assert!(Role::parse("master").is_primary());
        assert_eq!(SlotType::parse("logical"), SlotType::Logical);
        assert_eq!(Role::Replica, "replica");
    }
}
