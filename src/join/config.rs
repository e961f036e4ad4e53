//! The configuration file `init` and `join` write for a member: Patroni's layout with the
//! `raft:` section, Raft mutual TLS and TLS on the admin API, the shared credentials, and
//! every path under one state directory (the packaged unit's `/var/lib/pgwarden`).

use super::wire::Credentials;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Role names the commands use on every member.
pub const SUPERUSER: &str = "postgres";
pub const REPLICATION_USER: &str = "replicator";
pub const REWIND_USER: &str = "rewind_user";
pub const RESTAPI_USER: &str = "pgwarden";

/// The files a member's TLS needs, beside its configuration file.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `<config dir>/tls/{ca.pem, node.pem, node.key}`.
    pub fn beside(config: &Path) -> TlsFiles {
        let dir = config.parent().unwrap_or(Path::new(".")).join("tls");
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        }
    }
}

/// One member's settings.
#[derive(Clone, Debug)]
pub struct Member {
    pub scope: String,
    pub namespace: String,
    pub name: String,
    /// Its address as the other members reach it; every listener but the admin API binds it.
    pub address: String,
    pub raft_port: u16,
    pub restapi_port: u16,
    pub pg_port: u16,
    /// The admin API, on loopback.
    pub ctl_port: u16,
    /// Raft data (`raft/`), PostgreSQL data (`pgdata/`), pgpass and the join state.
    pub state_dir: PathBuf,
    pub bin_dir: Option<PathBuf>,
    pub witness: bool,
    /// The first member: a one-voter cluster until the others join (they are added to the
    /// Raft group by the join server as they start).
    pub first: bool,
    /// The other members' Raft addresses (empty on the first member).
    pub partners: Vec<String>,
    pub tls: TlsFiles,
    pub credentials: Credentials,
    /// `watchdog.mode`, when not the default.
    pub watchdog: Option<String>,
}

fn hostport(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Member {
    pub fn raft_addr(&self) -> String {
        hostport(&self.address, self.raft_port)
    }

    /// The YAML file. Names are checked by the commands; passwords and paths are quoted.
    pub fn render(&self) -> String {
        let c = &self.credentials;
        // JSON strings are YAML strings: quoted, so no value is read as a number or a list.
        let qs = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let q = |p: &Path| qs(&p.display().to_string());
        let mut y = String::new();
        let _ = writeln!(
            y,
            "# Written by `pgwarden {}`. Every key: docs/configuration.md.\n\
             # Holds the cluster's credentials: keep it 0600.",
            if self.first { "init" } else { "join" }
        );
        let _ = writeln!(
            y,
            "scope: {}\nnamespace: {}\nname: {}",
            self.scope, self.namespace, self.name
        );
        let rest = hostport(&self.address, self.restapi_port);
        let _ = writeln!(
            y,
            "restapi:\n  listen: {rest}\n  connect_address: {rest}\n  authentication:\n    username: {RESTAPI_USER}\n    password: {}",
            qs(&c.restapi)
        );
        let _ = writeln!(
            y,
            "ctl:\n  listen: 127.0.0.1:{port}\n  connect_address: 127.0.0.1:{port}\n  certfile: {}\n  keyfile: {}\n  cacert: {}",
            q(&self.tls.cert),
            q(&self.tls.key),
            q(&self.tls.ca),
            port = self.ctl_port,
        );
        let _ = writeln!(
            y,
            "raft:\n  data_dir: {}\n  self_addr: {}",
            q(&self.state_dir.join("raft")),
            self.raft_addr()
        );
        if self.first {
            // The daemon cannot rewrite this file once members have joined (it is the
            // operator's, and read-only under the unit's ProtectSystem), so the file says
            // from the start what the line decides, rather than calling the node alone for
            // ever after.
            let _ = writeln!(
                y,
                "  # Founds the cluster while this node has no Raft state. Once two members\n  \
                 # have joined, the daemon takes its Raft partners from the join state\n  \
                 # ({}) and this line decides nothing.\n  \
                 single_node: true",
                crate::join::server::join_dir_of_state(&self.state_dir)
                    .join(crate::join::server::MEMBERS_FILE)
                    .display()
            );
        } else {
            let _ = writeln!(y, "  partner_addrs: [{}]", self.partners.join(", "));
        }
        let _ = writeln!(
            y,
            "  certfile: {}\n  keyfile: {}\n  cafile: {}",
            q(&self.tls.cert),
            q(&self.tls.key),
            q(&self.tls.ca)
        );
        if self.witness {
            y.push_str("  witness: true\n");
        }
        if let Some(w) = &self.watchdog {
            let _ = writeln!(y, "watchdog:\n  mode: {w}");
        }
        if self.witness {
            return y;
        }
        let _ = write!(
            y,
            "bootstrap:\n  dcs:\n    postgresql:\n      use_pg_rewind: true\n      parameters:\n        \
             wal_level: replica\n        hot_standby: \"on\"\n        wal_log_hints: \"on\"\n        \
             max_wal_senders: 10\n        max_replication_slots: 10\n  \
             initdb: [{{encoding: UTF8}}, data-checksums]\n  \
             # pgwarden connects over the unix socket as {SUPERUSER}; the members and clients from\n  \
             # the networks of this host's addresses (samenet), with passwords.\n  \
             pg_hba:\n    - local all {SUPERUSER} peer\n    - local all all scram-sha-256\n    \
             - host replication {REPLICATION_USER} samenet scram-sha-256\n    - host all all samenet scram-sha-256\n"
        );
        let pg = hostport(&self.address, self.pg_port);
        let _ = writeln!(
            y,
            "postgresql:\n  listen: {pg}\n  connect_address: {pg}\n  data_dir: {}\n  pgpass: {}",
            q(&self.state_dir.join("pgdata")),
            q(&self.state_dir.join("pgpass"))
        );
        if let Some(b) = &self.bin_dir {
            let _ = writeln!(y, "  bin_dir: {}", q(b));
        }
        let _ = writeln!(
            y,
            "  authentication:\n    superuser:\n      username: {SUPERUSER}\n      password: {}\n    \
             replication:\n      username: {REPLICATION_USER}\n      password: {}\n    \
             rewind:\n      username: {REWIND_USER}\n      password: {}",
            qs(&c.superuser),
            qs(&c.replication),
            qs(&c.rewind)
        );
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_member() -> Member {
        Member {
            scope: "s".into(),
            namespace: "/service/".into(),
            name: "host1".into(),
            address: "10.0.0.1".into(),
            raft_port: 5010,
            restapi_port: 8008,
            pg_port: 5432,
            ctl_port: 5009,
            state_dir: PathBuf::from("/var/lib/pgwarden"),
            bin_dir: None,
            witness: false,
            first: true,
            partners: vec![],
            tls: TlsFiles::beside(Path::new("/etc/pgwarden/pgwarden.yml")),
            credentials: Credentials {
                superuser: "a".into(),
                replication: "b".into(),
                rewind: "c".into(),
                restapi: "d".into(),
            },
            watchdog: None,
        }
    }

    /// The first host's file stays true after the joins: its `single_node: true` says that it
    /// only founds the cluster and where the partners come from afterwards.
    #[test]
    fn first_member_file_says_what_single_node_decides() {
        let text = first_member().render();
        let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(y["raft"]["single_node"].as_bool(), Some(true));
        assert!(y["raft"].get("partner_addrs").is_none());
        assert!(
            text.contains("Founds the cluster while this node has no Raft state")
                && text.contains("/var/lib/pgwarden/join/members.json")
                && text.contains("this line decides nothing"),
            "{text}"
        );
    }
}
