//! The admin API client: where to connect (command line, or the daemon's configuration
//! file), credentials, and the first endpoint that answers.

use super::cli::Cli;
use crate::config::{Config, HostPort, Strictness};
use crate::pb::admin_service_client::AdminServiceClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// The packaged configuration file, used when neither -c nor --endpoints is given.
pub const DEFAULT_CONFIG: &str = "/etc/pgwarden/pgwarden.yml";

/// Why pgwardenctl stopped.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No endpoint accepted a connection.
    #[error("no member reachable; tried {}", tried.join(", "))]
    Unreachable {
        /// Each endpoint with its error.
        tried: Vec<String>,
    },
    /// The member refused the call.
    #[error("{0}")]
    Refused(String),
    /// A bad argument or answer.
    #[error("{0}")]
    Usage(String),
    /// The configuration file could not be used.
    #[error("cannot use the configuration file {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::config::ConfigError,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The user said no.
    #[error("Aborting {0}")]
    Aborted(String),
    /// The endpoint answered, but not as the admin API does (an HTTP/1 server, or an
    /// HTTP/2 one without the admin service, like the REST API).
    #[error("{endpoint} is not pgwarden's admin API (the REST API port?); pgwardenctl talks to ctl.listen (default 127.0.0.1:8009), not to restapi.listen (8008) ({detail})")]
    NotAdminApi {
        /// The endpoint.
        endpoint: String,
        /// What it answered.
        detail: String,
    },
}

/// The endpoint the client connected to, for messages about its answers.
static CONNECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether a failed call's status says the other side is not a gRPC server: hyper's
/// HTTP/2 errors when an HTTP/1 server answers the preface, tonic's status mapped from a
/// plain HTTP status (a 404 from a server that has no such path), and an HTTP/2 answer
/// that is not gRPC (the REST API's 501 for a POST it does not know).
fn not_grpc(s: &Status) -> bool {
    let m = status_text(s);
    m.contains("h2 protocol error")
        || m.contains("http2 error")
        || m.contains("mapped from HTTP status code")
        || m.contains("while receiving response with status")
        || m.contains("invalid content-type")
        || m.contains("invalid HTTP version")
        || m.contains("frame with invalid size")
}

/// A status's message and its root cause (tonic's own Display of a status is a debug dump).
fn status_text(s: &Status) -> String {
    let mut root: Option<&dyn std::error::Error> = None;
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        root = Some(e);
        src = e.source();
    }
    match root {
        Some(r) if r.to_string() != s.message() => format!("{}; {r}", s.message()),
        _ => s.message().to_string(),
    }
}

/// An error chain with repeated links dropped: hyper and tonic both wrap the same
/// cause ("tcp connect error: tcp connect error: Connection refused").
pub fn dedup_chain(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if out.last() != Some(&part) {
            out.push(part);
        }
    }
    out.join(": ")
}

/// What to check, for the failure to connect to an endpoint: the text of the error chain
/// plus a hint for the causes a person can act on.
fn connect_failure(endpoint: &str, chain: &str) -> String {
    let chain = dedup_chain(chain);
    let hint = if chain.contains("Connection refused") {
        "; is pgwarden running there? pgwardenctl talks to the admin API (ctl.listen, loopback-only by default), not to the REST API on 8008"
    } else if chain.contains("deadline has elapsed") || chain.contains("timed out") {
        "; no answer: a firewall, or a wrong host? (--connect-timeout sets the wait)"
    } else if chain.contains("dns error") || chain.contains("failed to lookup") {
        "; the host name does not resolve"
    } else {
        ""
    };
    format!("{endpoint} ({chain}{hint})")
}

/// Checks one `-d` endpoint: `host:port`, without a scheme or path (patronictl's `-d` is a
/// DCS URL, a habit that must not end in a DNS lookup of "http").
fn check_endpoint(e: &str) -> Result<(), CtlError> {
    let bad = |why: &str| {
        Err(CtlError::Usage(format!(
            "-d {e}: expected host:port of a member's admin API (ctl.listen, e.g. 127.0.0.1:8009){why}"
        )))
    };
    if e.contains("://") {
        return bad(", without a scheme: pgwardenctl's -d is not patronictl's DCS URL");
    }
    if e.contains('/') {
        return bad(", without a path");
    }
    match e.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
        _ => bad(""),
    }
}

