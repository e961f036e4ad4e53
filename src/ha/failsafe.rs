//! Patroni's failsafe mode (patroni-behaviour §2, "Failsafe").
//!
//! With `failsafe_mode` on, the leader keeps `/failsafe` = `{member: api_url}`. When the
//! DCS fails (an error, not a lost compare-and-swap), a running primary asks every other
//! member listed there over `POST /failsafe` whether it may go on; it stays primary only
//! if all of them answer `200 Accepted`, and only for one lease length from the moment it
//! asked. A member that accepts treats the sender as the leader for `ttl` from the moment
//! it answered, so it does not race for the key even if its own DCS says the key is free:
//! its window always ends after the primary's.
//!
//! The state shared between the REST handler (which answers the POST without waiting for
//! the HA loop, whose own DCS read may be hanging) and the loop lives in [`FailsafeState`];
//! the decisions are pure functions here and in `decide`.

use crate::types::MemberName;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What a member learnt from the primary's last `POST /failsafe`.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// The primary's name.
    pub leader: MemberName,
    /// Its `conn_url`, if sent.
    pub conn_url: Option<String>,
    /// Its `api_url`, if sent.
    pub api_url: Option<String>,
    /// Its slots, if sent (`{name: lsn}`).
    pub slots: Option<Value>,
    /// When it was accepted.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// Replica side: the last accepted POST.
    received: Option<Received>,
    /// Primary side: when the last successful check started (the members had not yet
    /// answered, so their windows all end later than `asked + ttl`).
    held_since: Option<Instant>,
    ttl: Duration,
}

/// Failsafe state shared by the REST API and the HA loop.
#[derive(Clone, Debug)]
pub struct FailsafeState {
    inner: Arc<Mutex<Inner>>,
}

/// Why a `POST /failsafe` was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This member runs as a primary itself (Patroni answers 500 with this text).
    #[error("Running as a leader")]
    RunningAsLeader,
    /// The body is not a failsafe notice.
    #[error("invalid failsafe request: {0}")]
    Invalid(String),
}

impl FailsafeState {
    /// An empty state for a lease length of `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FailsafeState {
            inner: Arc::new(Mutex::new(Inner {
                ttl,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loop keeps the lease length current (the dynamic config may change it).
    pub fn set_ttl(&self, ttl: Duration) {
        self.lock().ttl = ttl;
    }

    /// `POST /failsafe` on this member. `running_primary`: the local PostgreSQL runs as a
    /// primary (such a member refuses: two primaries must not vouch for each other).
    pub fn accept(&self, body: &Map<String, Value>, running_primary: bool) -> Result<(), Refusal> {
        if running_primary {
            return Err(Refusal::RunningAsLeader);
        }
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::Invalid("the field 'name' is missing or not a string".into()))?;
        let leader = MemberName::new(name).map_err(|e| Refusal::Invalid(format!("name {name:?}: {e}")))?;
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(String::from);
        self.lock().received = Some(Received {
            leader,
            conn_url: text("conn_url"),
            api_url: text("api_url"),
            slots: body.get("slots").filter(|s| s.is_object()).cloned(),
            at: Instant::now(),
        });
        Ok(())
    }

    /// The primary that vouched for itself within the last `ttl`, if any (replica side).
    pub fn leader(&self, now: Instant) -> Option<Received> {
        let g = self.lock();
        g.received.clone().filter(|r| now < r.at + g.ttl)
    }

    /// Primary side: all members confirmed a check that started at `asked`.
    pub fn held(&self, asked: Instant) {
        self.lock().held_since = Some(asked);
    }

    /// Primary side: the DCS answers again, or this member is no longer primary.
    pub fn release(&self) {
        self.lock().held_since = None;
    }

    /// Whether failsafe mode is active on this member: a primary that kept running on its
    /// members' word, or a member that accepted a primary's notice, within the last `ttl`
    /// (`failsafe_mode_is_active` in GET /patroni and /metrics).
    pub fn is_active(&self, now: Instant) -> bool {
        let g = self.lock();
        let recent = |t: Instant| now < t + g.ttl;
        g.held_since.is_some_and(recent) || g.received.as_ref().is_some_and(|r| recent(r.at))
    }
}

/// The `/failsafe` value the leader keeps: every member with an api_url, and itself.
pub fn topology<'a>(
    members: impl IntoIterator<Item = (&'a MemberName, &'a str)>,
    me: &MemberName,
    my_api_url: &str,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = members
        .into_iter()
        .filter(|(_, url)| !url.is_empty())
        .map(|(n, url)| (n.to_string(), url.to_string()))
        .collect();
    m.entry(me.to_string()).or_insert_with(|| my_api_url.to_string());
    m
}

/// The members a primary must hear `Accepted` from: everyone in `/failsafe` but itself.
/// `None` when it is not listed there (or there is no list): it may not go on.
pub fn to_ask<'a>(
    listed: Option<&'a BTreeMap<String, String>>,
    me: &MemberName,
) -> Option<Vec<(&'a str, &'a str)>> {
    let l = listed?;
    if !l.contains_key(me.as_str()) {
        return None;
    }
    Some(
        l.iter()
            .filter(|(n, _)| n.as_str() != me.as_str())
            .map(|(n, u)| (n.as_str(), u.as_str()))
            .collect(),
    )
}

