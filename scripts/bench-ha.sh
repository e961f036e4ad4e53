#!/usr/bin/env bash
# HA benchmark: failover as HAProxy sees it. Starts a 3-node pgwarden cluster on loopback at
# the shipped defaults (nodes run as the postgres user, PostgreSQL 15), and measures node-loss
# failover (SIGKILL of the primary's daemon, postmaster and backends at a random point of the
# loop, to the first write acknowledged through `GET /primary` and through a multi-host libpq
# string) and the write gap of a switchover, a SIGTERM of the primary's daemon and a
# PostgreSQL crash on the primary; then the node-loss rounds with Patroni 4.1.5 + etcd 3.4 at
# Patroni's defaults. Prints median, min and max as markdown tables. This is the command
# docs/benchmarks.md records.
#
# Usage: scripts/bench-ha.sh [--no-patroni] [--rounds N] [--gap-rounds N] [--time-limit SECS]
# (the arguments go to ha-bench; `ha-bench --help` lists them all). Needs root: it installs
# what is missing (postgresql-15, etcd-server, a Patroni venv) and runs the nodes as postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/bench-ha.sh: run it as root (it installs packages and runs the nodes as postgres)" >&2
    exit 1
fi
patroni=1
for a in "$@"; do [ "$a" = --no-patroni ] && patroni=0; done
# Readable by the postgres user, and kept between runs (it is an install, not a temp dir).
venv=${HA_BENCH_VENV:-/var/lib/pgwarden-bench/patroni-4.1.5}

apt_install() {
    [ -n "${apt_updated:-}" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_install postgresql-15
if [ "$patroni" = 1 ]; then
    if ! command -v etcd >/dev/null; then
        apt_install etcd-server
    fi
    # Debian's package enables an etcd service of its own: the bench runs its own members,
    # and a system one would share the cores.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/etcd ]; then
        /etc/init.d/etcd stop >/dev/null 2>&1 || true
    fi
    if [ ! -x "$venv/bin/patroni" ] || ! "$venv/bin/patroni" --version 2>/dev/null | grep -q ' 4\.1\.5$'; then
        # The system python (not a per-user one such as pyenv's): the postgres user runs it.
        [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
        mkdir -p "$(dirname "$venv")"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'patroni[etcd3]==4.1.5' psycopg2-binary
        chmod -R a+rX "$(dirname "$venv")"
    fi
fi

if ! command -v cargo >/dev/null; then
    echo "scripts/bench-ha.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1
fi
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p pgwarden -p pgwarden-bench --bin pgwarden --bin ha-bench

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
     "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

# ha-bench kills and reaps what it started and removes its temp dir on every exit,
# SIGINT and SIGTERM included; this trap covers a bench that was itself killed: its daemons
# die with it (PR_SET_PDEATHSIG), the postmasters they started are found by their pid files
# under the work dir, and the work dir goes.
work=$(mktemp -d -t ha-bench-run.XXXXXX)
chmod 755 "$work"
bench_pid=
cleanup() {
    if [ -n "$bench_pid" ]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    for pidfile in $(find "$work" -name postmaster.pid 2>/dev/null); do
        pid=$(head -n1 "$pidfile" || true)
        # Only a postmaster still running in that data directory (not a reused PID).
        if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(dirname "$pidfile")" ]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

args=(--pgwarden "$target/release/pgwarden" --work-dir "$work")
[ "$patroni" = 1 ] && args+=(--patroni "$venv/bin/patroni" --etcd "$(command -v etcd)")
"$target/release/ha-bench" "${args[@]}" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
