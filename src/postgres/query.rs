//! Observation and small admin commands over tokio-postgres. Every call has a time limit.

use super::error::{Error, Result};
use crate::types::{Lsn, SlotType, TimelineId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::{Client, Row};

/// What the local instance says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalStatus {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current WAL insert position (primary only).
    pub current_lsn: Option<Lsn>,
    /// Last WAL received (standby only, when streaming has happened).
    pub receive_lsn: Option<Lsn>,
    /// Last WAL replayed (standby only).
    pub replay_lsn: Option<Lsn>,
    /// Primary: timeline of the current WAL segment. Standby: the walreceiver's timeline, else
    /// the timeline of the last replayed checkpoint.
    pub timeline: TimelineId,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// `pg_postmaster_start_time()`, Unix microseconds.
    pub postmaster_start: Option<i64>,
    /// Standby: `pg_last_xact_replay_timestamp()`, Unix microseconds (None before the first
    /// replayed commit).
    pub replay_timestamp: Option<i64>,
    /// Standby: `pg_is_wal_replay_paused()`.
    pub replay_paused: bool,
}

/// A `pg_stat_replication` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicationRow {
    /// Walsender pid.
    pub pid: i32,
    /// Role streaming.
    pub usename: Option<String>,
    /// The standby's application_name (its member name).
    pub application_name: String,
    /// Client address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, `startup`, `backup`...
    pub state: Option<String>,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: Option<String>,
    /// Priority in synchronous_standby_names.
    pub sync_priority: i32,
    /// Positions.
    pub sent_lsn: Option<Lsn>,
    /// Written.
    pub write_lsn: Option<Lsn>,
    /// Flushed.
    pub flush_lsn: Option<Lsn>,
    /// Replayed.
    pub replay_lsn: Option<Lsn>,
}

/// The `pg_stat_wal_receiver` row of a standby.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalReceiver {
    /// `streaming`, `waiting`, ...
    pub status: String,
    /// Timeline received.
    pub received_tli: TimelineId,
    /// Last flushed position.
    pub flushed_lsn: Option<Lsn>,
    /// Upstream host.
    pub sender_host: Option<String>,
    /// Upstream port.
    pub sender_port: Option<i32>,
    /// Slot used.
    pub slot_name: Option<String>,
}

/// A `pg_replication_slots` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Name.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: SlotType,
    /// In use.
    pub active: bool,
    /// Oldest WAL kept.
    pub restart_lsn: Option<Lsn>,
    /// Logical: database.
    pub database: Option<String>,
    /// Logical: output plugin.
    pub plugin: Option<String>,
    /// Logical: position the consumer confirmed.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// Logical (or physical with hot_standby_feedback): the oldest transaction whose
    /// catalog rows it needs.
    pub catalog_xmin: Option<u64>,
}

/// A logical slot of the primary as it is on disk (`pg_replslot/<name>/state`), read so a
/// standby can hold a copy that survives a failover (PostgreSQL 15 has no failover slots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// Name.
    pub name: String,
    /// Its database.
    pub database: String,
    /// Its output plugin.
    pub plugin: String,
    /// The position its consumer confirmed on the primary.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// The content of its `state` file.
    pub state: Vec<u8>,
}

/// A parameter whose file value differs from the running one until a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingChange {
    /// Running value (`current_setting`).
    pub old_value: String,
    /// Value in the configuration files.
    pub new_value: String,
}

/// Runs a driver future with a timeout, naming the query in errors.
pub(crate) async fn timed<T>(
    what: &'static str,
    timeout: Duration,
    fut: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|source| Error::Query { what, source }),
        Err(_) => Err(Error::QueryTimeout { what, timeout }),
    }
}

fn lsn(row: &Row, idx: usize, what: &'static str) -> Result<Option<Lsn>> {
    let text: Option<String> = row.try_get(idx).map_err(|source| Error::Query { what, source })?;
    text.map(|t| {
        t.parse().map_err(|_| Error::Unexpected {
            what: "LSN from PostgreSQL",
            value: t,
        })
    })
    .transpose()
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize, what: &'static str) -> Result<T> {
    row.try_get(idx).map_err(|source| Error::Query { what, source })
}

fn timeline(v: i64) -> Result<TimelineId> {
    u32::try_from(v).map(TimelineId).map_err(|_| Error::Unexpected {
        what: "timeline id",
        value: v.to_string(),
    })
}

