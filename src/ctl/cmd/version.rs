//! `version CLUSTER [MEMBERS...]`: after the tool's own version (printed by the caller),
//! one line per member with its pgwarden and PostgreSQL versions, as patronictl prints
//! `NAME: Patroni X PostgreSQL Y`; the data is each member's GET /patroni document,
//! collected by the member that answers the admin call.

use super::{cluster_of, Result};
use crate::ctl::client::Client;
use crate::pb;
use serde_json::Value;

/// `version` with a cluster.
pub(super) async fn version(
    c: &mut Client,
    cluster: Option<String>,
    scope: Option<&str>,
    members: Vec<String>,
) -> Result<()> {
    cluster_of(c, cluster.as_deref(), scope).await?;
    let r = c
        .get_member_status(pb::GetMemberStatusRequest { members })
        .await?
        .into_inner();
    println!();
    for m in &r.members {
        println!("{}", member_line(m));
    }
    Ok(())
}

/// One member's line: `pg0: pgwarden 0.1.0 PostgreSQL 15.8`, or why it has none.
pub fn member_line(m: &pb::MemberStatus) -> String {
    if !m.error.is_empty() {
        return format!("{}: failed to get version: {}", m.name, m.error);
    }
    let doc: Value = serde_json::from_str(&m.status_json).unwrap_or(Value::Null);
    let p = &doc["patroni"];
    let version = p["pgwarden_version"]
        .as_str()
        .map(|v| format!("pgwarden {v}"))
        .or_else(|| p["version"].as_str().map(|v| format!("Patroni {v}")))
        .unwrap_or_else(|| "pgwarden unknown".into());
    let pg = doc["server_version"]
        .as_u64()
        .filter(|v| *v > 0)
        .map(|v| format!(" PostgreSQL {}", pg_version(v)))
        .unwrap_or_default();
    format!("{}: {version}{pg}", m.name)
}

/// `server_version_num` for people, as patronictl's `format_pg_version`: 90624 is 9.6.24,
/// 150008 is 15.8.
pub fn pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10_000, v % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_version_lines_match_patronictl() {
        assert_eq!(pg_version(90624), "9.6.24");
        assert_eq!(pg_version(100000), "10.0");
        assert_eq!(pg_version(140008), "14.8");
        let ok = pb::MemberStatus {
            name: "pg0".into(),
            status_json:
                r#"{"server_version": 150008, "patroni": {"version": "4.1.5", "pgwarden_version": "0.1.0"}}"#
                    .into(),
            error: String::new(),
        };
        assert_eq!(member_line(&ok), "pg0: pgwarden 0.1.0 PostgreSQL 15.8");
        let stopped = pb::MemberStatus {
            status_json: r#"{"patroni": {"version": "4.1.5", "pgwarden_version": "0.1.0"}}"#.into(),
            ..ok.clone()
        };
        assert_eq!(member_line(&stopped), "pg0: pgwarden 0.1.0");
        let down = pb::MemberStatus {
            status_json: String::new(),
            error: "connection refused".into(),
            ..ok
        };
        assert_eq!(
            member_line(&down),
            "pg0: failed to get version: connection refused"
        );
    }
}
