//! pgwardenctl's command line (clap). The man page and shell completions are generated
//! from these definitions (`pgwardenctl generate`).

use super::render::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The help heading of the options every command shares (where and how to connect), kept
/// apart so that each command's own few options stand out in its `--help`.
pub const CONNECTION: &str = "Connection options";

/// Shown by `pgwardenctl --help` and as the man page's EXAMPLES section (see
/// `generate man`); the same commands as docs/operations.md, which the docs tests parse.
pub const EXAMPLES: &str = "Examples:
  pgwardenctl list                       members, roles, states, timelines, lag
  pgwardenctl list -W                    the same, refreshed until Ctrl-C
  pgwardenctl -d 10.0.0.1:8009 list      ask that member's admin API (ctl.listen), not 8008
  pgwardenctl switchover batman --leader node1 --candidate node2 --force
  pgwardenctl failover batman --candidate node3 --force
  pgwardenctl restart batman --pending --force
  pgwardenctl edit-config batman -p work_mem=64MB
  pgwardenctl reinit batman node3 --force
  pgwardenctl query batman -r replica -U postgres -c 'select pg_last_wal_replay_lsn()'
  pgwardenctl version batman             each member's pgwarden and PostgreSQL version";

/// Admin CLI for pgwarden clusters (patronictl-compatible); talks to a member's admin API
/// (ctl.listen, default 127.0.0.1:8009), not to the REST API.
#[derive(Debug, Parser)]
#[command(name = "pgwardenctl", version, max_term_width = 100, after_long_help = EXAMPLES)]
pub struct Cli {
    /// The daemon's configuration file: pgwardenctl uses its `ctl:` section (address,
    /// token, certificates) and its scope.
    #[arg(
        short = 'c',
        long = "config-file",
        env = "PGWARDENCTL_CONFIG_FILE",
        global = true,
        help_heading = CONNECTION
    )]
    pub config: Option<PathBuf>,
    /// Admin API endpoints to try in turn, host:port (any member will do) [default:
    /// ctl.connect_address of the -c file, else 127.0.0.1:8009].
    #[arg(
        short = 'd',
        long = "endpoints",
        env = "PGWARDENCTL_ENDPOINTS",
        value_delimiter = ',',
        global = true,
        help_heading = CONNECTION
    )]
    pub endpoints: Vec<String>,
    /// Bearer token (default: ctl.auth_token from the configuration file).
    #[arg(
        long,
        env = "PGWARDENCTL_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = CONNECTION
    )]
    pub token: Option<String>,
    /// CA bundle to verify the members' certificates (turns TLS on).
    #[arg(long, env = "PGWARDENCTL_CACERT", global = true, help_heading = CONNECTION)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) to present.
    #[arg(
        long,
        env = "PGWARDENCTL_CERTFILE",
        global = true,
        requires = "keyfile",
        help_heading = CONNECTION
    )]
    pub certfile: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(long, env = "PGWARDENCTL_KEYFILE", global = true, help_heading = CONNECTION)]
    pub keyfile: Option<PathBuf>,
    /// Use TLS without verifying the members' certificates (also ctl.insecure); prints a
    /// warning. For tests and first steps only.
    #[arg(short = 'k', long, global = true, help_heading = CONNECTION)]
    pub insecure: bool,
    /// Seconds to wait for a connection to each endpoint.
    #[arg(long, default_value_t = 3, global = true, help_heading = CONNECTION)]
    pub connect_timeout: u64,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of the whole tool that take a value: the word after one of them is not the
/// command.
const GLOBAL_WITH_VALUE: [&str; 9] = [
    "-c",
    "--config-file",
    "-d",
    "--endpoints",
    "--token",
    "--cacert",
    "--certfile",
    "--keyfile",
    "--connect-timeout",
];

/// `query`'s options that take a value, as written on a command line.
const QUERY_WITH_VALUE: [&str; 11] = [
    "-r",
    "--role",
    "-m",
    "--member",
    "-U",
    "--username",
    "-f",
    "--file",
    "--format",
    "--delimiter",
    "-w",
];

