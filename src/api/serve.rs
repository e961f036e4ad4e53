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
    /// `restapi.ciphers`: an OpenSSL cipher string (see [`cipher_suites`]); `None` keeps
    /// rustls' defaults.
    pub ciphers: Option<String>,
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
    /// `restapi.ciphers` names something pgwarden cannot map, or selects no suite.
    #[error("restapi.ciphers: {0}")]
    Ciphers(String),
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
            ciphers: r.ciphers.clone(),
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
        // First, so a bad cipher string is reported as such even before the files are read.
        let suites = self
            .ciphers
            .as_deref()
            .map(cipher_suites)
            .transpose()
            .map_err(TlsError::Ciphers)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.certfile)
            .map_err(pem(&self.certfile))?
            .collect::<Result<_, _>>()
            .map_err(pem(&self.certfile))?;
        let key = PrivateKeyDer::from_pem_file(&self.keyfile).map_err(pem(&self.keyfile))?;
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = suites {
            provider.cipher_suites = suites;
        }
        let provider = Arc::new(provider);
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

/// What one cipher suite of rustls' ring provider is, in OpenSSL's vocabulary: its name
/// and the words of a cipher string that select it.
fn suite_words(s: &rustls::SupportedCipherSuite) -> (&'static str, &'static [&'static str]) {
    use rustls::CipherSuite as C;
    const T13: &[&str] = &["TLSv1.3", "HIGH", "ALL", "DEFAULT", "AEAD"];
    match s.suite() {
        C::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", T13),
        C::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", T13),
        C::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", T13),
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => (
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA", "aECDSA", "AES", "AES256", "AESGCM", "SHA384",
            ],
        ),
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => (
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA", "aECDSA", "AES", "AES128", "AESGCM", "SHA256",
            ],
        ),
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => (
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA", "aECDSA", "CHACHA20", "SHA256",
            ],
        ),
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => (
            "ECDHE-RSA-AES256-GCM-SHA384",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "RSA", "aRSA", "AES", "AES256", "AESGCM", "SHA384",
            ],
        ),
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => (
            "ECDHE-RSA-AES128-GCM-SHA256",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "RSA", "aRSA", "AES", "AES128", "AESGCM", "SHA256",
            ],
        ),
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => (
            "ECDHE-RSA-CHACHA20-POLY1305",
            &[
                "ECDHE", "EECDH", "kECDHE", "kEECDH", "RSA", "aRSA", "CHACHA20", "SHA256",
            ],
        ),
        _ => ("", &[]),
    }
}

/// Words every TLS 1.2 suite here also answers to.
const T12_COMMON: &[&str] = &["TLSv1.2", "HIGH", "ALL", "DEFAULT", "AEAD", "ECDH", "kECDH"];

/// OpenSSL words that select only suites rustls does not have (weak or obsolete ones, or key
/// exchanges it does not implement): accepted, and they select nothing.
const UNSUPPORTED_WORDS: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "MD5",
    "RC4",
    "DES",
    "3DES",
    "EXP",
    "EXPORT",
    "LOW",
    "MEDIUM",
    "PSK",
    "SRP",
    "DSS",
    "aDSS",
    "DH",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "kRSA",
    "ADH",
    "AECDH",
    "CAMELLIA",
    "ARIA",
    "SEED",
    "IDEA",
    "SHA1",
    "SHA",
    "CBC",
    "CCM",
    "CCM8",
    "AESCCM",
    "AESCCM8",
    "COMPLEMENTOFDEFAULT",
    "COMPLEMENTOFALL",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "TLSv1.1",
    "kPSK",
    "aPSK",
    "ECDHEPSK",
    "DHEPSK",
    "RSAPSK",
    "GOST",
    "SUITEB128",
    "SUITEB192",
    "SUITEB128ONLY",
    "aGOST",
];

/// The parts an OpenSSL cipher name is made of, for names rustls lacks (DHE-RSA-AES256-GCM-SHA384,
/// AES128-SHA, ...): such a name is recognised, and selects nothing.
const NAME_PARTS: &[&str] = &[
    "ECDHE",
    "DHE",
    "EDH",
    "ADH",
    "AECDH",
    "RSA",
    "ECDSA",
    "DSS",
    "PSK",
    "SRP",
    "AES128",
    "AES256",
    "AES",
    "GCM",
    "CCM",
    "CCM8",
    "CBC",
    "CBC3",
    "DES",
    "SHA",
    "SHA256",
    "SHA384",
    "CHACHA20",
    "POLY1305",
    "CAMELLIA128",
    "CAMELLIA256",
    "ARIA128",
    "ARIA256",
    "SEED",
    "IDEA",
    "RC4",
    "MD5",
    "NULL",
    "EXP",
];

