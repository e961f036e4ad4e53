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
}

impl CtlError {
    /// A refusal in words a person can act on.
    pub fn from_status(s: Status) -> CtlError {
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
            cli.endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect()
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
        let probe = match &cacert {
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
        let tls = if cacert.is_some() || certfile.is_some() {
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
                    tried.push(format!("{e} ({why})"));
                    continue;
                }
            }
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
            match endpoint.connect().await {
                Ok(ch) => {
                    return Ok(AdminServiceClient::with_interceptor(ch, Bearer(bearer))
                        .max_decoding_message_size(16 * 1024 * 1024))
                }
                Err(err) => tried.push(format!("{e} ({})", crate::ctl::chain(&err))),
            }
        }
        Err(CtlError::Unreachable { tried })
    }
}
