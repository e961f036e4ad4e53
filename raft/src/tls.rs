//! TLS for gRPC traffic (rustls, ring): loading PEM files, the server side (a stream of
//! handshaken connections for tonic's `serve_with_incoming`, each refused handshake logged
//! with the peer address and the reason) and the client side (a connector for tonic
//! channels that logs why a server was not trusted).
//!
//! Between Raft peers TLS is mutual: a node presents its certificate as a server and as a
//! client, and accepts only certificates signed by the cluster's CA. Peers are addressed by
//! IP:port, so a node's certificate needs an IP subject alternative name for the address
//! in `raft.self_addr` (a DNS name when `self_addr` is a host name).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;

/// A client must finish the TLS handshake within this, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same failure to the same peer is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A server-side TLS connection, as tonic takes it (it implements `Connected`, so calls
/// see the peer address and the client certificate).
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Why TLS material could not be loaded or used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the kind wanted.
    #[error("`{}` holds no usable {what}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// "PEM certificate", "PEM private key", "CA certificate".
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the certificate, key or verifier.
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[source] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates (a chain: leaf first) in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let bad = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        what: "PEM certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The (unencrypted) private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: "PEM private key",
        reason: e.to_string(),
    })
}

/// The CA certificates in a PEM bundle.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = read_certs(path)?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which client certificates a server asks for.
pub enum ClientAuth {
    /// None.
    None,
    /// One signed by these roots; connections without one are refused.
    Required(RootCertStore),
}

/// A gRPC server configuration (HTTP/2 by ALPN).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let builder = match clients {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required(roots) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(TlsError::Rustls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// A gRPC client configuration trusting `roots`, presenting `identity` when given.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(TlsError::Rustls)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Mutual TLS between Raft peers: the node's certificate and key, and the cluster's CA
/// that every peer's certificate (server and client side) must be signed by.
#[derive(Clone)]
pub struct PeerTls {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// From parsed material: the node's chain and key, and the cluster's CA bundle.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: RootCertStore,
    ) -> Result<PeerTls, TlsError> {
        let client = client_config(roots.clone(), Some((certs.clone(), key.clone_key())))?;
        let server = server_config(certs, key, ClientAuth::Required(roots))?;
        Ok(PeerTls { server, client })
    }

    /// From PEM files: certificate chain, private key, CA bundle.
    pub fn from_files(certfile: &Path, keyfile: &Path, cafile: &Path) -> Result<PeerTls, TlsError> {
        PeerTls::new(read_certs(certfile)?, read_key(keyfile)?, read_roots(cafile)?)
    }

    /// The client side alone (a process that is not a member, e.g. a DCS client).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The server side alone.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

/// Accepts TCP connections on `listener` (TCP_NODELAY on), does the TLS handshakes
/// concurrently and yields the connections that completed one. A refused handshake is
/// logged: "refused a {what} connection from ADDR: TLS handshake failed: REASON". The
/// accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    what: &'static str,
) -> ReceiverStream<Result<ServerStream, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Nagle off, or every reply waits for the peer's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(s)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %addr, "refused a {what} connection from {addr}: TLS handshake failed: {e}")
                    }
                    Err(_) => {
                        tracing::warn!(peer = %addr, "refused a {what} connection from {addr}: TLS handshake timed out")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Logs a failure to a peer once, then again only if it changes or [`LOG_EVERY`] passed,
/// so a peer that keeps failing the handshake does not flood the log.
#[derive(Clone, Default)]
struct Throttle(Arc<Mutex<HashMap<String, (String, Instant)>>>);

impl Throttle {
    fn should_log(&self, addr: &str, reason: &str) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match m.get(addr) {
            Some((r, at)) if r == reason && now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                m.insert(addr.to_string(), (reason.to_string(), now));
                true
            }
        }
    }
}

/// A tonic connector that dials TCP (TCP_NODELAY on) and does the TLS handshake with
/// `config`, verifying the server's certificate for the host in the URI (an IP address
/// needs an IP SAN). A failed handshake is logged with the reason and fails the
/// connection with "cannot connect over TLS to ADDR: REASON". Use with an `http://` URI:
/// TLS is done here, not by tonic.
pub fn connector(
    config: Arc<ClientConfig>,
    what: &'static str,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let throttle = Throttle::default();
    tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let connector = TlsConnector::from(config.clone());
        let throttle = throttle.clone();
        async move {
            let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
            let host = uri.host().ok_or_else(|| invalid("no host in the address"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().ok_or_else(|| invalid("no port in the address"))?;
            let addr = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port).to_string(),
                Err(_) => format!("{host}:{port}"),
            };
            let tcp = TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.clone()).map_err(|e| invalid(&e.to_string()))?;
            match connector.connect(name, tcp).await {
                Ok(s) => Ok(hyper_util::rt::TokioIo::new(s)),
                Err(e) => {
                    let reason = e.to_string();
                    if throttle.should_log(&addr, &reason) {
                        tracing::warn!(peer = %addr, "TLS handshake with {what} {addr} failed: {reason}");
                    }
                    Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot connect over TLS to {addr}: {reason}"),
                    ))
                }
            }
        }
    })
}
