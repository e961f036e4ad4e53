//! `query`: SQL on a member's PostgreSQL, as patronictl runs it. The member comes from the
//! admin API (its host and port, from the conn_url it publishes); the connection goes
//! straight to PostgreSQL with the user's own credentials, never through pgwarden.

use super::{cluster_of, role_matches, Result};
use crate::ctl::cli::{Query, RoleFilter};
use crate::ctl::client::{Client, CtlError};
use crate::ctl::render::{self, SqlValue};
use crate::pb;
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// How long to wait for PostgreSQL to accept the connection (patronictl's `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The user's credentials and database, as libpq would pick them: the options, then
/// PGUSER / PGDATABASE / PGPASSWORD, then ~/.pgpass.
struct Login {
    user: String,
    dbname: Option<String>,
    password: Option<String>,
}

/// A result: columns (none for an error line) and rows.
type Table = (Option<Vec<String>>, Vec<Vec<SqlValue>>);

/// `query`.
pub(super) async fn query(c: &mut Client, q: Query, scope: Option<&str>) -> Result<()> {
    let sql = match (&q.command, &q.file) {
        (Some(_), Some(_)) => {
            return Err(CtlError::Usage(
                "--file and --command are mutually exclusive options".into(),
            ))
        }
        (Some(s), None) => s.clone(),
        (None, Some(f)) => read_sql(f)?,
        (None, None) => {
            return Err(CtlError::Usage(
                "You need to specify either --command or --file".into(),
            ))
        }
    };
    let user = q
        .username
        .clone()
        .or_else(|| std::env::var("PGUSER").ok())
        .unwrap_or_else(os_user);
    let password = if q.password {
        Some(crate::ctl::prompt::password("Password")?)
    } else {
        std::env::var("PGPASSWORD").ok()
    };
    let login = Login {
        dbname: q.dbname.clone().or_else(|| std::env::var("PGDATABASE").ok()),
        user,
        password,
    };
    let cl = cluster_of(c, q.cluster.as_deref(), scope).await?;
    let mut conn: Option<tokio_postgres::Client> = None;
    let mut failed = false;
    let period = q.watch.period();
    loop {
        let (columns, rows) = match run_once(&cl, &q, &login, &sql, &mut conn).await {
            Ok(t) => t,
            Err(line) => {
                failed = true;
                conn = None;
                (None, vec![vec![SqlValue::Text(now()), SqlValue::Text(line)]])
            }
        };
        print!(
            "{}",
            render::query(columns.as_deref(), &rows, q.format, &q.delimiter)
        );
        let Some(p) = period else { break };
        tokio::time::sleep(Duration::from_secs(p.max(1))).await;
    }
    if failed {
        // patronictl exits 0 here; a script needs to know (as for switchover).
        return Err(CtlError::Refused("the query failed".into()));
    }
    Ok(())
}

/// `%Y-%m-%d %H:%M:%S`, patronictl's timestamp on an error line.
fn now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn read_sql(f: &str) -> Result<String> {
    let r = if f == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(f)
    };
    r.map_err(|e| CtlError::Usage(format!("cannot read {f}: {e}")))
}

/// The operating system user, libpq's default user name.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "postgres".into())
}

/// The member to query, as patronictl's `get_any_member`: the named one, else the first
/// with the role, else the leader.
fn pick<'a>(cl: &'a pb::Cluster, q: &Query) -> std::result::Result<&'a pb::Member, String> {
    let found = match (&q.member, q.role) {
        (Some(n), _) => cl.members.iter().find(|m| &m.name == n),
        (None, Some(r)) => cl.members.iter().find(|m| role_matches(m, r)),
        (None, None) => cl.members.iter().find(|m| role_matches(m, RoleFilter::Leader)),
    };
    found.ok_or_else(|| match (&q.member, q.role) {
        (Some(n), _) => format!("No connection to member {n} is available"),
        (None, Some(r)) => format!("No connection to role {} is available", role_name(r)),
        (None, None) => "No connection is available".to_string(),
    })
}

fn role_name(r: RoleFilter) -> &'static str {
    match r {
        RoleFilter::Leader => "leader",
        RoleFilter::Primary => "primary",
        RoleFilter::StandbyLeader => "standby-leader",
        RoleFilter::Replica => "replica",
        RoleFilter::Standby => "standby",
        RoleFilter::Any => "any",
    }
}

/// Connects if needed and runs the SQL once; an `Err` is the text of patronictl's error
/// line.
async fn run_once(
    cl: &pb::Cluster,
    q: &Query,
    login: &Login,
    sql: &str,
    conn: &mut Option<tokio_postgres::Client>,
) -> std::result::Result<Table, String> {
    if conn.is_none() {
        let m = pick(cl, q)?;
        let client = connect(m, login).await?;
        // The DCS says what the member was; for a role other than leader or any, check
        // what PostgreSQL is now, as patronictl does.
        let want_recovery = match (q.member.is_some(), q.role) {
            (false, Some(RoleFilter::Replica | RoleFilter::Standby | RoleFilter::StandbyLeader)) => {
                Some(true)
            }
            (false, Some(RoleFilter::Primary)) => Some(false),
            _ => None,
        };
        if let Some(want) = want_recovery {
            let row = client
                .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
                .await
                .map_err(|e| sql_error(&e))?;
            if row.get::<_, bool>(0) != want {
                let r = q.role.map_or("any", role_name);
                return Err(format!("No connection to role {r} is available"));
            }
        }
        *conn = Some(client);
    }
    let Some(client) = conn.as_ref() else {
        return Err("No connection is available".into());
    };
    run(client, sql).await
}

