//! The admin listener: the admin service behind the access check, on a bound listener
//! (tests bind `127.0.0.1:0`), until `shutdown` completes.

use super::auth::AdminAuth;
use super::pb::admin_service_server::AdminServiceServer;
use super::service::{Admin, RaftAdmin};
use crate::dcs::Dcs;
use std::future::Future;
use tokio::net::TcpListener;

/// Serves `admin` on `listener`, checking `auth` on every call.
pub async fn serve<D: Dcs, R: RaftAdmin>(
    listener: TcpListener,
    admin: Admin<D, R>,
    auth: AdminAuth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let svc = AdminServiceServer::with_interceptor(admin, move |req: tonic::Request<()>| {
        auth.check(&req).map(|_| req)
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
