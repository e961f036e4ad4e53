#!/usr/bin/env bash
# Benchmarks pgwarden's embedded DCS against etcd 3.4 on this machine (3 members each,
# loopback only) and prints markdown tables: CAS latency and throughput with 1, 8 and 64
# clients, idle RSS and CPU per member. This is the command docs/benchmarks.md records.
# Extra arguments go to dcs-bench (see `target/release/dcs-bench --help`), e.g.
#   scripts/bench-dcs.sh --duration 30 --targets leader
# Needs root (or passwordless sudo) the first time, to install etcd.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "scripts/bench-dcs.sh: need root to run: $*" >&2; exit 1; fi
}

# etcd 3.4 from Debian 12 (etcd-server). Debian's package enables an etcd service of its
# own on the standard ports; the bench uses free ports and its own data directories, but
# that service's idle work would share the cores, so a running one is reported.
if ! command -v etcd >/dev/null; then
    echo "installing etcd-server"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server
fi
if pgrep -x etcd >/dev/null; then
    echo "note: an etcd process is already running on this machine (Debian's etcd service?);" \
         "it shares the CPU with the benchmark: stop it for clean figures (systemctl stop etcd)" >&2
fi

if ! command -v cargo >/dev/null; then
    echo "scripts/bench-dcs.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1
fi
cargo build --release -p pgwarden-raft -p pgwarden-bench

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
     "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
exec target/release/dcs-bench "$@"