impl Cli {
    /// Parses a command line. After `query`, `-c` and `-d` are patronictl's `--command` and
    /// `--dbname`; clap cannot give one short letter two meanings (the tool-wide `-c` and
    /// `-d` are accepted after the command too), so they are rewritten before parsing.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let word = |a: &std::ffi::OsString| a.to_string_lossy().to_string();
        let mut i = 1;
        while i < args.len() {
            let a = word(&args[i]);
            if a.starts_with('-') && a != "--" {
                i += if GLOBAL_WITH_VALUE.contains(&a.as_str()) {
                    2
                } else {
                    1
                };
                continue;
            }
            if a == "query" {
                let mut j = i + 1;
                while j < args.len() {
                    let s = word(&args[j]);
                    if s == "--" {
                        break;
                    }
                    let long = match s.get(..2) {
                        Some("-c") => "--command",
                        Some("-d") => "--dbname",
                        _ => {
                            j += if QUERY_WITH_VALUE.contains(&s.as_str()) {
                                2
                            } else {
                                1
                            };
                            continue;
                        }
                    };
                    if s.len() == 2 {
                        args[j] = long.into();
                        j += 2;
                    } else {
                        args[j] = format!("{long}={}", &s[2..]).into();
                        j += 1;
                    }
                }
            }
            break;
        }
        Cli::try_parse_from(args)
    }

    /// [`Cli::try_parse_args`] of this process's command line, exiting with clap's message
    /// on an error (and printing help or the version when asked).
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }
}

/// `-W` / `-w N`.
#[derive(Debug, Args, Clone, Copy)]
pub struct Watch {
    /// Refresh the output every 2 seconds.
    #[arg(short = 'W')]
    pub w: bool,
    /// Refresh the output every N seconds.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<u64>,
}

impl Watch {
    /// The refresh period, if watching.
    pub fn period(&self) -> Option<u64> {
        self.watch.or(self.w.then_some(2))
    }
}

