//! patronictl's output for `list`, `topology` and `history`: pure functions from the admin
//! API's messages to text, checked against patronictl's own output by golden tests.

use super::pyfmt;
use crate::pb;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Output formats (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table.
    Pretty,
    /// Tab-separated values, a header line first.
    Tsv,
    /// A JSON array of objects.
    Json,
    /// A YAML list of mappings (also `yml`).
    #[value(alias = "yml")]
    Yaml,
    /// The table with replicas indented under their upstream (`topology`).
    #[value(skip)]
    Topology,
}

impl Format {
    fn is_table(self) -> bool {
        matches!(self, Format::Pretty | Format::Topology)
    }
}

/// A cell: text, a number (kept a number in JSON and YAML), or tags (an object).
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Text(String),
    Int(i64),
    Tags(Map<String, Value>),
    /// SQL NULL: Python's None (`query`).
    Null,
    /// Python's True and False (`query`).
    Bool(bool),
    /// A float, printed as Python prints it (`query`).
    Float(f64),
}

impl Cell {
    fn is_empty(&self) -> bool {
        matches!(self, Cell::Text(t) if t.is_empty())
    }
    fn to_value(&self) -> Value {
        match self {
            Cell::Text(t) => Value::String(t.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Tags(m) => Value::Object(m.clone()),
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Float(f) => {
                serde_json::Number::from_f64(*f).map_or_else(|| Value::String(py_float(*f)), Value::Number)
            }
        }
    }

    /// Python's `str()` of the value (TSV and tables).
    fn py_str(&self, fmt: Format) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(i) => i.to_string(),
            // Block YAML in the table, flow YAML (one line) elsewhere.
            Cell::Tags(m) if fmt == Format::Pretty => {
                pyfmt::yaml_block(&Value::Object(m.clone())).trim().to_string()
            }
            Cell::Tags(m) => pyfmt::yaml_flow(&Value::Object(m.clone())),
            Cell::Null => "None".into(),
            Cell::Bool(b) => if *b { "True" } else { "False" }.into(),
            Cell::Float(f) => py_float(*f),
        }
    }
}

/// Python's `repr` of a float: the shortest text that reads back, always with a decimal
/// point or exponent (`1.0`, `1e+20`), `nan`, `inf`.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent notation outside [1e-4, 1e16): 1e+20, 1.5e-05.
        let t = format!("{f:e}");
        let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let t = format!("{f}");
    if t.contains('.') {
        t
    } else {
        t + ".0"
    }
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A table as patronictl's PrettyTable prints it.
struct Table {
    title: String,
    columns: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                let cells = self.rows.iter().flat_map(|r| r[i].split('\n'));
                cells
                    .chain(std::iter::once(self.columns[i].as_str()))
                    .map(|l| l.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let hrule: String = {
            let mut s = String::from("+");
            for w in &widths {
                s.push_str(&"-".repeat(w + 2));
                s.push('+');
            }
            s
        };
        let line = |cells: Vec<&str>| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push(' ');
                match self.align[i] {
                    Align::Left => {
                        s.push_str(c);
                        s.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(c);
                    }
                }
                s.push_str(" |");
            }
            s
        };
        let mut out = Vec::new();
        // The title overwrites the top border after its first character, as patronictl's
        // PatronictlPrettyTable does (cut if the table is narrower than the title).
        let top: Vec<char> = hrule.chars().collect();
        let title: Vec<char> = self.title.chars().take(top.len().saturating_sub(2)).collect();
        let mut first: String = top[..1].iter().collect();
        first.extend(title.iter());
        first.extend(top[1 + title.len()..].iter());
        out.push(first);
        out.push(line(self.columns.iter().map(String::as_str).collect()));
        out.push(hrule.clone());
        let multiline = self.rows.iter().any(|r| r.iter().any(|c| c.contains('\n')));
        for (n, r) in self.rows.iter().enumerate() {
            let split: Vec<Vec<&str>> = r.iter().map(|c| c.split('\n').collect()).collect();
            let height = split.iter().map(Vec::len).max().unwrap_or(1);
            for k in 0..height {
                out.push(line(
                    split.iter().map(|c| c.get(k).copied().unwrap_or("")).collect(),
                ));
            }
            if multiline && n + 1 < self.rows.len() {
                out.push(hrule.clone());
            }
        }
        out.push(hrule);
        out.join("\n") + "\n"
    }
}

