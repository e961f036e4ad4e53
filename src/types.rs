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
}
