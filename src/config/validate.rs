//! Validation of a deserialised [`Config`]: names, addresses, Raft membership and timing, TLS
//! settings, forbidden tool options and the timing of `bootstrap.dcs`. The refusal of Patroni
//! features that are not built yet is driven by the key table (`keys::refusals`);
//! [`DynamicConfig::not_built`] applies it to the DCS `config` key.

use super::defaults as d;
use super::keys;
use super::{
    Command, Config, ConfigError, ConfigWarning, DynamicConfig, HostPort, ToolOptions, VerifyClient,
    WatchdogMode,
};
use crate::types::MemberName;

impl Config {
    /// Checks values: names, addresses, Raft membership and timing, method sections, forbidden tool
    /// options, timing of `bootstrap.dcs`. Returns warnings (adjusted timing, tag conflicts) or every
    /// error found.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        if let Err(e) = MemberName::new(self.name.as_str()) {
            errors.push(ConfigError::Invalid {
                key: "name".into(),
                why: e.to_string(),
            });
        }
        if self.name.as_str() == d::RESERVED_NAME {
            errors.push(ConfigError::Invalid {
                key: "name".into(),
                why: format!("{:?} is reserved", d::RESERVED_NAME),
            });
        }
        if self.scope.is_empty() || self.scope.contains('/') {
            errors.push(ConfigError::Invalid {
                key: "scope".into(),
                why: "must be non-empty and contain no '/'".into(),
            });
        }
        if let Err(e) = self.vip_spec() {
            errors.push(e);
        }
        if !self.namespace.starts_with('/') {
            errors.push(ConfigError::Invalid {
                key: "namespace".into(),
                why: "must start with '/'".into(),
            });
        }
        let connect = |key: &str, a: &HostPort, errors: &mut Vec<ConfigError>| {
            if a.host.is_empty() || a.port == 0 {
                errors.push(ConfigError::BadAddress {
                    key: key.into(),
                    value: a.to_string(),
                    why: "others connect here: it needs a host and a non-zero port".into(),
                });
            }
        };
        connect(
            "restapi.connect_address",
            &self.restapi.connect_address,
            &mut errors,
        );
        connect("raft.self_addr", &self.raft.self_addr, &mut errors);
        if let Some(a) = &self.ctl.connect_address {
            connect("ctl.connect_address", a, &mut errors);
        }

        // Raft membership.
        let r = &self.raft;
        if r.single_node {
            if !r.partner_addrs.is_empty() {
                errors.push(ConfigError::SingleNodeWithPartners {
                    count: r.partner_addrs.len(),
                });
            }
            if r.witness {
                errors.push(ConfigError::Invalid {
                    key: "raft.single_node".into(),
                    why: "a single-node cluster cannot be a witness: nothing would run PostgreSQL".into(),
                });
            }
        } else if r.voters() == 2 {
            errors.push(ConfigError::TwoVoters {
                partner: r.partner_addrs[0].to_string(),
            });
        } else if r.voters() < 3 {
            errors.push(ConfigError::TooFewVoters { voters: r.voters() });
        }
        for (i, p) in r.partner_addrs.iter().enumerate() {
            if *p == r.self_addr {
                errors.push(ConfigError::Invalid {
                    key: format!("raft.partner_addrs[{i}]"),
                    why: format!("{p} is this node's own raft.self_addr"),
                });
            }
            if r.partner_addrs[..i].contains(p) {
                errors.push(ConfigError::Invalid {
                    key: format!("raft.partner_addrs[{i}]"),
                    why: format!("{p} is listed twice"),
                });
            }
        }
        let (hb, emin, emax) = (
            r.heartbeat_interval_ms(),
            r.election_timeout_min_ms(),
            r.election_timeout_max_ms(),
        );
        if hb == 0 {
            errors.push(ConfigError::Invalid {
                key: "raft.heartbeat_interval_ms".into(),
                why: "must be positive".into(),
            });
        }
        if emin <= hb {
            errors.push(ConfigError::Invalid {
                key: "raft.election_timeout_min_ms".into(),
                why: format!("{emin} must be greater than raft.heartbeat_interval_ms ({hb}), or followers time out between heartbeats"),
            });
        }
        if emax <= emin {
            errors.push(ConfigError::Invalid {
                key: "raft.election_timeout_max_ms".into(),
                why: format!("{emax} must be greater than raft.election_timeout_min_ms ({emin}) so timeouts are randomised"),
            });
        }
        let target = r.voter_target();
        if !pgwarden_raft::voters::ALLOWED_TARGETS.contains(&usize::try_from(target).unwrap_or(0)) {
            errors.push(ConfigError::Invalid {
                key: "raft.voters".into(),
                why: format!(
                    "{target} is not a voter count pgwarden keeps: use 3 (one failure tolerated) or 5 (two); \
                     an even count tolerates no more failures than the odd count below it"
                ),
            });
        }
        let replace_ms = u64::try_from(r.voter_replace_after().as_millis()).unwrap_or(u64::MAX);
        let min_ms = emax.saturating_mul(d::RAFT_VOTER_REPLACE_MIN_ELECTIONS).max(1000);
        if replace_ms < min_ms {
            errors.push(ConfigError::Invalid {
                key: "raft.voter_replace_after".into(),
                why: format!(
                    "{} s is too short: it must be at least {} election timeouts (raft.election_timeout_max_ms \
                     {emax}), {} s, so that a voter missing a few heartbeats is not replaced",
                    replace_ms / 1000,
                    d::RAFT_VOTER_REPLACE_MIN_ELECTIONS,
                    min_ms.div_ceil(1000)
                ),
            });
        }
        if r.site.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errors.push(ConfigError::Invalid {
                key: "raft.site".into(),
                why: "is empty: name the site (e.g. dc1) or remove the key".into(),
            });
        }

        // ctl exposure.
        let ctl_listen = self.ctl.listen();
        let loopback = ctl_listen.host == "localhost"
            || ctl_listen
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let client_certs = self.ctl.verify_client() == VerifyClient::Required && self.ctl.cacert.is_some();
        if !loopback && self.ctl.auth_token.is_none() && !client_certs {
            errors.push(ConfigError::Invalid {
                key: "ctl.listen".into(),
                why: format!(
                    "{ctl_listen} is not a loopback address: set `ctl.auth_token`, or `ctl.verify_client: required` with \
                     `ctl.cacert`, so that admin actions are not open to the network"
                ),
            });
        }
        for (key, cert, keyf) in [
            ("restapi", &self.restapi.certfile, &self.restapi.keyfile),
            ("ctl", &self.ctl.certfile, &self.ctl.keyfile),
        ] {
            if keyf.is_some() && cert.is_none() {
                errors.push(ConfigError::Missing {
                    key: format!("{key}.certfile"),
                    why: "a keyfile needs its certificate",
                });
            }
        }
        // Raft mutual TLS: all three files or none.
        let tls = [
            ("raft.certfile", &r.certfile),
            ("raft.keyfile", &r.keyfile),
            ("raft.cafile", &r.cafile),
        ];
        if tls.iter().any(|(_, v)| v.is_some()) {
            for (key, v) in tls {
                if v.is_none() {
                    errors.push(ConfigError::Missing {
                        key: key.into(),
                        why: "mutual TLS between peers needs raft.certfile, raft.keyfile and raft.cafile together",
                    });
                }
            }
        }
        if self.ctl.verify_client() == VerifyClient::Required && self.ctl.cacert.is_none() {
            errors.push(ConfigError::Missing {
                key: "ctl.cacert".into(),
                why: "client certificates are verified against it (ctl.verify_client is required)",
            });
        }
        if self.ctl.verify_client() == VerifyClient::Required && self.ctl.certfile.is_none() {
            errors.push(ConfigError::Missing {
                key: "ctl.certfile".into(),
                why: "client certificates need TLS, which the admin API serves when ctl.certfile is set",
            });
        }
        if self.restapi.certfile.is_some() {
            // Members publish `http://` api_urls (the member key has no scheme choice yet), so a
            // TLS-only REST API cannot be polled by the other members during a leader race.
            warnings.push(ConfigWarning::Note {
                key: "restapi.certfile".into(),
                message: "the REST API serves HTTPS, but members publish an http:// api_url, so the other \
                          members cannot poll this one during a leader race (see docs/rest-api.md)"
                    .into(),
            });
        }
        if self.restapi.verify_client() != VerifyClient::None && self.restapi.cafile.is_none() {
            errors.push(ConfigError::Missing {
                key: "restapi.cafile".into(),
                why: "client certificates are verified against it (restapi.verify_client is not none)",
            });
        }

        // PostgreSQL.
        if let Some(pg) = &self.postgresql {
            connect("postgresql.connect_address", &pg.connect_address, &mut errors);
            if pg.authentication.superuser.username.is_empty() {
                errors.push(ConfigError::Missing {
                    key: "postgresql.authentication.superuser.username".into(),
                    why: "it is empty",
                });
            }
            if pg.authentication.replication.username.is_empty() {
                errors.push(ConfigError::Missing {
                    key: "postgresql.authentication.replication.username".into(),
                    why: "it is empty",
                });
            }
            check_forbidden(
                "postgresql.rewind",
                pg.rewind.as_ref(),
                &[
                    "target-pgdata",
                    "source-pgdata",
                    "source-server",
                    "write-recovery-conf",
                    "dry-run",
                    "restore-target-wal",
                    "config-file",
                    "no-ensure-shutdown",
                    "version",
                    "help",
                ],
                &mut errors,
            );
            for (key, cmd) in [
                ("postgresql.pre_promote", pg.pre_promote.as_ref()),
                ("postgresql.before_stop", pg.before_stop.as_ref()),
            ]
            .into_iter()
            .chain(pg.callbacks.iter().flat_map(|c| {
                [
                    ("postgresql.callbacks.on_start", c.on_start.as_ref()),
                    ("postgresql.callbacks.on_stop", c.on_stop.as_ref()),
                    ("postgresql.callbacks.on_restart", c.on_restart.as_ref()),
                    ("postgresql.callbacks.on_reload", c.on_reload.as_ref()),
                    ("postgresql.callbacks.on_role_change", c.on_role_change.as_ref()),
                ]
            })) {
                check_command(key, cmd, &mut errors);
            }
            let ignored: Vec<&String> = pg
                .parameters
                .keys()
                .filter(|k| d::DCS_ONLY_GUCS.iter().any(|g| g.eq_ignore_ascii_case(k)))
                .collect();
            for k in ignored {
                warnings.push(ConfigWarning::Note {
                    key: format!("postgresql.parameters.{k}"),
                    message: "cluster-wide GUC: only the value in the DCS (bootstrap.dcs.postgresql.parameters) is used".into(),
                });
            }
            let dcs_parameters = self
                .bootstrap
                .dcs
                .postgresql
                .as_ref()
                .and_then(|p| p.parameters.as_ref());
            for (prefix, params) in [
                ("postgresql.parameters", Some(&pg.parameters)),
                ("bootstrap.dcs.postgresql.parameters", dcs_parameters),
            ] {
                for k in params.into_iter().flat_map(|p| p.keys()) {
                    if let Some((_, what)) =
                        d::OVERRIDDEN_GUCS.iter().find(|(g, _)| g.eq_ignore_ascii_case(k))
                    {
                        warnings.push(ConfigWarning::Note {
                            key: format!("{prefix}.{k}"),
                            message: format!("ignored: {what}"),
                        });
                    }
                }
            }
        }

        if let Err(e) = self.replica_method_sections() {
            errors.push(e);
        }
        if let Err(e) = self.bootstrap_method_section() {
            errors.push(e);
        }

        // Bootstrap.
        let b = &self.bootstrap;
        check_forbidden(
            "bootstrap.initdb",
            b.initdb.as_ref(),
            &["pgdata", "nosync", "pwfile", "sync-only", "version"],
            &mut errors,
        );
        check_command("bootstrap.post_bootstrap", b.post_bootstrap.as_ref(), &mut errors);
        check_command("bootstrap.post_init", b.post_init.as_ref(), &mut errors);
        if b.post_bootstrap.is_some() && b.post_init.is_some() {
            warnings.push(ConfigWarning::Note {
                key: "bootstrap.post_init".into(),
                message: "ignored: bootstrap.post_bootstrap is set too".into(),
            });
        }
        if let Err(e) = b.dcs.validate(keys::DCS_PREFIX) {
            errors.extend(e.iter().map(clone_error));
        }
        let (timing, mut timing_warnings) = b.dcs.timing();
        warnings.append(&mut timing_warnings);

        // Watchdog against the bootstrap timing (the DCS may change it later; the HA loop re-checks).
        if self.watchdog.mode != WatchdogMode::Off && self.watchdog.timeout(&timing).is_none() {
            warnings.push(ConfigWarning::Note {
                key: "watchdog.safety_margin".into(),
                message: format!(
                    "ttl ({}) - safety_margin ({}) is shorter than loop_wait ({}): the watchdog cannot be used with this timing",
                    timing.ttl,
                    self.watchdog.safety_margin(timing.ttl),
                    timing.loop_wait
                ),
            });
        }
        warnings.extend(self.tags.conflicts());

        match ConfigError::from_list(errors) {
            Some(e) => Err(e),
            None => Ok(warnings),
        }
    }
}