/// Maps an OpenSSL cipher string (Patroni's `restapi.ciphers`, given to Python's
/// `SSLContext.set_ciphers`) onto rustls' suites. As in OpenSSL: `:`-separated (or `,`/space)
/// items, each a suite name or `+`-joined words that must all match (`ECDHE+AESGCM`), `!X`
/// removes for good, `-X` removes, `+X` (reordering) and `@STRENGTH`/`@SECLEVEL=n` are
/// accepted and change nothing. Like Python's `set_ciphers`, the string chooses among the
/// TLS 1.2 suites; the TLS 1.3 suites stay unless TLS 1.3 names are listed, which then
/// choose among them. Weak or missing suites' names select nothing; a word or name that is
/// not OpenSSL's is an error naming it.
pub fn cipher_suites(spec: &str) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    let matches = |s: &rustls::SupportedCipherSuite, item: &str| -> bool {
        let (name, words) = suite_words(s);
        if item == name {
            return true;
        }
        let is13 = matches!(s, rustls::SupportedCipherSuite::Tls13(_));
        item.split('+')
            .all(|w| words.contains(&w) || (!is13 && T12_COMMON.contains(&w)))
    };
    let known = |item: &str| -> bool {
        item.split('+').all(|w| {
            all.iter().any(|s| {
                let (name, words) = suite_words(s);
                w == name || words.contains(&w)
            }) || T12_COMMON.contains(&w)
                || UNSUPPORTED_WORDS.contains(&w)
                || (w.contains('-') && w.split('-').all(|p| NAME_PARTS.contains(&p)))
                || (w.starts_with("TLS_") && w.len() > 4)
        })
    };
    let mut chosen: Vec<rustls::SupportedCipherSuite> = Vec::new();
    let mut banned: Vec<rustls::SupportedCipherSuite> = Vec::new();
    let mut tls13_named = false;
    for raw in spec
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if raw.starts_with('@') {
            continue;
        }
        let (op, item) = match raw.chars().next() {
            Some(c @ ('!' | '-' | '+')) => (c, &raw[1..]),
            _ => (' ', raw),
        };
        if !known(item) {
            return Err(format!(
                "unknown cipher or keyword `{item}` (pgwarden's TLS offers: {})",
                all.iter()
                    .map(|s| suite_words(s).0)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let selected: Vec<_> = all.iter().filter(|s| matches(s, item)).copied().collect();
        match op {
            '!' => banned.extend(selected),
            '-' => chosen.retain(|s| !selected.contains(s)),
            '+' => {}
            _ => {
                for s in selected {
                    if matches!(s, rustls::SupportedCipherSuite::Tls13(_)) && item.starts_with("TLS_") {
                        tls13_named = true;
                    }
                    if !chosen.contains(&s) && !banned.contains(&s) {
                        chosen.push(s);
                    }
                }
            }
        }
    }
    chosen.retain(|s| !banned.contains(s));
    let is13 = |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
    // The string is about TLS 1.2 unless it named TLS 1.3 suites (Python's set_ciphers
    // leaves TLS 1.3 alone).
    let mut out: Vec<_> = if tls13_named {
        chosen.iter().filter(|s| is13(s)).copied().collect()
    } else {
        all.iter()
            .filter(|s| is13(s) && !banned.contains(s))
            .copied()
            .collect()
    };
    out.extend(chosen.iter().filter(|s| !is13(s)).copied());
    if out.is_empty() {
        return Err(format!("{spec:?} selects no cipher suite pgwarden's TLS offers"));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<&'static str> {
        cipher_suites(spec)
            .unwrap()
            .iter()
            .map(|s| suite_words(s).0)
            .collect()
    }

    /// restapi.ciphers used to be accepted and ignored: now it chooses rustls' suites, and a
    /// name that is not OpenSSL's is an error naming the key.
    #[test]
    fn config_state_applied_restapi_ciphers_choose_the_suites() {
        let t13 = [
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ];
        let n = names("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(n[..3], t13, "TLS 1.3 suites stay, as with Python's set_ciphers");
        assert_eq!(
            n[3..],
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        // Mozilla's intermediate list: the DHE suites rustls lacks select nothing.
        let n = names(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:\
             DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CHACHA20-POLY1305",
        );
        assert_eq!(n.len(), 6, "{n:?}");
        let n = names("HIGH:!aNULL:!MD5:!CHACHA20");
        assert!(
            !n.iter().any(|s| s.starts_with("ECDHE") && s.contains("CHACHA20")),
            "{n:?}"
        );
        assert!(n.contains(&"ECDHE-ECDSA-AES256-GCM-SHA384"));
        assert_eq!(
            names("ECDHE+AESGCM:-aECDSA")[3..],
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert_eq!(
            names("TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256"),
            ["TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        let e = cipher_suites("ECDHE-RSA-AES256-GCM-SHA384:FANCY-CIPHER").unwrap_err();
        assert!(e.contains("FANCY-CIPHER"), "{e}");
        let r = crate::config::RestApi {
            ciphers: Some("NOPE".into()),
            ..serde_yaml::from_str(
                "listen: 127.0.0.1:8008\nconnect_address: 127.0.0.1:8008\ncertfile: /x\nkeyfile: /y\n",
            )
            .unwrap()
        };
        let err = TlsSettings::from_config(&r)
            .unwrap()
            .unwrap()
            .server_config()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("restapi.ciphers: unknown cipher or keyword `NOPE`"),
            "{err}"
        );
    }
}
