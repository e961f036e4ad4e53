//! `pgwarden convert-patroni-config`: a Patroni configuration file turned into a pgwarden one.
//!
//! The DCS section (`etcd3:`, `etcd:`, `consul:`, ..., or Patroni's own `raft:`) is replaced by a
//! `raft:` section for the embedded DCS; every other key is carried over unchanged, in its order,
//! so that the result is the same cluster. What pgwarden does not apply is then reported by the
//! ordinary validation of the result (the key table), not by a list kept here.
//!
//! The Raft addresses are the one thing that cannot be read off a Patroni file with certainty.
//! This node's host is the one its REST API is reached at (`restapi.connect_address`, else
//! `postgresql.connect_address`). The partners are taken from the etcd/Consul host list only when
//! that list names this host too, which is the sign of a DCS run on the database hosts
//! themselves; a DCS on hosts of its own says nothing about where the other members run, so the
//! operator must name them (`--partner`).

use super::values::HostPort;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// The sections of a Patroni file that configure its DCS; the first found is the one replaced.
pub const DCS_SECTIONS: &[&str] = &[
    "etcd3",
    "etcd",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

/// Choices the Patroni file cannot make.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The port of the embedded Raft on every member (the host part comes from the file).
    pub raft_port: u16,
    /// Where the Raft data goes (`raft.data_dir`).
    pub raft_data_dir: PathBuf,
    /// This node's Raft address, when it cannot be derived (or should not be).
    pub self_addr: Option<HostPort>,
    /// The other members' Raft addresses, when they cannot be derived (or should not be).
    pub partners: Option<Vec<HostPort>>,
}

/// Why a file could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not YAML.
    #[error("{path}: not a YAML document: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// YAML, but not a mapping at the top.
    #[error("{path}: a Patroni configuration is a mapping of sections at the top level")]
    NotAMapping {
        /// The file.
        path: PathBuf,
    },
    /// No address to derive this node's Raft address from.
    #[error(
        "cannot tell this node's address: neither restapi.connect_address nor postgresql.connect_address is \
         set; pass --self-addr HOST:PORT"
    )]
    NoSelfAddress,
    /// An address in the file that does not parse.
    #[error("{key}: `{value}` is not host:port ({why})")]
    BadAddress {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// Why it does not parse.
        why: String,
    },
    /// No partners given or derivable.
    #[error("cannot tell the other members' Raft addresses: {why}; pass --partner HOST:PORT once per other member")]
    NoPartners {
        /// What was looked at.
        why: String,
    },
    /// The result could not be written as YAML (not expected for a document that was read).
    #[error("cannot write the converted configuration: {0}")]
    Emit(serde_yaml::Error),
}

/// Where a Raft address came from, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The address.
    pub addr: HostPort,
    /// The key or flag it was taken from.
    pub from: String,
}

/// The converted file and what the conversion decided.
#[derive(Debug)]
pub struct Converted {
    /// The pgwarden configuration, as YAML.
    pub yaml: String,
    /// The DCS sections removed (with their names).
    pub removed: Vec<String>,
    /// This node's Raft address.
    pub self_addr: Derived,
    /// The partners' Raft addresses.
    pub partners: Vec<Derived>,
}

/// Converts the Patroni configuration `text` (read from `path`, named in errors).
pub fn convert(text: &str, path: &Path, opts: &ConvertOptions) -> Result<Converted, ConvertError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|source| ConvertError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Mapping(root) = doc else {
        return Err(ConvertError::NotAMapping {
            path: path.to_path_buf(),
        });
    };

    let self_addr = self_address(&root, opts)?;
    let partners = partner_addresses(&root, &self_addr.addr, opts)?;

    let mut raft = Mapping::new();
    raft.insert(
        "data_dir".into(),
        Value::String(opts.raft_data_dir.display().to_string()),
    );
    raft.insert("self_addr".into(), Value::String(self_addr.addr.to_string()));
    raft.insert(
        "partner_addrs".into(),
        Value::Sequence(
            partners
                .iter()
                .map(|p| Value::String(p.addr.to_string()))
                .collect(),
        ),
    );

    // The raft section takes the place of the first DCS section, so the file reads as before.
    let mut out = Mapping::new();
    let mut removed = Vec::new();
    for (k, v) in root {
        let name = k.as_str().unwrap_or_default().to_string();
        if DCS_SECTIONS.contains(&name.as_str()) {
            if removed.is_empty() {
                out.insert("raft".into(), Value::Mapping(raft.clone()));
            }
            removed.push(name);
            continue;
        }
        out.insert(k, v);
    }
    if removed.is_empty() {
        out.insert("raft".into(), Value::Mapping(raft));
    }
    let body = serde_yaml::to_string(&Value::Mapping(out)).map_err(ConvertError::Emit)?;
    let header = format!(
        "# pgwarden configuration converted from the Patroni file {} by `pgwarden convert-patroni-config`.\n\
         # The DCS section ({}) is replaced by `raft:`; every other key is carried over. Comments of\n\
         # the original are not. Check it on this host with `pgwarden --validate-config`.\n",
        path.display(),
        if removed.is_empty() {
            "none was found".to_string()
        } else {
            removed.join(", ")
        },
    );
    Ok(Converted {
        yaml: header + &body,
        removed,
        self_addr,
        partners,
    })
}

