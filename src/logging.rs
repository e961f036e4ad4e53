//! The daemon's own log: what the `log:` section of the configuration asks for, with Patroni's
//! meaning of each key.
//!
//! - `level`, and `loggers` per module: Patroni's logger names are mapped onto pgwarden's
//!   tracing targets ([`map_logger`]). `RUST_LOG`, when set, replaces both.
//! - `type: json` writes one JSON object per line; `format` chooses and renames its fields (a
//!   `%(name)s` string, or a list of names and single-key `{name: renamed}` mappings, as
//!   python-json-logger does) and `static_fields` are added to every line. `type: plain` with a
//!   `format` string renders the same placeholders as text. Without `format`, `dateformat` or
//!   `type: json`, the lines look as they always did (tracing-subscriber's default).
//! - `dateformat` is a strftime string for `%(asctime)s`, in local time.
//! - `dir`: the log goes to `<dir>/pgwarden.log`, rotated when the next line would take it
//!   past `file_size` bytes and keeping `file_num` older files (`pgwarden.log.1` is the most
//!   recent), created with `mode` permissions; stderr otherwise.
//!
//! Everything here is checked before the first line is written: a bad value is an error
//! naming its key, so the daemon refuses to start rather than log somewhere unexpected.

use crate::config::Log;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

/// Patroni's default `file_size` (bytes) and `file_num`.
pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;
/// Patroni's default number of rotated files kept.
pub const DEFAULT_FILE_NUM: u32 = 4;
/// The log file's name inside `log.dir`.
pub const FILE_NAME: &str = "pgwarden.log";

/// Why the `log:` section cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A value of the section is not usable.
    #[error("log.{key}: {why}")]
    Invalid {
        /// The key under `log:`.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The log directory or file cannot be used.
    #[error("log.dir: cannot write {path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A global subscriber was already installed.
    #[error("the log was already set up: {0}")]
    Init(String),
}

fn invalid(key: &'static str, why: impl Into<String>) -> LogError {
    LogError::Invalid { key, why: why.into() }
}

/// A Python level name (DEBUG, INFO, WARNING, ERROR, CRITICAL, also in lower case, and
/// WARN/FATAL) as a tracing directive level.
pub fn map_level(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" | "NOTSET" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => return None,
    })
}

/// The tracing targets a Patroni logger name stands for. `patroni` is pgwarden as a whole;
/// `patroni.<module>` maps to the pgwarden module doing that work (`postgresql` → `postgres`,
/// `ha`, `api`/`restapi` → `api`, `dcs` and the DCS clients → the Raft DCS, `ctl`, `watchdog`,
/// the callback executor → `ha::callbacks`); a deeper name maps by its first part. A name
/// already written as a Rust target (`pgwarden::ha`, `openraft`) is used as it is. Loggers of
/// Python libraries Patroni uses (urllib3, kazoo, etcd, ...) have no counterpart: `None`.
pub fn map_logger(name: &str) -> Option<Vec<String>> {
    let name = name.trim();
    if name.contains("::") || name.starts_with("pgwarden") || name == "openraft" {
        return Some(vec![name.to_string()]);
    }
    let rest = match name.strip_prefix("patroni") {
        Some("") => return Some(vec!["pgwarden".into(), "pgwarden_raft".into()]),
        Some(r) => r.strip_prefix('.')?,
        None => return None,
    };
    if rest.starts_with("postgresql.callback_executor") {
        return Some(vec!["pgwarden::ha::callbacks".into()]);
    }
    let first = rest.split('.').next().unwrap_or_default();
    let targets: &[&str] = match first {
        "postgresql" | "postmaster" | "async_executor" => &["pgwarden::postgres"],
        "ha" => &["pgwarden::ha"],
        "api" | "restapi" | "request" => &["pgwarden::api", "pgwarden::grpc"],
        "dcs" | "raft" | "etcd" | "etcd3" | "consul" | "zookeeper" | "kubernetes" | "exhibitor" => {
            &["pgwarden::dcs", "pgwarden_raft", "openraft"]
        }
        "ctl" => &["pgwarden::ctl"],
        "watchdog" => &["pgwarden::ha::watchdog"],
        "config" | "validator" => &["pgwarden::config"],
        "daemon" => &["pgwarden::daemon"],
        _ => return None,
    };
    Some(targets.iter().map(|t| t.to_string()).collect())
}

