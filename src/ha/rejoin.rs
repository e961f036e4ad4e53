//! What a member whose data diverged from the leader's timeline does before it starts as a
//! replica: Patroni's `use_pg_rewind`, `remove_data_directory_on_rewind_failure` and
//! `remove_data_directory_on_diverged_timelines`, as a pure rule the runner applies.
//!
//! "Remove" is never a deletion in pgwarden: the data directory is moved aside (renamed with a
//! timestamp) and the next iteration clones a fresh copy, as Patroni's reinitialize does.

/// pgwarden's value of `use_pg_rewind` when neither the local file nor the dynamic
/// configuration sets it. Patroni's default is `false`; pgwarden's has always been to rewind
/// (its sample configuration, demo and tests rely on a former primary rejoining), and stays so:
/// a file that sets `use_pg_rewind: false` gets Patroni's behaviour.
pub const DEFAULT_USE_PG_REWIND: bool = true;

/// The three keys, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejoinPolicy {
    /// pg_rewind may be run.
    pub use_pg_rewind: bool,
    /// A failed pg_rewind moves the data aside (a clone follows).
    pub remove_on_rewind_failure: bool,
    /// Diverged data that is not rewound (or whose rewind failed) moves aside.
    pub remove_on_diverged: bool,
}

/// What to do with diverged data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDivergence {
    /// Run pg_rewind from the leader.
    Rewind,
    /// Move the data directory aside; the next iteration clones.
    Reinitialize,
    /// Leave PostgreSQL stopped and say why: it could only start as a replica that never
    /// streams. An operator reinitializes it (`pgwardenctl reinit`).
    StayStopped,
}

impl RejoinPolicy {
    /// Local `postgresql.use_pg_rewind` over the dynamic configuration's, else the default;
    /// the two `remove_data_directory_*` flags from the local file.
    pub fn resolve(
        local_use_pg_rewind: Option<bool>,
        dynamic_use_pg_rewind: Option<bool>,
        remove_on_rewind_failure: bool,
        remove_on_diverged: bool,
    ) -> Self {
        RejoinPolicy {
            use_pg_rewind: local_use_pg_rewind
                .or(dynamic_use_pg_rewind)
                .unwrap_or(DEFAULT_USE_PG_REWIND),
            remove_on_rewind_failure,
            remove_on_diverged,
        }
    }

    /// Patroni's order: rewind when allowed (and it has not already failed on this data),
    /// else reinitialize when `remove_data_directory_on_diverged_timelines` says so, else
    /// nothing.
    pub fn on_divergence(&self, rewind_failed_before: bool) -> OnDivergence {
        if self.use_pg_rewind && !rewind_failed_before {
            OnDivergence::Rewind
        } else if self.remove_on_diverged {
            OnDivergence::Reinitialize
        } else {
            OnDivergence::StayStopped
        }
    }

    /// After pg_rewind itself failed: Patroni removes the data directory when either flag is
    /// set, and otherwise marks the rewind failed (no retry on this data).
    pub fn after_rewind_failure(&self) -> OnDivergence {
        if self.remove_on_rewind_failure || self.remove_on_diverged {
            OnDivergence::Reinitialize
        } else {
            OnDivergence::StayStopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnDivergence::*;

    #[test]
    fn local_use_pg_rewind_wins_over_the_dynamic_one_and_the_default_rewinds() {
        assert!(RejoinPolicy::resolve(None, None, false, false).use_pg_rewind);
        assert!(!RejoinPolicy::resolve(None, Some(false), false, false).use_pg_rewind);
        assert!(RejoinPolicy::resolve(Some(true), Some(false), false, false).use_pg_rewind);
        assert!(!RejoinPolicy::resolve(Some(false), Some(true), false, false).use_pg_rewind);
    }

    /// Without use_pg_rewind, diverged data is never rewound (it used to be, whatever the
    /// file said): it is reinitialized only when remove_data_directory_on_diverged_timelines
    /// is set, otherwise left stopped.
    #[test]
    fn diverged_data_follows_patroni_keys() {
        let p = |rw, fail, div| RejoinPolicy::resolve(Some(rw), None, fail, div);
        assert_eq!(p(true, false, false).on_divergence(false), Rewind);
        assert_eq!(p(false, false, false).on_divergence(false), StayStopped);
        assert_eq!(p(false, true, false).on_divergence(false), StayStopped);
        assert_eq!(p(false, false, true).on_divergence(false), Reinitialize);
        // A rewind that failed is not retried on the same data.
        assert_eq!(p(true, false, false).on_divergence(true), StayStopped);
        assert_eq!(p(true, false, true).on_divergence(true), Reinitialize);
    }

    /// A failed pg_rewind used to move the data aside (and clone) always; now only when one
    /// of the two remove flags is set.
    #[test]
    fn a_failed_rewind_reinitializes_only_when_configured() {
        let p = |fail, div| RejoinPolicy::resolve(Some(true), None, fail, div);
        assert_eq!(p(false, false).after_rewind_failure(), StayStopped);
        assert_eq!(p(true, false).after_rewind_failure(), Reinitialize);
        assert_eq!(p(false, true).after_rewind_failure(), Reinitialize);
    }
}
