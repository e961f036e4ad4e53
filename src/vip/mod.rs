//! The built-in virtual IP (issue 19): one address that follows the leader lease.
//!
//! # What this module owns
//! - the `vip:` section of the local file ([`config::Vip`]) and its checked form ([`VipSpec`]);
//! - the narrow [`VipDriver`] trait (add, remove, announce, look) and its production
//!   implementation over rtnetlink with gratuitous ARP ([`netlink::NetlinkDriver`], [`arp`]);
//! - [`Vip`], the one handle every remover shares: the keeper task, the fence thread (when the
//!   lease's deadline passes) and daemon shutdown all remove through it, under one lock, so
//!   an add can never slip in between a removal and the state that caused it;
//! - the keeper ([`keeper::keep`]) and its pure decision ([`keeper::decide`]): hold the address
//!   exactly while this member holds the leader key, its lease has not run out, and PostgreSQL
//!   runs as a writable primary.
//!
//! The fence guard (the dead-man's switch beside the postmaster, [`crate::ha::deadman`]) is
//! given the address and interface on its command line and removes the address itself when it
//! fires, so the address goes with the fence even when the daemon is dead.

pub mod arp;
pub mod config;
pub mod keeper;
pub mod ndp;
pub mod netlink;

pub use config::{Vip as VipConfig, VipSpec};

