//! The join listener of the first host (the one that ran `pgwarden init`, which holds the
//! CA's key), and the Raft additions of the members it admits.
//!
//! The daemon serves it when `<state>/join/server.json` exists (`<state>` is the parent of
//! `raft.data_dir`), on the address `init` recorded there (port 5011 by default). It is a
//! small TLS listener of its own rather than a gRPC method: the admin API stays on loopback
//! with its own access rules, while a joiner has no certificate yet and must reach this
//! host over the network. The server presents the member's certificate and the CA; the
//! joiner pins the CA by the hash in its token.
//!
//! A new member is admitted in two steps. The exchange signs its certificate and records it
//! in `members.json`; then a task here asks the Raft leader to add it (`members add`) until
//! it answers, which happens once it has been started. So the flow is "join, then start",
//! with no command in between. A member that joins while fewer than three voters are known
//! waits in the exchange until a third one joins, because its file lists the others as
//! partners and two voters are refused by the configuration's check.

use super::pki::{self, Ca, MemberKey};
use super::token::TokenStore;
use super::wire::{Credentials, Grant, JoinReply, JoinRequest};
use super::JoinError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwarden_raft::client::{ClientError, RaftClient};
use pgwarden_raft::node::wire::{AdminError, AdminRequest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The join server's settings, written by `init`.
pub const STATE_FILE: &str = "server.json";
/// The members admitted so far.
pub const MEMBERS_FILE: &str = "members.json";

/// How long a joiner waits for a third member before it is refused.
const QUORUM_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long the Raft additions are retried (the member has to be started meanwhile).
const ADD_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// `<state>/join`.
pub fn join_dir_of_state(state_dir: &Path) -> PathBuf {
    state_dir.join("join")
}

/// The join directory of a node whose `raft.data_dir` is `raft_dir` (`<state>/raft`).
pub fn join_dir_of_raft(raft_dir: &Path) -> PathBuf {
    join_dir_of_state(raft_dir.parent().unwrap_or(Path::new("/")))
}

/// What the join server needs, from `init`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerState {
    /// `host:port` the join listener binds (and the token names).
    pub listen: String,
    pub scope: String,
    pub namespace: String,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// This member's certificate and key (the server side of the exchange, and its Raft
    /// client identity when adding members).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// This member's Raft address, where the additions are sent.
    pub raft_addr: String,
    pub credentials: Credentials,
}

/// One admitted member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberRecord {
    pub name: String,
    pub raft_addr: String,
    /// Whether the Raft leader added it.
    pub added: bool,
}

/// The state in `join_dir`, if this host ran `init`.
pub fn load_state(join_dir: &Path) -> Result<Option<ServerState>, JoinError> {
    let path = join_dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| JoinError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JoinError::io(&path)(e)),
    }
}

struct Server {
    dir: PathBuf,
    /// Whether this node's file still says `raft.single_node: true` (as `init` wrote it).
    single_node: bool,
    state: ServerState,
    /// One exchange at a time: the members file is read, checked and rewritten whole.
    lock: Mutex<()>,
    shutdown: CancellationToken,
}

impl Server {
    fn members(&self) -> Result<Vec<MemberRecord>, JoinError> {
        let path = self.dir.join(MEMBERS_FILE);
        let s = std::fs::read_to_string(&path).map_err(JoinError::io(&path))?;
        serde_json::from_str(&s).map_err(|e| JoinError::Config(format!("{}: {e}", path.display())))
    }

    fn save_members(&self, m: &[MemberRecord]) -> Result<(), JoinError> {
        let data = serde_json::to_string_pretty(m).map_err(|e| JoinError::Config(e.to_string()))?;
        super::files::write_now(&self.dir.join(MEMBERS_FILE), data.as_bytes(), 0o600, None)
    }
}

/// Starts the join listener if this node ran `init` (its state directory has the join
/// state). Problems are logged: a node that cannot serve joins still runs. `single_node`:
/// whether the node still runs as the one-voter cluster `init` wrote (no partners taken
/// from the join state yet, see [`joined_partners`]).
pub async fn spawn_if_configured(raft_dir: &Path, single_node: bool, shutdown: CancellationToken) {
    let dir = join_dir_of_raft(raft_dir);
    let state = match load_state(&dir) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("join listener not started: {e}");
            return;
        }
    };
    match start(dir, state, single_node, shutdown).await {
        Ok(()) => {}
        Err(e) => tracing::error!("join listener not started: {e}"),
    }
}

