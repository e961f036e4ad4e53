#!/usr/bin/env bash
# Chaos: a pgwarden cluster in network namespaces (one per node, a bridge, one for the
# clients), real daemons and PostgreSQL 15 run as the postgres user, clients writing through
# every member's PostgreSQL, and faults from a seeded schedule (kills, stops beyond ttl,
# partitions, one-way cuts, packet loss, restarts of all nodes, a throttled disk), each
# healed and followed by a wait for the cluster to settle. At the end the final primary is
# read and the history checked: lost acknowledged commits, split-brain intervals, forked
# timelines, members that never rejoined; a per-fault table is printed (and kept in
# target/chaos/). docs/reliability.md describes every fault and the measured results.
#
# Needs root, iproute2 (ip, tc), the cgroup v1 blkio controller for the slow disk (an
# fdatasync loop is used without it), PostgreSQL 15 (scripts/demo.sh installs it) and, for the
# clock-step fault, Debian's libfaketime (scripts/test.sh installs it; left out without it).
#
# Usage: scripts/chaos.sh [-s SEED] [-n FAULTS] [-t 3|2+w] [-m async|sync|quorum]
#                         [-d MINUTES] [-k KIND,KIND...] [-c] [-p dev|release]
#   -s  seed of the schedule and of every draw (default: random, printed)
#   -n  number of faults (default 30)
#   -t  topology: 3 data nodes, or 2 data nodes and a witness (default 3)
#   -m  replication mode (default sync)
#   -d  no new fault is injected after this many minutes (default 45)
#   -k  only these fault kinds (default all): kill-node, kill-daemon, stop-daemon,
#       partition-primary, partition-raft-leader, one-way, isolate-peers, loss, delay,
#       restart-all, slow-disk
#   -c  combination mode: two faults at a time
#   -p  cargo profile (default release; dev skips the optimised build)
# Ctrl-C stops the schedule; the run then cleans up (processes, namespaces, directories)
# and reports what it saw so far.
set -euo pipefail
cd "$(dirname "$0")/.."

seed="" faults=30 topology=3 mode=sync minutes=45 kinds="" combine=0 profile=release
while getopts "s:n:t:m:d:k:cp:h" opt; do
    case $opt in
    s) seed=$OPTARG ;;
    n) faults=$OPTARG ;;
    t) topology=$OPTARG ;;
    m) mode=$OPTARG ;;
    d) minutes=$OPTARG ;;
    k) kinds=$OPTARG ;;
    c) combine=1 ;;
    p) profile=$OPTARG ;;
    *)
        sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
done
[[ $EUID -eq 0 ]] || {
    echo "chaos.sh: run as root (network namespaces, cgroups)" >&2
    exit 2
}
seed=${seed:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}

# Build first, then run the test binary directly: Ctrl-C then reaches only the binary
# (which handles it and cleans up) and tee, which ignores it and keeps the log going.
bin=$(cargo test --profile "$profile" --test chaos --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["test"\]' | grep '"name":"chaos"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[[ -x $bin ]] || {
    echo "chaos.sh: could not build the chaos test binary" >&2
    exit 1
}
out=target/chaos
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)-$topology-$mode-$seed"
log="$out/$stamp.log"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), profile $profile" | tee "$log"
echo "command: scripts/chaos.sh -s $seed -n $faults -t $topology -m $mode -d $minutes${kinds:+ -k $kinds}$([[ $combine = 1 ]] && echo ' -c') -p $profile" |
    tee -a "$log"

export CHAOS_SEED=$seed CHAOS_FAULTS=$faults CHAOS_TOPOLOGY=$topology CHAOS_MODE=$mode
export CHAOS_MINUTES=$minutes CHAOS_KINDS=$kinds CHAOS_COMBINE=$combine
export CHAOS_TABLE="$out/$stamp.table.md"
# The script itself waits through a Ctrl-C for the binary's cleanup.
trap '' INT
status=0
"$bin" --ignored --exact chaos_run_from_env --nocapture --test-threads 1 2>&1 | tee -i -a "$log" ||
    status=$?
echo "log: $log" >&2
[[ -f $CHAOS_TABLE ]] && echo "table: $CHAOS_TABLE" >&2
exit "$status"
