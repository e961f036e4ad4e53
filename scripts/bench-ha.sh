#!/usr/bin/env bash
# HA benchmark: runs `pgwarden demo --failover-drill` N times (default 5) on loopback and
# prints the median (and range) of: bootstrap from empty data directories to 1 leader + 2
# streaming; node-loss failover (SIGKILL of the primary's daemon and postmaster to the first
# write acknowledged by the new primary); switchover write gap.
# Needs PostgreSQL 15 (scripts/demo.sh installs it). Usage: scripts/bench-ha.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --bin pgwarden
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$runs"); do
    port=$((20000 + i * 20))
    ./target/release/pgwarden demo --failover-drill --duration 1 --base-port "$port" \
        | grep '^timing:' | tee -a "$out"
done
summary() { # label, pattern
    sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { printf "%-22s no data\n", label; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%-22s median %6.2f s   min %6.2f s   max %6.2f s   (%d runs)\n", label, m, v[1], v[NR], NR }'
}
echo
grep 'timing: bootstrap' "$out" | awk '{print $3}' | summary "bootstrap"
grep 'timing: failover' "$out" | awk '{print $3}' | summary "failover (RTO)"
grep 'timing: switchover' "$out" | awk '{print $5}' | summary "switchover write gap"
