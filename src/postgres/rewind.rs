//! Whether a stopped instance diverged from the primary's timeline, by Patroni's rule.
//!
//! Inputs: the local timeline and WAL end (from pg_controldata), the primary's current timeline
//! and its timeline history file. The history is read with SQL on the primary
//! (`pg_read_file('pg_wal/<TL>.history')` as superuser) rather than `TIMELINE_HISTORY` over a
//! replication connection, because tokio-postgres has no replication protocol.

use super::error::{Error, Result};
use crate::types::{Lsn, TimelineId};

/// One line of a timeline history file: `parent_tl <tab> switchpoint <tab> reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: TimelineId,
    /// Where it ended (the first LSN of the next timeline).
    pub switchpoint: Lsn,
}

/// Parses a history file; comments and blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || Error::Unexpected {
            what: "timeline history line",
            value: line.to_owned(),
        };
        let mut it = line.split_whitespace();
        let tl = it.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let lsn = it.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        out.push(HistoryEntry {
            timeline: TimelineId(tl),
            switchpoint: lsn,
        });
    }
    Ok(out)
}

/// The outcome of the divergence check, with the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewindDecision {
    /// The local data can stream from the primary as it is.
    NotNeeded {
        /// Why.
        reason: String,
    },
    /// The local data holds WAL the primary does not have; pg_rewind (or a re-clone) is needed.
    Needed {
        /// Why.
        reason: String,
    },
}

impl RewindDecision {
    /// Whether pg_rewind is needed.
    pub fn needed(&self) -> bool {
        matches!(self, RewindDecision::Needed { .. })
    }
}

/// Patroni's rule (patroni-behaviour.md "Recovery & rejoin"). `was_standby` selects the standby
/// variant: a standby diverged if it replayed past the switchpoint; a former primary if its last
/// (shutdown) checkpoint is at or past it. For a cleanly stopped primary the shutdown checkpoint is
/// its last record and records never straddle a switchpoint, so "checkpoint < switchpoint" is the
/// same as Patroni's "checkpoint end == switchpoint" without decoding WAL.
pub fn decide(
    local_tl: TimelineId,
    local_lsn: Lsn,
    was_standby: bool,
    primary_tl: TimelineId,
    history: &[HistoryEntry],
) -> RewindDecision {
    use RewindDecision::*;
    if local_tl > primary_tl {
        return Needed {
            reason: format!("local timeline {local_tl} is ahead of the primary's {primary_tl}"),
        };
    }
    if local_tl == primary_tl {
        return NotNeeded {
            reason: format!("same timeline {local_tl} as the primary"),
        };
    }
    for e in history {
        if e.timeline == local_tl {
            let diverged = if was_standby {
                local_lsn > e.switchpoint
            } else {
                local_lsn >= e.switchpoint
            };
            let what = if was_standby {
                "replayed up to"
            } else {
                "last checkpoint at"
            };
            return if diverged {
                Needed {
                    reason: format!(
                        "{what} {local_lsn} on timeline {local_tl}, past the primary's switchpoint {}",
                        e.switchpoint
                    ),
                }
            } else {
                NotNeeded {
                    reason: format!(
                        "{what} {local_lsn} on timeline {local_tl}, before the primary's switchpoint {}",
                        e.switchpoint
                    ),
                }
            };
        }
        if e.timeline > local_tl {
            break;
        }
    }
    Needed {
        reason: format!(
            "local timeline {local_tl} is not an ancestor of the primary's timeline {primary_tl}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn history_file_parses() {
        let h =
            parse_history("1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\treason\n").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].timeline, TimelineId(2));
        assert_eq!(h[0].switchpoint, lsn("0/3000148"));
        assert!(parse_history("x y").is_err());
    }

    #[test]
    fn decision_follows_patroni_rule() {
        let h = parse_history("1\t0/3000148\tx\n").unwrap();
        let t1 = TimelineId(1);
        let t2 = TimelineId(2);
        assert!(decide(TimelineId(3), lsn("0/1"), false, t2, &h).needed());
        assert!(!decide(t2, lsn("9/0"), false, t2, &h).needed());
        // former primary: its shutdown checkpoint before the switchpoint is fine, at/after is not
        assert!(!decide(t1, lsn("0/30000D8"), false, t2, &h).needed());
        assert!(decide(t1, lsn("0/3000148"), false, t2, &h).needed());
        // standby: may be exactly at the switchpoint
        assert!(!decide(t1, lsn("0/3000148"), true, t2, &h).needed());
        assert!(decide(t1, lsn("0/3000150"), true, t2, &h).needed());
        // local timeline missing from the history: a different branch
        assert!(decide(
            TimelineId(1),
            lsn("0/1"),
            true,
            TimelineId(3),
            &parse_history("2\t0/1\tx").unwrap()
        )
        .needed());
    }
}
