//! Parsing `pg_controldata` output: the cluster state and positions of a stopped instance.

use super::error::{Error, Result};
use crate::types::{Lsn, TimelineId};
use std::collections::BTreeMap;

/// The fields of pg_control the manager uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// "Database cluster state": `shut down`, `shut down in recovery`, `in production`,
    /// `in archive recovery`, `in crash recovery`, `shutting down`.
    pub state: String,
    /// "Database system identifier".
    pub system_identifier: u64,
    /// "Latest checkpoint location".
    pub checkpoint_lsn: Lsn,
    /// "Latest checkpoint's TimeLineID".
    pub checkpoint_timeline: TimelineId,
    /// "Minimum recovery ending location" (0/0 unless a standby).
    pub min_recovery_lsn: Lsn,
    /// "Min recovery ending loc's timeline" (0 unless a standby).
    pub min_recovery_timeline: u32,
    /// "wal_log_hints setting".
    pub wal_log_hints: bool,
    /// "Data page checksum version" is not 0.
    pub data_checksums: bool,
}

impl ControlData {
    /// Whether the last shutdown was clean (as a primary or as a standby).
    pub fn clean_shutdown(&self) -> bool {
        self.state == "shut down" || self.state == "shut down in recovery"
    }

    /// A primary that did not shut down cleanly: its end of WAL is only known after crash
    /// recovery. A standby that crashed ("in archive recovery") is not one: its minimum
    /// recovery point says where it is, and starting it as a standby recovers it. Running
    /// single-user crash recovery there would write a checkpoint on the old timeline that
    /// the primary does not have, which streaming then overwrites (the data directory no
    /// longer starts); only pg_rewind, which needs a clean shutdown, may do it first.
    pub fn needs_crash_recovery(&self) -> bool {
        !self.clean_shutdown() && !self.was_standby()
    }

    /// Whether the instance was a standby when it stopped.
    pub fn was_standby(&self) -> bool {
        self.state == "shut down in recovery" || self.state == "in archive recovery"
    }

    /// Where this instance's WAL ends and on which timeline, by Patroni's rule: a standby's
    /// minimum recovery point if set, otherwise the latest checkpoint.
    pub fn local_position(&self) -> (TimelineId, Lsn) {
        if self.was_standby() && self.min_recovery_lsn != Lsn::ZERO && self.min_recovery_timeline != 0 {
            (TimelineId(self.min_recovery_timeline), self.min_recovery_lsn)
        } else {
            (self.checkpoint_timeline, self.checkpoint_lsn)
        }
    }

    /// Whether pg_rewind can work on this data directory (it needs hint-bit changes WAL-logged).
    pub fn rewindable(&self) -> bool {
        self.wal_log_hints || self.data_checksums
    }

    /// Parses the text pg_controldata prints (run under LC_ALL=C so labels are English).
    pub fn parse(text: &str) -> Result<Self> {
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &'static str| {
            fields.get(key).copied().ok_or(Error::Unexpected {
                what: "pg_controldata output (missing field)",
                value: key.to_owned(),
            })
        };
        let num = |key: &'static str| -> Result<u64> {
            let v = get(key)?;
            v.parse().map_err(|_| Error::Unexpected {
                what: "pg_controldata number",
                value: format!("{key}: {v}"),
            })
        };
        let lsn = |key: &'static str| -> Result<Lsn> {
            let v = get(key)?;
            v.parse().map_err(|_| Error::Unexpected {
                what: "pg_controldata LSN",
                value: format!("{key}: {v}"),
            })
        };
        let narrow = |key: &'static str| -> Result<u32> {
            u32::try_from(num(key)?).map_err(|_| Error::Unexpected {
                what: "pg_controldata number out of range",
                value: key.to_owned(),
            })
        };
        Ok(ControlData {
            state: get("Database cluster state")?.to_owned(),
            system_identifier: num("Database system identifier")?,
            checkpoint_lsn: lsn("Latest checkpoint location")?,
            checkpoint_timeline: TimelineId(narrow("Latest checkpoint's TimeLineID")?),
            min_recovery_lsn: lsn("Minimum recovery ending location")?,
            min_recovery_timeline: narrow("Min recovery ending loc's timeline")?,
            wal_log_hints: get("wal_log_hints setting")? == "on",
            data_checksums: num("Data page checksum version")? != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pg_control version number:            1300
Database system identifier:           7301234567890123456
Database cluster state:               shut down in recovery
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's TimeLineID:       1
Minimum recovery ending location:     0/3000108
Min recovery ending loc's timeline:   2
wal_log_hints setting:                on
Data page checksum version:           0
";

    #[test]
    fn parses_state_positions_and_rewind_prerequisites() {
        let cd = ControlData::parse(SAMPLE).unwrap();
        assert_eq!(cd.system_identifier, 7301234567890123456);
        assert!(cd.clean_shutdown() && cd.was_standby() && cd.rewindable());
        assert_eq!(cd.local_position(), (TimelineId(2), "0/3000108".parse().unwrap()));
        let primary = SAMPLE.replace("shut down in recovery", "in production");
        let cd = ControlData::parse(&primary).unwrap();
        assert!(!cd.clean_shutdown());
        assert!(cd.needs_crash_recovery(), "a crashed primary");
        assert_eq!(cd.local_position(), (TimelineId(1), "0/3000060".parse().unwrap()));
        let standby = SAMPLE.replace("shut down in recovery", "in archive recovery");
        let cd = ControlData::parse(&standby).unwrap();
        assert!(!cd.clean_shutdown() && cd.was_standby());
        assert!(
            !cd.needs_crash_recovery(),
            "a crashed standby recovers as a standby"
        );
        assert!(ControlData::parse("garbage").is_err());
    }
}