async fn connect(m: &pb::Member, login: &Login) -> std::result::Result<tokio_postgres::Client, String> {
    let host = m.host.clone().unwrap_or_else(|| "localhost".into());
    let port = u16::try_from(m.port.unwrap_or(5432)).unwrap_or(5432);
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&host)
        .port(port)
        .user(&login.user)
        .dbname(login.dbname.as_deref().unwrap_or(&login.user))
        .application_name("pgwardenctl")
        .connect_timeout(CONNECT_TIMEOUT);
    let password = login.password.clone().or_else(|| {
        pgpass(
            &host,
            port,
            login.dbname.as_deref().unwrap_or(&login.user),
            &login.user,
        )
    });
    if let Some(p) = &password {
        cfg.password(p);
    }
    let (client, connection) = cfg.connect(NoTls).await.map_err(|e| sql_error(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// patronictl's error line: the SQLSTATE when the server sent one, else the message, on
/// one line.
fn sql_error(e: &tokio_postgres::Error) -> String {
    let what = match e.code() {
        Some(c) => c.code().to_string(),
        None => crate::ctl::client::dedup_chain(&crate::ctl::chain(e)),
    };
    format!("ERROR, SQLSTATE: {}", what.replace('\n', " "))
}

/// A password from the password file (PGPASSFILE or ~/.pgpass), as libpq reads it.
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var("PGPASSFILE")
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| std::path::Path::new(&h).join(".pgpass"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    let want = [host, port.as_str(), db, user];
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let f = split_pgpass(l);
        (f.len() == 5 && f.iter().zip(want).all(|(a, b)| a == "*" || a == b)).then(|| f[4].clone())
    })
}

/// One line of a password file: five fields separated by `:`, `\` escaping `:` and `\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            _ => field.push(ch),
        }
    }
    fields.push(field);
    fields
}

/// Runs `sql` (one or several statements, simple-query protocol) and returns the last
/// result set, typed by a prepare of the same text when it is one statement (the simple
/// protocol gives names and text only; psycopg would give Python ints, bools and None).
async fn run(client: &tokio_postgres::Client, sql: &str) -> std::result::Result<Table, String> {
    let types: Option<Vec<Type>> = client
        .prepare(sql)
        .await
        .ok()
        .map(|s| s.columns().iter().map(|c| c.type_().clone()).collect());
    let msgs = client.simple_query(sql).await.map_err(|e| sql_error(&e))?;
    let mut columns: Option<Vec<String>> = None;
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut sets = 0;
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                sets += 1;
                columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
                rows.clear();
            }
            SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
            }
            _ => {}
        }
    }
    let types = types.filter(|t| sets == 1 && Some(t.len()) == columns.as_ref().map(Vec::len));
    let typed = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .map(|(i, v)| typed(v, types.as_ref().and_then(|t| t.get(i))))
                .collect()
        })
        .collect();
    Ok((columns, typed))
}

/// A text value as the Python value psycopg makes of it, for the types whose printing
/// differs from PostgreSQL's text.
fn typed(v: Option<String>, t: Option<&Type>) -> SqlValue {
    let Some(v) = v else { return SqlValue::Null };
    let Some(t) = t else { return SqlValue::Text(v) };
    match *t {
        Type::BOOL => SqlValue::Bool(v == "t"),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            v.parse().map_or(SqlValue::Text(v), SqlValue::Int)
        }
        Type::FLOAT4 | Type::FLOAT8 => match v.as_str() {
            "NaN" => SqlValue::Float(f64::NAN),
            "Infinity" => SqlValue::Float(f64::INFINITY),
            "-Infinity" => SqlValue::Float(f64::NEG_INFINITY),
            _ => v.parse().map_or(SqlValue::Text(v), SqlValue::Float),
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => SqlValue::Text(py_datetime(&v)),
        _ => SqlValue::Text(v),
    }
}

/// PostgreSQL's ISO timestamp text as Python's `str(datetime)`: microseconds in six digits
/// (or none), the offset as `+HH:MM`.
fn py_datetime(v: &str) -> String {
    let Some((date, time)) = v.split_once(' ') else {
        return v.to_string();
    };
    let split = time.find(['+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(split);
    let clock = match clock.split_once('.') {
        Some((hms, frac)) => format!("{hms}.{frac:0<6}"),
        None => clock.to_string(),
    };
    let zone = if zone.len() == 3 {
        format!("{zone}:00")
    } else {
        zone.to_string()
    };
    format!("{date} {clock}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_query_values_print_as_python() {
        assert_eq!(
            py_datetime("2026-12-06 23:11:06.5+00"),
            "2026-12-06 23:11:06.500000+00:00"
        );
        assert_eq!(
            py_datetime("2026-12-06 23:11:06+05:30"),
            "2026-12-06 23:11:06+05:30"
        );
        assert_eq!(
            py_datetime("2026-12-06 23:11:06.123456"),
            "2026-12-06 23:11:06.123456"
        );
        assert_eq!(typed(Some("t".into()), Some(&Type::BOOL)), SqlValue::Bool(true));
        assert_eq!(typed(None, Some(&Type::INT4)), SqlValue::Null);
        assert_eq!(typed(Some("42".into()), Some(&Type::INT8)), SqlValue::Int(42));
        assert_eq!(typed(Some("42".into()), None), SqlValue::Text("42".into()));
        assert_eq!(
            split_pgpass(r"h:5432:*:u:p\:w\\d"),
            vec!["h", "5432", "*", "u", r"p:w\d"]
        );
    }
}