async fn start(
    dir: PathBuf,
    state: ServerState,
    single_node: bool,
    shutdown: CancellationToken,
) -> Result<(), JoinError> {
    use pgwarden_raft::tls;
    let bad = |e: tls::TlsError| JoinError::Config(e.to_string());
    let mut chain = tls::read_certs(&state.cert).map_err(bad)?;
    chain.extend(tls::read_certs(&state.ca_cert).map_err(bad)?);
    let key = tls::read_key(&state.key).map_err(bad)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| JoinError::Config(format!("join listener TLS: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(&state.listen)
        .await
        .map_err(|e| JoinError::Config(format!("cannot listen for joins on {}: {e}", state.listen)))?;
    tracing::info!(addr = %state.listen, "join listener serving (pgwarden join)");
    let server = Arc::new(Server {
        dir,
        single_node,
        state,
        lock: Mutex::new(()),
        shutdown: shutdown.clone(),
    });
    advise_partners(&server);
    // Members admitted before a restart and not yet added.
    for m in server.members()?.into_iter().filter(|m| !m.added) {
        tokio::spawn(add_member(server.clone(), m.raft_addr));
    }
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("join listener: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let server = server.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(&server, acceptor, tcp).await {
                    tracing::warn!(%peer, "join exchange failed: {e}");
                }
            });
        }
    });
    Ok(())
}

