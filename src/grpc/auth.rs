//! Access to the admin API: a bearer token (`ctl.auth_token`) or a client certificate the
//! TLS layer verified against `ctl.cacert`. A member with neither configured serves
//! everyone who can reach `ctl.listen`, which the config only allows on loopback.

use std::sync::Arc;
use tonic::{Request, Status};

/// The access rule, checked on every call.
#[derive(Clone, Default)]
pub struct AdminAuth {
    token: Option<Arc<str>>,
}

impl AdminAuth {
    /// Requires `token` when set.
    pub fn new(token: Option<String>) -> Self {
        AdminAuth {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    /// Whether the call may proceed.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        // A client certificate reaches this point only after the TLS handshake verified
        // it against ctl.cacert, so presenting one is authentication enough.
        if req.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Ok(());
        }
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => {
                tracing::warn!(%peer, "admin API: refused a call with a wrong bearer token");
                Err(Status::unauthenticated(
                    "wrong bearer token: the token does not match this member's ctl.auth_token",
                ))
            }
            None => {
                tracing::warn!(%peer, "admin API: refused a call without credentials");
                Err(Status::unauthenticated(
                    "this member requires a bearer token (ctl.auth_token) or a client certificate",
                ))
            }
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    /// No token configured: open. Token configured: exact bearer match only.
    #[test]
    fn bearer_token_is_required_when_configured() {
        assert!(AdminAuth::new(None).check(&req(None)).is_ok());
        let a = AdminAuth::new(Some("s3cret".into()));
        assert!(a.check(&req(Some("Bearer s3cret"))).is_ok());
        let e = a.check(&req(Some("Bearer s3cre"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("wrong bearer token"));
        let e = a.check(&req(None)).unwrap_err();
        assert!(e.message().contains("requires a bearer token"));
        assert!(a.check(&req(Some("Basic s3cret"))).is_err());
    }
}
