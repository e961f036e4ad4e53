//! The record of a chaos run and the checker that judges it. Pure: no process, no network;
//! the run fills a [`History`], [`check`] turns it into a [`Verdict`].
//!
//! What a write tells: a client sent it at `sent` to one member and learned its outcome at
//! `done`. An acknowledged write took effect at some instant inside `[sent, done]`; which
//! instant is unknown. Every rule below uses only what holds for every such instant, so the
//! checker never reports an anomaly the system might not have had (and a report is a real
//! failure).
//!
//! - **Lost commit**: an acknowledged id the final primary does not have.
//! - **Split brain**: a member is primary on one timeline for one unbroken stretch (a
//!   promotion always starts a new timeline, a demotion ends the stretch), so the writes a
//!   member acknowledged on one timeline form a *tenure*. If its earliest acknowledgement
//!   came back at `a` and its latest write was sent at `b > a`, it was certainly writable
//!   for all of `[a, b]` (its *certain window*). Two tenures of different members whose
//!   certain windows overlap, or a write of one member that was sent and acknowledged
//!   entirely inside another member's certain window, mean two members accepted writes at
//!   the same time: the overlap is reported.
//! - **Timeline fork**: two members whose samples name the same timeline id with different
//!   histories (the contents of that timeline's history file).
//! - **Not rejoined**: a heal after which the cluster did not settle (one primary, every
//!   member streaming) within the run's limit; otherwise the time it took is the recovery
//!   time of that heal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A data member, by its index in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member(pub usize);

/// A PostgreSQL timeline id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline(pub u32);

/// How a write ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Committed and acknowledged; the member was on this timeline when it answered.
    Acked(Timeline),
    /// Refused before any effect (e.g. the member is read-only).
    Failed,
    /// No answer (timeout, connection lost): it may or may not have taken effect.
    Unknown,
}

/// One client write. Times are offsets from the run's start.
#[derive(Clone, Debug)]
pub struct Write {
    pub id: i64,
    pub member: Member,
    pub sent: Duration,
    pub done: Duration,
    pub outcome: Outcome,
}

/// A member's timeline and that timeline's history file (empty for timeline 1), as sampled.
#[derive(Clone, Debug)]
pub struct TimelineSample {
    pub member: Member,
    pub at: Duration,
    pub timeline: Timeline,
    pub history: String,
}

/// One injected fault and what followed its heal.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// The fault's kind, for the per-kind table (e.g. "partition-primary").
    pub kind: String,
    /// What exactly was done, for the log.
    pub detail: String,
    pub injected: Duration,
    pub healed: Duration,
    /// Heal to settled; `None`: the cluster did not settle within the limit.
    pub recovery: Option<Duration>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<Write>,
    pub timelines: Vec<TimelineSample>,
    pub faults: Vec<FaultRecord>,
    /// The ids the final primary holds (the final reader's answer).
    pub final_rows: BTreeSet<i64>,
}

/// Two members certainly accepting writes over `[from, to]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitBrain {
    pub a: (Member, Timeline),
    pub b: (Member, Timeline),
    pub from: Duration,
    pub to: Duration,
}

/// One timeline id with two histories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    pub timeline: Timeline,
    pub a: Member,
    pub b: Member,
    /// When `b`'s diverging history was sampled.
    pub at: Duration,
}

/// The checker's findings.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Acknowledged ids missing from the final primary, with the write.
    pub lost: Vec<Write>,
    pub split_brain: Vec<SplitBrain>,
    pub forks: Vec<Fork>,
    /// Indexes into [`History::faults`] of heals the cluster did not recover from.
    pub not_rejoined: Vec<usize>,
    pub acked: usize,
    pub unknown: usize,
}

impl Verdict {
    /// No lost commit, no split brain, no fork, every member back.
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.split_brain.is_empty()
            && self.forks.is_empty()
            && self.not_rejoined.is_empty()
    }
}

/// A member's writes on one timeline.
struct Tenure {
    key: (Member, Timeline),
    /// Earliest acknowledgement and latest send: [`Tenure::certain`] when ordered.
    first_done: Duration,
    last_sent: Duration,
    writes: Vec<(Duration, Duration)>,
}

impl Tenure {
    /// The stretch the member was certainly writable on this timeline, if any.
    fn certain(&self) -> Option<(Duration, Duration)> {
        (self.first_done < self.last_sent).then_some((self.first_done, self.last_sent))
    }
}

