//! The chaos run's clients: several per data member, each writing only to its member's
//! PostgreSQL (never routed to the primary: a member that accepts a write while it should
//! not is exactly what the checker looks for), each write with a run-wide unique id, and the
//! final reader.

use crate::history::{Member, Outcome, Timeline, Write};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

/// The table the clients write to.
pub const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS chaos_writes (id bigint PRIMARY KEY, member int NOT NULL)";

/// Each insert answers with the timeline the member writes WAL on (the first 8 hex digits
/// of the current WAL file name), which tells the checker which tenure acknowledged it.
const INSERT: &str = "INSERT INTO chaos_writes (id, member) VALUES ($1, $2) \
                      RETURNING substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)";

/// A write with no answer within this is recorded as unknown.
const WRITE_LIMIT: Duration = Duration::from_secs(3);
/// Each client's bound on writes, far above what a run makes.
const MAX_WRITES_PER_CLIENT: usize = 500_000;

/// The running clients; [`Clients::stop`] ends them and hands back every write.
pub struct Clients {
    writes: Arc<Mutex<Vec<Write>>>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    /// `per_member` clients for each `(member, connection string)`; times are measured
    /// from `epoch`.
    pub fn start(members: Vec<(Member, String)>, per_member: usize, epoch: Instant) -> Clients {
        let writes: Arc<Mutex<Vec<Write>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let next_id = Arc::new(AtomicI64::new(1));
        let mut tasks = vec![];
        for (member, conn) in members {
            for _ in 0..per_member {
                tasks.push(tokio::spawn(client(
                    member,
                    conn.clone(),
                    epoch,
                    next_id.clone(),
                    writes.clone(),
                    stop.clone(),
                )));
            }
        }
        Clients { writes, stop, tasks }
    }

    pub async fn stop(self) -> Vec<Write> {
        self.stop.cancel();
        for t in self.tasks {
            // A write in flight ends within WRITE_LIMIT.
            let _ = tokio::time::timeout(WRITE_LIMIT * 3, t).await;
        }
        let mut w = std::mem::take(&mut *self.writes.lock().unwrap());
        w.sort_by_key(|w| w.sent);
        w
    }
}

async fn connect(conn: &str) -> Option<tokio_postgres::Client> {
    let (c, conn) = tokio::time::timeout(WRITE_LIMIT, tokio_postgres::connect(conn, tokio_postgres::NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(c)
}

/// Whether an error proves the insert had no effect. Anything else (a lost connection, a
/// backend terminated while it waited for a synchronous standby, which has committed
/// locally) leaves the outcome unknown.
fn refused(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        return false;
    };
    [
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::UNDEFINED_TABLE,
        SqlState::CANNOT_CONNECT_NOW,
    ]
    .contains(db.code())
}

async fn client(
    member: Member,
    conn: String,
    epoch: Instant,
    next_id: Arc<AtomicI64>,
    writes: Arc<Mutex<Vec<Write>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut session: Option<tokio_postgres::Client> = None;
    let member_col = member.0 as i32;
    // Bounded by the stop token and MAX_WRITES_PER_CLIENT.
    for _ in 0..MAX_WRITES_PER_CLIENT {
        if stop.is_cancelled() {
            return;
        }
        if session.is_none() {
            session = connect(&conn).await;
            if session.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let Some(c) = &session else { continue };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let sent = epoch.elapsed();
        let r = tokio::time::timeout(WRITE_LIMIT, c.query_one(INSERT, &[&id, &member_col])).await;
        let done = epoch.elapsed();
        let (outcome, pause) = match r {
            Ok(Ok(row)) => {
                let tl = row
                    .try_get::<_, String>(0)
                    .ok()
                    .and_then(|h| u32::from_str_radix(&h, 16).ok())
                    .map_or(Outcome::Unknown, |t| Outcome::Acked(Timeline(t)));
                (tl, Duration::from_millis(20))
            }
            Ok(Err(e)) if refused(&e) => (Outcome::Failed, Duration::from_millis(300)),
            _ => {
                session = None;
                (Outcome::Unknown, Duration::from_millis(200))
            }
        };
        writes.lock().unwrap().push(Write {
            id,
            member,
            sent,
            done,
            outcome,
        });
        tokio::time::sleep(pause).await;
    }
}

/// Every id in the member's table (the final reader), or `None` if it cannot be read.
pub async fn read_all(conn: &str) -> Option<BTreeSet<i64>> {
    let c = connect(conn).await?;
    let rows = tokio::time::timeout(
        Duration::from_secs(60),
        c.query("SELECT id FROM chaos_writes", &[]),
    )
    .await
    .ok()?
    .ok()?;
    Some(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}