async fn serve_one(
    server: &Arc<Server>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<()> {
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let (rd, mut wr) = tokio::io::split(tls);
    let mut line = String::new();
    // A request is a few hundred bytes; a bounded read keeps a stranger from filling memory.
    let mut rd = BufReader::new(tokio::io::AsyncReadExt::take(rd, 64 * 1024));
    tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no request within 10 s"))??;
    let reply = match serde_json::from_str::<JoinRequest>(&line) {
        Ok(req) => exchange(server, req, &mut wr).await,
        Err(e) => JoinReply::Refused(format!("malformed request: {e}")),
    };
    let mut out = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await?;
    wr.shutdown().await
}

/// Checks the request, consumes the token, signs the certificate, records the member and
/// waits for three voters; the reply for the joiner.
async fn exchange<W: tokio::io::AsyncWrite + Unpin>(
    server: &Arc<Server>,
    req: JoinRequest,
    wr: &mut W,
) -> JoinReply {
    let raft_addr = super::init::hostport(&req.address, req.raft_port);
    let admitted = {
        let _one = server.lock.lock().await;
        admit(server, &req, &raft_addr)
    };
    let cert = match admitted {
        Ok(Ok(c)) => c,
        Ok(Err(refusal)) => {
            tracing::warn!(member = %req.name, "join refused: {refusal}");
            return JoinReply::Refused(refusal);
        }
        Err(e) => {
            tracing::error!(member = %req.name, "join failed: {e}");
            return JoinReply::Refused(format!("the join server failed: {e}"));
        }
    };
    tracing::info!(member = %req.name, addr = %raft_addr, witness = req.witness,
        "join: issued a certificate; the member is added to the Raft group once it is started");
    tokio::spawn(add_member(server.clone(), raft_addr.clone()));
    let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
    let mut told = false;
    let partners = loop {
        let members = match server.members() {
            Ok(m) => m,
            Err(e) => return JoinReply::Refused(format!("the join server failed: {e}")),
        };
        if members.len() >= 3 {
            break members
                .into_iter()
                .map(|m| m.raft_addr)
                .filter(|a| *a != raft_addr)
                .collect();
        }
        if !told {
            // A line the joiner shows while it waits; it also keeps the connection alive.
            let _ = wr.write_all(b"\"Waiting\"\n").await;
            let _ = wr.flush().await;
            told = true;
        }
        if tokio::time::Instant::now() >= deadline || server.shutdown.is_cancelled() {
            return JoinReply::Refused(
                "no third member joined within 15 minutes (a Raft group needs three voters); run \
                 `pgwarden join` on another host, then this one again with a new token"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    JoinReply::Granted(Box::new(Grant {
        certificate: cert,
        ca: match std::fs::read_to_string(&server.state.ca_cert) {
            Ok(c) => c,
            Err(e) => return JoinReply::Refused(format!("the join server failed: reading its CA: {e}")),
        },
        scope: server.state.scope.clone(),
        namespace: server.state.namespace.clone(),
        partners,
        credentials: server.state.credentials.clone(),
    }))
}

/// Under the lock: `Ok(Ok(certificate))`, `Ok(Err(refusal for the joiner))` or an error
/// of this host.
fn admit(server: &Server, req: &JoinRequest, raft_addr: &str) -> Result<Result<String, String>, JoinError> {
    for (what, v) in [("name", &req.name), ("address", &req.address)] {
        let checked = if what == "name" {
            super::init::check_name(what, v)
        } else {
            super::init::check_address(v)
        };
        if let Err(e) = checked {
            return Ok(Err(e.to_string()));
        }
    }
    let Ok(raw) = STANDARD.decode(&req.public_key) else {
        return Ok(Err("the public key is not base64".into()));
    };
    let key = match MemberKey::from_raw(raw) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut members = server.members()?;
    if let Some(m) = members
        .iter()
        .find(|m| m.name == req.name || m.raft_addr == raft_addr)
    {
        // Checked before the token is consumed, so the operator can retry with --name.
        return Ok(Err(format!(
            "member {} at {} already joined; choose another --name or --address",
            m.name, m.raft_addr
        )));
    }
    if let Err(refusal) = TokenStore::new(&server.dir).consume(&req.secret)? {
        return Ok(Err(refusal.to_string()));
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(JoinError::io(p));
    let ca = Ca::load(
        &server.state.scope,
        &read(&server.state.ca_cert)?,
        &read(&server.state.ca_key)?,
    )?;
    let cert = ca.issue(&req.name, &pki::member_hosts(&req.address), &key)?;
    members.push(MemberRecord {
        name: req.name.clone(),
        raft_addr: raft_addr.to_string(),
        added: false,
    });
    server.save_members(&members)?;
    Ok(Ok(cert))
}

/// The Raft addresses of the members that joined through this host and were added to the
/// Raft group, when there are at least two (a group of three voters): the partners the first
/// host starts with instead of its file's `raft.single_node: true`, which `init` wrote.
///
/// `single_node` only matters while a node has no Raft state: it then founds a one-voter
/// cluster. Once members have joined, that would be wrong (a wiped `raft.data_dir` would
/// found a second cluster instead of waiting to be added back), but the daemon cannot edit
/// its file (the operator's, read-only under the unit's ProtectSystem). So the daemon reads
/// the partners from the join state it already keeps, in its own state directory, at each
/// start. None when this host did not run `init`, or fewer than two members were added.
pub fn joined_partners(raft_dir: &Path) -> Result<Option<Vec<String>>, JoinError> {
    let dir = join_dir_of_raft(raft_dir);
    let Some(state) = load_state(&dir)? else {
        return Ok(None);
    };
    let path = dir.join(MEMBERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JoinError::io(&path)(e)),
    };
    let members: Vec<MemberRecord> =
        serde_json::from_str(&text).map_err(|e| JoinError::Config(format!("{}: {e}", path.display())))?;
    let partners: Vec<String> = members
        .into_iter()
        .filter(|m| m.added && m.raft_addr != state.raft_addr)
        .map(|m| m.raft_addr)
        .collect();
    Ok((partners.len() >= 2).then_some(partners))
}

/// On a node whose file says `raft.single_node: true`: replaces it by the partners of
/// [`joined_partners`], if any. Returns them. Done at start and at each reload, so the
/// settings derived from the partners (the built-in pg_hba's member hosts) stay the same.
pub fn apply_joined_partners(cfg: &mut crate::config::Config) -> Result<Option<Vec<String>>, JoinError> {
    if !cfg.raft.single_node {
        return Ok(None);
    }
    let Some(partners) = joined_partners(&cfg.raft.data_dir())? else {
        return Ok(None);
    };
    let addrs = partners
        .iter()
        .map(|p| {
            crate::config::HostPort::parse(p)
                .map_err(|e| JoinError::Config(format!("a joined member's Raft address {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    cfg.raft.single_node = false;
    cfg.raft.partner_addrs = addrs;
    Ok(Some(partners))
}

/// Once two members have been added, the next start of this daemon uses them as its Raft
/// partners (see [`joined_partners`]); said once, so the operator knows the file's
/// `single_node: true` no longer decides anything.
fn advise_partners(server: &Server) {
    if !server.single_node {
        return;
    }
    let Ok(members) = server.members() else { return };
    let partners: Vec<&str> = members
        .iter()
        .filter(|m| m.added && m.raft_addr != server.state.raft_addr)
        .map(|m| m.raft_addr.as_str())
        .collect();
    if partners.len() >= 2 {
        tracing::info!(
            partners = %partners.join(", "),
            "the cluster has grown to three voters: from its next start this node takes its Raft \
             partners from the join state (the file's `single_node: true` only founded the cluster)"
        );
    }
}

/// Asks the Raft leader (through this member) to add `addr` until it is a voter. The
/// leader's addition needs the new member to answer, so this waits for it to be started.
async fn add_member(server: Arc<Server>, addr: String) {
    let st = &server.state;
    let tls = match pgwarden_raft::tls::PeerTls::from_files(&st.cert, &st.key, &st.ca_cert) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(%addr, "cannot add the joined member to the Raft group: {e}");
            return;
        }
    };
    let client = RaftClient::new(vec![st.raft_addr.clone()], Duration::from_secs(60))
        .with_tls(Some(tls.client_config()));
    let until = tokio::time::Instant::now() + ADD_RETRY_FOR;
    let mut last = String::new();
    while tokio::time::Instant::now() < until && !server.shutdown.is_cancelled() {
        let r = client
            .admin(AdminRequest::AddMember {
                addr: addr.clone(),
                replace: false,
            })
            .await;
        match r {
            Ok(_) | Err(ClientError::Admin(AdminError::AlreadyMember(_))) => {
                tracing::info!(%addr, "joined member added to the Raft group");
                let _one = server.lock.lock().await;
                if let Ok(mut m) = server.members() {
                    m.iter_mut()
                        .filter(|m| m.raft_addr == addr)
                        .for_each(|m| m.added = true);
                    if let Err(e) = server.save_members(&m) {
                        tracing::warn!("join: recording the addition: {e}");
                    }
                }
                advise_partners(&server);
                return;
            }
            Err(e) => {
                let e = e.to_string();
                if e != last {
                    tracing::info!(%addr, "joined member not added yet (is it started?): {e}");
                    last = e;
                }
            }
        }
        tokio::select! {
            _ = server.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_state(state_dir: &Path, members: &[(&str, &str, bool)]) {
        let dir = join_dir_of_state(state_dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = ServerState {
            listen: "10.0.0.1:5011".into(),
            scope: "s".into(),
            namespace: "/service/".into(),
            ca_cert: "ca.pem".into(),
            ca_key: "ca.key".into(),
            cert: "node.pem".into(),
            key: "node.key".into(),
            raft_addr: "10.0.0.1:5010".into(),
            credentials: Credentials {
                superuser: "a".into(),
                replication: "b".into(),
                rewind: "c".into(),
                restapi: "d".into(),
            },
        };
        std::fs::write(dir.join(STATE_FILE), serde_json::to_string(&state).unwrap()).unwrap();
        let m: Vec<MemberRecord> = members
            .iter()
            .map(|(n, a, added)| MemberRecord {
                name: n.to_string(),
                raft_addr: a.to_string(),
                added: *added,
            })
            .collect();
        std::fs::write(dir.join(MEMBERS_FILE), serde_json::to_string(&m).unwrap()).unwrap();
    }

    #[test]
    fn partners_come_from_the_join_state_once_two_members_were_added() {
        let d = tempfile::tempdir().unwrap();
        let raft = d.path().join("raft");
        // Not the host that ran init.
        assert_eq!(joined_partners(&raft).unwrap(), None);
        let me = ("host1", "10.0.0.1:5010", true);
        let two = ("host2", "10.0.0.2:5010", true);
        write_state(d.path(), &[me, two, ("host3", "10.0.0.3:5010", false)]);
        // One added member: still the one-voter cluster init founded (plus one).
        assert_eq!(joined_partners(&raft).unwrap(), None);
        write_state(d.path(), &[me, two, ("host3", "10.0.0.3:5010", true)]);
        assert_eq!(
            joined_partners(&raft).unwrap(),
            Some(vec!["10.0.0.2:5010".to_string(), "10.0.0.3:5010".to_string()])
        );
    }

    #[test]
    fn a_damaged_members_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        write_state(d.path(), &[]);
        let path = join_dir_of_state(d.path()).join(MEMBERS_FILE);
        std::fs::write(&path, "{not json").unwrap();
        let e = joined_partners(&d.path().join("raft")).unwrap_err().to_string();
        assert!(e.contains("members.json"), "{e}");
    }
}
