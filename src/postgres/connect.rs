//! SQL connections: the cached local superuser connection over the unix socket, a short-lived
//! superuser connection to the primary, and a short-lived local one to a given database (a
//! logical slot belongs to one). Every connect has the configured time limit.

use super::clone::Upstream;
use super::error::{Error, Result};
use super::manager::PgManager;
use super::settings::Credentials;
use std::sync::Arc;
use tokio_postgres::Client;

impl PgManager {
    fn local_target(&self) -> String {
        format!(
            "{}/.s.PGSQL.{} as {}",
            self.settings.socket_dir.display(),
            self.settings.port,
            self.settings.superuser.username
        )
    }

    async fn connect(&self, cfg: tokio_postgres::Config, target: String) -> Result<Client> {
        let timeout = self.settings.timeouts.connect;
        let (client, conn) = match tokio::time::timeout(timeout, cfg.connect(tokio_postgres::NoTls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => return Err(Error::Connect { target, source }),
            Err(_) => return Err(Error::ConnectTimeout { target, timeout }),
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    fn local_config(&self) -> tokio_postgres::Config {
        let s = &self.settings;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&s.socket_dir)
            .port(s.port)
            .user(&s.superuser.username)
            .dbname("postgres")
            .application_name("pgwarden")
            .connect_timeout(s.timeouts.connect);
        if let Some(p) = &s.superuser.password {
            cfg.password(p);
        }
        cfg
    }

    fn remote_config(&self, to: &Upstream, creds: &Credentials) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&to.host)
            .port(to.port)
            .user(&creds.username)
            .dbname("postgres")
            .application_name("pgwarden")
            .connect_timeout(self.settings.timeouts.connect);
        if let Some(p) = &creds.password {
            cfg.password(p);
        }
        cfg
    }

    /// The cached local superuser connection, reconnecting if it closed.
    pub(super) async fn client(&self) -> Result<Arc<Client>> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.connect(self.local_config(), self.local_target()).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    pub(super) async fn drop_client(&self) {
        *self.client.lock().await = None;
    }

    /// A short-lived superuser connection to the primary's PostgreSQL.
    pub(super) async fn primary_client(&self, primary: &Upstream) -> Result<Client> {
        let creds = &self.settings.superuser;
        let target = format!("{primary} as {}", creds.username);
        self.connect(self.remote_config(primary, creds), target).await
    }

    /// A short-lived local superuser connection to `database` (logical slots belong to one).
    pub(super) async fn database_client(&self, database: &str) -> Result<Client> {
        let mut cfg = self.local_config();
        cfg.dbname(database);
        let target = format!("{} database {database}", self.local_target());
        self.connect(cfg, target).await
    }
}