/// The filter directives: `level` for everything, openraft's retries quieted, then one
/// directive per mapped `loggers` entry. Unmapped logger names are returned for a warning.
pub fn filter_directives(log: &Log) -> Result<(String, Vec<String>), LogError> {
    let level = log.level();
    let level = map_level(&level).ok_or_else(|| {
        invalid(
            "level",
            format!("unknown level {level:?} (DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
        )
    })?;
    let mut dirs = vec![level.to_string(), "openraft=warn".to_string()];
    let mut unmapped = Vec::new();
    for (name, value) in log.loggers.iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let lvl =
            map_level(&text).ok_or_else(|| invalid("loggers", format!("{name}: unknown level {text:?}")))?;
        match map_logger(name) {
            Some(targets) => dirs.extend(targets.into_iter().map(|t| format!("{t}={lvl}"))),
            None => unmapped.push(name.clone()),
        }
    }
    Ok((dirs.join(","), unmapped))
}

/// One field of a formatted line: the record attribute it shows and the key it has in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Python's record attribute (`asctime`, `levelname`, `message`, `name`, ...).
    pub attr: String,
    /// Its key in a JSON line.
    pub key: String,
}

/// The record attributes pgwarden can fill.
const KNOWN_ATTRS: &[&str] = &[
    "asctime",
    "levelname",
    "message",
    "name",
    "process",
    "thread",
    "threadName",
    "module",
    "filename",
    "pathname",
    "lineno",
    "created",
];

/// The pieces of a `%(attr)s` format string: literal text and attributes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is.
    Text(String),
    /// A record attribute.
    Attr(String),
}

/// Parses Python's `%(name)s` / `%(name)d` / `%(name)-8s` placeholders; `%%` is a `%`.
pub fn parse_format(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('%') {
            text.push('%');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = inner[..close].to_string();
                    // Skip the conversion (flags, width, then one letter).
                    let conv = &inner[close + 1..];
                    let skip = conv
                        .char_indices()
                        .find(|(_, c)| c.is_ascii_alphabetic())
                        .map_or(conv.len(), |(j, c)| j + c.len_utf8());
                    if !text.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    out.push(Piece::Attr(name));
                    rest = &conv[skip..];
                }
                None => {
                    text.push('%');
                    rest = after;
                }
            }
        } else {
            text.push('%');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

/// The JSON fields `log.format` asks for: a format string's attributes, or a list of names and
/// single-key `{attr: key}` mappings.
pub fn json_fields(format: Option<&Value>) -> Result<Vec<FieldSpec>, LogError> {
    let spec = |a: &str, k: &str| FieldSpec {
        attr: a.to_string(),
        key: k.to_string(),
    };
    let fields: Vec<FieldSpec> = match format {
        None => vec![
            spec("asctime", "asctime"),
            spec("levelname", "levelname"),
            spec("message", "message"),
        ],
        Some(Value::String(s)) => parse_format(s)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Attr(a) => Some(spec(&a, &a)),
                Piece::Text(_) => None,
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(a) => Ok(spec(a, a)),
                Value::Object(m) if m.len() == 1 => {
                    let (a, k) = m
                        .iter()
                        .next()
                        .map(|(a, k)| (a.clone(), k.clone()))
                        .unwrap_or_default();
                    match k {
                        Value::String(k) => Ok(spec(&a, &k)),
                        other => Err(invalid(
                            "format",
                            format!("{a}: expected a field name, found {other}"),
                        )),
                    }
                }
                other => Err(invalid(
                    "format",
                    format!("expected a field name or a single-key mapping, found {other}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                "format",
                format!("expected a string or a list, found {other}"),
            ))
        }
    };
    for f in &fields {
        if !KNOWN_ATTRS.contains(&f.attr.as_str()) {
            return Err(invalid(
                "format",
                format!("unknown field {:?} (known: {})", f.attr, KNOWN_ATTRS.join(", ")),
            ));
        }
    }
    Ok(fields)
}

/// How each line is rendered.
#[derive(Clone, Debug)]
pub enum LineFormat {
    /// tracing-subscriber's own format (nothing in `log:` asked for another).
    Default,
    /// A `%(attr)s` string.
    Plain(Vec<Piece>),
    /// One JSON object per line.
    Json {
        /// Fields from the record.
        fields: Vec<FieldSpec>,
        /// `static_fields`.
        statics: Map<String, Value>,
    },
}

/// Patroni's plain default, used when only `dateformat` is set.
const PLAIN_DEFAULT: &str = "%(asctime)s %(levelname)s: %(message)s";

/// The line format the section asks for.
pub fn line_format(log: &Log) -> Result<LineFormat, LogError> {
    let json = match log.log_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("plain") => false,
        Some("json") => true,
        Some(other) => return Err(invalid("type", format!("{other:?}: expected plain or json"))),
    };
    if json {
        return Ok(LineFormat::Json {
            fields: json_fields(log.format.as_ref())?,
            statics: log
                .static_fields
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        });
    }
    match &log.format {
        Some(Value::String(s)) => {
            let pieces = parse_format(s);
            for p in &pieces {
                if let Piece::Attr(a) = p {
                    if !KNOWN_ATTRS.contains(&a.as_str()) {
                        return Err(invalid("format", format!("unknown field {a:?}")));
                    }
                }
            }
            Ok(LineFormat::Plain(pieces))
        }
        Some(other) => Err(invalid(
            "format",
            format!("a plain log takes a format string, found {other}"),
        )),
        None if log.dateformat.is_some() => Ok(LineFormat::Plain(parse_format(PLAIN_DEFAULT))),
        None => Ok(LineFormat::Default),
    }
}

