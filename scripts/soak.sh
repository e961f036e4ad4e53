#!/usr/bin/env bash
# Soak: a 3-node cluster at the default timing under pgbench load, with one daemon frozen
# (SIGSTOP) for 2-4 s every 20 s; passes when no failover happened. Prints pgbench's tps and
# the stall and timeline counts. Needs PostgreSQL 15 (scripts/demo.sh installs it).
# Usage: scripts/soak.sh [MINUTES]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_MINUTES=${1:-10}
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cargo test --release --test soak -- --ignored --nocapture 2>&1 | grep -E '^(soak:|stall|test result|thread)'
