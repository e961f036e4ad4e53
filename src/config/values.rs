//! Small value types of the configuration: addresses, durations, commands, tool options, GUC values.
//!
//! Each parses at the edge (the key walk calls the same parsers, so errors carry the key path) and
//! serialises back to what a Patroni user would write.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// `host:port`, with IPv6 hosts in brackets (`[::1]:8008`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP address, without brackets; empty means "all interfaces" (listen addresses only).
    pub host: String,
    /// TCP port; 0 asks the OS for a free port (listen addresses only, used by tests).
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`; the error text says what is wrong, the caller adds the key.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| "expected host:port".to_string())?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .ok_or_else(|| "unclosed '[' in IPv6 address".to_string())?
        } else if host.contains(':') {
            return Err("IPv6 addresses must be written in brackets, e.g. [::1]:8008".into());
        } else {
            host
        };
        if host.chars().any(|c| c.is_whitespace() || c == '/' || c == ',') {
            return Err(format!("{host:?} is not a host name or address"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostPort::parse(&s).map_err(D::Error::custom)
    }
}

/// PostgreSQL's listen value: one or more comma-separated hosts sharing one port
/// (`127.0.0.1,10.0.0.5:5432`). The first host is the one pgwarden connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// Hosts in order (`*` and `0.0.0.0` allowed).
    pub hosts: Vec<String>,
    /// The port they share.
    pub port: u16,
}

impl ListenAddr {
    /// Parses `host[,host...]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (hosts, port) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| "expected host[,host...]:port".to_string())?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
        let hosts: Vec<String> = hosts.split(',').map(|h| h.trim().to_string()).collect();
        if hosts
            .iter()
            .any(|h| h.is_empty() || h.contains(char::is_whitespace))
        {
            return Err("empty or malformed host in the list".into());
        }
        Ok(ListenAddr { hosts, port })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.hosts.join(","), self.port)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ListenAddr::parse(&s).map_err(D::Error::custom)
    }
}

/// A duration in whole seconds, as Patroni takes them: an integer, or a number with a unit
/// (`ms`, `s`, `min`, `h`, `d`). The original text is kept so a value round-trips as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secs {
    /// The duration in seconds (milliseconds round up, so `500ms` is 1 s, never 0).
    pub secs: u64,
    text: Option<String>,
}

impl Secs {
    /// A duration given as a number of seconds.
    pub fn new(secs: u64) -> Self {
        Secs { secs, text: None }
    }

    /// Parses a JSON/YAML value; `None` if it is not a duration.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_u64().map(Secs::new),
            Value::String(s) => Self::parse_text(s).map(|secs| Secs {
                secs,
                text: Some(s.clone()),
            }),
            _ => None,
        }
    }

    fn parse_text(s: &str) -> Option<u64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let secs = match unit.trim() {
            "" | "s" | "sec" => n,
            "ms" => n.div_ceil(1000),
            "min" => n.checked_mul(60)?,
            "h" => n.checked_mul(3600)?,
            "d" => n.checked_mul(86_400)?,
            _ => return None,
        };
        Some(secs)
    }

    /// As a [`std::time::Duration`].
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_u64(self.secs),
        }
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Secs::from_value(&v).ok_or_else(|| D::Error::custom(format!("bad duration {v}")))
    }
}

/// Watchdog use (Patroni's `watchdog.mode`; `true` means automatic, `false` off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    /// Never open the device.
    Off,
    /// Use the watchdog if it can be opened, carry on without it otherwise.
    #[default]
    Automatic,
    /// Refuse to become leader unless the watchdog is active.
    Required,
}

impl WatchdogMode {
    /// Parses Patroni's words, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" => Some(WatchdogMode::Off),
            "automatic" | "on" | "true" => Some(WatchdogMode::Automatic),
            "required" => Some(WatchdogMode::Required),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for WatchdogMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(true) => Ok(WatchdogMode::Automatic),
            Value::Bool(false) => Ok(WatchdogMode::Off),
            Value::String(s) => {
                WatchdogMode::parse(&s).ok_or_else(|| D::Error::custom(format!("bad watchdog mode {s:?}")))
            }
            other => Err(D::Error::custom(format!("bad watchdog mode {other}"))),
        }
    }
}

/// A script to run: a string, split like a POSIX shell would (quotes respected), or a list of
/// arguments taken verbatim. Patroni accepts both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// `"/usr/local/bin/cb.sh --flag"`.
    Shell(String),
    /// `["/usr/local/bin/cb.sh", "--flag"]`.
    Args(Vec<String>),
}

impl Command {
    /// The argument vector; `None` for an unbalanced quote (the walk has already checked shape,
    /// `validate` checks quoting).
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            Command::Args(a) => Some(a.clone()),
            Command::Shell(s) => split_shell(s),
        }
    }
}

/// Word splitting as the command will be run (see [`crate::shell::split_words`]).
fn split_shell(s: &str) -> Option<Vec<String>> {
    crate::shell::split_words(s).ok()
}

/// One option for a PostgreSQL tool (`initdb`, `pg_basebackup`, `pg_rewind`): `data-checksums` or
/// `encoding: UTF8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOpt {
    /// Long option name without dashes.
    pub name: String,
    /// Its value, if it takes one.
    pub value: Option<String>,
}