/// Python's level names, which log parsers written for Patroni expect.
fn level_name(l: &tracing::Level) -> &'static str {
    match *l {
        tracing::Level::TRACE | tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => "INFO",
        tracing::Level::WARN => "WARNING",
        tracing::Level::ERROR => "ERROR",
    }
}

/// Collects an event's message and its other fields.
#[derive(Default)]
struct Fields {
    message: String,
    extra: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .insert(field.name().to_string(), Value::String(value.to_string()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.insert(field.name().to_string(), value.into());
    }
}

/// Formats events as `log.format` / `log.type` / `log.dateformat` say.
pub struct PatroniFormat {
    format: LineFormat,
    dateformat: Option<String>,
}

impl PatroniFormat {
    fn asctime(&self) -> String {
        let now = chrono::Local::now();
        match &self.dateformat {
            Some(f) => now.format(f).to_string(),
            // Python logging's default: "2024-05-01 12:00:00,123".
            None => now.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
        }
    }

    fn attr(&self, attr: &str, meta: &tracing::Metadata<'_>, f: &Fields) -> Value {
        match attr {
            "asctime" => self.asctime().into(),
            "levelname" => level_name(meta.level()).into(),
            "message" => f.message.clone().into(),
            "name" => meta.target().into(),
            "process" => std::process::id().into(),
            "thread" | "threadName" => std::thread::current().name().unwrap_or("").into(),
            "module" => meta.module_path().unwrap_or("").into(),
            "filename" | "pathname" => meta.file().unwrap_or("").into(),
            "lineno" => meta.line().unwrap_or(0).into(),
            "created" => (chrono::Utc::now().timestamp_millis() as f64 / 1000.0).into(),
            _ => Value::Null,
        }
    }
}

impl<S, N> FormatEvent<S, N> for PatroniFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        match &self.format {
            LineFormat::Json { fields, statics } => {
                let mut obj = Map::new();
                for spec in fields {
                    obj.insert(spec.key.clone(), self.attr(&spec.attr, meta, &f));
                }
                // Structured fields of the event, as python-json-logger's `extra`; a
                // configured field of the same name keeps its place.
                for (k, v) in &f.extra {
                    obj.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for (k, v) in statics {
                    obj.insert(k.clone(), v.clone());
                }
                writeln!(w, "{}", Value::Object(obj))
            }
            LineFormat::Plain(pieces) => {
                let mut line = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => line.push_str(t),
                        Piece::Attr(a) => match self.attr(a, meta, &f) {
                            Value::String(s) => line.push_str(&s),
                            other => {
                                let _ = write!(line, "{other}");
                            }
                        },
                    }
                }
                for (k, v) in &f.extra {
                    match v {
                        Value::String(s) => {
                            let _ = write!(line, " {k}={s}");
                        }
                        other => {
                            let _ = write!(line, " {k}={other}");
                        }
                    }
                }
                writeln!(w, "{line}")
            }
            // Not reached: the default format is installed without this formatter.
            LineFormat::Default => writeln!(w, "{}", f.message),
        }
    }
}

/// `log.mode` as permission bits. YAML 1.2 (what the loader reads) takes `0640` as the
/// decimal 640, while Patroni's YAML 1.1 takes it as octal: a value above 0o777 whose
/// decimal digits are all octal digits is read as those octal digits.
pub fn file_mode(mode: u32) -> Result<u32, LogError> {
    if mode <= 0o777 {
        return Ok(mode);
    }
    let digits = mode.to_string();
    if digits.len() <= 4 && digits.chars().all(|c| ('0'..='7').contains(&c)) {
        if let Ok(m) = u32::from_str_radix(&digits, 8) {
            if m <= 0o777 {
                return Ok(m);
            }
        }
    }
    Err(invalid("mode", format!("{mode} is not a file mode (e.g. 0640)")))
}

/// A log file rotated by size: when the next write would take it past `max_size`, the files
/// shift (`pgwarden.log` → `.1` → `.2` …), the oldest beyond `keep` is removed, and writing
/// goes on in a new file. Python's RotatingFileHandler does the same for Patroni.
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    mode: Option<u32>,
    state: Mutex<(File, u64)>,
}