use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Why the VIP could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// A `vip.*` key has a value that cannot work.
    #[error("{key}: {why}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// `vip.interface` names no interface of this host (network namespace).
    #[error("vip.interface: there is no interface `{name}` on this host")]
    NoInterface {
        /// The name.
        name: String,
    },
    /// The kernel refused: the process lacks `CAP_NET_ADMIN` (netlink) or `CAP_NET_RAW` (ARP).
    #[error(
        "cannot {what}: permission denied; pgwarden needs CAP_NET_ADMIN and CAP_NET_RAW to manage the VIP (see docs/vip.md)"
    )]
    Permission {
        /// What was tried.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// Any other netlink or socket error.
    #[error("cannot {what}")]
    Netlink {
        /// What was tried.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

/// What changes the host's addresses. Narrow so that the decision logic is tested with a fake.
pub trait VipDriver: Send + Sync {
    /// Whether the address is on the interface now.
    fn holds(&self, spec: &VipSpec) -> Result<bool, VipError>;
    /// Adds the address (already there is success).
    fn add(&self, spec: &VipSpec) -> Result<(), VipError>;
    /// Removes the address; false when it was not there.
    fn remove(&self, spec: &VipSpec) -> Result<bool, VipError>;
    /// Sends one announcement (gratuitous ARP for IPv4).
    fn announce(&self, spec: &VipSpec) -> Result<(), VipError>;
    /// Whether the address lies in one of the interface's other subnets (a warning if not).
    fn in_subnet(&self, spec: &VipSpec) -> Result<bool, VipError>;
}

/// What `/patroni` shows as `vip` and `/metrics` as `pgwarden_vip_*` (absent: no VIP configured).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VipReport {
    /// `address/prefix`.
    pub address: String,
    /// The interface.
    pub interface: String,
    /// This member has the address on its interface.
    pub held: bool,
    /// Why the address cannot be managed (missing capability, no interface), if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What readers see: the spec, whether the address is held, the last error.
type View = (Option<VipSpec>, bool, Option<String>);

struct State {
    spec: Option<VipSpec>,
    held: bool,
    error: Option<String>,
}

/// The shared VIP handle (see the module documentation); clones share it.
///
/// Two locks: `ops` is held across each driver call, so that adds and removals (keeper,
/// fence thread, reload) happen one at a time; `view` is a copy of the state updated at the
/// end of each, which the REST API and the keeper's checks read without ever waiting on a
/// driver call (a runtime worker must never block behind netlink).
#[derive(Clone)]
pub struct Vip {
    driver: Arc<dyn VipDriver>,
    ops: Arc<Mutex<State>>,
    view: Arc<Mutex<View>>,
}

/// The operation lock: its state is published to the view when it is dropped.
struct Op<'a> {
    state: std::sync::MutexGuard<'a, State>,
    view: &'a Mutex<View>,
}

impl std::ops::Deref for Op<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Op<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let s = &self.state;
        *lock(self.view) = (s.spec.clone(), s.held, s.error.clone());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vip {
    /// A handle using `driver`, with no address configured yet.
    pub fn new(driver: Arc<dyn VipDriver>) -> Self {
        Vip {
            driver,
            ops: Arc::new(Mutex::new(State {
                spec: None,
                held: false,
                error: None,
            })),
            view: Arc::new(Mutex::new((None, false, None))),
        }
    }

    fn lock(&self) -> Op<'_> {
        Op {
            state: lock(&self.ops),
            view: &self.view,
        }
    }

    /// The configured address, if any.
    pub fn spec(&self) -> Option<VipSpec> {
        lock(&self.view).0.clone()
    }

    /// The state for the REST API and the metrics.
    pub fn report(&self) -> Option<VipReport> {
        let v = lock(&self.view);
        v.0.as_ref().map(|spec| VipReport {
            address: spec.cidr(),
            interface: spec.interface.clone(),
            held: v.1,
            error: v.2.clone(),
        })
    }

    /// Whether this member holds the address (as far as pgwarden knows).
    pub fn held(&self) -> bool {
        lock(&self.view).1
    }

    /// The command-line arguments that hand the address to the fence guard.
    pub fn guard_args(&self) -> Vec<String> {
        match self.spec() {
            Some(s) => vec![
                "--vip-address".into(),
                s.cidr(),
                "--vip-interface".into(),
                s.interface,
            ],
            None => vec![],
        }
    }

    /// Configures `spec` (a start or a reload). A changed address or interface is removed
    /// first if held; the keeper adds the new one on its next look if it should.
    pub fn configure(&self, spec: Option<VipSpec>) {
        let mut s = self.lock();
        if s.spec == spec {
            return;
        }
        if let (true, Some(old)) = (s.held, s.spec.clone()) {
            match self.driver.remove(&old) {
                Ok(_) => {
                    tracing::info!(vip = %old.cidr(), interface = %old.interface, "VIP removed: the configuration changed");
                    s.held = false;
                }
                Err(e) => tracing::error!(vip = %old.cidr(), "{}", pgwarden_raft::error_chain(&e)),
            }
        }
        if let Some(new) = &spec {
            match self.driver.in_subnet(new) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    vip = %new.cidr(),
                    interface = %new.interface,
                    "vip.address: the address is in none of the interface's subnets; clients on the segment may not reach it"
                ),
                Err(e) => tracing::warn!("{}", pgwarden_raft::error_chain(&e)),
            }
        }
        s.spec = spec;
        s.error = None;
    }

    /// Adds the address if it is not held. Returns true when it was added now.
    pub fn add(&self, why: &str) -> bool {
        let mut s = self.lock();
        let Some(spec) = s.spec.clone() else { return false };
        if s.held {
            return false;
        }
        match self.driver.add(&spec) {
            Ok(()) => {
                s.held = true;
                s.error = None;
                tracing::info!(vip = %spec.cidr(), interface = %spec.interface, reason = why, "VIP added");
                true
            }
            Err(e) => {
                let text = pgwarden_raft::error_chain(&e);
                if s.error.as_deref() != Some(text.as_str()) {
                    tracing::error!(vip = %spec.cidr(), "VIP not added: {text}; running without the VIP");
                }
                s.error = Some(text);
                false
            }
        }
    }

    /// Removes the address (also when pgwarden does not think it holds it: a leftover from an
    /// earlier run is removed the same way). Logs `why` when an address was removed.
    pub fn remove(&self, why: &str) {
        let mut s = self.lock();
        let Some(spec) = s.spec.clone() else { return };
        match self.driver.remove(&spec) {
            Ok(was) => {
                s.held = false;
                if was {
                    tracing::info!(vip = %spec.cidr(), interface = %spec.interface, reason = why, "VIP removed");
                }
            }
            Err(e) => {
                let text = pgwarden_raft::error_chain(&e);
                if s.error.as_deref() != Some(text.as_str()) {
                    tracing::error!(vip = %spec.cidr(), reason = why, "VIP not removed: {text}");
                }
                s.error = Some(text);
            }
        }
    }

    /// Removes the address only if pgwarden holds it (the cheap path the keeper takes on
    /// every look).
    pub fn release(&self, why: &str) {
        if self.held() {
            self.remove(why);
        }
    }

    /// Sends one announcement while the address is held. Without the operation lock: an
    /// announcement never delays a removal.
    pub fn announce(&self) {
        let (Some(spec), true) = (self.spec(), self.held()) else {
            return;
        };
        if let Err(e) = self.driver.announce(&spec) {
            tracing::warn!(vip = %spec.cidr(), "{}", pgwarden_raft::error_chain(&e));
        }
    }

    /// At start: whether the address is already on the interface (left by an earlier run).
    pub fn adopt(&self) -> bool {
        let mut s = self.lock();
        let Some(spec) = s.spec.clone() else { return false };
        match self.driver.holds(&spec) {
            Ok(h) => {
                s.held = h;
                h
            }
            Err(e) => {
                let text = pgwarden_raft::error_chain(&e);
                tracing::error!(vip = %spec.cidr(), "{text}");
                s.error = Some(text);
                false
            }
        }
    }
}
