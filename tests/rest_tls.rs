//! The REST API on a real listener: plain HTTP, TLS with a generated CA, and client
//! certificates under `verify_client: required` and `optional`.

use pgwarden::api::rest::{router, ApiState};
use pgwarden::api::security::Security;
use pgwarden::api::serve::{serve, TlsSettings};
use pgwarden::config::VerifyClient;
use pgwarden::dcs::MemDcs;
use pgwarden::ha::status::{DaemonInfo, NodeStatus};
use pgwarden_testkit::Ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwarden test CA");
    let srv = ca.issue(None, &["localhost", "127.0.0.1"]);
    let cli = ca.issue_client("patronictl");
    ca.write_cert(&dir.path().join("ca.pem"));
    srv.write(dir.path(), "server");
    Pki {
        ca_pem: ca.cert_pem(),
        client_cert: cli.cert_pem,
        client_key: cli.key_pem,
        dir,
    }
}

fn tls_settings(p: &Path, verify_client: VerifyClient) -> TlsSettings {
    TlsSettings {
        certfile: p.join("server.pem"),
        keyfile: p.join("server.key"),
        cafile: Some(p.join("ca.pem")),
        verify_client,
        ciphers: None,
    }
}

/// Starts the API (a running leader; a loop that takes reloads) and returns its address,
/// the shutdown trigger and the server task.
async fn start(
    tls: Option<TlsSettings>,
    security: Security,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let mut s = NodeStatus::initial(
        DaemonInfo {
            version: "0.1.0".into(),
            scope: "s".into(),
            name: "me".into(),
        },
        false,
    );
    s.state = "running".into();
    let (_tx, rx) = watch::channel(s);
    let (req_tx, mut req_rx) = mpsc::channel(8);
    tokio::spawn(async move { while req_rx.recv().await.is_some() {} });
    let state = ApiState::new(
        rx,
        Arc::new(MemDcs::new()),
        "/service/s/",
        Duration::from_secs(30),
    )
    .with_requests(req_tx)
    .with_security(security);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, router(state), tls, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        drop(_tx);
    });
    (addr, stop_tx, task)
}

fn client_config(p: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(p.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(p.client_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(p.client_key.as_bytes()).unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    Arc::new(cfg)
}

/// Sends one HTTP/1.1 request and returns the status code, or the I/O error.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
) -> std::io::Result<u16> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))
}

async fn tls_request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
) -> std::io::Result<u16> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    request(tls, method, path).await
}

/// Plain HTTP serves, tags requests with the peer address, and stops on shutdown.
#[tokio::test]
async fn plain_http_serves_and_stops() {
    let sec = Security {
        allowlist: vec!["127.0.0.1/32".parse().unwrap()],
        ..Security::default()
    };
    let (addr, stop, task) = start(None, sec).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(tcp, "GET", "/health").await.unwrap(), 200);
    // The allowlist sees the real peer (127.0.0.1), so the unsafe request passes it.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(tcp, "POST", "/reload").await.unwrap(), 202);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

/// verify_client required: a client with a CA-signed certificate is served; one without a
/// certificate gets no HTTP answer at all.
#[tokio::test]
async fn required_client_certificates_refuse_anonymous_clients() {
    let p = pki();
    let (addr, stop, _task) = start(
        Some(tls_settings(p.dir.path(), VerifyClient::Required)),
        Security::default(),
    )
    .await;
    assert_eq!(
        tls_request(addr, client_config(&p, true), "GET", "/health")
            .await
            .unwrap(),
        200
    );
    assert!(tls_request(addr, client_config(&p, false), "GET", "/health")
        .await
        .is_err());
    // Plain HTTP on a TLS port is not served either.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(request(tcp, "GET", "/health").await.is_err());
    let _ = stop.send(());
}

/// verify_client optional: anonymous clients may read, but unsafe requests need a certificate.
#[tokio::test]
async fn optional_client_certificates_guard_unsafe_requests() {
    let p = pki();
    let sec = Security {
        require_client_cert: true,
        ..Security::default()
    };
    let (addr, stop, _task) = start(Some(tls_settings(p.dir.path(), VerifyClient::Optional)), sec).await;
    assert_eq!(
        tls_request(addr, client_config(&p, false), "GET", "/health")
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        tls_request(addr, client_config(&p, false), "POST", "/reload")
            .await
            .unwrap(),
        403
    );
    assert_eq!(
        tls_request(addr, client_config(&p, true), "POST", "/reload")
            .await
            .unwrap(),
        202
    );
    let _ = stop.send(());
}

/// Unusable TLS settings are reported, not served.
#[test]
fn bad_tls_settings_are_errors() {
    let p = pki();
    let mut t = tls_settings(p.dir.path(), VerifyClient::Required);
    t.cafile = None;
    assert!(t.server_config().is_err());
    let mut t = tls_settings(p.dir.path(), VerifyClient::None);
    t.keyfile = p.dir.path().join("missing.key");
    assert!(t.server_config().is_err());
    assert!(tls_settings(p.dir.path(), VerifyClient::None)
        .server_config()
        .is_ok());
}
