//! The admin API client: where to connect (command line, or the daemon's configuration
//! file), credentials, and the first endpoint that answers.

use super::cli::Cli;
use crate::config::{Config, HostPort, Strictness};
use crate::grpc::pb::admin_service_client::AdminServiceClient;
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