pub fn check(h: &History) -> Verdict {
    let mut v = Verdict::default();
    let mut tenures: BTreeMap<(Member, Timeline), Tenure> = BTreeMap::new();
    for w in &h.writes {
        match w.outcome {
            Outcome::Acked(tl) => {
                v.acked += 1;
                if !h.final_rows.contains(&w.id) {
                    v.lost.push(w.clone());
                }
                let t = tenures.entry((w.member, tl)).or_insert_with(|| Tenure {
                    key: (w.member, tl),
                    first_done: w.done,
                    last_sent: w.sent,
                    writes: vec![],
                });
                t.first_done = t.first_done.min(w.done);
                t.last_sent = t.last_sent.max(w.sent);
                t.writes.push((w.sent, w.done));
            }
            Outcome::Unknown => v.unknown += 1,
            Outcome::Failed => {}
        }
    }
    let tenures: Vec<Tenure> = tenures.into_values().collect();
    for (i, a) in tenures.iter().enumerate() {
        for b in &tenures[i + 1..] {
            if a.key.0 == b.key.0 {
                continue;
            }
            if let Some(sb) = overlap(a, b).or_else(|| overlap(b, a)) {
                v.split_brain.push(sb);
            }
        }
    }
    v.forks = forks(&h.timelines);
    v.not_rejoined = h
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.recovery.is_none())
        .map(|(i, _)| i)
        .collect();
    v
}

/// The stretch over which tenures `a` and `b` certainly both accepted writes: their certain
/// windows' overlap, else a write of `a` made wholly inside `b`'s certain window.
fn overlap(a: &Tenure, b: &Tenure) -> Option<SplitBrain> {
    let sb = |from, to| SplitBrain {
        a: a.key,
        b: b.key,
        from,
        to,
    };
    let bw = b.certain()?;
    if let Some(aw) = a.certain() {
        let (from, to) = (aw.0.max(bw.0), aw.1.min(bw.1));
        if from < to {
            return Some(sb(from, to));
        }
    }
    a.writes
        .iter()
        .find(|(sent, done)| bw.0 <= *sent && *done <= bw.1)
        .map(|(sent, done)| sb(*sent, *done))
}

/// Timeline ids sampled with two different histories, one report per (timeline, pair).
fn forks(samples: &[TimelineSample]) -> Vec<Fork> {
    let mut seen: BTreeMap<Timeline, Vec<(Member, &str)>> = BTreeMap::new();
    let mut out = vec![];
    for s in samples {
        let known = seen.entry(s.timeline).or_default();
        let history = s.history.trim();
        if let Some((other, _)) = known.iter().find(|(_, h)| *h != history) {
            let fork = Fork {
                timeline: s.timeline,
                a: *other,
                b: s.member,
                at: s.at,
            };
            if !out
                .iter()
                .any(|f: &Fork| (f.timeline, f.a, f.b) == (fork.timeline, fork.a, fork.b))
            {
                out.push(fork);
            }
        }
        if !known.iter().any(|(_, h)| *h == history) {
            known.push((s.member, history));
        }
    }
    out
}

/// Median (the lower one of an even count) and maximum of `d` (`None` when empty).
pub fn median_max(d: &[Duration]) -> Option<(Duration, Duration)> {
    let mut d = d.to_vec();
    d.sort();
    Some((*d.get(d.len().checked_sub(1)? / 2)?, *d.last()?))
}

