//! `pgwarden init` (the first host: configuration, CA, certificate, credentials, join
//! state, first token) and `pgwarden token create` (another token on that host).

use super::config::{Member, TlsFiles};
use super::files::{self, Staged};
use super::server::{self, MemberRecord, ServerState};
use super::token::{Token, TokenStore};
use super::wire::Credentials;
use super::{pki, JoinError};
use rand::distributions::{Alphanumeric, DistString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `pgwarden init`'s settings.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub scope: String,
    pub name: String,
    pub address: String,
    pub witness: bool,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub raft_port: u16,
    pub restapi_port: u16,
    pub pg_port: u16,
    pub ctl_port: u16,
    pub join_port: u16,
    pub bin_dir: Option<PathBuf>,
    pub watchdog: Option<String>,
    pub token_ttl: Duration,
    pub force: bool,
}

/// What `init` made, for the message the command prints.
pub struct Initialized {
    pub token: String,
    pub written: Vec<PathBuf>,
}

/// A password from the operating system's CSPRNG: 32 alphanumerics (about 190 bits), safe
/// in a pgpass file, a connection string and YAML alike.
pub fn password() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32)
}

/// Checks a scope or member name: it becomes a DCS key part, a certificate's CN and a YAML
/// value, so only `[A-Za-z0-9_.-]`.
pub fn check_name(what: &str, v: &str) -> Result<(), JoinError> {
    if v.is_empty()
        || v.len() > 63
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(JoinError::Usage(format!(
            "{what} {v:?}: use 1 to 63 letters, digits, '_', '.' or '-'"
        )));
    }
    Ok(())
}

/// Checks an address (an IP address or a host name).
pub fn check_address(v: &str) -> Result<(), JoinError> {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    check_name("address", v)
}

/// `pgwarden init`.
pub fn init(o: &InitOptions) -> Result<Initialized, JoinError> {
    check_name("scope", &o.scope)?;
    check_name("name", &o.name)?;
    check_address(&o.address)?;
    if o.witness {
        // The first member is a one-voter cluster until others join, and a witness alone
        // would have nothing to run PostgreSQL (the configuration refuses that).
        return Err(JoinError::Usage(
            "run init on a data node; a witness joins with `pgwarden join --witness`".into(),
        ));
    }
    let owner = files::daemon_owner()?;
    let tls = TlsFiles::beside(&o.config);
    let join_dir = server::join_dir_of_state(&o.state_dir);
    let ca_key_path = tls.ca.with_file_name("ca.key");
    let mut staged = Staged::new(owner, o.force);
    // Everything that would be replaced, refused before anything is generated or written.
    for p in [&o.config, &tls.ca, &ca_key_path, &tls.cert, &tls.key] {
        staged.check_absent(p)?;
    }
    staged.check_absent(&join_dir.join(server::STATE_FILE))?;

    let ca = pki::Ca::create(&o.scope)?;
    let key = pki::new_key()?;
    let cert = ca.issue(&o.name, &pki::member_hosts(&o.address), &key)?;
    let credentials = Credentials {
        superuser: password(),
        replication: password(),
        rewind: password(),
        restapi: password(),
    };
    let member = Member {
        scope: o.scope.clone(),
        namespace: "/service/".into(),
        name: o.name.clone(),
        address: o.address.clone(),
        raft_port: o.raft_port,
        restapi_port: o.restapi_port,
        pg_port: o.pg_port,
        ctl_port: o.ctl_port,
        state_dir: o.state_dir.clone(),
        bin_dir: o.bin_dir.clone(),
        witness: o.witness,
        first: true,
        partners: vec![],
        tls: tls.clone(),
        credentials: credentials.clone(),
        watchdog: o.watchdog.clone(),
    };
    let state = ServerState {
        listen: hostport(&o.address, o.join_port),
        scope: o.scope.clone(),
        namespace: member.namespace.clone(),
        ca_cert: tls.ca.clone(),
        ca_key: ca_key_path.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        raft_addr: member.raft_addr(),
        credentials,
    };
    let members = vec![MemberRecord {
        name: o.name.clone(),
        raft_addr: member.raft_addr(),
        added: true,
    }];
    staged.dir(&o.state_dir, 0o750);
    staged.dir(&join_dir, 0o700);
    staged.file(&o.config, member.render(), 0o600)?;
    staged.file(&tls.ca, ca.cert_pem.clone(), 0o644)?;
    staged.file(&ca_key_path, ca.key_pem(), 0o600)?;
    staged.file(&tls.cert, cert, 0o644)?;
    staged.file(&tls.key, key.serialize_pem(), 0o600)?;
    staged.file(&join_dir.join(server::STATE_FILE), json(&state)?, 0o600)?;
    staged.file(&join_dir.join(server::MEMBERS_FILE), json(&members)?, 0o600)?;
    let written = vec![
        o.config.clone(),
        tls.ca.clone(),
        ca_key_path,
        tls.cert.clone(),
        tls.key.clone(),
        join_dir.clone(),
    ];
    staged.commit()?;
    let token = issue_token(&join_dir, &state, o.token_ttl, owner)?;
    Ok(Initialized { token, written })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, JoinError> {
    serde_json::to_string_pretty(v).map_err(|e| JoinError::Config(e.to_string()))
}

pub(crate) fn hostport(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn issue_token(
    join_dir: &Path,
    state: &ServerState,
    ttl: Duration,
    owner: Option<files::Owner>,
) -> Result<String, JoinError> {
    let ca_pem = std::fs::read_to_string(&state.ca_cert).map_err(JoinError::io(&state.ca_cert))?;
    let secret = TokenStore::new(join_dir).issue(ttl, owner)?;
    Ok(Token {
        addr: state.listen.clone(),
        ca_pin: pki::ca_pin(&ca_pem)?,
        secret,
    }
    .encode())
}

/// `pgwarden token create`: a new token on the host that ran `init`, whose configuration
/// file is `config`.
pub fn create_token(config: &Path, ttl: Duration) -> Result<String, JoinError> {
    let loaded = crate::config::Config::load(config, crate::config::Strictness::Lenient).map_err(|e| {
        JoinError::Config(format!(
            "{}: {}",
            config.display(),
            pgwarden_raft::error_chain(&e)
        ))
    })?;
    let join_dir = server::join_dir_of_raft(&loaded.config.raft.data_dir());
    let state = server::load_state(&join_dir)?.ok_or_else(|| {
        JoinError::Config(format!(
            "{} has no join state: tokens are created on the host that ran `pgwarden init`",
            join_dir.display()
        ))
    })?;
    issue_token(&join_dir, &state, ttl, files::daemon_owner()?)
}

/// Parses a duration such as `3600`, `90s`, `30m` or `1h`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 3600, 90s, 30m or 1h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(n * mult))
}
