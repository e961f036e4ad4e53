#!/usr/bin/env bash
# Sets up and runs pgwarden's demo on a Debian 12 machine: installs PostgreSQL 15 (when no
# PostgreSQL is installed) and the build's needs (a C compiler, pkg-config) if they are missing
# (needs root or sudo for apt only), checks the Rust toolchain (1.88 or newer), builds
# pgwarden, and starts a 3-node cluster on loopback.
# Extra arguments go to `pgwarden demo` (e.g. --witness, --duration 60, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
# Root (sudo) is needed only for apt; the build and the demo run as the calling user.
pkgs=($(build_pkgs))
# The demo takes the newest PostgreSQL it finds (as the daemon does without bin_dir), so an
# installed 16 or 17 (PGDG) will do; only a host with none gets Debian 12's 15.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || pkgs+=(postgresql-15)
apt_install "${pkgs[@]}"
need_rust
cargo build --release --bin pgwarden
exec ./target/release/pgwarden demo "$@"