/// Which members a restart or reload applies to (`-r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    /// The leader (primary or standby leader).
    Leader,
    /// The primary.
    Primary,
    /// The standby leader.
    StandbyLeader,
    /// Every replica.
    Replica,
    /// Every replica (patronictl's name; `query` also checks that PostgreSQL is in recovery).
    Standby,
    /// Every member.
    Any,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the members of the cluster.
    List {
        /// Cluster names (default: the configuration's scope); each must be served by one
        /// of the endpoints (-d).
        #[arg(value_name = "CLUSTER")]
        clusters: Vec<String>,
        /// Show pending restarts, scheduled restarts and tags even when empty.
        #[arg(short = 'e', long)]
        extended: bool,
        /// Print a timestamp before each listing.
        #[arg(short = 't', long = "timestamp")]
        timestamp: bool,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
        #[command(flatten)]
        watch: Watch,
    },
    /// The members as a replication tree.
    Topology {
        /// Cluster names (default: the configuration's scope); each must be served by one
        /// of the endpoints (-d).
        #[arg(value_name = "CLUSTER")]
        clusters: Vec<String>,
        #[command(flatten)]
        watch: Watch,
    },
    /// Failover and switchover history.
    History {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Hand the leader role to another member, now or at a given time.
    Switchover {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// The current leader (also --primary).
        #[arg(long, visible_alias = "primary", alias = "master")]
        leader: Option<String>,
        /// The member to promote.
        #[arg(long)]
        candidate: Option<String>,
        /// When (ISO 8601; without a time zone the local one), or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Promote a named replica (also when the cluster has no leader).
    Failover {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// The member to promote.
        #[arg(long)]
        candidate: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Restart PostgreSQL on members.
    Restart {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// Members (default: all, filtered by --role).
        members: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Restart one member chosen among those matching --role.
        #[arg(long)]
        any: bool,
        /// Only if the running PostgreSQL version is older than this.
        #[arg(long = "pg-version")]
        pg_version: Option<String>,
        /// Only members with a parameter change waiting for a restart.
        #[arg(long)]
        pending: bool,
        /// Seconds the member waits for PostgreSQL to stop and start again (default 600);
        /// past it the restart is reported as failed ("restart failed") and the HA loop
        /// handles the member as after any PostgreSQL failure, which for a primary may end in
        /// a failover (patronictl: "fail over if necessary").
        #[arg(long)]
        timeout: Option<u32>,
        /// When (ISO 8601; without a time zone the local one), or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Re-create replicas from a fresh base backup.
    Reinit {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// Members (asked for when none is given; required with --force).
        members: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Wait until the members run again.
        #[arg(long)]
        wait: bool,
        /// Take the backup from the leader.
        #[arg(long = "from-leader")]
        from_leader: bool,
    },
    /// Reload the configuration of members.
    Reload {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// Members (default: all, filtered by --role).
        members: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled restart or switchover.
    Flush {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// `[MEMBERS...] restart|switchover` as patronictl, or `restart|switchover
        /// [MEMBERS...]`; members apply to restart only (default: all).
        #[arg(
            value_name = "[MEMBERS...] restart|switchover",
            required = true,
            num_args = 1..
        )]
        args: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode: stop automatic failover and PostgreSQL management.
    Pause {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Wait until every member has seen it.
        #[arg(long)]
        wait: bool,
    },
    /// Promote cluster, make it run standalone: remove `standby_cluster` from the dynamic
    /// configuration; the standby leader is promoted.
    PromoteCluster {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Demote cluster to a standby cluster of a remote primary: its leader becomes a standby
    /// leader following the given host.
    DemoteCluster {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Address of the remote node (several: comma-separated, as libpq takes them).
        #[arg(long)]
        host: Option<String>,
        /// Port of the remote node.
        #[arg(long)]
        port: Option<u16>,
        /// Command to restore WAL records from the remote primary.
        #[arg(long)]
        restore_command: Option<String>,
        /// Name of the slot on the remote node to use for replication.
        #[arg(long)]
        primary_slot_name: Option<String>,
    },
    /// Leave maintenance mode.
    Resume {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Wait until every member has seen it.
        #[arg(long)]
        wait: bool,
    },
    /// Print the dynamic configuration.
    ShowConfig {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
    },
    /// Change the dynamic configuration (in $EDITOR, or with -s / -p / --apply / --replace).
    EditConfig {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// Do not show the diff.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Set a key: path.to.key=YAML value (an empty value deletes the key).
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a PostgreSQL parameter: name=value.
        #[arg(short = 'p', long = "pg", value_name = "GUC=VALUE")]
        pg: Vec<String>,
        /// Merge the changes in a YAML file (- for stdin).
        #[arg(long, value_name = "FILE")]
        apply: Option<String>,
        /// Replace the configuration with a YAML file (- for stdin).
        #[arg(long, value_name = "FILE")]
        replace: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Remove every key of the cluster from the DCS (asks three times).
    Remove {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// Output format of the listing shown first.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Forget a decommissioned member (Raft membership and member key).
    RemoveMember {
        /// Cluster name (must be the one the endpoint serves).
        cluster: String,
        /// The member.
        member: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Raft membership: list, add, remove, replace.
    Members {
        /// What to do.
        #[command(subcommand)]
        action: MembersAction,
    },
    /// The embedded DCS: keys, each Raft member's state, repairs and backups (etcdctl's jobs).
    Dcs {
        /// What to do.
        #[command(subcommand)]
        action: DcsAction,
    },
    /// Print pgwardenctl's version; with a cluster, each member's pgwarden and PostgreSQL
    /// version.
    Version {
        /// Cluster name (default: none, only pgwardenctl's version).
        cluster: Option<String>,
        /// Members (default: all).
        members: Vec<String>,
    },
    /// Run SQL on a member's PostgreSQL (default: the leader), connecting directly to it.
    ///
    /// After `query`, `-c` is `--command` and `-d` is `--dbname`, as in patronictl; give the
    /// connection options -c FILE and -d ENDPOINTS before `query`.
    Query(Query),
    /// A libpq connection string for a member (default: the leader).
    Dsn {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
        /// The member's role.
        #[arg(short = 'r', long, value_enum)]
        role: Option<RoleFilter>,
        /// The member.
        #[arg(short = 'm', long)]
        member: Option<String>,
    },
    /// Man page and shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        /// What to generate.
        #[command(subcommand)]
        what: Generate,
    },
}

/// `query`: patronictl's options (`-f` is `--file` here, as in patronictl).
#[derive(Debug, Args)]
pub struct Query {
    /// Cluster name (default: the configuration's scope).
    pub cluster: Option<String>,
    /// Query a member with this role (default: the leader).
    #[arg(short = 'r', long, value_enum, conflicts_with = "member")]
    pub role: Option<RoleFilter>,
    /// Query this member.
    #[arg(short = 'm', long)]
    pub member: Option<String>,
    /// Database to connect to, also `-d` after `query` as in patronictl (default:
    /// PGDATABASE, else the user name).
    #[arg(long = "dbname", value_name = "DB")]
    pub dbname: Option<String>,
    /// Database user (default: PGUSER, else the operating system user).
    #[arg(short = 'U', long = "username")]
    pub username: Option<String>,
    /// Ask for the password (otherwise PGPASSWORD, then ~/.pgpass or PGPASSFILE).
    #[arg(long)]
    pub password: bool,
    /// The SQL to run, also `-c` after `query` as in patronictl.
    #[arg(long = "command", value_name = "SQL", conflicts_with = "file")]
    pub command: Option<String>,
    /// Run the SQL in this file (- for stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: Format,
    /// Column delimiter of the tsv format (default: a tab).
    #[arg(long, default_value = "\t", hide_default_value = true)]
    pub delimiter: String,
    #[command(flatten)]
    pub watch: Watch,
}

/// `flush` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushTarget {
    /// Scheduled restarts.
    Restart,
    /// A scheduled switchover.
    Switchover,
}

/// `members` subcommands.
#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Voters and learners with their replication state.
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Add the node listening at ADDR (its raft.self_addr): a learner, and a voter if the
    /// voter set is below its target (raft.voters).
    Add {
        /// host:port.
        addr: String,
    },
    /// Remove a member by name or id.
    Remove {
        /// Name or id.
        member: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Add the node at ADDR in place of the member with its name (a node that lost its data).
    Replace {
        /// host:port.
        addr: String,
    },
}

/// `dcs` subcommands.
#[derive(Debug, Subcommand)]
pub enum DcsAction {
    /// Keys with their values, create and mod revisions and lease time left. A KEY without
    /// a leading `/` is under the cluster's prefix (`/service/<scope>/`).
    Get {
        /// The key, or with --prefix the prefix (default: the whole cluster).
        key: Option<String>,
        /// Every key under KEY.
        #[arg(long)]
        prefix: bool,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Every Raft member: role, term, log and applied index, leader, reachability, store
    /// and snapshot size on disk, lease reaper.
    Status {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Write one key raw, bypassing the HA loop: for repairs only, needs --force.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Make it a lease expiring after this many seconds unless written again.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// Do it (the write is refused without it).
        #[arg(long)]
        force: bool,
    },
    /// Delete one key raw, bypassing the HA loop: for repairs only, needs --force.
    Delete {
        /// The key.
        key: String,
        /// Do it (the delete is refused without it).
        #[arg(long)]
        force: bool,
    },
    /// Backups of the cluster's keys.
    Snapshot {
        /// What to do.
        #[command(subcommand)]
        action: SnapshotAction,
    },
}

/// `dcs snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save one consistent state of the cluster's keys, read through the Raft leader, to
    /// FILE (written atomically, with a checksum); restore it with `pgwarden restore-dcs`.
    Save {
        /// The file to write.
        file: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `generate` subcommands.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Write pgwardenctl.1 (and one page per subcommand) into DIR.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
    /// Print a completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_args(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// After `query`, -c and -d are patronictl's --command and --dbname; before it they
    /// stay the configuration file and the endpoints, also when a value looks like them.
    #[test]
    fn ctl_query_short_options_are_patronictls() {
        let cli = parse(&[
            "pgwardenctl",
            "-c",
            "query",
            "-d",
            "h:1",
            "query",
            "-U",
            "u",
            "-c",
            "select 1",
            "-d",
            "app",
        ]);
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("query")));
        assert_eq!(cli.endpoints, ["h:1"]);
        let Command::Query(q) = cli.command else {
            panic!("not query")
        };
        assert_eq!(q.command.as_deref(), Some("select 1"));
        assert_eq!(q.dbname.as_deref(), Some("app"));
        assert_eq!(q.username.as_deref(), Some("u"));
        let Command::Query(q) = parse(&["pgwardenctl", "query", "-cselect 2", "-dpostgres"]).command else {
            panic!("not query")
        };
        assert_eq!(q.command.as_deref(), Some("select 2"));
        assert_eq!(q.dbname.as_deref(), Some("postgres"));
        // Elsewhere -c and -d keep their meaning.
        let cli = parse(&["pgwardenctl", "list", "-c", "f.yml", "-d", "h:2"]);
        assert_eq!(cli.endpoints, ["h:2"]);
        assert!(Cli::try_parse_args(["pgwardenctl", "query", "-c", "x", "--file", "y"]).is_err());
        assert!(Cli::try_parse_args(["pgwardenctl", "restart", "c", "-r", "standby"]).is_ok());
    }
}