impl RotatingFile {
    /// Opens (appending to) `<dir>/pgwarden.log`, creating the directory when missing.
    pub fn open(dir: &Path, max_size: u64, keep: u32, mode: Option<u32>) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::File {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let file = Self::open_file(&path, mode)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path,
            max_size: max_size.max(1),
            keep,
            mode,
            state: Mutex::new((file, size)),
        })
    }

    fn open_file(path: &Path, mode: Option<u32>) -> Result<File, LogError> {
        let mut o = OpenOptions::new();
        o.create(true).append(true);
        if let Some(m) = mode {
            o.mode(m);
        }
        o.open(path).map_err(|source| LogError::File {
            path: path.to_owned(),
            source,
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self, state: &mut (File, u64)) -> std::io::Result<()> {
        if self.keep == 0 {
            // Python's handler with backupCount 0 never rolls over; neither does this.
            return Ok(());
        }
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        let file = Self::open_file(&self.path, self.mode).map_err(|e| match e {
            LogError::File { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?;
        *state = (file, 0);
        Ok(())
    }

    fn write_line(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let len = buf.len() as u64;
        if state.1 > 0 && state.1 + len > self.max_size {
            // A failed rotation must not lose the line: keep writing to the current file.
            if let Err(e) = self.rotate(&mut state) {
                let _ = writeln!(
                    std::io::stderr(),
                    "pgwarden: cannot rotate {}: {e}",
                    self.path.display()
                );
            }
        }
        state.0.write_all(buf)?;
        state.1 += len;
        Ok(())
    }
}

/// The writer handed to tracing-subscriber for one event.
pub struct RotatingWriter(Arc<RotatingFile>);

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where lines go: stderr, or the rotating file.
#[derive(Clone)]
pub enum Sink {
    /// Standard error (journald under systemd).
    Stderr,
    /// `log.dir`.
    File(Arc<RotatingFile>),
}

/// One write target per event (tracing-subscriber writes a whole line at once).
pub enum SinkWriter {
    /// Standard error.
    Stderr(std::io::Stderr),
    /// The rotating file.
    File(RotatingWriter),
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SinkWriter::Stderr(e) => e.write(buf),
            SinkWriter::File(f) => f.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            SinkWriter::Stderr(e) => e.write_all(buf),
            SinkWriter::File(f) => f.0.write_line(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SinkWriter::Stderr(e) => e.flush(),
            SinkWriter::File(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;
    fn make_writer(&'a self) -> SinkWriter {
        match self {
            Sink::Stderr => SinkWriter::Stderr(std::io::stderr()),
            Sink::File(f) => SinkWriter::File(RotatingWriter(f.clone())),
        }
    }
}

/// Opens the sink `log.dir` asks for.
pub fn sink(log: &Log) -> Result<Sink, LogError> {
    let Some(dir) = &log.dir else {
        return Ok(Sink::Stderr);
    };
    let mode = log.mode.map(file_mode).transpose()?;
    let f = RotatingFile::open(
        dir,
        log.file_size.unwrap_or(DEFAULT_FILE_SIZE),
        log.file_num.unwrap_or(DEFAULT_FILE_NUM),
        mode,
    )?;
    Ok(Sink::File(Arc::new(f)))
}

/// Checks the section without opening anything (for `--validate-config`): the error the
/// daemon would refuse to start with, or the warnings it would log.
pub fn check(log: &Log) -> Result<Vec<String>, LogError> {
    let (_, unmapped) = filter_directives(log)?;
    line_format(log)?;
    log.mode.map(file_mode).transpose()?;
    Ok(unmapped_warnings(unmapped))
}

fn unmapped_warnings(unmapped: Vec<String>) -> Vec<String> {
    unmapped
        .into_iter()
        .map(|n| format!("log.loggers.{n}: no pgwarden module corresponds to this logger; ignored"))
        .collect()
}

/// Installs the global subscriber for the daemon from `log:`. Returns warnings to log once
/// the subscriber is up (logger names with no pgwarden counterpart).
pub fn init(log: &Log) -> Result<Vec<String>, LogError> {
    let (directives, unmapped) = filter_directives(log)?;
    let format = line_format(log)?;
    let sink = sink(log)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&directives));
    // Colour codes only on a terminal: journald and log files get plain text.
    let ansi = matches!(sink, Sink::Stderr) && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_ansi(ansi);
    // openraft logs a WARN/ERROR line per failed retry to a down peer, forever: let a few
    // through, then one a minute (our network layer reports the peer's state once).
    let quiet = pgwarden_raft::quiet_log::QuietOpenraft::default();
    let res = match format {
        LineFormat::Default => builder.finish().with(quiet).try_init(),
        other => builder
            .event_format(PatroniFormat {
                format: other,
                dateformat: log.dateformat.clone(),
            })
            .finish()
            .with(quiet)
            .try_init(),
    };
    res.map_err(|e| LogError::Init(e.to_string()))?;
    Ok(unmapped_warnings(unmapped))
}

#[cfg(test)]
mod tests;
