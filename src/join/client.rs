//! `pgwarden join --token T`: the exchange with the first host, then the member's files.
//!
//! The joiner trusts only a join server whose certificate chain contains the CA whose
//! SHA-256 the token pins, and whose leaf that CA signed for the token's address (not the
//! system roots). Its private key is generated here and never sent. Nothing is written
//! unless the exchange succeeds: the files are staged in memory and renamed into place at
//! the end.

use super::config::{Member, TlsFiles};
use super::files::{self, Staged};
use super::pki::{self, sha256_hex};
use super::token::Token;
use super::wire::{Grant, JoinReply, JoinRequest};
use super::JoinError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// `pgwarden join`'s settings.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    pub token: String,
    /// Default: the host name.
    pub name: Option<String>,
    /// Default: the local address this host uses to reach the join server.
    pub address: Option<String>,
    pub witness: bool,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub raft_port: u16,
    pub restapi_port: u16,
    pub pg_port: u16,
    pub ctl_port: u16,
    pub bin_dir: Option<PathBuf>,
    pub watchdog: Option<String>,
    pub force: bool,
}

/// Trusts a server chain that includes the pinned CA and whose leaf verifies against it.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256_hex(c.as_ref()) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server's certificate chain does not contain the CA the token pins \
                     (wrong token, or not this cluster's join server)"
                        .into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn split_host(addr: &str) -> Result<(String, u16), JoinError> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| JoinError::MalformedToken("the address has no port".into()))?;
    let port = p
        .parse()
        .map_err(|_| JoinError::MalformedToken("the address has no port".into()))?;
    Ok((h.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// The local address of the route to `addr`: what the other members will reach this host
/// at, in the usual case of one network. A UDP "connection" sends nothing.
fn local_address_towards(addr: &str) -> Option<String> {
    let target = std::net::ToSocketAddrs::to_socket_addrs(addr).ok()?.next()?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}

/// Runs the exchange; `progress` is told when the server waits for a third member.
async fn exchange(token: &Token, req: &JoinRequest, progress: &dyn Fn(&str)) -> Result<Grant, JoinError> {
    let (host, _) = split_host(&token.addr)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |reason: String| JoinError::Tls {
        addr: token.addr.clone(),
        reason,
    };
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            pin: token.ca_pin.clone(),
            provider,
        }))
        .with_no_client_auth();
    let name = ServerName::try_from(host).map_err(|e| tls_err(e.to_string()))?;
    let connect = |reason: String| JoinError::Connect {
        addr: token.addr.clone(),
        reason,
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&token.addr),
    )
    .await
    .map_err(|_| connect("no answer within 10 s".into()))?
    .map_err(|e| connect(format!("{e} (is the first host's daemon running?)")))?;
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .map_err(|_| tls_err("no TLS handshake within 10 s".into()))?
    .map_err(|e| tls_err(e.to_string()))?;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut line = serde_json::to_string(req).map_err(|e| connect(e.to_string()))?;
    line.push('\n');
    wr.write_all(line.as_bytes())
        .await
        .map_err(|e| connect(e.to_string()))?;
    wr.flush().await.map_err(|e| connect(e.to_string()))?;
    let mut rd = BufReader::new(rd);
    loop {
        let mut line = String::new();
        // The server waits at most 15 minutes for a third member.
        let n = tokio::time::timeout(Duration::from_secs(16 * 60), rd.read_line(&mut line))
            .await
            .map_err(|_| connect("no answer".into()))?
            .map_err(|e| connect(e.to_string()))?;
        if n == 0 {
            return Err(connect(
                "the server closed the connection without an answer".into(),
            ));
        }
        if line.trim() == "\"Waiting\"" {
            progress(
                "admitted; waiting for a third member to join (a Raft group needs three voters): \
                 run `pgwarden join` on the next host",
            );
            continue;
        }
        return match serde_json::from_str::<JoinReply>(&line) {
            Ok(JoinReply::Granted(g)) => Ok(*g),
            Ok(JoinReply::Refused(why)) => Err(JoinError::Refused(why)),
            Err(e) => Err(connect(format!("malformed answer: {e}"))),
        };
    }
}

/// `pgwarden join`: returns the files written.
pub async fn join(o: &JoinOptions, progress: &dyn Fn(&str)) -> Result<Vec<PathBuf>, JoinError> {
    let token = Token::decode(&o.token)?;
    let name = match &o.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| h.trim().split('.').next().map(str::to_string))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| JoinError::Usage("cannot read the host name: pass --name".into()))?,
    };
    super::init::check_name("name", &name)?;
    let address = match &o.address {
        Some(a) => a.clone(),
        None => local_address_towards(&token.addr).ok_or_else(|| {
            JoinError::Usage(format!(
                "cannot tell this host's address towards {}: pass --address",
                token.addr
            ))
        })?,
    };
    super::init::check_address(&address)?;
    let owner = files::daemon_owner()?;
    let tls = TlsFiles::beside(&o.config);
    let mut staged = Staged::new(owner, o.force);
    for p in [&o.config, &tls.ca, &tls.cert, &tls.key] {
        staged.check_absent(p)?;
    }
    let key = pki::new_key()?;
    let req = JoinRequest {
        secret: token.secret.clone(),
        name: name.clone(),
        address: address.clone(),
        raft_port: o.raft_port,
        witness: o.witness,
        public_key: STANDARD.encode(key.public_key_raw()),
    };
    let grant = exchange(&token, &req, progress).await?;
    if pki::ca_pin(&grant.ca)? != token.ca_pin {
        return Err(JoinError::Refused(
            "the CA the server sent is not the one the token pins".into(),
        ));
    }
    let member = Member {
        scope: grant.scope.clone(),
        namespace: grant.namespace.clone(),
        name,
        address,
        raft_port: o.raft_port,
        restapi_port: o.restapi_port,
        pg_port: o.pg_port,
        ctl_port: o.ctl_port,
        state_dir: o.state_dir.clone(),
        bin_dir: o.bin_dir.clone(),
        witness: o.witness,
        first: false,
        partners: grant.partners.clone(),
        tls: tls.clone(),
        credentials: grant.credentials.clone(),
        watchdog: o.watchdog.clone(),
    };
    staged.dir(&o.state_dir, 0o750);
    staged.file(&o.config, member.render(), 0o600)?;
    staged.file(&tls.ca, grant.ca, 0o644)?;
    staged.file(&tls.cert, grant.certificate, 0o644)?;
    staged.file(&tls.key, key.serialize_pem(), 0o600)?;
    staged.commit()?;
    Ok(vec![o.config.clone(), tls.ca, tls.cert, tls.key])
}