impl DynamicConfig {
    /// Settings of the dynamic configuration that pgwarden accepts the syntax of but has not
    /// built, each refused with what to do. `prefix` is prepended to key paths (`bootstrap.dcs`
    /// for the file, empty for the DCS `config` key, which PATCH and PUT /config check with it).
    pub fn not_built(&self, prefix: &str) -> Vec<ConfigError> {
        // The file's own check uses the same rows of the key table (a standby cluster: the HA
        // loop would bootstrap or promote an independent, writable cluster instead of following
        // the remote primary).
        keys::refusals(&self.to_json(), keys::DCS_PREFIX, prefix)
    }
}

/// `ConfigError` holds io/yaml sources and is not `Clone`; the variants that `DynamicConfig::validate`
/// produces are plain data, so they are rebuilt here.
fn clone_error(e: &ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid { key, why } => ConfigError::Invalid {
            key: key.clone(),
            why: why.clone(),
        },
        ConfigError::Missing { key, why } => ConfigError::Missing {
            key: key.clone(),
            why,
        },
        ConfigError::NotBuilt { key, why } => ConfigError::NotBuilt {
            key: key.clone(),
            why: why.clone(),
        },
        other => ConfigError::Invalid {
            key: other.key().unwrap_or_default().to_string(),
            why: other.to_string(),
        },
    }
}

fn check_forbidden(key: &str, opts: Option<&ToolOptions>, forbidden: &[&str], errors: &mut Vec<ConfigError>) {
    for o in opts.iter().flat_map(|o| o.0.iter()) {
        if forbidden.contains(&o.name.as_str()) {
            errors.push(ConfigError::Invalid {
                key: key.into(),
                why: format!(
                    "option `{}` is set by pgwarden itself and may not be given here",
                    o.name
                ),
            });
        }
    }
}

fn check_command(key: &str, cmd: Option<&Command>, errors: &mut Vec<ConfigError>) {
    if let Some(c) = cmd {
        match c.argv() {
            Some(argv) if !argv.is_empty() => {}
            Some(_) => errors.push(ConfigError::Invalid {
                key: key.into(),
                why: "the command is empty".into(),
            }),
            None => errors.push(ConfigError::Invalid {
                key: key.into(),
                why: "unbalanced quote or trailing backslash".into(),
            }),
        }
    }
}
