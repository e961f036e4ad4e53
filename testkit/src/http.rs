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
