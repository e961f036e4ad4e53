//! Patroni's REST API: the router, and the dispatch by method and first path
//! segment that Patroni's `parse_request` does (so `/cluster/x` is /cluster and any other
//! GET path is a health check).

use super::actions;
use super::cluster::{self, Snapshot};
use super::error::{json, text, ApiError};
use super::health::{self, Params};
use super::manual::{self, Action};
use super::metrics;
use super::security::{api_url_ip, PeerInfo};
pub use super::state::ApiState;
use crate::dcs::Dcs;
use crate::ha::failsafe::Refusal;
use crate::ha::status::NodeStatus;
use crate::types::{MemberState, Role};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{Map, Value};
use std::net::IpAddr;
use tokio::time::Instant;

/// The largest request body read (1 MiB): Patroni's bodies are small JSON documents, and a
/// bound keeps a client from making the daemon buffer without limit. Larger is 413.
pub const MAX_BODY: usize = 1 << 20;

/// The router: one handler, because Patroni routes on method plus first path segment and
/// sends every other GET to the health checks.
pub fn router<D: Dcs>(state: ApiState<D>) -> Router {
    Router::new().fallback(dispatch::<D>).with_state(state)
}

async fn dispatch<D: Dcs>(State(st): State<ApiState<D>>, req: Request) -> Response {
    let extra = st.extra_headers.clone();
    let mut resp = match route(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    for (k, v) in extra.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// `restapi.http_extra_headers`, plus `https_extra_headers` when TLS is on, as Patroni
/// sends them; a name or value that is not valid in HTTP is skipped with a warning.
pub fn extra_headers_from_config(r: &crate::config::RestApi, tls: bool) -> Vec<(HeaderName, HeaderValue)> {
    let https = r.https_extra_headers.iter().flatten().filter(|_| tls);
    r.http_extra_headers
        .iter()
        .flatten()
        .chain(https)
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                (Ok(k), Ok(v)) => Some((k, v)),
                _ => {
                    tracing::warn!(header = %k, "restapi extra headers: not a valid HTTP header; skipped");
                    None
                }
            }
        })
        .collect()
}

/// The endpoints that change something; they pass [`Security::check`] first.
fn is_unsafe(method: &Method, seg: &str) -> bool {
    matches!(
        (method.as_str(), seg),
        ("PATCH" | "PUT", "config")
            | (
                "POST",
                "switchover" | "failover" | "restart" | "reload" | "reinitialize" | "failsafe"
            )
            | ("DELETE", "switchover" | "restart")
    )
}

async fn route<D: Dcs>(st: ApiState<D>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let seg = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let q = params(parts.uri.query());
    let method = parts.method.clone();

    if is_unsafe(&method, &seg) {
        let member_ips = if st.security.allowlist_include_members {
            member_api_ips(&Snapshot::read_local(st.dcs.as_ref(), &st.prefix))
        } else {
            vec![]
        };
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        st.security
            .check(parts.extensions.get::<PeerInfo>(), auth, &member_ips)?;
    }

    let now = Instant::now();
    let status = || {
        let mut s = st.status.borrow().clone();
        s.failsafe_mode_is_active = st.failsafe.is_active(now);
        s.vip = st.vip.as_ref().and_then(|v| v.report());
        s
    };
    match (method.as_str(), seg.as_str()) {
        ("GET", "patroni") => {
            let s = status();
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            Ok(json(StatusCode::OK, &status_json(&s, &snap)))
        }
        ("GET", "cluster") => {
            let (snap, _) = Snapshot::read(st.dcs.as_ref(), &st.prefix).await;
            Ok(json(
                StatusCode::OK,
                &cluster::cluster_json(&snap, &status().patroni.scope),
            ))
        }
        ("GET", "history") => {
            let (snap, _) = Snapshot::read(st.dcs.as_ref(), &st.prefix).await;
            Ok(json(StatusCode::OK, &cluster::history_json(&snap)))
        }
        ("GET", "config") => {
            let (snap, _) = Snapshot::read(st.dcs.as_ref(), &st.prefix).await;
            Ok(json(StatusCode::OK, &cluster::config_json(&snap)?))
        }
        ("GET", "failsafe") => {
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            Ok(json(StatusCode::OK, &cluster::failsafe_json(&snap)?))
        }
        ("GET", "metrics") => {
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            let raft = st.raft.as_ref().map(|r| r.borrow().clone());
            let body = metrics::render(&status(), &snap, raft.as_ref(), now);
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                body,
            )
                .into_response())
        }
        ("GET" | "HEAD" | "OPTIONS", "liveness") => {
            Ok(health::liveness_code(&status(), st.ttl, now).into_response())
        }
        ("GET" | "HEAD" | "OPTIONS", "readiness") => {
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            Ok(health::readiness_code(&q, &status(), &snap, now).into_response())
        }
        ("GET" | "HEAD" | "OPTIONS", _) => {
            let s = status();
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            let code = health::health_code(&path, &q, &s, &snap, now);
            if method == Method::GET {
                Ok(json(code, &status_json(&s, &snap)))
            } else {
                // HAProxy's OPTIONS/HEAD checks read the status line only.
                Ok(code.into_response())
            }
        }
        ("PATCH", "config") => {
            let req = read_json(&parts.headers, body, false).await?;
            let new = cluster::patch_config(st.dcs.as_ref(), &st.prefix, &req).await?;
            st.wakeup();
            Ok(json(StatusCode::OK, &new))
        }
        ("PUT", "config") => {
            let req = read_json(&parts.headers, body, false).await?;
            let new = cluster::put_config(st.dcs.as_ref(), &st.prefix, &req).await?;
            st.wakeup();
            Ok(json(StatusCode::OK, &new))
        }
        ("POST", "switchover" | "failover") => {
            let req = read_json(&parts.headers, body, false).await?;
            let action = if seg == "switchover" {
                Action::Switchover
            } else {
                Action::Failover
            };
            let (code, msg) = manual::post_manual(&st, req, action).await?;
            Ok(text(code_of(code), msg))
        }
        ("DELETE", "switchover") => {
            let msg = cluster::delete_switchover(st.dcs.as_ref(), &st.prefix).await?;
            Ok(text(StatusCode::OK, msg))
        }
        ("POST", "restart") => {
            let req = read_json(&parts.headers, body, true).await?;
            let (code, msg) = actions::post_restart(&st, req).await?;
            Ok(text(code_of(code), msg))
        }
        ("DELETE", "restart") => Ok(text(StatusCode::OK, actions::delete_restart(&st).await?)),
        ("POST", "reload") => Ok(text(StatusCode::ACCEPTED, actions::post_reload(&st).await?)),
        ("POST", "reinitialize") => {
            let req = read_json(&parts.headers, body, true).await?;
            Ok(text(StatusCode::OK, actions::post_reinitialize(&st, req).await?))
        }
        ("POST", "failsafe") => {
            // Patroni checks its cached global configuration, not the DCS: this request
            // comes exactly when the DCS may be unreachable, so the local copy decides.
            let snap = Snapshot::read_local(st.dcs.as_ref(), &st.prefix);
            if !snap.failsafe_mode() {
                return Err(ApiError::BadGateway);
            }
            let req = read_json(&parts.headers, body, false).await?;
            let s = st.status.borrow().clone();
            let primary = s.role == Role::Primary && s.state == MemberState::Running;
            match st.failsafe.accept(&req, primary) {
                Ok(()) => {
                    let mut resp = text(StatusCode::OK, "Accepted");
                    if let Some(lsn) = s.wal_position() {
                        resp.headers_mut().insert("lsn", HeaderValue::from(lsn));
                    }
                    Ok(resp)
                }
                Err(e @ Refusal::RunningAsLeader) => {
                    Ok(text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                }
                Err(e @ Refusal::Invalid(_)) => Ok(text(StatusCode::BAD_REQUEST, e.to_string())),
            }
        }
        _ => Err(ApiError::UnsupportedMethod(method.to_string())),
    }
}