/// The per-fault-kind table: count, recovery median/max, lost commits and split-brain
/// intervals, each attributed to the first fault not yet settled when the lost write was
/// acknowledged or the interval began.
pub fn table(h: &History, v: &Verdict) -> String {
    struct Row {
        count: usize,
        recoveries: Vec<Duration>,
        not_rejoined: usize,
        lost: usize,
        split: usize,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    // When a fault's window ends: its settle, or never for one that did not settle.
    let settled = |f: &FaultRecord| f.healed + f.recovery.unwrap_or(Duration::MAX / 2);
    // A write acknowledged before a fault can only be lost through that fault or a later
    // one: blame the first fault not yet settled at `t`.
    let kind_at = |t: Duration| {
        h.faults
            .iter()
            .find(|f| t <= settled(f))
            .map_or("(after the last fault)", |f| f.kind.as_str())
    };
    let empty = || Row {
        count: 0,
        recoveries: vec![],
        not_rejoined: 0,
        lost: 0,
        split: 0,
    };
    for f in &h.faults {
        let r = rows.entry(f.kind.as_str()).or_insert_with(empty);
        r.count += 1;
        match f.recovery {
            Some(d) => r.recoveries.push(d),
            None => r.not_rejoined += 1,
        }
    }
    for w in &v.lost {
        rows.entry(kind_at(w.done)).or_insert_with(empty).lost += 1;
    }
    for s in &v.split_brain {
        rows.entry(kind_at(s.from)).or_insert_with(empty).split += 1;
    }
    let mut out = String::from(
        "| fault | count | recovery median | recovery max | not rejoined | lost commits | split-brain intervals |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    for (kind, r) in &rows {
        let (med, max) =
            median_max(&r.recoveries).map_or(("-".into(), "-".into()), |(m, x)| (secs(m), secs(x)));
        out.push_str(&format!(
            "| {kind} | {} | {med} | {max} | {} | {} | {} |\n",
            r.count, r.not_rejoined, r.lost, r.split
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn acked(id: i64, member: usize, tl: u32, sent: u64, done: u64) -> Write {
        Write {
            id,
            member: Member(member),
            sent: ms(sent),
            done: ms(done),
            outcome: Outcome::Acked(Timeline(tl)),
        }
    }

    /// A failover done right: member 0 acknowledges on timeline 1, is cut off (its last
    /// write times out), member 1 is promoted to timeline 2 and acknowledges from then on;
    /// every acknowledged id is on the final primary and both members agree on timeline 2.
    fn clean_history() -> History {
        let mut h = History::default();
        for i in 0..10 {
            h.writes.push(acked(i, 0, 1, i as u64 * 100, i as u64 * 100 + 20));
        }
        h.writes.push(Write {
            id: 10,
            member: Member(0),
            sent: ms(1000),
            done: ms(4000),
            outcome: Outcome::Unknown,
        });
        h.writes.push(Write {
            id: 11,
            member: Member(1),
            sent: ms(1500),
            done: ms(1510),
            outcome: Outcome::Failed,
        });
        for i in 12..20 {
            h.writes
                .push(acked(i, 1, 2, i as u64 * 100 + 5000, i as u64 * 100 + 5020));
        }
        h.final_rows = (0..10).chain(12..20).collect();
        for m in 0..2 {
            h.timelines.push(TimelineSample {
                member: Member(m),
                at: ms(9000),
                timeline: Timeline(2),
                history: "1\t0/3000000\tno recovery target specified\n".into(),
            });
        }
        h.faults.push(FaultRecord {
            kind: "partition-primary".into(),
            detail: "pg0 cut from everyone".into(),
            injected: ms(950),
            healed: ms(6000),
            recovery: Some(ms(3000)),
        });
        h
    }

    #[test]
    fn chaos_checker_reports_nothing_on_a_clean_failover() {
        let h = clean_history();
        let v = check(&h);
        assert!(v.clean(), "{v:?}");
        assert_eq!((v.acked, v.unknown), (18, 1));
        let t = table(&h, &v);
        assert!(
            t.contains("| partition-primary | 1 | 3.0 s | 3.0 s | 0 | 0 | 0 |"),
            "{t}"
        );
    }

    #[test]
    fn chaos_checker_reports_a_lost_commit() {
        let mut h = clean_history();
        // Acknowledged by the old primary, then rewound away.
        h.final_rows.remove(&9);
        let v = check(&h);
        assert_eq!(v.lost.len(), 1, "{v:?}");
        assert_eq!(v.lost[0].id, 9);
        assert!(v.split_brain.is_empty() && v.forks.is_empty());
        let t = table(&h, &v);
        assert!(
            t.contains("| partition-primary | 1 | 3.0 s | 3.0 s | 0 | 1 | 0 |"),
            "{t}"
        );
    }

    #[test]
    fn chaos_checker_reports_overlapping_acks_from_two_members() {
        let mut h = clean_history();
        // The old primary kept acknowledging after the new one started (6000-6920).
        for i in 30..40 {
            let at = 6000 + (i as u64 - 30) * 100;
            h.writes.push(acked(i, 0, 1, at, at + 20));
            h.final_rows.insert(i);
        }
        let v = check(&h);
        assert_eq!(v.split_brain.len(), 1, "{v:?}");
        let sb = &v.split_brain[0];
        assert_eq!((sb.a, sb.b), ((Member(0), Timeline(1)), (Member(1), Timeline(2))));
        // The new primary's first acknowledgement to the last write either was sent.
        assert_eq!((sb.from, sb.to), (ms(6220), ms(6900)));
        assert!(v.lost.is_empty());
    }

    /// One write of the other member, sent and acknowledged inside a tenure's certain
    /// window, is enough (its own tenure has no window of one write).
    #[test]
    fn chaos_checker_reports_a_single_write_inside_another_tenure() {
        let mut h = clean_history();
        h.writes.push(acked(50, 2, 3, 6500, 6510));
        h.final_rows.insert(50);
        let v = check(&h);
        assert_eq!(v.split_brain.len(), 1, "{v:?}");
        let sb = &v.split_brain[0];
        assert_eq!((sb.a, sb.b), ((Member(2), Timeline(3)), (Member(1), Timeline(2))));
        assert_eq!((sb.from, sb.to), (ms(6500), ms(6510)));
    }

    /// A slow acknowledgement of the old primary that comes back after the new primary's
    /// first one is not split brain: the write may have taken effect before the promotion.
    #[test]
    fn chaos_checker_does_not_blame_a_late_acknowledgement() {
        let mut h = clean_history();
        h.writes.push(acked(60, 0, 1, 1000, 6300));
        h.final_rows.insert(60);
        let v = check(&h);
        assert!(v.clean(), "{v:?}");
    }

    #[test]
    fn chaos_checker_reports_a_timeline_fork_and_a_member_not_rejoined() {
        let mut h = clean_history();
        h.timelines.push(TimelineSample {
            member: Member(2),
            at: ms(9000),
            timeline: Timeline(2),
            history: "1\t0/3000100\tno recovery target specified\n".into(),
        });
        h.faults[0].recovery = None;
        let v = check(&h);
        assert_eq!(
            v.forks,
            vec![Fork {
                timeline: Timeline(2),
                a: Member(0),
                b: Member(2),
                at: ms(9000)
            }]
        );
        assert_eq!(v.not_rejoined, vec![0]);
        assert!(!v.clean());
    }
}
