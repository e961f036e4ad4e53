//! Who may call the unsafe endpoints (every method but GET, HEAD and OPTIONS), in Patroni's
//! order: the allowlist (403 "Access is denied"), a client certificate when TLS asks for
//! one (403 "client certificate required"), then Basic auth (401 with WWW-Authenticate).

use super::error::ApiError;
use crate::config::{RestApi, VerifyClient};
use base64::Engine;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// What the connection tells about the caller; the server inserts it into every request.
/// A request without it (a test calling the router directly) counts as an unknown address
/// without a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// The TLS client presented a certificate the CA bundle verified.
    pub client_cert: bool,
}

/// The access rules for unsafe requests.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The exact `Authorization` value accepted, `Basic base64(user:password)`; `None`
    /// turns Basic auth off.
    pub basic_auth: Option<String>,
    /// Networks allowed to call unsafe endpoints; empty allows everyone (unless
    /// `allowlist_include_members` is set, which then allows only members).
    pub allowlist: Vec<IpNet>,
    /// Also allow the hosts of the members' `api_url`s (read from the DCS per request).
    pub allowlist_include_members: bool,
    /// TLS with `verify_client: optional|required`: unsafe requests need a client certificate.
    pub require_client_cert: bool,
}

impl Security {
    /// Basic auth with these credentials.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.basic_auth = Some(format!("Basic {token}"));
        self
    }

    /// The rules of the `restapi` section. Host names in `allowlist` are resolved once, here;
    /// one that does not resolve is skipped with a warning, as Patroni does.
    pub fn from_config(r: &RestApi) -> Security {
        let mut s = Security::default();
        if let Some(auth) = &r.authentication {
            if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
                s = s.with_basic_auth(u, p);
            }
        }
        for entry in r.allowlist.iter().flatten() {
            let nets = parse_allow_entry(entry);
            if nets.is_empty() {
                tracing::warn!(entry = %entry, "restapi.allowlist: entry is neither an address, a network nor a resolvable host; skipped");
            }
            s.allowlist.extend(nets);
        }
        s.allowlist_include_members = r.allowlist_include_members.unwrap_or(false);
        s.require_client_cert = r.certfile.is_some() && r.verify_client() != VerifyClient::None;
        s
    }

    /// Whether some allowlist is in force.
    pub fn has_allowlist(&self) -> bool {
        !self.allowlist.is_empty() || self.allowlist_include_members
    }

    /// Checks an unsafe request. `member_ips` are the members' API addresses, used only
    /// with `allowlist_include_members`.
    pub fn check(
        &self,
        peer: Option<&PeerInfo>,
        authorization: Option<&str>,
        member_ips: &[IpAddr],
    ) -> Result<(), ApiError> {
        if self.has_allowlist() {
            let ip = peer.map(|p| p.addr.ip().to_canonical());
            let allowed = ip.is_some_and(|ip| {
                self.allowlist.iter().any(|n| n.contains(&ip))
                    || (self.allowlist_include_members && member_ips.iter().any(|m| m.to_canonical() == ip))
            });
            if !allowed {
                return Err(ApiError::Forbidden("Access is denied"));
            }
        }
        if self.require_client_cert && !peer.is_some_and(|p| p.client_cert) {
            return Err(ApiError::Forbidden("client certificate required"));
        }
        if let Some(expected) = &self.basic_auth {
            let Some(got) = authorization else {
                return Err(ApiError::Unauthorized("no auth header received"));
            };
            if !constant_time_eq(got.trim().as_bytes(), expected.as_bytes()) {
                return Err(ApiError::Unauthorized("not authenticated"));
            }
        }
        Ok(())
    }
}

/// An allowlist entry: an address, a CIDR network or a host name.
fn parse_allow_entry(entry: &str) -> Vec<IpNet> {
    let e = entry.trim();
    if let Ok(n) = e.parse::<IpNet>() {
        return vec![n.trunc()];
    }
    if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
        return vec![IpNet::from(ip)];
    }
    (e, 0)
        .to_socket_addrs()
        .map(|it| it.map(|a| IpNet::from(a.ip().to_canonical())).collect())
        .unwrap_or_default()
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed
/// credential was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The host of an `api_url` (`http://host:port/patroni`) as an address, if it is one.
pub fn api_url_ip(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    host.trim_matches(['[', ']']).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> PeerInfo {
        PeerInfo {
            addr: SocketAddr::new(ip.parse().unwrap(), 5000),
            client_cert: false,
        }
    }

    /// Allowlist before auth; CIDRs, single addresses and IPv4-mapped IPv6 callers match.
    #[test]
    fn allowlist_then_basic_auth() {
        let mut s = Security::default().with_basic_auth("u", "p");
        s.allowlist = vec![
            parse_allow_entry("10.0.0.0/8")[0],
            parse_allow_entry("127.0.0.1")[0],
        ];
        let good = s.basic_auth.clone().unwrap();
        assert!(s.check(Some(&peer("10.1.2.3")), Some(&good), &[]).is_ok());
        assert!(s.check(Some(&peer("::ffff:127.0.0.1")), Some(&good), &[]).is_ok());
        assert!(matches!(
            s.check(Some(&peer("192.168.0.1")), Some(&good), &[]),
            Err(ApiError::Forbidden("Access is denied"))
        ));
        assert!(matches!(
            s.check(None, Some(&good), &[]),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            s.check(Some(&peer("10.1.2.3")), None, &[]),
            Err(ApiError::Unauthorized("no auth header received"))
        ));
        assert!(matches!(
            s.check(Some(&peer("10.1.2.3")), Some("Basic dTp4"), &[]),
            Err(ApiError::Unauthorized("not authenticated"))
        ));
        s.allowlist.clear();
        s.allowlist_include_members = true;
        let m: IpAddr = "192.168.0.1".parse().unwrap();
        assert!(s.check(Some(&peer("192.168.0.1")), Some(&good), &[m]).is_ok());
        assert_eq!(
            api_url_ip("http://[::1]:8008/patroni"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            api_url_ip("http://10.0.0.1:8008/patroni"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(api_url_ip("http://db1:8008/patroni"), None);
    }
}