impl CtlError {
    /// A refusal in words a person can act on.
    pub fn from_status(s: Status) -> CtlError {
        if not_grpc(&s) {
            return CtlError::NotAdminApi {
                endpoint: CONNECTED.get().cloned().unwrap_or_else(|| "the endpoint".into()),
                detail: dedup_chain(&status_text(&s)),
            };
        }
        let m = s.message().to_string();
        CtlError::Refused(match s.code() {
            Code::Unauthenticated => format!(
                "authentication failed: {m} (pass --token, set PGWARDENCTL_TOKEN, or ctl.auth_token in the -c file)"
            ),
            Code::PermissionDenied => format!("permission denied: {m}"),
            Code::Unavailable if m.is_empty() => "the member is unavailable".to_string(),
            _ => m,
        })
    }
}

impl From<Status> for CtlError {
    fn from(s: Status) -> Self {
        CtlError::from_status(s)
    }
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The admin client type.
pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// Endpoints, tried in order.
    pub endpoints: Vec<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// The scope from the configuration file, if one was read.
    pub scope: Option<String>,
    /// TLS, when a CA or client certificate is configured.
    pub tls: Option<ClientTlsConfig>,
    /// Per-endpoint connection timeout.
    pub connect_timeout: Duration,
    /// The same TLS settings for rustls, to check a connection before using it (see
    /// `tls_probe`); set when a CA bundle is given.
    pub probe: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `-k` / `ctl.insecure`: TLS that trusts any certificate, made by [`super::insecure`].
    pub insecure: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Connects to `addr` with TLS and exchanges HTTP/2 settings. With TLS 1.3 a server that
/// refuses the client certificate says so only after the client's side of the handshake
/// is done, and tonic then reports a bare "operation was canceled"; reading the server's
/// first frame surfaces the reason ("received fatal alert: UnknownCA").
async fn tls_probe(
    addr: &str,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let (host, _) = addr.rsplit_once(':').ok_or("not host:port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        // The HTTP/2 preface and an empty SETTINGS frame; the server answers with its own.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let mut buf = [0u8; 9];
        match tls.read(&mut buf).await {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err("the server closed the TLS connection".to_string()),
            Err(e) => Err(format!("the server refused the TLS connection: {e}")),
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r.map_err(|e: String| {
            if e.contains("alert") {
                format!("{e}; is the client certificate (--certfile, ctl.certfile) signed by the member's ctl.cacert?")
            } else {
                e
            }
        }),
        // Not a verdict: let the real connection report its own error.
        Err(_) => Ok(()),
    }
}

/// What a plain-text server answered to HTTP/2's connection preface, when that answer
/// was not HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotHttp2 {
    /// An HTTP/1 status line (a web server, or the REST API of an older setup).
    Http1,
    /// Bytes that are not an HTTP/2 frame: Python's `http.server`, which Patroni's REST API
    /// is built on, rejects "HTTP/2.0" before it has chosen a protocol version and so
    /// answers with a bare HTML error page, without any status line.
    Other,
    /// A TLS record (an alert): a TLS server, such as an admin API with `ctl.certfile`,
    /// reached without `--cacert` or `-k`.
    Tls,
}

/// Whether the plain-text server at `addr` answers HTTP/2's connection preface with
/// something other than HTTP/2: then it is not the admin API. An HTTP/2 server, the admin
/// API included, answers with a SETTINGS frame (frame type 4 in the fourth byte of the
/// frame header). Checked before connecting, because once tonic has sent its request such
/// a server's reply and close race with the request and may surface as a bare "transport
/// error" or "broken pipe". `None` when the probe gives no verdict (no answer in time, or
/// the server closed without a word).
async fn answers_not_http2(addr: &str, limit: Duration) -> Option<Option<NotHttp2>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .ok()?;
        let mut buf = [0u8; 5];
        let mut got = 0;
        while got < buf.len() {
            match tcp.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        classify_preface_answer(&buf[..got])
    };
    tokio::time::timeout(limit, work).await.ok().flatten()
}

