//! The voter choice as a table: members (site, voter, reachability, caught up), the
//! policy, and the step expected.

use super::*;

const LEADER: NodeId = 1;

/// A member: id, site, voter, seconds unreachable (`None`: answers), caught up.
fn m(id: NodeId, site: &str, voter: bool, down: Option<u64>, caught_up: bool) -> MemberView {
    MemberView {
        id,
        site: (!site.is_empty()).then(|| site.to_string()),
        voter,
        unreachable_for: down.map(Duration::from_secs),
        caught_up,
        replaced: false,
    }
}

fn policy(target: usize) -> VoterPolicy {
    VoterPolicy {
        target,
        replace_after: Duration::from_secs(30),
    }
}

/// Applies [`decide`] until it returns `None` (at most 10 steps), as the driver would on
/// a cluster whose reachability does not change. Returns the final voters.
fn settle(members: &mut [MemberView], target: usize) -> BTreeSet<NodeId> {
    for _ in 0..10 {
        let Some(change) = decide(LEADER, members, &policy(target)) else {
            break;
        };
        let voters: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        let new = change.apply(&voters);
        for x in members.iter_mut() {
            x.voter = new.contains(&x.id);
        }
    }
    members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

fn sites_of(members: &[MemberView], voters: &BTreeSet<NodeId>) -> BTreeSet<String> {
    members
        .iter()
        .filter(|m| voters.contains(&m.id))
        .filter_map(|m| m.site.clone())
        .collect()
}

#[test]
fn voters_desired_count_is_odd_and_at_most_the_target() {
    let table = [
        // (members, target, desired)
        (1, 3, 1),
        (2, 3, 2),
        (3, 3, 3),
        (4, 3, 3),
        (9, 3, 3),
        (4, 5, 3),
        (5, 5, 5),
        (6, 5, 5),
        (9, 5, 5),
    ];
    for (n, target, want) in table {
        assert_eq!(desired_voters(n, target), want, "{n} members, target {target}");
    }
}

#[test]
fn voters_five_members_on_three_sites_keep_one_voter_per_site() {
    // Bootstrapped with all five voting (a, a, b, b, c).
    let mut ms = vec![
        m(1, "a", true, None, true),
        m(2, "a", true, None, true),
        m(3, "b", true, None, true),
        m(4, "b", true, None, true),
        m(5, "c", true, None, true),
    ];
    let voters = settle(&mut ms, 3);
    assert_eq!(voters.len(), 3, "{voters:?}");
    assert!(voters.contains(&LEADER));
    assert_eq!(sites_of(&ms, &voters).len(), 3, "{voters:?}");
}

#[test]
fn voters_members_joining_one_by_one_end_spread_over_sites() {
    // a, a, b voting; b and c joined as learners and caught up.
    let mut ms = vec![
        m(1, "a", true, None, true),
        m(2, "a", true, None, true),
        m(3, "b", true, None, true),
        m(4, "b", false, None, true),
        m(5, "c", false, None, true),
    ];
    let first = decide(LEADER, &ms, &policy(3));
    assert_eq!(first, Some(VoterChange::Spread { from: 2, to: 5 }));
    let voters = settle(&mut ms, 3);
    assert_eq!(voters, BTreeSet::from([1, 3, 5]));
}

#[test]
fn voters_a_full_set_takes_no_new_voter() {
    let ms = vec![
        m(1, "a", true, None, true),
        m(2, "b", true, None, true),
        m(3, "c", true, None, true),
        m(4, "a", false, None, true),
        m(5, "b", false, None, true),
    ];
    assert_eq!(decide(LEADER, &ms, &policy(3)), None);
    // The same members with a target of 5 promote both learners, one at a time.
    assert_eq!(decide(LEADER, &ms, &policy(5)), Some(VoterChange::Promote(4)));
}

#[test]
fn voters_a_learner_behind_or_unreachable_is_not_promoted() {
    let ms = vec![
        m(1, "a", true, None, true),
        m(2, "b", true, None, true),
        m(3, "c", false, None, false),
        m(4, "d", false, Some(1), true),
    ];
    assert_eq!(decide(LEADER, &ms, &policy(3)), None);
}

#[test]
fn voters_a_small_cluster_keeps_every_member_voting() {
    let ms = vec![m(1, "", true, None, true), m(2, "", false, None, true)];
    assert_eq!(decide(LEADER, &ms, &policy(3)), Some(VoterChange::Promote(2)));
    let ms = vec![
        m(1, "", true, None, true),
        m(2, "", true, None, true),
        m(3, "", true, None, true),
    ];
    assert_eq!(decide(LEADER, &ms, &policy(3)), None);
}

#[test]
fn voters_an_unreachable_voter_is_replaced_by_a_learner_of_another_site() {
    let table: Vec<(&str, Vec<MemberView>, Option<VoterChange>)> = vec![
        (
            "a free site first",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, Some(45), true),
                m(4, "a", false, None, true),
                m(5, "d", false, None, true),
            ],
            Some(VoterChange::Replace { dead: 3, by: 5 }),
        ),
        (
            "then the dead voter's site",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, Some(45), true),
                m(4, "a", false, None, true),
                m(5, "c", false, None, true),
            ],
            Some(VoterChange::Replace { dead: 3, by: 5 }),
        ),
        (
            "then any caught-up learner",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, Some(45), true),
                m(4, "a", false, None, true),
            ],
            Some(VoterChange::Replace { dead: 3, by: 4 }),
        ),
        (
            "not before the configured time",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, Some(29), true),
                m(4, "d", false, None, true),
            ],
            None,
        ),
        (
            "a slow voter that answers stays",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, false),
                m(3, "c", true, None, false),
                m(4, "d", false, None, true),
            ],
            None,
        ),
        (
            "no learner caught up: nothing to do",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, Some(45), true),
                m(4, "d", false, None, false),
            ],
            None,
        ),
        (
            "two of three voters unreachable: no majority of the old set, no change",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, Some(45), true),
                m(3, "c", true, Some(45), true),
                m(4, "d", false, None, true),
                m(5, "e", false, None, true),
            ],
            None,
        ),
        (
            "five voters, two lost: the three left are a majority of both sets",
            vec![
                m(1, "a", true, None, true),
                m(2, "b", true, None, true),
                m(3, "c", true, None, true),
                m(4, "d", true, Some(60), true),
                m(5, "e", true, Some(45), true),
                m(6, "f", false, None, true),
            ],
            Some(VoterChange::Replace { dead: 4, by: 6 }),
        ),
    ];
    for (what, ms, want) in table {
        assert_eq!(
            decide(LEADER, &ms, &policy(if ms.len() >= 6 { 5 } else { 3 })),
            want,
            "{what}"
        );
    }
}

