#!/usr/bin/env bash
# VIP benchmark: how fast the virtual IP follows the primary. Runs the end-to-end test
# vip_follows_the_primary_across_switchover_kill_and_partition (three daemons and PostgreSQL 15
# in network namespaces, a client writing through the VIP from a fourth) ROUNDS times, collects
# the `vip:` line it prints per event (a switchover, a SIGKILL of the primary's node, a cut of
# the primary's host), and prints, per event, the median and maximum of: the promotion to the
# address being added, the event to the address on the new primary, and the longest gap between
# two writes acknowledged through the VIP. This is the command docs/benchmarks.md records.
#
# Usage: scripts/bench-vip.sh [ROUNDS]   (default 3; about a minute per round). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
case "$rounds" in
    ''|*[!0-9]*) echo "scripts/bench-vip.sh: ROUNDS must be a number, not '$rounds'" >&2; exit 2 ;;
esac
if [ "$rounds" -lt 1 ] || [ "$rounds" -gt 50 ]; then
    echo "scripts/bench-vip.sh: ROUNDS must be between 1 and 50" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/bench-vip.sh: run it as root (network namespaces; PostgreSQL runs as postgres)" >&2
    exit 1
fi
[ -x /usr/lib/postgresql/15/bin/postgres ] || {
    echo "scripts/bench-vip.sh: PostgreSQL 15 is missing (scripts/demo.sh installs it)" >&2
    exit 1
}

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds" >&2
    out=$(cargo nextest run -p pgwarden --test e2e vip_follows --no-capture 2>&1) || {
        printf '%s\n' "$out" | tail -40 >&2
        echo "scripts/bench-vip.sh: round $r failed" >&2
        exit 1
    }
    printf '%s\n' "$out" | grep '^vip:' | tee -a "$lines" >&2
done

python3 - "$lines" <<'EOF'
import re, statistics, sys

# Rust's Debug rendering of a Duration: 1.5s, 12.3ms, 45µs, 7ns.
UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
DUR = r"([0-9.]+)(s|ms|µs|us|ns)"

def secs(m):
    return float(m[0]) * UNITS[m[1]]

rows = {}
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("vip: switchover"):
        event = "switchover"
        added = re.search(r"VIP added " + DUR, line)
        moved = None
    elif line.startswith("vip: SIGKILL"):
        event = "SIGKILL of the primary's node"
        added = re.search(r"\(" + DUR + r" after its promotion\)", line)
        moved = re.search(r"after " + DUR + r" \(", line)
    elif line.startswith("vip: partition"):
        event = "partition of the primary's host"
        added = re.search(r"\(" + DUR + r" after its promotion\)", line)
        moved = re.search(r"after " + DUR + r" \(", line)
    else:
        continue
    gap = re.search(r"longest write gap " + DUR, line)
    r = rows.setdefault(event, {"added": [], "moved": [], "gap": []})
    for key, m in (("added", added), ("moved", moved), ("gap", gap)):
        if m:
            r[key].append(secs(m.groups()))

def fmt(x):
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"

def cell(v):
    if not v:
        return "—"
    return f"{fmt(statistics.median(v))} / {fmt(max(v))}"

print("| event | rounds | promotion → VIP (median / max) | VIP moved (median / max) | longest write gap (median / max) |")
print("|---|---:|---:|---:|---:|")
for event in ("switchover", "SIGKILL of the primary's node", "partition of the primary's host"):
    r = rows.get(event)
    if r:
        n = max(len(r["added"]), len(r["gap"]))
        print(f"| {event} | {n} | {cell(r['added'])} | {cell(r['moved'])} | {cell(r['gap'])} |")
EOF