/// The verdict on the first bytes a server sent back after the HTTP/2 preface: `None` for
/// no verdict (nothing came), `Some(None)` for an HTTP/2 frame, else what it was.
fn classify_preface_answer(first: &[u8]) -> Option<Option<NotHttp2>> {
    if first.is_empty() {
        None
    } else if first.starts_with(b"HTTP/") {
        Some(Some(NotHttp2::Http1))
    } else if first.len() >= 4 && first[3] == 4 {
        Some(None)
    } else if first.len() >= 2 && matches!(first[0], 0x15 | 0x16) && first[1] == 3 {
        // Record type alert or handshake, protocol version 3.x.
        Some(Some(NotHttp2::Tls))
    } else if first.len() < 4 {
        // Too short to tell a frame header from anything else.
        None
    } else {
        Some(Some(NotHttp2::Other))
    }
}

/// The address to dial for a listen or connect address: an any-address means this host.
fn dialable(hp: &HostPort) -> String {
    let host = match hp.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    HostPort {
        host: host.to_string(),
        port: hp.port,
    }
    .to_string()
}

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|source| CtlError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Target {
    /// From the command line, then the configuration file (-c, or the packaged one if it
    /// exists), then the default admin address.
    pub fn from_cli(cli: &Cli) -> Result<Target, CtlError> {
        let path = cli.config.clone().or_else(|| {
            Path::new(DEFAULT_CONFIG)
                .exists()
                .then(|| PathBuf::from(DEFAULT_CONFIG))
        });
        let cfg = match &path {
            Some(p) if cli.config.is_some() || cli.endpoints.is_empty() => Some(
                Config::load(p, Strictness::Lenient)
                    .map_err(|source| CtlError::Config {
                        path: p.clone(),
                        source,
                    })?
                    .config,
            ),
            _ => None,
        };
        let endpoints = if !cli.endpoints.is_empty() {
            let eps: Vec<String> = cli
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
            eps.iter().try_for_each(|e| check_endpoint(e))?;
            eps
        } else if let Some(c) = &cfg {
            vec![dialable(&c.ctl.connect_address())]
        } else {
            vec![crate::config::defaults::CTL_LISTEN.to_string()]
        };
        let ctl = cfg.as_ref().map(|c| &c.ctl);
        let token = cli
            .token
            .clone()
            .or_else(|| ctl.and_then(|c| c.auth_token.clone()))
            .filter(|t| !t.is_empty());
        let cacert = cli.cacert.clone().or_else(|| ctl.and_then(|c| c.cacert.clone()));
        let certfile = cli
            .certfile
            .clone()
            .or_else(|| ctl.and_then(|c| c.certfile.clone()));
        let keyfile = cli
            .keyfile
            .clone()
            .or_else(|| ctl.and_then(|c| c.keyfile.clone()));
        let insecure = cli.insecure || ctl.and_then(|c| c.insecure).unwrap_or(false);
        let insecure = if insecure {
            eprintln!(
                "Warning: -k/--insecure (or ctl.insecure): the members' TLS certificates are not verified"
            );
            let bad = |e: String| CtlError::Usage(format!("TLS: {e}"));
            let identity = match (&certfile, &keyfile) {
                (Some(c), Some(k)) => {
                    use pgwarden_raft::tls;
                    Some((
                        tls::read_certs(c).map_err(|e| bad(e.to_string()))?,
                        tls::read_key(k).map_err(|e| bad(e.to_string()))?,
                    ))
                }
                _ => None,
            };
            Some(super::insecure::client_config(identity).map_err(|e| bad(e.to_string()))?)
        } else {
            None
        };
        let probe = match &cacert {
            _ if insecure.is_some() => insecure.clone(),
            Some(ca) => {
                use pgwarden_raft::tls;
                let bad = |e: tls::TlsError| CtlError::Usage(format!("TLS: {e}"));
                let roots = tls::read_roots(ca).map_err(bad)?;
                let identity = match (&certfile, &keyfile) {
                    (Some(c), Some(k)) => {
                        Some((tls::read_certs(c).map_err(bad)?, tls::read_key(k).map_err(bad)?))
                    }
                    _ => None,
                };
                Some(tls::client_config(roots, identity).map_err(bad)?)
            }
            None => None,
        };
        let tls = if insecure.is_some() {
            // The connection's TLS is made by the insecure connector, not by tonic.
            None
        } else if cacert.is_some() || certfile.is_some() {
            let mut t = ClientTlsConfig::new();
            if let Some(ca) = &cacert {
                t = t.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(c), Some(k)) = (&certfile, &keyfile) {
                t = t.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            Some(t)
        } else {
            None
        };
        Ok(Target {
            endpoints,
            token,
            scope: cfg.map(|c| c.scope),
            tls,
            connect_timeout: Duration::from_secs(cli.connect_timeout.max(1)),
            probe,
            insecure,
        })
    }

    /// A client of the first endpoint that accepts a connection.
    pub async fn connect(&self) -> Result<Client, CtlError> {
        let bearer = match &self.token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                CtlError::Usage("the token contains characters not allowed in a header".into())
            })?),
            None => None,
        };
        let mut tried = Vec::new();
        for e in &self.endpoints {
            if let Some(cfg) = &self.probe {
                if let Err(why) = tls_probe(e, cfg.clone(), self.connect_timeout).await {
                    tried.push(connect_failure(e, &why));
                    continue;
                }
            }
            let not_http2 = if self.tls.is_none() && self.insecure.is_none() {
                answers_not_http2(e, self.connect_timeout.min(Duration::from_secs(1)))
                    .await
                    .flatten()
            } else {
                None
            };
            if not_http2 == Some(NotHttp2::Tls) {
                tried.push(format!(
                    "{e} (it answers TLS: pass --cacert, or -k to skip verification, or set ctl.cacert in the -c file)"
                ));
                continue;
            }
            if let Some(what) = not_http2 {
                let detail = match what {
                    NotHttp2::Http1 => "it answers HTTP/1",
                    _ => "it does not answer HTTP/2",
                };
                if self.endpoints.len() == 1 {
                    return Err(CtlError::NotAdminApi {
                        endpoint: e.clone(),
                        detail: detail.into(),
                    });
                }
                tried.push(format!(
                    "{e} (not pgwarden's admin API, {detail}: the REST API port?)"
                ));
                continue;
            }
            // The insecure connector does its own TLS under an http:// URI.
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let endpoint = match Endpoint::from_shared(format!("{scheme}://{e}")) {
                Ok(ep) => ep.connect_timeout(self.connect_timeout).tcp_nodelay(true),
                Err(err) => {
                    tried.push(format!("{e} (not a valid address: {err})"));
                    continue;
                }
            };
            let endpoint = match &self.tls {
                Some(t) => match endpoint.tls_config(t.clone()) {
                    Ok(ep) => ep,
                    Err(err) => {
                        tried.push(format!("{e} ({})", crate::ctl::chain(&err)));
                        continue;
                    }
                },
                None => endpoint,
            };
            let connected = match &self.insecure {
                Some(cfg) => {
                    endpoint
                        .connect_with_connector(super::insecure::connector(cfg.clone()))
                        .await
                }
                None => endpoint.connect().await,
            };
            match connected {
                Ok(ch) => {
                    let _ = CONNECTED.set(e.clone());
                    return Ok(AdminServiceClient::with_interceptor(ch, Bearer(bearer))
                        .max_decoding_message_size(16 * 1024 * 1024));
                }
                Err(err) => tried.push(connect_failure(e, &crate::ctl::chain(&err))),
            }
        }
        Err(CtlError::Unreachable { tried })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_preface_answers_are_classified() {
        // tonic's (and any HTTP/2 server's) SETTINGS frame.
        assert_eq!(classify_preface_answer(b"\0\0\x06\x04\0"), Some(None));
        assert_eq!(
            classify_preface_answer(b"HTTP/1.1 400 Bad Request"),
            Some(Some(NotHttp2::Http1))
        );
        // Python's http.server (Patroni's REST API): an HTML page without a status line.
        assert_eq!(
            classify_preface_answer(b"<!DOCTYPE HTML>"),
            Some(Some(NotHttp2::Other))
        );
        // A TLS alert record.
        assert_eq!(
            classify_preface_answer(b"\x15\x03\x03\x00\x02"),
            Some(Some(NotHttp2::Tls))
        );
        assert_eq!(classify_preface_answer(b""), None);
        assert_eq!(classify_preface_answer(b"\0\0"), None);
    }
}
