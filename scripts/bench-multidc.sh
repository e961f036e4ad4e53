#!/usr/bin/env bash
# Multi-datacenter benchmark (issue 18): (1) replication lag of a standby cluster following a
# primary cluster through a permanent slot while pgbench writes to the primary, and (2) the
# failover RTO of a cluster stretched over three sites (one data node each, network
# namespaces, every frame between two sites delayed by 1, 10 and 50 ms one way), SIGKILL of
# the primary's site in synchronous_mode. Both are ignored tests of tests/e2e/t37_stretched.rs
# (bench_multidc_*), run one after the other; this prints their result lines. Not run in CI.
# This is the command docs/benchmarks.md records.
#
# Usage: scripts/bench-multidc.sh [--time-limit SECS] [--only standby|stretched]
# (time limit default 1200: the run is stopped past it; --only runs one of the two).
# Environment: PGWARDEN_BENCH_DELAYS_MS (default 1,10,50), PGWARDEN_BENCH_ROUNDS (default 3),
# PGWARDEN_BENCH_PGBENCH_SECONDS (default 30). Needs root (network namespaces, PostgreSQL run
# as postgres), PostgreSQL 15 with pgbench, iproute2 and cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=1200
filter='test(/^t37_stretched::bench_multidc_/)'
while [ $# -gt 0 ]; do
    case "$1" in
        --time-limit) limit=$2; shift 2 ;;
        --only)
            case "${2:-}" in
                standby) filter='test(/^t37_stretched::bench_multidc_standby_lag$/)' ;;
                stretched) filter='test(/^t37_stretched::bench_multidc_stretched_rto$/)' ;;
                *) echo "scripts/bench-multidc.sh: --only takes standby or stretched" >&2; exit 2 ;;
            esac
            shift 2 ;;
        *) echo "scripts/bench-multidc.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/bench-multidc.sh: run it as root (network namespaces)" >&2
    exit 1
fi
for tool in /usr/lib/postgresql/15/bin/pgbench ip; do
    command -v "$tool" >/dev/null || { echo "scripts/bench-multidc.sh: $tool is missing" >&2; exit 1; }
done
command -v cargo-nextest >/dev/null || { echo "scripts/bench-multidc.sh: cargo-nextest is missing" >&2; exit 1; }

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
     "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)," \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build -q -p pgwarden --bins --tests
log=$(mktemp -t bench-multidc.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
# One test at a time (they would share the two cores otherwise); the tests clean up their
# clusters and namespaces, also when killed by the time limit's SIGTERM (nextest passes it on).
timeout --signal=TERM --kill-after=30 "$limit" \
    cargo nextest run -p pgwarden --test e2e --run-ignored only -E "$filter" \
    --test-threads 1 --no-fail-fast --no-capture >"$log" 2>&1 || status=$?
grep -E '^BENCH' "$log" | sed 's/^BENCH //' || true
if [ "$status" -ne 0 ]; then
    echo "scripts/bench-multidc.sh: the run failed (status $status):" >&2
    grep -E -A4 'panicked|TIMEOUT|FAIL \[' "$log" | head -n 40 >&2 || true
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
