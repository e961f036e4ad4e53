//! End to end: real pgwarden daemons managing real PostgreSQL 15 on loopback, driven over
//! REST, SQL and pgwardenctl, with a client that records every acknowledged write. One test
//! binary (one link of the library) holds every such test; nextest runs each test in its
//! own process, so they are as independent as separate binaries were.
//!
//! Module map: [`harness`] starts and stops clusters of daemons and records writes;
//! [`t05_postgres`] drives the PostgreSQL manager alone against real servers;
//! [`t06_apply_keys`] applies the Patroni keys DBAs commonly set (socket directories,
//! config_dir, pg_ident, basebackup options) to real servers; [`t10_bootstrap`] forms clusters (three nodes, a witness, cascading replication);
//! [`t12_config_safety`] refuses configuration that would build the wrong cluster and
//! checks the pg_hba.conf a member loads (from the DCS, and the built-in default);
//! [`t15_fence`] kills only the primary's daemon and checks that its PostgreSQL stops
//! accepting writes by the lease's deadline (the fence guard), before any promotion;
//! [`t16_safety`] holds the other safety regressions that need real PostgreSQL;
//! [`t17_safety_e2e`] builds the safety review's F1, F3, F4 and F5 scenarios end to end;
//! [`t20_operations`] restarts, reinitializes and reloads members; [`t25_datain`] and
//! [`t27_takeover`] bring existing data in (replica and bootstrap methods with pgBackRest, a
//! standalone converted, a running Patroni cluster taken over in place); [`t25_datain`] creates
//! replicas and clusters from pgBackRest backups; [`t30_failover`] loses
//! the primary in several ways; [`t35_failover_speed`] measures how fast the health checks
//! follow a new primary and what a Raft leader change or a short cut costs;
//! [`t36_failover_speed_netns`] repeats the cuts in network namespaces at the shipped timing;
//! [`t37_stretched`] runs a cluster stretched over three sites 20 ms apart (SIGKILL failover, a site cut off); [`t40_sync`] covers synchronous replication;
//! [`t42_standby`] runs a standby cluster following a primary cluster, fails it over and promotes it;
//! [`t45_vip`] moves the built-in virtual IP with the primary, in network namespaces;
//! [`t50_failsafe`] keeps the primary while the DCS is down; [`t60_callbacks`] runs
//! callback scripts; [`t70_slots`] manages physical and logical replication slots;
//! [`t80_tls`] runs the gRPC traffic over mutual TLS; [`t85_haproxy`] routes clients
//! through a real HAProxy; [`t86_check_patroni`] runs the check_patroni monitoring plugin;
//! [`t90_ctl`] manages clusters through pgwardenctl; [`t92_dcs_ops`] operates the embedded DCS
//! (inspect, repair, back up, force-new-cluster after the loss of the majority); [`t95_demo`] runs `pgwarden demo`.
//! The soak test is not here: it runs for minutes, through `scripts/soak.sh`.

mod harness;
mod t05_postgres;
mod t06_apply_keys;
mod t10_bootstrap;
mod t12_config_safety;
mod t15_fence;
mod t16_safety;
mod t17_safety_e2e;
mod t20_operations;
mod t25_datain;
mod t27_takeover;
mod t30_failover;
mod t35_failover_speed;
mod t36_failover_speed_netns;
mod t37_stretched;
mod t40_sync;
mod t42_standby;
mod t45_vip;
mod t50_failsafe;
mod t60_callbacks;
mod t70_slots;
mod t80_tls;
mod t85_haproxy;
mod t86_check_patroni;
mod t90_ctl;
mod t92_dcs_ops;
mod t93_voters;
mod t95_demo;
