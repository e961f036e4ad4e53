//! The REST API's documents as protobuf messages. The admin service builds GET /cluster's
//! JSON with the REST code and converts it here, so both APIs show the same members.

use super::pb;
use serde_json::Value;

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A JSON object field as compact JSON text, empty when absent, null or empty.
fn json_text(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(m)) if m.is_empty() => String::new(),
        Some(x) => x.to_string(),
    }
}

/// One member of GET /cluster. Lags that are "unknown" are left absent.
pub fn member(m: &Value) -> pb::Member {
    pb::Member {
        name: opt_str(m, "name").unwrap_or_default(),
        role: opt_str(m, "role").unwrap_or_default(),
        state: opt_str(m, "state").unwrap_or_default(),
        api_url: opt_str(m, "api_url").unwrap_or_default(),
        host: opt_str(m, "host"),
        port: m
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        timeline: m
            .get("timeline")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok()),
        lsn: opt_str(m, "lsn"),
        lag: m.get("lag").and_then(Value::as_u64),
        receive_lsn: opt_str(m, "receive_lsn"),
        receive_lag: m.get("receive_lag").and_then(Value::as_u64),
        replay_lsn: opt_str(m, "replay_lsn"),
        replay_lag: m.get("replay_lag").and_then(Value::as_u64),
        pending_restart: m.get("pending_restart").and_then(Value::as_bool).unwrap_or(false),
        pending_restart_reason_json: json_text(m, "pending_restart_reason"),
        scheduled_restart_json: json_text(m, "scheduled_restart"),
        tags_json: json_text(m, "tags"),
        paused: m.get("pause").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// GET /cluster plus the `initialize` key.
pub fn cluster(doc: &Value, initialize: Option<&str>, answered_by: &str) -> pb::Cluster {
    let members = doc
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(member).collect())
        .unwrap_or_default();
    let scheduled_switchover = doc.get("scheduled_switchover").map(|s| pb::ScheduledSwitchover {
        at: opt_str(s, "at").unwrap_or_default(),
        from: opt_str(s, "from"),
        to: opt_str(s, "to"),
    });
    pb::Cluster {
        scope: opt_str(doc, "scope").unwrap_or_default(),
        system_identifier: initialize.map(str::to_string),
        paused: doc.get("pause").and_then(Value::as_bool).unwrap_or(false),
        scheduled_switchover,
        members,
        answered_by: answered_by.to_string(),
    }
}

/// GET /history: rows of 3 to 5 fields; rows that are not lists are skipped.
pub fn history(doc: &Value) -> pb::History {
    let entries = doc
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(Value::as_array)
                .map(|r| {
                    let text = |i: usize| {
                        r.get(i).and_then(|v| match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Null => None,
                            other => Some(other.to_string()),
                        })
                    };
                    pb::HistoryEntry {
                        timeline: r
                            .first()
                            .and_then(Value::as_u64)
                            .and_then(|t| u32::try_from(t).ok())
                            .unwrap_or(0),
                        lsn: r.get(1).and_then(Value::as_u64).unwrap_or(0),
                        reason: text(2).unwrap_or_default(),
                        timestamp: text(3),
                        new_leader: text(4),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    pb::History { entries }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Unknown lags stay absent, objects become JSON text, history rows of any length.
    #[test]
    fn rest_documents_convert() {
        let m = member(
            &json!({"name":"a","role":"replica","state":"streaming","api_url":"u",
            "lag":"unknown","receive_lag":5,"tags":{"nofailover":true},"pending_restart_reason":{}}),
        );
        assert_eq!(m.lag, None);
        assert_eq!(m.receive_lag, Some(5));
        assert_eq!(m.tags_json, r#"{"nofailover":true}"#);
        assert_eq!(m.pending_restart_reason_json, "");
        let h = history(&json!([[1, 100, "r", "t", "pg0"], [2, 200, "r"], "junk"]));
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.entries[1].new_leader, None);
    }
}