fn get<'a>(root: &'a Mapping, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(root.get(*first)?, |v, seg| v.get(*seg))
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(s: &str) -> String {
    match HostPort::parse(s) {
        Ok(hp) => hp.host,
        Err(_) => s.trim().trim_start_matches('[').trim_end_matches(']').to_string(),
    }
}

fn self_address(root: &Mapping, opts: &ConvertOptions) -> Result<Derived, ConvertError> {
    if let Some(a) = &opts.self_addr {
        return Ok(Derived {
            addr: a.clone(),
            from: "--self-addr".into(),
        });
    }
    for key in [
        &["restapi", "connect_address"][..],
        &["postgresql", "connect_address"],
    ] {
        if let Some(Value::String(s)) = get(root, key) {
            return Ok(Derived {
                addr: HostPort {
                    host: host_of(s),
                    port: opts.raft_port,
                },
                from: format!("the host of {} with --raft-port", key.join(".")),
            });
        }
    }
    Err(ConvertError::NoSelfAddress)
}

/// The DCS host list of the file: `hosts` as a list or a comma-separated string, or `host`.
fn dcs_hosts(root: &Mapping) -> Option<(String, Vec<String>)> {
    for section in ["etcd3", "etcd", "consul", "zookeeper"] {
        let Some(Value::Mapping(s)) = root.get(section) else {
            continue;
        };
        let list: Vec<String> = match s.get("hosts") {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(csv)) => csv.split(',').map(|h| h.trim().to_string()).collect(),
            _ => match s.get("host") {
                Some(Value::String(h)) => vec![h.clone()],
                _ => Vec::new(),
            },
        };
        let list: Vec<String> = list.into_iter().filter(|h| !h.is_empty()).collect();
        if !list.is_empty() {
            return Some((format!("{section}.hosts"), list));
        }
    }
    None
}

