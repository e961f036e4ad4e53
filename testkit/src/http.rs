//! The REST calls end-to-end tests repeat: a status code, a JSON document, a JSON request
//! answered with a code and a body. Every call has a time limit and maps any failure
//! (refused, timed out, unreadable) to `None`, so tests can poll them with `wait_for`.

use serde_json::Value;
use std::time::Duration;

/// Limit of a GET: members answer at once or are considered down.
const GET_LIMIT: Duration = Duration::from_secs(2);

/// The status code of `GET url`.
pub async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    let r = http.get(url).timeout(GET_LIMIT).send().await.ok()?;
    Some(r.status().as_u16())
}

/// The JSON body of `GET url`, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url)
        .timeout(GET_LIMIT)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `method url` with a JSON body: the status code and the body's text.
pub async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
    limit: Duration,
) -> Option<(u16, String)> {
    let r = http
        .request(method, url)
        .json(body)
        .timeout(limit)
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.unwrap_or_default()))
}

/// Patroni's healthy cluster, read from a `GET /cluster` document: the members named in
/// `members` are all listed, exactly one of them is the leader in state `running`, and every
/// other one is `streaming` on the leader's timeline. With `exact`, the cluster lists no
/// other member; without it, others (a host being restarted) may be listed in any state.
/// The leader's name, or `None` while the cluster is not so.
pub fn healthy_leader(cluster: &Value, members: &[String], exact: bool) -> Option<String> {
    let all = cluster.get("members")?.as_array()?;
    if exact && all.len() != members.len() {
        return None;
    }
    let name = |m: &Value| m.get("name").and_then(Value::as_str).map(str::to_owned);
    let list: Vec<&Value> = all
        .iter()
        .filter(|m| name(m).is_some_and(|n| members.contains(&n)))
        .collect();
    if list.len() != members.len() {
        return None;
    }
    let is_leader = |m: &Value| m.get("role").and_then(Value::as_str) == Some("leader");
    let leaders: Vec<&Value> = list.iter().copied().filter(|m| is_leader(m)).collect();
    let [leader] = leaders.as_slice() else { return None };
    if leader.get("state")?.as_str()? != "running" {
        return None;
    }
    let tl = leader.get("timeline")?.as_u64()?;
    for m in list.iter().filter(|m| !is_leader(m)) {
        if m.get("state")?.as_str()? != "streaming" || m.get("timeline")?.as_u64()? != tl {
            return None;
        }
    }
    name(leader)
}

#[cfg(test)]
mod tests {
    use super::healthy_leader;
    use serde_json::json;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn healthy_leader_needs_one_running_leader_and_streaming_replicas_on_its_timeline() {
        let m = |name: &str, role: &str, state: &str, tl: u64| json!({"name": name, "role": role, "state": state, "timeline": tl});
        let ok = json!({"members": [m("a", "leader", "running", 2), m("b", "replica", "streaming", 2)]});
        assert_eq!(
            healthy_leader(&ok, &names(&["a", "b"]), true).as_deref(),
            Some("a")
        );
        let behind = json!({"members": [m("a", "leader", "running", 2), m("b", "replica", "streaming", 1)]});
        assert_eq!(healthy_leader(&behind, &names(&["a", "b"]), true), None);
        let two = json!({"members": [m("a", "leader", "running", 2), m("b", "leader", "running", 2)]});
        assert_eq!(healthy_leader(&two, &names(&["a", "b"]), true), None);
        let missing = json!({"members": [m("a", "leader", "running", 2)]});
        assert_eq!(healthy_leader(&missing, &names(&["a", "b"]), false), None);
        // Another member, stopped: only an exact check refuses it.
        let extra = json!({"members": [m("a", "leader", "running", 2), m("b", "replica", "streaming", 2), m("c", "replica", "stopped", 1)]});
        assert_eq!(healthy_leader(&extra, &names(&["a", "b"]), true), None);
        assert_eq!(
            healthy_leader(&extra, &names(&["a", "b"]), false).as_deref(),
            Some("a")
        );
    }
}
