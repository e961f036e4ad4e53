//! The admin listener: the admin service behind the access check, on a bound listener
//! (tests bind `127.0.0.1:0`), plain or TLS (`ctl.certfile`, `ctl.keyfile`, client
//! certificates per `ctl.verify_client` against `ctl.cacert`), until `shutdown` completes.

use super::auth::AdminAuth;
use super::pb::admin_service_server::AdminServiceServer;
use super::service::{Admin, RaftAdmin};
use crate::config::{ConfigError, Ctl, VerifyClient};
use crate::dcs::Dcs;
use pgwarden_raft::tls;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The admin API's TLS server configuration; `None` when `ctl.certfile` is not set.
/// Errors name the key and the file.
pub fn tls_config(ctl: &Ctl) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let Some(certfile) = &ctl.certfile else {
        return Ok(None);
    };
    let invalid = |key: &str| {
        let key = key.to_string();
        move |e: tls::TlsError| ConfigError::Invalid {
            key,
            why: e.to_string(),
        }
    };
    if ctl.keyfile_password.is_some() {
        return Err(ConfigError::Invalid {
            key: "ctl.keyfile_password".into(),
            why: "encrypted private keys are not supported by the admin API: decrypt the key file".into(),
        });
    }
    let keyfile = ctl.keyfile.as_ref().ok_or(ConfigError::Missing {
        key: "ctl.keyfile".into(),
        why: "ctl.certfile needs its private key",
    })?;
    let certs = tls::read_certs(certfile).map_err(invalid("ctl.certfile"))?;
    let key = tls::read_key(keyfile).map_err(invalid("ctl.keyfile"))?;
    let clients = match ctl.verify_client() {
        VerifyClient::None => tls::ClientAuth::None,
        _ => {
            let ca = ctl.cacert.as_ref().ok_or(ConfigError::Missing {
                key: "ctl.cacert".into(),
                why: "client certificates are verified against it (ctl.verify_client is required)",
            })?;
            tls::ClientAuth::Required(tls::read_roots(ca).map_err(invalid("ctl.cacert"))?)
        }
    };
    tls::server_config(certs, key, clients)
        .map(Some)
        .map_err(invalid("ctl.keyfile"))
}

/// Serves `admin` on `listener` in plain gRPC, checking `auth` on every call.
pub async fn serve<D: Dcs, R: RaftAdmin>(
    listener: TcpListener,
    admin: Admin<D, R>,
    auth: AdminAuth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, None, admin, auth, shutdown).await
}

/// Serves `admin` on `listener`, over TLS when `tls` is set (a refused handshake is logged
/// with the client's address and the reason), checking `auth` on every call.
pub async fn serve_tls<D: Dcs, R: RaftAdmin>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    admin: Admin<D, R>,
    auth: AdminAuth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let svc = AdminServiceServer::with_interceptor(admin, move |req: tonic::Request<()>| {
        auth.check(&req).map(|_| req)
    });
    let server = tonic::transport::Server::builder().add_service(svc);
    match tls {
        Some(cfg) => {
            let incoming = tls::incoming(listener, cfg, "gRPC admin API");
            server.serve_with_incoming_shutdown(incoming, shutdown).await
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    }
}
