//! Every default value of the configuration, in one place.
//!
//! The serde `Default` impls, the accessor methods, the key table (and so the documentation test) all
//! read these constants; nothing else in the module spells a default out.

/// DCS key prefix, as in Patroni (Patroni writes it without the trailing slash and adds one).
pub const NAMESPACE: &str = "/service/";

// ---- Timing (dynamic: lives in the DCS `config` key) -------------------------------------------
//
// These are much tighter than Patroni's 30/10/10: our DCS is embedded, Raft re-elects in about a
// second, and the lease is refreshed by its own keep-alive every ttl/8 (while the loop vouches
// for the primary), not once per loop_wait. They were chosen by measurement (docs/benchmarks.md,
// "HA"): a node loss costs about ttl plus one promotion as HAProxy sees it, and a daemon stalled
// or a host cut off for up to ttl/2 is ridden through. `loop_wait + 2*retry_timeout <= ttl`
// (Patroni's rule) holds: 2 + 2*1 = 4.

/// Leader-key lease in seconds (Patroni: 30).
pub const TTL: u32 = 4;
/// Seconds between HA loop iterations (Patroni: 10). Replicas also wake at once when the leader
/// key is deleted or expires, so this mostly sets how often state is re-read.
pub const LOOP_WAIT: u32 = 2;
/// Seconds a DCS or PostgreSQL operation is retried before it counts as failed (Patroni: 10).
pub const RETRY_TIMEOUT: u32 = 1;

/// Minimum `ttl`. Patroni's is 20; ours is lower so that our own defaults are legal, while still
/// leaving room for `loop_wait + 2*retry_timeout` with the minima below (1 + 2*1 = 3 < 4).
pub const MIN_TTL: u32 = 4;
/// Minimum `loop_wait` (Patroni: 1).
pub const MIN_LOOP_WAIT: u32 = 1;
/// Minimum `retry_timeout` (Patroni: 3).
pub const MIN_RETRY_TIMEOUT: u32 = 1;

// ---- Other dynamic settings (Patroni's defaults, unchanged) ------------------------------------

/// Bytes a replica may lag and still race for leadership (1 MiB).
pub const MAXIMUM_LAG_ON_FAILOVER: u64 = 1_048_576;
/// Bytes a sync standby may lag before it is swapped; -1 (or ≤ 0) disables the swap.
pub const MAXIMUM_LAG_ON_SYNCNODE: i64 = -1;
/// Timeline history entries kept in the DCS; 0 keeps all.
pub const MAX_TIMELINES_HISTORY: u32 = 0;
/// Seconds a crashed primary may take to recover before failover.
pub const PRIMARY_START_TIMEOUT: u32 = 300;
/// Seconds before SIGKILL when stopping a primary in synchronous mode; 0 disables.
pub const PRIMARY_STOP_TIMEOUT: u32 = 0;
/// Seconds a replica postpones the leader race while its WAL still advances; 0 disables.
pub const PRIMARY_RACE_BACKOFF: u32 = 0;
/// Number of synchronous standbys in synchronous mode.
pub const SYNCHRONOUS_NODE_COUNT: u32 = 1;
/// Seconds an absent member's physical slot is retained (Patroni: `30min`).
pub const MEMBER_SLOTS_TTL: u64 = 30 * 60;
/// Whether members use physical replication slots.
pub const USE_SLOTS: bool = true;

// ---- Local settings ----------------------------------------------------------------------------

/// Seconds `pg_ctl` waits on start, stop and restart.
pub const PG_CTL_TIMEOUT: u64 = 60;
/// Replica creation methods tried in order.
pub const CREATE_REPLICA_METHODS: &[&str] = &["basebackup"];
/// Default REST API port (the same as Patroni, so load balancer checks need no change).
pub const RESTAPI_PORT: u16 = 8008;
/// Listen backlog of the REST API socket.
pub const REQUEST_QUEUE_SIZE: u32 = 5;
/// Where the gRPC admin API (pgwardenctl) listens. Loopback by default: exposing admin actions on
/// the network must be a decision, and then `ctl.auth_token` or client certificates are required.
pub const CTL_LISTEN: &str = "127.0.0.1:8009";
/// Watchdog device.
pub const WATCHDOG_DEVICE: &str = "/dev/watchdog";
/// Seconds between watchdog expiry and leader-key expiry; -1 means `ttl // 2`.
pub const WATCHDOG_SAFETY_MARGIN: i64 = 5;
/// Failover priority of a member that says nothing (Patroni: 1).
pub const FAILOVER_PRIORITY: i64 = 1;
/// Sync priority of a member that says nothing (Patroni: 1).
pub const SYNC_PRIORITY: i64 = 1;
/// Log level.
pub const LOG_LEVEL: &str = "INFO";
/// Raft data directory for a witness that does not set one (a witness config is meant to be short).
pub const WITNESS_RAFT_DATA_DIR: &str = "/var/lib/pgwarden/raft";

// ---- Raft timing (local; milliseconds) ----------------------------------------------------------

/// Raft leader heartbeat period.
pub const RAFT_HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Lower bound of the randomised election timeout.
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 500;
/// Upper bound of the randomised election timeout.
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
/// How many members vote (`raft.voters`); the others are learners. Five, so that a cluster
/// of five or more members survives two failures as it did when every member voted; three-
/// and four-member clusters vote three either way.
pub const RAFT_VOTERS: u64 = 5;
/// Seconds a voter may be unreachable before a learner takes its vote.
pub const RAFT_VOTER_REPLACE_AFTER: u64 = 30;
/// `raft.voter_replace_after` must be at least this many election timeouts (the upper
/// bound): a voter that misses a few heartbeats, or a leader election, is not gone.
pub const RAFT_VOTER_REPLACE_MIN_ELECTIONS: u64 = 5;

/// GUCs that only the DCS may set: they must agree across the cluster or replicas cannot follow the
/// primary, so a local `postgresql.parameters` value for them is ignored (Patroni's precedence rule).
pub const DCS_ONLY_GUCS: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "wal_level",
    "wal_log_hints",
    "track_commit_timestamp",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_segments",
    "wal_keep_size",
    "hot_standby",
];

/// GUCs that Patroni users commonly set and that pgwarden sets itself, whatever the configuration
/// says, with what to do: a configured value is warned about. (The PostgreSQL manager also sets
/// `listen_addresses`, `port`, `cluster_name` and the recovery settings, as Patroni does.) Remove
/// an entry when the manager starts to honour the GUC. Empty since `unix_socket_directories` is
/// honoured.
pub const OVERRIDDEN_GUCS: &[(&str, &str)] = &[];

/// The member name Patroni reserves for its strict-sync placeholder.
pub const RESERVED_NAME: &str = "__patroni_strict_sync_replica_placeholder__";