/// `LocalStatus` in one round trip.
pub(crate) async fn status(c: &Client, t: Duration) -> Result<LocalStatus> {
    const WHAT: &str = "read recovery state, LSNs, timeline and system identifier";
    // pg_walfile_name() is not allowed during recovery, hence the CASEs.
    let sql = "SELECT pg_is_in_recovery(),
        CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
        pg_last_wal_receive_lsn()::text,
        pg_last_wal_replay_lsn()::text,
        CASE WHEN pg_is_in_recovery()
             THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),
                           (SELECT timeline_id FROM pg_control_checkpoint()))::int8
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END,
        (SELECT system_identifier::text FROM pg_control_system()),
        (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8,
        CASE WHEN pg_is_in_recovery()
             THEN (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::int8 END,
        CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END";
    let row = timed(WHAT, t, c.query_one(sql, &[])).await?;
    let sysid: String = get(&row, 5, WHAT)?;
    Ok(LocalStatus {
        in_recovery: get(&row, 0, WHAT)?,
        current_lsn: lsn(&row, 1, WHAT)?,
        receive_lsn: lsn(&row, 2, WHAT)?,
        replay_lsn: lsn(&row, 3, WHAT)?,
        timeline: timeline(get(&row, 4, WHAT)?)?,
        system_identifier: sysid.parse().map_err(|_| Error::Unexpected {
            what: "system identifier",
            value: sysid,
        })?,
        postmaster_start: get(&row, 6, WHAT)?,
        replay_timestamp: get(&row, 7, WHAT)?,
        replay_paused: get(&row, 8, WHAT)?,
    })
}

/// `pg_stat_replication`.
pub(crate) async fn replication(c: &Client, t: Duration) -> Result<Vec<ReplicationRow>> {
    const WHAT: &str = "read pg_stat_replication";
    let sql = "SELECT pid, usename::text, application_name, client_addr::text, state, sync_state,
        sync_priority, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text
        FROM pg_stat_replication ORDER BY application_name";
    let rows = timed(WHAT, t, c.query(sql, &[])).await?;
    rows.iter()
        .map(|r| {
            Ok(ReplicationRow {
                pid: get(r, 0, WHAT)?,
                usename: get(r, 1, WHAT)?,
                application_name: get(r, 2, WHAT)?,
                client_addr: get(r, 3, WHAT)?,
                state: get(r, 4, WHAT)?,
                sync_state: get(r, 5, WHAT)?,
                sync_priority: get(r, 6, WHAT)?,
                sent_lsn: lsn(r, 7, WHAT)?,
                write_lsn: lsn(r, 8, WHAT)?,
                flush_lsn: lsn(r, 9, WHAT)?,
                replay_lsn: lsn(r, 10, WHAT)?,
            })
        })
        .collect()
}

/// `pg_stat_wal_receiver` (no row when no walreceiver runs).
pub(crate) async fn wal_receiver(c: &Client, t: Duration) -> Result<Option<WalReceiver>> {
    const WHAT: &str = "read pg_stat_wal_receiver";
    let sql = "SELECT status, received_tli::int8, flushed_lsn::text, sender_host, sender_port, slot_name
        FROM pg_stat_wal_receiver";
    let rows = timed(WHAT, t, c.query(sql, &[])).await?;
    let Some(r) = rows.first() else { return Ok(None) };
    Ok(Some(WalReceiver {
        status: get(r, 0, WHAT)?,
        received_tli: timeline(get::<Option<i64>>(r, 1, WHAT)?.unwrap_or(0))?,
        flushed_lsn: lsn(r, 2, WHAT)?,
        sender_host: get(r, 3, WHAT)?,
        sender_port: get(r, 4, WHAT)?,
        slot_name: get(r, 5, WHAT)?,
    }))
}

/// `pg_replication_slots`.
pub(crate) async fn slots(c: &Client, t: Duration) -> Result<Vec<Slot>> {
    const WHAT: &str = "list replication slots";
    let sql = "SELECT slot_name::text, slot_type, active, restart_lsn::text, database::text, plugin::text,
        confirmed_flush_lsn::text, catalog_xmin::text::int8
        FROM pg_replication_slots ORDER BY slot_name";
    let rows = timed(WHAT, t, c.query(sql, &[])).await?;
    rows.iter()
        .map(|r| {
            Ok(Slot {
                name: get(r, 0, WHAT)?,
                slot_type: SlotType::parse(&get::<String>(r, 1, WHAT)?),
                active: get(r, 2, WHAT)?,
                restart_lsn: lsn(r, 3, WHAT)?,
                database: get(r, 4, WHAT)?,
                plugin: get(r, 5, WHAT)?,
                confirmed_flush_lsn: lsn(r, 6, WHAT)?,
                catalog_xmin: get::<Option<i64>>(r, 7, WHAT)?.map(|x| x as u64),
            })
        })
        .collect()
}

/// Creates a physical slot reserving WAL at once; no-op if it exists.
pub(crate) async fn create_physical_slot(c: &Client, t: Duration, name: &str) -> Result<()> {
    let sql = "SELECT pg_create_physical_replication_slot($1, true)
        WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
    timed("create a physical replication slot", t, c.execute(sql, &[&name])).await?;
    Ok(())
}

/// The running value of one setting (`current_setting`).
pub(crate) async fn running_setting(c: &Client, t: Duration, name: &str) -> Result<String> {
    let row = timed(
        "read a running setting",
        t,
        c.query_one("SELECT current_setting($1)", &[&name]),
    )
    .await?;
    get(&row, 0, "read a running setting")
}

/// Whether a database of that name exists.
pub(crate) async fn database_exists(c: &Client, t: Duration, name: &str) -> Result<bool> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";
    let row = timed("look up a database", t, c.query_one(sql, &[&name])).await?;
    get(&row, 0, "look up a database")
}