/// patronictl's `print_output`: the same rows as a table, TSV, JSON or YAML. With a title
/// (the cluster listing), JSON and YAML leave out empty cells.
fn print_output(
    columns: &[String],
    rows: Vec<Vec<Cell>>,
    right: &[&str],
    fmt: Format,
    title: &str,
) -> String {
    print_output_with(columns, rows, right, fmt, title, "\t")
}

/// [`print_output`] with TSV's delimiter given (`query --delimiter`).
fn print_output_with(
    columns: &[String],
    rows: Vec<Vec<Cell>>,
    right: &[&str],
    fmt: Format,
    title: &str,
    delimiter: &str,
) -> String {
    match fmt {
        Format::Json | Format::Yaml => {
            let objects: Vec<Vec<(String, Value)>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .zip(r)
                        .filter(|(_, c)| title.is_empty() || !c.is_empty())
                        .map(|(k, c)| (k.clone(), c.to_value()))
                        .collect()
                })
                .collect();
            if fmt == Format::Json {
                // Built by hand: keys must stay in column order.
                let items: Vec<String> = objects
                    .iter()
                    .map(|o| {
                        let fields: Vec<String> = o
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{}: {}",
                                    pyfmt::json_dumps(&Value::String(k.clone())),
                                    pyfmt::json_dumps(v)
                                )
                            })
                            .collect();
                        format!("{{{}}}", fields.join(", "))
                    })
                    .collect();
                format!("[{}]\n", items.join(", "))
            } else {
                let list = Value::Array(
                    objects
                        .into_iter()
                        .map(|o| Value::Object(o.into_iter().collect()))
                        .collect(),
                );
                pyfmt::yaml_block(&list) + "\n"
            }
        }
        Format::Tsv | Format::Pretty | Format::Topology => {
            let list_cluster = !title.is_empty() && columns.first().map(String::as_str) == Some("Cluster");
            let strings: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(|c| c.py_str(fmt)).collect())
                .collect();
            if fmt == Format::Tsv {
                let mut out = String::new();
                let header = (!columns.is_empty()).then(|| columns.to_vec());
                for r in header.into_iter().chain(strings) {
                    out.push_str(&r.join(delimiter));
                    out.push('\n');
                }
                return out;
            }
            let skip = usize::from(list_cluster);
            let columns: Vec<String> = columns[skip..].to_vec();
            Table {
                title: title.to_string(),
                align: columns
                    .iter()
                    .map(|c| {
                        if right.contains(&c.as_str()) {
                            Align::Right
                        } else {
                            Align::Left
                        }
                    })
                    .collect(),
                columns,
                rows: strings.into_iter().map(|r| r[skip..].to_vec()).collect(),
            }
            .render()
        }
    }
}

fn parse_json_object(s: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) if !m.is_empty() => Some(m),
        _ => None,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lag in MB rounded as Python's `round` does (half to even).
fn lag_mb(bytes: Option<u64>) -> Cell {
    match bytes {
        Some(b) => Cell::Int((b as f64 / 1024.0 / 1024.0).round_ties_even() as i64),
        None => text(""),
    }
}

/// patronictl's topology order: the leader, then each member under its upstream
/// (`replicatefrom` when that names another replica), indented two spaces per level.
fn topology_sort(members: &[pb::Member]) -> Vec<(pb::Member, String)> {
    let is_leader = |m: &pb::Member| m.role.ends_with("leader");
    let leader = members.iter().find(|m| is_leader(m)).map(|m| m.name.clone());
    let replicas: BTreeSet<&str> = members
        .iter()
        .filter(|m| !is_leader(m))
        .map(|m| m.name.as_str())
        .collect();
    let parent_of = |m: &pb::Member| {
        let from = parse_json_object(&m.tags_json)
            .and_then(|t| t.get("replicatefrom").map(value_text))
            .filter(|p| !p.is_empty() && *p != m.name && replicas.contains(p.as_str()));
        from.or_else(|| leader.clone())
    };
    let mut out = Vec::new();
    fn walk(
        level: usize,
        name: Option<&str>,
        members: &[pb::Member],
        parent_of: &dyn Fn(&pb::Member) -> Option<String>,
        out: &mut Vec<(pb::Member, String)>,
        depth_left: usize,
    ) {
        if depth_left == 0 {
            return;
        }
        for m in members.iter().filter(|m| !m.role.ends_with("leader")) {
            if parent_of(m).as_deref() == name {
                let shown = format!("{}+ {}", " ".repeat(level.saturating_sub(1) * 2), m.name);
                out.push((m.clone(), shown));
                walk(level + 1, Some(&m.name), members, parent_of, out, depth_left - 1);
            }
        }
    }
    if let Some(l) = members.iter().find(|m| is_leader(m)) {
        out.push((l.clone(), l.name.clone()));
    }
    walk(
        1,
        leader.as_deref(),
        members,
        &parent_of,
        &mut out,
        members.len() + 1,
    );
    out
}

