//! The watch stream's events: the difference between two successive cluster views. Pure,
//! so the rules are unit-tested; the service feeds it snapshots taken on DCS changes.

use super::pb::{self, cluster_event::Kind};
use std::collections::BTreeMap;

/// One change between two views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What changed.
    pub kind: Kind,
    /// The member concerned ("" for cluster-wide changes).
    pub member: String,
    /// Before.
    pub old_value: String,
    /// After.
    pub new_value: String,
}

fn change(kind: Kind, member: &str, old: &str, new: &str) -> Change {
    Change {
        kind,
        member: member.to_string(),
        old_value: old.to_string(),
        new_value: new.to_string(),
    }
}

fn leader(c: &pb::Cluster) -> &str {
    c.members
        .iter()
        .find(|m| m.role == "leader" || m.role == "standby_leader")
        .map_or("", |m| m.name.as_str())
}

/// The changes from `old` to `new`; `old_config`/`new_config` are the dynamic
/// configuration texts (a change other than pause is reported as CONFIG_CHANGED).
pub fn diff(old: &pb::Cluster, old_config: &str, new: &pb::Cluster, new_config: &str) -> Vec<Change> {
    let mut out = Vec::new();
    let before: BTreeMap<&str, &pb::Member> = old.members.iter().map(|m| (m.name.as_str(), m)).collect();
    let after: BTreeMap<&str, &pb::Member> = new.members.iter().map(|m| (m.name.as_str(), m)).collect();
    for (name, m) in &after {
        match before.get(name) {
            None => out.push(change(Kind::MemberJoined, name, "", &m.role)),
            Some(o) => {
                if o.role != m.role {
                    out.push(change(Kind::RoleChanged, name, &o.role, &m.role));
                }
                if o.state != m.state {
                    out.push(change(Kind::StateChanged, name, &o.state, &m.state));
                }
            }
        }
    }
    for (name, o) in &before {
        if !after.contains_key(name) {
            out.push(change(Kind::MemberLeft, name, &o.role, ""));
        }
    }
    let (lo, ln) = (leader(old), leader(new));
    if lo != ln {
        out.push(change(Kind::LeaderChanged, ln, lo, ln));
    }
    if old.paused != new.paused {
        out.push(change(
            if new.paused { Kind::Paused } else { Kind::Resumed },
            "",
            "",
            "",
        ));
    } else if old_config != new_config {
        out.push(change(Kind::ConfigChanged, "", "", ""));
    }
    match (&old.scheduled_switchover, &new.scheduled_switchover) {
        (None, Some(s)) => out.push(change(
            Kind::SwitchoverScheduled,
            s.to.as_deref().unwrap_or(""),
            s.from.as_deref().unwrap_or(""),
            &s.at,
        )),
        (Some(s), None) => out.push(change(
            Kind::SwitchoverCleared,
            s.to.as_deref().unwrap_or(""),
            s.from.as_deref().unwrap_or(""),
            "",
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, role: &str, state: &str) -> pb::Member {
        pb::Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            ..Default::default()
        }
    }

    /// A switchover shows as two role changes and a leader change; a new member as joined.
    #[test]
    fn switchover_and_join_are_reported() {
        let old = pb::Cluster {
            members: vec![m("a", "leader", "running"), m("b", "replica", "streaming")],
            ..Default::default()
        };
        let new = pb::Cluster {
            members: vec![
                m("a", "replica", "streaming"),
                m("b", "leader", "running"),
                m("c", "replica", "creating replica"),
            ],
            paused: true,
            ..Default::default()
        };
        let d = diff(&old, "{}", &new, r#"{"pause":true}"#);
        let kinds: Vec<Kind> = d.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::RoleChanged,
                Kind::StateChanged,
                Kind::RoleChanged,
                Kind::StateChanged,
                Kind::MemberJoined,
                Kind::LeaderChanged,
                Kind::Paused
            ]
        );
        assert_eq!(d[5].old_value, "a");
        assert_eq!(d[5].new_value, "b");
        assert!(diff(&new, "x", &new, "x").is_empty());
        let gone = diff(&new, "x", &old, "y");
        assert!(gone.iter().any(|c| c.kind == Kind::MemberLeft && c.member == "c"));
        assert!(gone.iter().any(|c| c.kind == Kind::Resumed));
    }
}
