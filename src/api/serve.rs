//! The REST API's listener loop: plain HTTP or TLS (rustls) on a bound listener, each
//! request tagged with [`PeerInfo`] (the allowlist and client-certificate rules need the
//! peer), stopped by a future. Takes a bound listener so tests can use `127.0.0.1:0`.

use super::security::PeerInfo;
use crate::config::{RestApi, VerifyClient};
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client must finish the TLS handshake within this, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, in-flight requests get this long. A switchover request can poll for up to
/// 40 s; it is cut short rather than holding the daemon's exit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS for the REST API (`restapi.certfile`, `keyfile`, `cafile`, `verify_client`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub certfile: PathBuf,
    /// Server private key (PEM, unencrypted).
    pub keyfile: PathBuf,
    /// CA bundle that client certificates must chain to.
    pub cafile: Option<PathBuf>,
    /// Client certificates: not asked for, optional (needed for unsafe requests), required.
    pub verify_client: VerifyClient,
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load `{path}`")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        err: rustls::pki_types::pem::Error,
    },
    /// `restapi.keyfile` is encrypted (`keyfile_password`); rustls needs a plain key.
    #[error(
        "restapi.keyfile_password is set: encrypted private keys are not supported, decrypt the key file"
    )]
    EncryptedKey,
    /// `restapi.certfile` without `keyfile`.
    #[error("restapi.certfile is set but restapi.keyfile is not")]
    NoKeyfile,
    /// `verify_client` needs a CA bundle to verify against.
    #[error("restapi.verify_client is {0:?} but restapi.cafile is not set")]
    NoCafile(VerifyClient),
    /// The CA bundle has no usable certificate.
    #[error("restapi.cafile `{0}` holds no usable CA certificate")]
    BadCa(PathBuf),
    /// rustls refused the certificate, key or verifier.
    #[error("invalid TLS configuration")]
    Rustls(#[source] rustls::Error),
}

impl TlsSettings {
    /// The settings of the `restapi` section; `None` when TLS is off (no certfile).
    pub fn from_config(r: &RestApi) -> Result<Option<TlsSettings>, TlsError> {
        let Some(cert) = &r.certfile else {
            return Ok(None);
        };
        if r.keyfile_password.is_some() {
            return Err(TlsError::EncryptedKey);
        }
        Ok(Some(TlsSettings {
            certfile: cert.clone(),
            keyfile: r.keyfile.clone().ok_or(TlsError::NoKeyfile)?,
            cafile: r.cafile.clone(),
            verify_client: r.verify_client(),
        }))
    }

    /// The rustls server configuration (ring provider, HTTP/1.1 and HTTP/2 by ALPN).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        fn pem(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
            move |err| TlsError::Pem {
                path: path.to_path_buf(),
                err,
            }
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.certfile)
            .map_err(pem(&self.certfile))?
            .collect::<Result<_, _>>()
            .map_err(pem(&self.certfile))?;
        let key = PrivateKeyDer::from_pem_file(&self.keyfile).map_err(pem(&self.keyfile))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?;
        let builder = match self.verify_client {
            VerifyClient::None => builder.with_no_client_auth(),
            mode => {
                let ca = self.cafile.as_ref().ok_or(TlsError::NoCafile(mode))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(pem(ca))? {
                    roots.add(c.map_err(pem(ca))?).map_err(TlsError::Rustls)?;
                }
                if roots.is_empty() {
                    return Err(TlsError::BadCa(ca.clone()));
                }
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let v = if mode == VerifyClient::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let v = v.build().map_err(|_| TlsError::BadCa(ca.clone()))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut cfg = builder.with_single_cert(certs, key).map_err(TlsError::Rustls)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Serves `router` on `listener` (TLS when `tls` is set) until `shutdown` completes, then
/// lets in-flight requests finish for a few seconds. Errors only on bad TLS settings;
/// per-connection failures are logged and do not stop the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsSettings>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TlsError> {
    let acceptor = match &tls {
        Some(t) => Some(TlsAcceptor::from(t.server_config()?)),
        None => None,
    };
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "REST API: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                conns.spawn(connection(tcp, addr, acceptor.clone(), router.clone(), stop.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    stop.cancel();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    stop: CancellationToken,
) {
    match acceptor {
        None => {
            let peer = PeerInfo {
                addr,
                client_cert: false,
            };
            http(tcp, peer, router, stop).await
        }
        Some(a) => {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "REST API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "REST API: TLS handshake timed out");
                    return;
                }
            };
            // With a verifier installed, a presented certificate has been verified.
            let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            http(tls, PeerInfo { addr, client_cert }, router, stop).await
        }
    }
}

async fn http<I>(io: I, peer: PeerInfo, router: Router, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = router.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer);
        req
    });
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The timer enables hyper's header read timeout (slow clients cannot hold a connection).
    builder.http1().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(addr = %peer.addr, error = %e, "REST API: connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