fn code_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// Query parameters, lenient as Python's `parse_qs`: what does not decode is skipped.
fn params(query: Option<&str>) -> Params {
    let Some(q) = query else {
        return Params::default();
    };
    Params(
        q.split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((decode(k)?, decode(v)?))
            })
            .collect(),
    )
}

/// Percent-decoding with `+` as space (form encoding).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Patroni's `_read_json_content`: Content-Length is required (411) unless the body is
/// optional; the body must be a JSON object, non-empty unless optional (400); larger than
/// [`MAX_BODY`] is 413.
async fn read_json(headers: &HeaderMap, body: Body, optional: bool) -> Result<Map<String, Value>, ApiError> {
    let Some(len) = headers.get(header::CONTENT_LENGTH) else {
        return if optional {
            Ok(Map::new())
        } else {
            Err(ApiError::LengthRequired)
        };
    };
    let len: usize = len
        .to_str()
        .ok()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| ApiError::BadRequest("Bad request: invalid Content-Length".into()))?;
    if len > MAX_BODY {
        return Err(ApiError::PayloadTooLarge);
    }
    if len == 0 && optional {
        return Ok(Map::new());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) if !m.is_empty() || optional => Ok(m),
        Ok(_) => Err(ApiError::BadRequest(
            "Bad request: the body must be a non-empty JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!("Bad request: {e}"))),
    }
}

/// The addresses of the members' REST APIs (allowlist_include_members); host names that are
/// not addresses are skipped rather than resolved on the request path.
fn member_api_ips(snap: &Snapshot) -> Vec<IpAddr> {
    snap.view
        .members
        .values()
        .filter_map(|m| api_url_ip(&m.api_url))
        .collect()
}

/// GET /patroni (and the health checks' body): the published status, plus what only the
/// DCS knows (sync_standby / quorum_standby), with Patroni's version in `patroni.version`
/// (see [`super::PATRONI_COMPAT_VERSION`]).
pub fn status_json(s: &NodeStatus, snap: &Snapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        if let Some(Value::Object(p)) = m.get_mut("patroni") {
            let own = p.insert("version".into(), Value::from(super::PATRONI_COMPAT_VERSION));
            if let Some(own) = own {
                p.insert("pgwarden_version".into(), own);
            }
        }
        if s.role != Role::Primary && snap.is_sync(&s.patroni.name) {
            let k = if snap.quorum_mode() {
                "quorum_standby"
            } else {
                "sync_standby"
            };
            m.insert(k.into(), Value::Bool(true));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings decode like Python's parse_qs, and bad escapes are skipped, not fatal.
    #[test]
    fn query_strings_decode_leniently() {
        let p = params(Some(
            "lag=10MB&tag_zone=eu%2Dwest&x=%zz&replication_state=in+archive+recovery",
        ));
        assert_eq!(p.get("lag"), Some("10MB"));
        assert_eq!(p.get("tag_zone"), Some("eu-west"));
        assert_eq!(p.get("x"), None);
        assert_eq!(p.get("replication_state"), Some("in archive recovery"));
        assert_eq!(params(Some("%")).0.len(), 0);
    }
}