fn partner_addresses(
    root: &Mapping,
    me: &HostPort,
    opts: &ConvertOptions,
) -> Result<Vec<Derived>, ConvertError> {
    if let Some(ps) = &opts.partners {
        return Ok(ps
            .iter()
            .map(|p| Derived {
                addr: p.clone(),
                from: "--partner".into(),
            })
            .collect());
    }
    // Patroni's own Raft: its partner list names exactly the other members.
    if let Some(Value::Sequence(list)) = get(root, &["raft", "partner_addrs"]) {
        let mut out = Vec::new();
        for v in list {
            let s = v.as_str().unwrap_or_default();
            out.push(Derived {
                addr: HostPort {
                    host: host_of(s),
                    port: opts.raft_port,
                },
                from: "the host of raft.partner_addrs with --raft-port".into(),
            });
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let Some((key, hosts)) = dcs_hosts(root) else {
        return Err(ConvertError::NoPartners {
            why: "the file names no DCS hosts".into(),
        });
    };
    let hosts: Vec<String> = hosts.iter().map(|h| host_of(h)).collect();
    if !hosts.contains(&me.host) {
        return Err(ConvertError::NoPartners {
            why: format!(
                "{key} ({}) does not name this node's host {}, so the DCS runs on hosts of its own and \
                 says nothing about where the other members are",
                hosts.join(", "),
                me.host
            ),
        });
    }
    let out: Vec<Derived> = hosts
        .into_iter()
        .filter(|h| *h != me.host)
        .map(|host| Derived {
            addr: HostPort {
                host,
                port: opts.raft_port,
            },
            from: format!("the hosts of {key} with --raft-port"),
        })
        .collect();
    if out.is_empty() {
        return Err(ConvertError::NoPartners {
            why: format!("{key} names this node's host only"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Strictness};

    fn opts() -> ConvertOptions {
        ConvertOptions {
            raft_port: 5010,
            raft_data_dir: "/var/lib/pgwarden/raft".into(),
            self_addr: None,
            partners: None,
        }
    }

    const PATRONI: &str = "\
scope: batman
namespace: /service/
name: pg1
restapi:
  listen: 0.0.0.0:8008
  connect_address: 10.0.0.1:8008
etcd3:
  hosts: 10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 200
postgresql:
  listen: 0.0.0.0:5432
  connect_address: 10.0.0.1:5432
  data_dir: /var/lib/postgresql/15/main
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    replication: {username: replicator, password: rep-pass}
    superuser: {username: postgres, password: su-pass}
  parameters:
    unix_socket_directories: /var/run/postgresql
tags:
  nofailover: false
";

    #[test]
    fn datain_convert_replaces_the_dcs_section_and_keeps_every_other_key() {
        let c = convert(PATRONI, Path::new("patroni.yml"), &opts()).unwrap();
        assert_eq!(c.removed, vec!["etcd3".to_string()]);
        assert_eq!(c.self_addr.addr.to_string(), "10.0.0.1:5010");
        let partners: Vec<String> = c.partners.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(partners, vec!["10.0.0.2:5010", "10.0.0.3:5010"]);

        let before: Value = serde_yaml::from_str(PATRONI).unwrap();
        let after: Value = serde_yaml::from_str(&c.yaml).unwrap();
        let (Value::Mapping(b), Value::Mapping(a)) = (&before, &after) else {
            panic!("mappings")
        };
        for (k, v) in b {
            if k.as_str() == Some("etcd3") {
                assert!(a.get(k).is_none(), "the DCS section is gone");
            } else {
                assert_eq!(a.get(k), Some(v), "{k:?} carried over unchanged");
            }
        }
        // The raft section sits where etcd3 was.
        let keys: Vec<&str> = a.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(keys[4], "raft");

        // The result is a pgwarden configuration that validates strictly.
        let loaded = Config::from_yaml_str(&c.yaml, Path::new("out.yml"), Strictness::Strict, Vec::new())
            .expect("the converted file validates");
        assert_eq!(loaded.config.scope, "batman");
        assert_eq!(loaded.config.raft.partner_addrs.len(), 2);
    }

    #[test]
    fn datain_convert_refuses_to_guess_partners_from_a_dcs_on_hosts_of_its_own() {
        let text = PATRONI.replace(
            "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379",
            "etcd-a:2379,etcd-b:2379,etcd-c:2379",
        );
        let err = convert(&text, Path::new("patroni.yml"), &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("etcd3.hosts") && msg.contains("--partner"), "{msg}");

        let mut o = opts();
        o.partners = Some(vec![HostPort::parse("10.0.0.2:5010").unwrap()]);
        let c = convert(&text, Path::new("patroni.yml"), &o).unwrap();
        assert_eq!(c.partners[0].from, "--partner");
    }

    #[test]
    fn datain_convert_reads_patroni_raft_and_etcd_host_lists() {
        let text = "scope: s\nname: a\nrestapi: {listen: ':8008', connect_address: 'h1:8008'}\n\
                    raft: {data_dir: /var/lib/patroni/raft, self_addr: 'h1:2222', partner_addrs: ['h2:2222', 'h3:2222']}\n\
                    postgresql: {data_dir: /d, listen: ':5432', connect_address: 'h1:5432'}\n";
        let c = convert(text, Path::new("p.yml"), &opts()).unwrap();
        assert_eq!(c.removed, vec!["raft".to_string()]);
        let partners: Vec<String> = c.partners.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(partners, vec!["h2:5010", "h3:5010"]);
        assert!(
            c.yaml.contains("/var/lib/pgwarden/raft"),
            "Patroni's pysyncobj directory is not reused"
        );

        let text =
            "scope: s\nname: a\nrestapi: {connect_address: 'h1:8008'}\netcd: {hosts: [h1:2379, h2:2379]}\n";
        let c = convert(text, Path::new("p.yml"), &opts()).unwrap();
        assert_eq!(c.partners.len(), 1);
        assert_eq!(c.partners[0].addr.to_string(), "h2:5010");
    }

    #[test]
    fn datain_convert_names_what_it_cannot_read() {
        let err = convert("scope: s\n", Path::new("p.yml"), &opts()).unwrap_err();
        assert!(matches!(err, ConvertError::NoSelfAddress), "{err}");
        let err = convert("- a\n", Path::new("p.yml"), &opts()).unwrap_err();
        assert!(err.to_string().contains("p.yml"), "{err}");
        let err = convert("a: [", Path::new("p.yml"), &opts()).unwrap_err();
        assert!(matches!(err, ConvertError::Syntax { .. }), "{err}");
    }
}