/// A question about one member (does it have a value for an optional column?).
type MemberTest = dyn Fn(&pb::Member) -> bool;

/// `list` (and `topology` with [`Format::Topology`]): the cluster table with patronictl's
/// columns, then, in the table formats, the maintenance and scheduled-switchover footers.
pub fn list(cluster: &pb::Cluster, fmt: Format, extended: bool) -> String {
    let name = &cluster.scope;
    let initialize = match &cluster.system_identifier {
        None => "uninitialized",
        Some(s) if s.is_empty() => "initializing",
        Some(s) => s.as_str(),
    };
    let mut columns: Vec<String> = [
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ]
    .map(String::from)
    .to_vec();
    // Only members with a host count, as in patronictl.
    let hosted: Vec<&pb::Member> = cluster.members.iter().filter(|m| m.host.is_some()).collect();
    let optional: [(&str, &MemberTest); 4] = [
        ("Pending restart", &|m| m.pending_restart),
        ("Pending restart reason", &|m| {
            parse_json_object(&m.pending_restart_reason_json).is_some()
        }),
        ("Scheduled restart", &|m| {
            parse_json_object(&m.scheduled_restart_json).is_some()
        }),
        ("Tags", &|m| parse_json_object(&m.tags_json).is_some()),
    ];
    for (c, has) in optional {
        if extended || hosted.iter().any(|m| has(m)) {
            columns.push(c.to_string());
        }
    }
    let hosts: BTreeSet<&str> = hosted.iter().filter_map(|m| m.host.as_deref()).collect();
    let append_port = hosted.iter().any(|m| m.port.is_some_and(|p| p != 5432)) || hosts.len() < hosted.len();

    let ordered: Vec<(pb::Member, String)> = if fmt == Format::Topology {
        topology_sort(&cluster.members)
    } else {
        cluster
            .members
            .iter()
            .map(|m| (m.clone(), m.name.clone()))
            .collect()
    };
    let mut rows = Vec::new();
    for (m, shown) in ordered {
        let reason = parse_json_object(&m.pending_restart_reason_json)
            .map(|r| {
                r.iter()
                    .map(|(guc, v)| {
                        let full = format!(
                            "{guc}: {}->{}",
                            v.get("old_value").map(value_text).unwrap_or_default(),
                            v.get("new_value").map(value_text).unwrap_or_default()
                        );
                        if fmt.is_table() && full.chars().count() > 50 {
                            format!("{guc}: [hidden - too long]")
                        } else {
                            full
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let mut host = m.host.clone().unwrap_or_default();
        if append_port && !host.is_empty() {
            if let Some(p) = m.port {
                host = format!("{host}:{p}");
            }
        }
        let scheduled = parse_json_object(&m.scheduled_restart_json)
            .map(|s| {
                let mut v = s.get("schedule").map(value_text).unwrap_or_default();
                if let Some(ver) = s.get("postgres_version") {
                    v.push_str(&format!(" if version < {}", value_text(ver)));
                }
                v
            })
            .unwrap_or_default();
        let role = m
            .role
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| {
                        f.to_uppercase()
                            .chain(c.flat_map(char::to_lowercase))
                            .collect::<String>()
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let row: Vec<Cell> = columns
            .iter()
            .map(|c| match c.as_str() {
                "Cluster" => text(name.clone()),
                "Member" => text(shown.clone()),
                "Host" => text(host.clone()),
                "Role" => text(role.clone()),
                "State" => text(m.state.clone()),
                "TL" => m.timeline.map_or_else(|| text(""), |t| Cell::Int(i64::from(t))),
                "Receive LSN" => text(m.receive_lsn.clone().unwrap_or_default()),
                "Receive Lag" => lag_mb(m.receive_lag),
                "Replay LSN" => text(m.replay_lsn.clone().unwrap_or_default()),
                "Replay Lag" => lag_mb(m.replay_lag),
                "Pending restart" => text(if m.pending_restart { "*" } else { "" }),
                "Pending restart reason" => text(reason.clone()),
                "Scheduled restart" => text(scheduled.clone()),
                "Tags" => parse_json_object(&m.tags_json).map_or_else(|| text(""), Cell::Tags),
                _ => text(""),
            })
            .collect();
        rows.push(row);
    }
    let title = format!(" Cluster: {name} ({initialize}) ");
    if fmt.is_table() {
        for c in columns.iter_mut() {
            if c == "Receive Lag" || c == "Replay Lag" {
                *c = "Lag".into();
            }
        }
    }
    let mut out = print_output(
        &columns,
        rows,
        &["Receive LSN", "Replay LSN", "Lag", "TL"],
        fmt,
        &title,
    );
    if fmt.is_table() {
        let info = service_info(cluster);
        if !info.is_empty() {
            out.push(' ');
            out.push_str(&info.join("\n "));
            out.push('\n');
        }
    }
    out
}

/// The footers: maintenance mode and a scheduled switchover.
fn service_info(c: &pb::Cluster) -> Vec<String> {
    let mut info = Vec::new();
    if c.paused {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(s) = &c.scheduled_switchover {
        let mut line = format!("Switchover scheduled at: {}", s.at);
        for (k, v) in [("from", &s.from), ("to", &s.to)] {
            if let Some(v) = v {
                line.push_str(&format!("\n{k:>24}: {v}"));
            }
        }
        info.push(line);
    }
    info
}

/// `history`: TL, LSN, Reason, Timestamp, New Leader.
pub fn history(h: &pb::History, fmt: Format) -> String {
    let columns: Vec<String> = ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
        .map(String::from)
        .to_vec();
    let rows = h
        .entries
        .iter()
        .map(|e| {
            vec![
                Cell::Int(i64::from(e.timeline)),
                Cell::Int(i64::try_from(e.lsn).unwrap_or(i64::MAX)),
                text(e.reason.clone()),
                text(e.timestamp.clone().unwrap_or_default()),
                text(e.new_leader.clone().unwrap_or_default()),
            ]
        })
        .collect();
    print_output(&columns, rows, &["TL", "LSN"], fmt, "")
}

/// `members list`: the Raft voters and learners, the leader first marked.
pub fn raft_members(m: &pb::RaftMembers, fmt: Format) -> String {
    let leader = m
        .members
        .iter()
        .find(|x| x.id == m.leader_id)
        .map_or_else(|| "none".to_string(), |x| x.name.clone());
    // Site and Vote come last so scripts that read the first six columns keep working.
    let columns: Vec<String> = ["Id", "Name", "Address", "Role", "Matched", "Lag", "Site", "Vote"]
        .map(String::from)
        .to_vec();
    let rows = m
        .members
        .iter()
        .map(|x| {
            let role = if x.leader {
                "Leader"
            } else if x.voter {
                "Voter"
            } else {
                "Learner"
            };
            vec![
                text(x.id.to_string()),
                text(x.name.clone()),
                text(x.addr.clone()),
                text(role),
                x.matched
                    .map_or_else(|| text(""), |v| Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))),
                x.matched.map_or_else(
                    || text(""),
                    |v| Cell::Int(i64::try_from(m.last_log_index.saturating_sub(v)).unwrap_or(i64::MAX)),
                ),
                text(x.site.clone()),
                text(x.why.clone()),
            ]
        })
        .collect();
    let title = format!(" Raft: leader {leader}, term {} ", m.term);
    let fmt = if fmt == Format::Topology {
        Format::Pretty
    } else {
        fmt
    };
    let title = if fmt == Format::Pretty {
        title
    } else {
        String::new()
    };
    print_output(&columns, rows, &["Id", "Matched", "Lag"], fmt, &title)
}

fn int(v: u64) -> Cell {
    Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn opt_int(v: Option<u64>) -> Cell {
    v.map_or_else(|| text(""), int)
}

/// Tables only, as in `members list`: JSON and YAML carry no title.
fn table_title(fmt: Format, title: String) -> (Format, String) {
    let fmt = if fmt == Format::Topology {
        Format::Pretty
    } else {
        fmt
    };
    let title = if fmt == Format::Pretty {
        title
    } else {
        String::new()
    };
    (fmt, title)
}

/// `dcs get`: one row per key; TTL and lease time left in milliseconds.
pub fn dcs_keys(k: &pb::DcsKeys, fmt: Format) -> String {
    let columns: Vec<String> = [
        "Key",
        "Value",
        "Create revision",
        "Mod revision",
        "TTL ms",
        "Lease left ms",
    ]
    .map(String::from)
    .to_vec();
    let rows = k
        .keys
        .iter()
        .map(|x| {
            vec![
                text(x.key.clone()),
                text(x.value.clone()),
                int(x.create_revision),
                int(x.mod_revision),
                opt_int(x.ttl_ms),
                opt_int(x.lease_left_ms),
            ]
        })
        .collect();
    let (fmt, title) = table_title(
        fmt,
        format!(" DCS: {} keys at revision {} ", k.keys.len(), k.revision),
    );
    print_output(
        &columns,
        rows,
        &["Create revision", "Mod revision", "TTL ms", "Lease left ms"],
        fmt,
        &title,
    )
}

/// `dcs status`: one row per Raft member, as each reports itself (`unreachable` with the
/// reason when it did not answer).
pub fn dcs_status(s: &pb::DcsStatus, fmt: Format) -> String {
    let name_of = |id: u64| {
        s.members.iter().find(|m| m.id == id && id != 0).map_or_else(
            || if id == 0 { String::new() } else { id.to_string() },
            |m| m.name.clone(),
        )
    };
    let columns: Vec<String> = [
        "Member",
        "Id",
        "Address",
        "Role",
        "Term",
        "Leader",
        "Last index",
        "Applied",
        "Store bytes",
        "Snapshot bytes",
        "Snapshot index",
        "Leases",
        "Reaper",
        "Error",
    ]
    .map(String::from)
    .to_vec();
    let rows = s
        .members
        .iter()
        .map(|m| {
            if !m.reachable {
                let mut row = vec![
                    text(m.name.clone()),
                    int(m.id),
                    text(m.addr.clone()),
                    text("unreachable"),
                ];
                row.extend((0..9).map(|_| text("")));
                row.push(text(m.error.clone()));
                return row;
            }
            let role = if m.voter || m.role != "learner" {
                m.role.clone()
            } else {
                "learner".into()
            };
            vec![
                text(m.name.clone()),
                int(m.id),
                text(m.addr.clone()),
                text(role),
                int(m.term),
                text(name_of(m.leader_id)),
                int(m.last_log_index),
                int(m.applied),
                int(m.store_bytes),
                int(m.snapshot_bytes),
                opt_int(m.snapshot_index),
                int(m.lease_keys),
                text(if m.reaper_active { "active" } else { "idle" }),
                text(m.error.clone()),
            ]
        })
        .collect();
    let answered = name_of(s.answered_by);
    let (fmt, title) = table_title(fmt, format!(" DCS members (asked by {answered}) "));
    print_output(
        &columns,
        rows,
        &[
            "Id",
            "Term",
            "Last index",
            "Applied",
            "Store bytes",
            "Snapshot bytes",
            "Snapshot index",
            "Leases",
        ],
        fmt,
        &title,
    )
}

/// One value of a `query` result, typed as patronictl's driver (psycopg) would give it to
/// Python, which decides how it prints.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// boolean.
    Bool(bool),
    /// smallint, integer, bigint, oid.
    Int(i64),
    /// real, double precision.
    Float(f64),
    /// Anything else, as PostgreSQL's text.
    Text(String),
}

/// `query`'s output: the columns (none for an error line) and rows in patronictl's
/// formats (`pretty`, `tsv` with `delimiter`, `json`, `yaml`). As in Python, where the
/// rows become dicts, JSON and YAML keep one value per column name (the last one).
pub fn query(columns: Option<&[String]>, rows: &[Vec<SqlValue>], fmt: Format, delimiter: &str) -> String {
    let cell = |v: &SqlValue| match v {
        SqlValue::Null => Cell::Null,
        SqlValue::Bool(b) => Cell::Bool(*b),
        SqlValue::Int(i) => Cell::Int(*i),
        SqlValue::Float(f) => Cell::Float(*f),
        SqlValue::Text(t) => Cell::Text(t.clone()),
    };
    let mut rows: Vec<Vec<Cell>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let mut columns: Vec<String> = columns.map(<[String]>::to_vec).unwrap_or_default();
    match fmt {
        Format::Json | Format::Yaml => {
            let mut names: Vec<String> = Vec::new();
            for c in &columns {
                if !names.contains(c) {
                    names.push(c.clone());
                }
            }
            rows = rows
                .into_iter()
                .map(|r| {
                    names
                        .iter()
                        .map(|n| {
                            let last = columns.iter().zip(&r).rfind(|(c, _)| *c == n);
                            last.map_or(Cell::Null, |(_, v)| v.clone())
                        })
                        .collect()
                })
                .collect();
            columns = names;
        }
        Format::Pretty | Format::Topology if columns.is_empty() => {
            // PrettyTable names the columns itself when none are given.
            let n = rows.first().map_or(0, Vec::len);
            columns = (1..=n).map(|i| format!("Field {i}")).collect();
        }
        _ => {}
    }
    print_output_with(&columns, rows, &[], fmt, "", delimiter)
}
