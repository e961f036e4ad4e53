//! [`ApiState`]: what every REST handler (and the gRPC service through them) shares: the DCS,
//! the member's published state, the request channel into the HA loop, the security rules.

use super::metrics::RaftInfo;
use super::security::Security;
use crate::dcs::Dcs;
use crate::ha::failsafe::FailsafeState;
use crate::ha::requests::ApiRequest;
use crate::ha::status::NodeStatus;
use axum::http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the handlers share.
pub struct ApiState<D: Dcs> {
    /// The loop's last published status.
    pub status: watch::Receiver<NodeStatus>,
    /// The DCS.
    pub dcs: Arc<D>,
    /// `<namespace><scope>/`.
    pub prefix: String,
    /// The member's ttl (liveness).
    pub ttl: Duration,
    /// Requests to the HA loop (restart, reload, reinitialize, wake-up); `None`
    /// until the runner takes them, and those endpoints then answer 503.
    pub requests: Option<mpsc::Sender<ApiRequest>>,
    /// The embedded Raft member's state for /metrics; `None` omits the Raft metrics.
    pub raft: Option<watch::Receiver<RaftInfo>>,
    /// Access rules for unsafe requests.
    pub security: Arc<Security>,
    /// Headers added to every response (`restapi.http_extra_headers`, and
    /// `https_extra_headers` when TLS is on).
    pub extra_headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    /// Failsafe state shared with the HA loop: POST /failsafe is answered here, at once,
    /// even while the loop waits on an unreachable DCS.
    pub failsafe: FailsafeState,
    /// The VIP's state for /patroni and /metrics; `None`: no VIP handle (tests, witness).
    pub vip: Option<crate::vip::Vip>,
}

impl<D: Dcs> Clone for ApiState<D> {
    fn clone(&self) -> Self {
        ApiState {
            status: self.status.clone(),
            dcs: self.dcs.clone(),
            prefix: self.prefix.clone(),
            ttl: self.ttl,
            requests: self.requests.clone(),
            raft: self.raft.clone(),
            security: self.security.clone(),
            extra_headers: self.extra_headers.clone(),
            failsafe: self.failsafe.clone(),
            vip: self.vip.clone(),
        }
    }
}

impl<D: Dcs> ApiState<D> {
    /// A state without request channel, Raft metrics or access rules.
    pub fn new(
        status: watch::Receiver<NodeStatus>,
        dcs: Arc<D>,
        prefix: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        ApiState {
            status,
            dcs,
            prefix: prefix.into(),
            ttl,
            requests: None,
            raft: None,
            security: Arc::new(Security::default()),
            extra_headers: Arc::new(vec![]),
            failsafe: FailsafeState::new(ttl),
            vip: None,
        }
    }

    /// Shares this failsafe state with the HA loop.
    pub fn with_failsafe(mut self, f: FailsafeState) -> Self {
        self.failsafe = f;
        self
    }

    /// Hands actions to the HA loop through `tx` (see [`actions`] for the contract).
    pub fn with_requests(mut self, tx: mpsc::Sender<ApiRequest>) -> Self {
        self.requests = Some(tx);
        self
    }

    /// Shows the VIP's state in /patroni and /metrics.
    pub fn with_vip(mut self, vip: crate::vip::Vip) -> Self {
        self.vip = Some(vip);
        self
    }

    /// Shows the Raft member's state in /metrics.
    pub fn with_raft(mut self, rx: watch::Receiver<RaftInfo>) -> Self {
        self.raft = Some(rx);
        self
    }

    /// Adds these headers to every response.
    pub fn with_extra_headers(mut self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        self.extra_headers = Arc::new(headers);
        self
    }

    /// Guards unsafe requests with these rules.
    pub fn with_security(mut self, s: Security) -> Self {
        self.security = Arc::new(s);
        self
    }
}
