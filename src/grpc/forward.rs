//! Member actions for another member go to that member's REST API, as patronictl sends
//! them: the member that owns the PostgreSQL instance validates and acts, so an action
//! forwarded through any member gets exactly the answer that member's REST API gives.

use super::error::AdminError;
use serde_json::Value;
use std::time::Duration;

/// How long a forwarded call may take: a restart waits for PostgreSQL to stop and start
/// again (`pg_ctl_timeout`, 60 s by default, twice), so the bound is generous.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(300);

/// A client of the members' REST APIs.
#[derive(Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    /// Basic credentials for unsafe REST calls (`restapi.authentication`, which the
    /// members of a cluster share).
    basic: Option<(String, String)>,
}

impl Forwarder {
    /// A forwarder sending `basic` credentials, if any.
    pub fn new(basic: Option<(String, String)>) -> Self {
        Forwarder {
            http: reqwest::Client::new(),
            basic,
        }
    }

    /// Sends `method` to `<api base>/<path>` of `member` and returns the status and text.
    pub async fn call(
        &self,
        member: &str,
        api_url: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), AdminError> {
        self.call_within(member, api_url, method, path, body, FORWARD_TIMEOUT)
            .await
    }

    /// [`Forwarder::call`] with its own time limit (reads that should not wait as long as
    /// a restart may).
    pub async fn call_within(
        &self,
        member: &str,
        api_url: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        limit: Duration,
    ) -> Result<(u16, String), AdminError> {
        // api_url is `http://host:port/patroni`; the action endpoints hang off the root.
        let base = api_url.trim_end_matches('/');
        let base = base.strip_suffix("/patroni").unwrap_or(base);
        let url = format!("{base}/{path}");
        let mut req = self.http.request(method, &url).timeout(limit);
        if let Some((u, p)) = &self.basic {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let fail = |source| AdminError::Forward {
            member: member.to_string(),
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(fail)?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(fail)?;
        Ok((code, text))
    }
}
