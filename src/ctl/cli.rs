//! pgwardenctl's command line (clap). The man page and shell completions are generated
//! from these definitions (`pgwardenctl generate`).

use super::render::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// pgwardenctl: manage a pgwarden cluster (patronictl's commands, over the gRPC admin API).
#[derive(Debug, Parser)]
#[command(name = "pgwardenctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// The daemon's configuration file: pgwardenctl uses its `ctl:` section (address,
    /// token, certificates) and its scope.
    #[arg(
        short = 'c',
        long = "config-file",
        env = "PGWARDENCTL_CONFIG_FILE",
        global = true
    )]
    pub config: Option<PathBuf>,
    /// Admin API endpoints to try in turn, host:port (any member will do).
    #[arg(
        short = 'd',
        long = "endpoints",
        env = "PGWARDENCTL_ENDPOINTS",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Bearer token (default: ctl.auth_token from the configuration file).
    #[arg(long, env = "PGWARDENCTL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA bundle to verify the members' certificates (turns TLS on).
    #[arg(long, env = "PGWARDENCTL_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) to present.
    #[arg(long, env = "PGWARDENCTL_CERTFILE", global = true, requires = "keyfile")]
    pub certfile: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(long, env = "PGWARDENCTL_KEYFILE", global = true)]
    pub keyfile: Option<PathBuf>,
    /// Seconds to wait for a connection to each endpoint.
    #[arg(long, default_value_t = 3, global = true)]
    pub connect_timeout: u64,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
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
    /// Every member.
    Any,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the members of the cluster.
    List {
        /// Cluster name (default: the configuration's scope).
        cluster: Option<String>,
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
        /// Cluster name.
        cluster: Option<String>,
        #[command(flatten)]
        watch: Watch,
    },
    /// Failover and switchover history.
    History {
        /// Cluster name.
        cluster: Option<String>,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Hand the leader role to another member, now or at a given time.
    Switchover {
        /// Cluster name.
        cluster: Option<String>,
        /// The current leader.
        #[arg(long, alias = "primary", alias = "master")]
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
        /// Cluster name.
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
        /// Cluster name.
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
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u32>,
        /// When (ISO 8601), or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Re-create replicas from a fresh base backup.
    Reinit {
        /// Cluster name.
        cluster: String,
        /// Members.
        #[arg(required = true)]
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
        /// Cluster name.
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
        /// Cluster name.
        cluster: String,
        /// What to cancel.
        target: FlushTarget,
        /// Members (restart only; default: all).
        members: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: RoleFilter,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode: stop automatic failover and PostgreSQL management.
    Pause {
        /// Cluster name.
        cluster: Option<String>,
        /// Wait until every member has seen it.
        #[arg(long)]
        wait: bool,
    },
    /// Leave maintenance mode.
    Resume {
        /// Cluster name.
        cluster: Option<String>,
        /// Wait until every member has seen it.
        #[arg(long)]
        wait: bool,
    },
    /// Print the dynamic configuration.
    ShowConfig {
        /// Cluster name.
        cluster: Option<String>,
    },
    /// Change the dynamic configuration (in $EDITOR, or with -s / -p / --apply / --replace).
    EditConfig {
        /// Cluster name.
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
        /// Cluster name.
        cluster: String,
        /// Output format of the listing shown first.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Forget a decommissioned member (Raft membership and member key).
    RemoveMember {
        /// Cluster name.
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
    /// Print pgwardenctl's version.
    Version,
    /// A libpq connection string for a member (default: the leader).
    Dsn {
        /// Cluster name.
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
    /// Add the node listening at ADDR (its raft.self_addr) as a voter.
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