impl ToolOpt {
    /// As a command-line argument: `--name` or `--name=value`.
    pub fn arg(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={v}", self.name),
            None => format!("--{}", self.name),
        }
    }
}

/// Options for a tool, in order. Patroni accepts a list of strings and single-key mappings, and
/// (older form) a plain mapping; both become this list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolOptions(pub Vec<ToolOpt>);

impl ToolOptions {
    /// The command-line arguments.
    pub fn args(&self) -> Vec<String> {
        self.0.iter().map(ToolOpt::arg).collect()
    }
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'de> Deserialize<'de> for ToolOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pair = |k: &String, v: &Value| ToolOpt {
            name: k.clone(),
            value: Some(scalar_string(v)),
        };
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(ToolOpt {
                        name: s.clone(),
                        value: None,
                    }),
                    Value::Object(m) if m.len() == 1 => {
                        Ok(m.iter().map(|(k, v)| pair(k, v)).collect::<Vec<_>>().remove(0))
                    }
                    other => Err(D::Error::custom(format!(
                        "expected a string or a single-key mapping, found {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(ToolOptions),
            Value::Object(m) => Ok(ToolOptions(m.iter().map(|(k, v)| pair(k, v)).collect())),
            other => Err(D::Error::custom(format!(
                "expected a list of options, found {other}"
            ))),
        }
    }
}

impl Serialize for ToolOptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items: Vec<Value> = self
            .0
            .iter()
            .map(|o| match &o.value {
                None => Value::String(o.name.clone()),
                Some(v) => {
                    let mut m = serde_json::Map::new();
                    m.insert(o.name.clone(), Value::String(v.clone()));
                    Value::Object(m)
                }
            })
            .collect();
        items.serialize(s)
    }
}

/// A GUC value as written in YAML. Rendered for postgresql.conf by [`fmt::Display`]
/// (booleans as `on`/`off`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GucValue {
    /// `on` / `off`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// Text, units included (`128MB`).
    Str(String),
}

impl GucValue {
    /// The text PostgreSQL is given for a JSON value written in a configuration: strings as
    /// they are, booleans as `on`/`off`, anything else as JSON prints it.
    pub fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Bool(true) => "on".into(),
            Value::Bool(false) => "off".into(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for GucValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GucValue::Bool(true) => f.write_str("on"),
            GucValue::Bool(false) => f.write_str("off"),
            GucValue::Int(n) => write!(f, "{n}"),
            GucValue::Float(x) => write!(f, "{x}"),
            GucValue::Str(s) => f.write_str(s),
        }
    }
}

/// A flag as Patroni's `parse_bool` reads it (see [`lenient::bool_value`]); anything that is not
/// a recognisable boolean counts as false. For tags and request fields, where a bad value is not
/// worth an error.
pub fn flag(v: &Value) -> bool {
    lenient::bool_value(v).unwrap_or(false)
}

/// serde helpers for integers that Patroni accepts as numbers or numeric strings (it calls `int()`).
pub(crate) mod lenient {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn opt_int<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64>,
    {
        let v = Option::<Value>::deserialize(d)?;
        let n = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        let n = n.ok_or_else(|| D::Error::custom("expected an integer"))?;
        T::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{n} is out of range")))
    }

    /// A flag as Patroni's `parse_bool` reads it: a boolean, `1`/`0`, or one of the words
    /// on/off, true/false, yes/no (any case). Anything else is an error naming the value.
    pub fn opt_bool<'de, D>(d: D) -> Result<Option<bool>, D::Error>
    where
        D: Deserializer<'de>,
    {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => bool_value(&v).map(Some).ok_or_else(|| {
                D::Error::custom(format!("{v} is not a boolean (true/false, on/off, yes/no, 1/0)"))
            }),
        }
    }

    /// [`opt_bool`]'s rule for one JSON value.
    pub fn bool_value(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            Value::String(s) => super::parse_bool(s),
            _ => None,
        }
    }
}

/// Patroni's boolean words (`parse_bool`): on/off, true/false, yes/no, 1/0, case-insensitive.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "y" | "t" => Some(true),
        "off" | "false" | "no" | "0" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// `synchronous_mode`: Patroni accepts a boolean or `on` / `off` / `quorum`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// Patroni-managed `synchronous_standby_names` with `synchronous_node_count` standbys.
    On,
    /// Quorum commit (`ANY k (...)`).
    Quorum,
}

impl SyncMode {
    /// Parses `on`/`off`/`quorum` and the boolean words.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quorum" => Some(SyncMode::Quorum),
            other => parse_bool(other).map(|b| if b { SyncMode::On } else { SyncMode::Off }),
        }
    }
}

impl Serialize for SyncMode {
    /// Booleans for on/off so that every Patroni version and tool reading the key understands it.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncMode::Off => s.serialize_bool(false),
            SyncMode::On => s.serialize_bool(true),
            SyncMode::Quorum => s.serialize_str("quorum"),
        }
    }
}

impl<'de> Deserialize<'de> for SyncMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(if b { SyncMode::On } else { SyncMode::Off }),
            Value::String(s) => {
                SyncMode::parse(&s).ok_or_else(|| D::Error::custom(format!("bad synchronous_mode {s:?}")))
            }
            other => Err(D::Error::custom(format!("bad synchronous_mode {other}"))),
        }
    }
}