/// Creates a logical slot with `plugin` in the database `c` is connected to; no-op if a
/// slot of that name exists.
pub(crate) async fn create_logical_slot(c: &Client, t: Duration, name: &str, plugin: &str) -> Result<()> {
    let sql = "SELECT pg_create_logical_replication_slot($1, $2)
        WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";
    timed(
        "create a logical replication slot",
        t,
        c.execute(sql, &[&name, &plugin]),
    )
    .await?;
    Ok(())
}

/// Drops a slot; no-op if absent.
pub(crate) async fn drop_slot(c: &Client, t: Duration, name: &str) -> Result<()> {
    let sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1";
    timed("drop a replication slot", t, c.execute(sql, &[&name])).await?;
    Ok(())
}

/// Moves a slot forward to `to`.
pub(crate) async fn advance_slot(c: &Client, t: Duration, name: &str, to: crate::types::Lsn) -> Result<()> {
    let sql = "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)";
    timed(
        "advance a replication slot",
        t,
        c.execute(sql, &[&name, &to.to_string()]),
    )
    .await?;
    Ok(())
}

/// The on-disk state of the primary's logical slots named in `names` (superuser: it reads a
/// file of the data directory). Nothing when the server is in recovery.
pub(crate) async fn logical_slot_states(c: &Client, t: Duration, names: &[String]) -> Result<Vec<SlotState>> {
    const WHAT: &str = "read logical slot states from the primary";
    let sql = "SELECT slot_name::text, database::text, plugin::text, confirmed_flush_lsn::text,
            pg_read_binary_file('pg_replslot/' || slot_name || '/state')
        FROM pg_replication_slots
        WHERE slot_type = 'logical' AND NOT temporary AND NOT pg_is_in_recovery()
          AND slot_name = ANY($1)";
    let rows = timed(WHAT, t, c.query(sql, &[&names])).await?;
    rows.iter()
        .map(|r| {
            Ok(SlotState {
                name: get(r, 0, WHAT)?,
                database: get(r, 1, WHAT)?,
                plugin: get(r, 2, WHAT)?,
                confirmed_flush_lsn: lsn(r, 3, WHAT)?,
                state: get(r, 4, WHAT)?,
            })
        })
        .collect()
}

/// `catalog_xmin` of the primary's slots named in `names` (absent slots are left out;
/// nothing when the server is in recovery).
pub(crate) async fn catalog_xmins(
    c: &Client,
    t: Duration,
    names: &[String],
) -> Result<BTreeMap<String, Option<u64>>> {
    const WHAT: &str = "read slot catalog_xmin from the primary";
    let sql = "SELECT slot_name::text, catalog_xmin::text::int8 FROM pg_replication_slots
        WHERE NOT pg_is_in_recovery() AND slot_name = ANY($1)";
    let rows = timed(WHAT, t, c.query(sql, &[&names])).await?;
    rows.iter()
        .map(|r| {
            Ok((
                get(r, 0, WHAT)?,
                get::<Option<i64>>(r, 1, WHAT)?.map(|x| x as u64),
            ))
        })
        .collect()
}