/// The body of the primary's notice.
pub fn notice(me: &MemberName, conn_url: &str, api_url: &str, slots: Option<Value>) -> Value {
    let mut b = json!({"name": me.as_str(), "conn_url": conn_url, "api_url": api_url});
    if let Some(s) = slots {
        b["slots"] = s;
    }
    b
}

/// The URL of a member's failsafe endpoint from its api_url (`.../patroni` → `.../failsafe`).
pub fn endpoint(api_url: &str) -> String {
    let base = api_url.trim_end_matches('/');
    match base.rsplit_once('/') {
        Some((root, "patroni")) => format!("{root}/failsafe"),
        _ => format!("{base}/failsafe"),
    }
}

/// Asks every member in `members` (name, api_url) at once; true only if all accepted
/// within `limit`. Patroni's rule: status 200 and the body exactly `Accepted`; one retry
/// when time remains.
pub async fn ask_all(
    http: &reqwest::Client,
    auth: Option<&(String, String)>,
    members: &[(&str, &str)],
    body: &Value,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    let one = |name: &str, url: &str| {
        let url = endpoint(url);
        let name = name.to_string();
        async move {
            for attempt in 0..2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut req = http
                    .post(&url)
                    .json(body)
                    .timeout(left.min(Duration::from_secs(2)));
                if let Some((u, p)) = auth {
                    req = req.basic_auth(u, Some(p));
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        if status == 200 && text == "Accepted" {
                            return true;
                        }
                        tracing::warn!(member = %name, status, answer = %text, "failsafe: member did not accept");
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(member = %name, attempt, error = %e, "failsafe: POST /failsafe failed")
                    }
                }
            }
            false
        }
    };
    let answers = futures::future::join_all(members.iter().map(|(n, u)| one(n, u))).await;
    answers.into_iter().all(|ok| ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> MemberName {
        MemberName::new(s).unwrap()
    }

    /// The leader lists every member with an API, and always itself.
    #[test]
    fn topology_lists_members_with_an_api() {
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let t = topology(
            [(&a, "http://a/patroni"), (&b, ""), (&c, "http://c/patroni")],
            &b,
            "http://b/patroni",
        );
        let want: BTreeMap<String, String> = [
            ("a", "http://a/patroni"),
            ("b", "http://b/patroni"),
            ("c", "http://c/patroni"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(t, want);
    }

    /// A primary missing from the list may not go on; one alone needs nobody's word.
    #[test]
    fn who_to_ask() {
        let l: BTreeMap<String, String> = [("a", "ua"), ("b", "ub")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(to_ask(Some(&l), &n("a")), Some(vec![("b", "ub")]));
        assert_eq!(to_ask(Some(&l), &n("z")), None);
        assert_eq!(to_ask(None, &n("a")), None);
        let alone: BTreeMap<String, String> = [("a".to_string(), "ua".to_string())].into();
        assert_eq!(to_ask(Some(&alone), &n("a")), Some(vec![]));
    }

    #[test]
    fn endpoint_from_api_url() {
        assert_eq!(endpoint("http://h:8008/patroni"), "http://h:8008/failsafe");
        assert_eq!(endpoint("https://h:8008"), "https://h:8008/failsafe");
    }

    /// A primary refuses; a replica remembers the sender for ttl.
    #[tokio::test(start_paused = true)]
    async fn accept_and_expire() {
        let st = FailsafeState::new(Duration::from_secs(10));
        let body: Map<String, Value> = serde_json::from_value(json!({
            "name": "pg0", "conn_url": "postgres://h:5432/postgres", "api_url": "http://h:8008/patroni"
        }))
        .unwrap();
        assert_eq!(st.accept(&body, true), Err(Refusal::RunningAsLeader));
        assert!(st.leader(Instant::now()).is_none());
        st.accept(&body, false).unwrap();
        assert_eq!(st.leader(Instant::now()).unwrap().leader, n("pg0"));
        assert!(st.is_active(Instant::now()));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(st.leader(Instant::now()).is_none());
        assert!(!st.is_active(Instant::now()));
        let bad: Map<String, Value> = serde_json::from_value(json!({"conn_url": "x"})).unwrap();
        assert!(matches!(st.accept(&bad, false), Err(Refusal::Invalid(_))));
    }
}
