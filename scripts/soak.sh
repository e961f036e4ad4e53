#!/usr/bin/env bash
# Soak: a 3-node cluster at the shipped timing, in network namespaces, under pgbench load,
# with one fault every 20 s in turn: a daemon frozen (SIGSTOP) for 0.5 s-ttl/2, the primary's
# host cut off from its peers for 0.5 s-ttl/2 (clients still reach it), an fdatasync loop on a
# node's disk for 10 s, a node's processes throttled to 5 % of a CPU for 10 s. Passes on 0 false
# failovers, 0 fence stops and 0 failed transactions; prints them with pgbench's tps and the
# seed (SOAK_SEED=... repeats a run's draws).
# Needs root, iproute2 (ip, tc), the cgroup v1 cpu controller and PostgreSQL 15 with pgbench
# (scripts/demo.sh installs it).
# Usage: scripts/soak.sh [MINUTES]   (default 10; SOAK_PROFILE=dev skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_MINUTES=${1:-10}
profile=${SOAK_PROFILE:-release}
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), profile $profile"
cargo test --profile "$profile" --test soak -- --ignored --nocapture 2>&1 |
    grep -E '^(soak:|\[ *[0-9]+s\]|test result|thread|netns:)'