#[test]
fn voters_a_replaced_voter_that_returns_stays_a_learner() {
    // Sites a, a, b, b, c: the voter of c (3) was lost and replaced by 4 (site b).
    let mut ms = vec![
        m(1, "a", true, None, true),
        m(2, "b", true, None, true),
        m(3, "c", false, None, true),
        m(4, "b", true, None, true),
        m(5, "a", false, None, true),
    ];
    ms[2].replaced = true;
    assert_eq!(decide(LEADER, &ms, &policy(3)), None);
    // Not replaced (another leader, which does not remember), it would take site c's vote.
    ms[2].replaced = false;
    assert_eq!(
        decide(LEADER, &ms, &policy(3)),
        Some(VoterChange::Spread { from: 4, to: 3 })
    );
}

#[test]
fn voters_the_leader_never_loses_its_vote() {
    let mut ms = vec![
        m(1, "a", true, None, true),
        m(2, "a", true, None, true),
        m(3, "a", true, None, true),
        m(4, "a", true, None, true),
        m(5, "a", true, None, true),
    ];
    let voters = settle(&mut ms, 3);
    assert!(voters.contains(&LEADER), "{voters:?}");
    assert_eq!(voters.len(), 3);
}

#[test]
fn voters_shrinking_drops_an_unreachable_voter_first() {
    let ms = vec![
        m(1, "a", true, None, true),
        m(2, "b", true, None, true),
        m(3, "c", true, None, true),
        m(4, "a", true, Some(2), true),
    ];
    assert_eq!(decide(LEADER, &ms, &policy(3)), Some(VoterChange::Demote(4)));
}

#[test]
fn voters_why_says_why_a_member_does_not_vote() {
    let v = m(1, "a", true, None, true);
    assert_eq!(why(&v, 3, 3, None), "voter");
    let l = m(2, "a", false, None, true);
    assert_eq!(why(&l, 3, 3, None), "learner: voter set full (3)");
    assert_eq!(
        why(&l, 3, 3, Some(Duration::from_secs(45))),
        "learner: replaced after unreachable 45 s"
    );
    assert_eq!(
        why(&m(3, "", false, None, false), 3, 3, None),
        "learner: catching up"
    );
    assert_eq!(
        why(&m(3, "", false, Some(4), true), 3, 3, None),
        "learner: unreachable"
    );
}

#[test]
fn voters_a_node_record_without_a_site_still_loads() {
    // The membership as a previous version stored it: no `site`.
    let old: crate::Node = serde_json::from_str(r#"{"name":"pg0","addr":"10.0.0.1:5010"}"#).unwrap();
    assert_eq!(old.site, None);
    // And a siteless node is written as before, so an older reader sees what it knows.
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"name":"pg0","addr":"10.0.0.1:5010"}"#
    );
    let hello: crate::wire::HelloReply = serde_json::from_str(
        r#"{"node_id":7,"name":"pg0","addr":"10.0.0.1:5010","initialized":false,"leader":null}"#,
    )
    .unwrap();
    assert_eq!(hello.site, None);
}