/// Parameters waiting for a restart: running value vs. the last value the files set.
pub(crate) async fn pending_restart(c: &Client, t: Duration) -> Result<BTreeMap<String, PendingChange>> {
    const WHAT: &str = "read parameters pending restart";
    // pg_file_settings lists every assignment in file order; the last one is the effective one.
    let sql = "SELECT s.name, current_setting(s.name), f.setting
        FROM pg_settings s
        LEFT JOIN LATERAL (SELECT fs.setting FROM pg_file_settings fs
                           WHERE fs.name = s.name ORDER BY fs.seqno DESC LIMIT 1) f ON true
        WHERE s.pending_restart";
    let rows = timed(WHAT, t, c.query(sql, &[])).await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let name: String = get(r, 0, WHAT)?;
        let old_value: String = get(r, 1, WHAT)?;
        let new_value: Option<String> = get(r, 2, WHAT)?;
        out.insert(
            name,
            PendingChange {
                old_value,
                // Removed from the files: it returns to its default at restart.
                new_value: new_value.unwrap_or_else(|| "(default)".to_owned()),
            },
        );
    }
    Ok(out)
}

/// What a primary says about its timelines, for the rewind check and its preconditions.
pub(crate) struct PrimaryTimeline {
    pub in_recovery: bool,
    pub timeline: TimelineId,
    pub checkpoint_timeline: TimelineId,
    pub history: Option<String>,
    /// `server_version_num`: pg_rewind takes a standby as its source from PostgreSQL 14.
    pub version_num: i32,
}

/// Reads the primary's current timeline, its last checkpoint's timeline and its history file.
pub(crate) async fn primary_timeline(c: &Client, t: Duration) -> Result<PrimaryTimeline> {
    const WHAT: &str = "read the primary's timeline";
    let sql = "SELECT pg_is_in_recovery(),
        CASE WHEN pg_is_in_recovery()
             THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver)::int8,
                           (SELECT timeline_id FROM pg_control_checkpoint())::int8)
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END,
        (SELECT timeline_id FROM pg_control_checkpoint())::int8,
        current_setting('server_version_num')::int4";
    let row = timed(WHAT, t, c.query_one(sql, &[])).await?;
    let in_recovery: bool = get(&row, 0, WHAT)?;
    let tl = timeline(get::<Option<i64>>(&row, 1, WHAT)?.unwrap_or(0))?;
    let checkpoint_timeline = timeline(get(&row, 2, WHAT)?)?;
    let version_num: i32 = get(&row, 3, WHAT)?;
    let history = if tl.0 > 1 {
        let sql = "SELECT pg_read_file('pg_wal/' || upper(lpad(to_hex($1::int4), 8, '0')) || '.history')";
        let tl_i32 = i32::try_from(tl.0).map_err(|_| Error::Unexpected {
            what: "timeline id",
            value: tl.to_string(),
        })?;
        let row = timed(
            "read the primary's timeline history file",
            t,
            c.query_one(sql, &[&tl_i32]),
        )
        .await?;
        Some(get(&row, 0, "read the primary's timeline history file")?)
    } else {
        None
    };
    Ok(PrimaryTimeline {
        in_recovery,
        timeline: tl,
        checkpoint_timeline,
        history,
        version_num,
    })
}

/// What a source says of its WAL around one position: its segment size, how far its WAL is
/// known to be durable (flushed on a primary, received or replayed on a standby), and the
/// bytes `[offset, offset + len)` of segment file `segment` (`None`: the file is gone).
pub(crate) struct WalBytes {
    pub segment_size: u64,
    pub durable: Option<Lsn>,
    pub bytes: Option<Vec<u8>>,
}

/// Reads [`WalBytes`] on the source (superuser: `pg_read_binary_file`).
/// With no `segment`, only the size and the durable end are read.
pub(crate) async fn wal_bytes(
    c: &Client,
    t: Duration,
    segment: Option<&str>,
    offset: u64,
    len: u64,
) -> Result<WalBytes> {
    const WHAT: &str = "read WAL bytes on the source";
    let off = i64::try_from(offset).map_err(|_| Error::Unexpected {
        what: "WAL offset",
        value: offset.to_string(),
    })?;
    let len = i64::try_from(len).map_err(|_| Error::Unexpected {
        what: "WAL length",
        value: len.to_string(),
    })?;
    let sql = "SELECT (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'),
        (CASE WHEN pg_is_in_recovery()
              THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
              ELSE pg_current_wal_flush_lsn() END)::text,
        pg_read_binary_file('pg_wal/' || $1, $2, $3, true)";
    let row = timed(WHAT, t, c.query_one(sql, &[&segment, &off, &len])).await?;
    let size: i64 = get(&row, 0, WHAT)?;
    Ok(WalBytes {
        segment_size: u64::try_from(size).unwrap_or(0),
        durable: lsn(&row, 1, WHAT)?,
        bytes: get(&row, 2, WHAT)?,
    })
}
