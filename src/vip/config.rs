//! The `vip:` section of the local configuration file, and its parsed, checked form
//! ([`VipSpec`]) that the keeper and the drivers use.

use super::VipError;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// How many gratuitous ARPs an added address is announced with, unless `vip.arp_count` says.
pub const ARP_COUNT: u32 = 3;
/// The gap between two announcements, unless `vip.arp_interval_ms` says.
pub const ARP_INTERVAL_MS: u64 = 200;

/// `vip:` as written in the file (loaded with the rest; checked by [`Vip::spec`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Vip {
    /// `address/prefix`, e.g. `10.0.0.10/24` (IPv4 or IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The interface the address is added to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The address's label (IPv4 only; the kernel wants it to start with the interface name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Gratuitous ARPs sent after the address is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_count: Option<u32>,
    /// Milliseconds between two of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_interval_ms: Option<u64>,
    /// Which member holds it: `primary` (the only value accepted, see the key table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

/// A checked `vip:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The interface.
    pub interface: String,
    /// The label, if any.
    pub label: Option<String>,
    /// Gratuitous ARPs (IPv4) after an add.
    pub arp_count: u32,
    /// Between two of them.
    pub arp_interval: Duration,
    /// `vip.on: standby_leader`: the address follows the standby leader of a standby cluster
    /// instead of the writable primary.
    pub on_standby_leader: bool,
}

impl VipSpec {
    /// `address/prefix`, as the status shows it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

impl Vip {
    /// Whether the section sets anything at all (an empty `vip:` means no VIP).
    pub fn is_set(&self) -> bool {
        *self != Vip::default()
    }

    /// The checked section: `None` when no VIP is configured. Errors name the key.
    pub fn spec(&self) -> Result<Option<VipSpec>, VipError> {
        if !self.is_set() {
            return Ok(None);
        }
        let bad = |key: &'static str, why: String| VipError::Config { key, why };
        let address = self
            .address
            .as_deref()
            .ok_or_else(|| bad("vip.address", "required when a `vip` section is set".into()))?;
        let (ip, prefix) = address.split_once('/').ok_or_else(|| {
            bad(
                "vip.address",
                format!("`{address}`: write it as address/prefix, e.g. 10.0.0.10/24"),
            )
        })?;
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| bad("vip.address", format!("`{ip}` is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.trim().parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            bad(
                "vip.address",
                format!("`{prefix}` is not a prefix length (0 to {max})"),
            )
        })?;
        let interface = self
            .interface
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("vip.interface", "required when a `vip` section is set".into()))?;
        // IFNAMSIZ is 16 with the terminating NUL.
        if interface.len() > 15 || interface.contains(['/', ' ']) {
            return Err(bad(
                "vip.interface",
                format!("`{interface}` is not an interface name"),
            ));
        }
        if let Some(l) = &self.label {
            if l.len() > 15 || !l.starts_with(interface.as_str()) {
                return Err(bad(
                    "vip.label",
                    format!(
                        "`{l}` must start with the interface name `{interface}` and be at most 15 characters"
                    ),
                ));
            }
            if addr.is_ipv6() {
                return Err(bad("vip.label", "labels exist for IPv4 addresses only".into()));
            }
        }
        // Any other value of `vip.on` is refused by the key table (config::keys) when the file
        // loads.
        let on_standby_leader = self
            .on
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("standby_leader"));
        Ok(Some(VipSpec {
            addr,
            prefix,
            interface,
            label: self.label.clone(),
            arp_count: self.arp_count.unwrap_or(ARP_COUNT),
            arp_interval: Duration::from_millis(self.arp_interval_ms.unwrap_or(ARP_INTERVAL_MS)),
            on_standby_leader,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(address: &str, interface: &str) -> Vip {
        Vip {
            address: Some(address.into()),
            interface: Some(interface.into()),
            ..Vip::default()
        }
    }

    #[test]
    fn vip_config_parses_and_defaults() {
        let s = vip("10.0.0.10/24", "eth0").spec().unwrap().unwrap();
        assert_eq!(s.cidr(), "10.0.0.10/24");
        assert_eq!(s.arp_count, ARP_COUNT);
        assert_eq!(s.arp_interval, Duration::from_millis(ARP_INTERVAL_MS));
        assert_eq!(Vip::default().spec().unwrap(), None);
        let v6 = vip("fd00::10/64", "eth0").spec().unwrap().unwrap();
        assert!(v6.addr.is_ipv6());
    }

    #[test]
    fn vip_config_errors_name_the_key() {
        let key = |v: Vip| match v.spec() {
            Err(VipError::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(vip("10.0.0.10", "eth0")), "vip.address");
        assert_eq!(key(vip("10.0.0.10/33", "eth0")), "vip.address");
        assert_eq!(key(vip("nonsense/24", "eth0")), "vip.address");
        assert_eq!(key(vip("10.0.0.10/24", "")), "vip.interface");
        let mut v = vip("10.0.0.10/24", "eth0");
        v.interface = None;
        assert_eq!(key(v), "vip.interface");
        let mut v = vip("10.0.0.10/24", "eth0");
        v.label = Some("other:1".into());
        assert_eq!(key(v), "vip.label");
        let mut v = vip("10.0.0.10/24", "eth0");
        v.on = Some("primary".into());
        assert!(v.spec().is_ok());
    }
}
