#!/bin/sh
# Diagnostic wrapper (docs/benchmarks.md, "TCP_NODELAY"): runs target/release/pgwarden-dcs
# with nodelay.c preloaded, so accepted peer-service sockets get TCP_NODELAY. Use as
#   scripts/bench-dcs.sh --pgwarden-dcs bench/diag/pgwarden-dcs-nodelay.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
so="${TMPDIR:-/tmp}/pgwarden-nodelay-$(id -u).so"
if [ ! -f "$so" ] || [ "$here/nodelay.c" -nt "$so" ]; then
    # Three members start at once: build to a private name, then rename atomically.
    tmp=$(mktemp "$so.XXXXXX")
    cc -shared -fPIC -O2 -o "$tmp" "$here/nodelay.c" -ldl
    mv -f "$tmp" "$so"
fi
LD_PRELOAD="$so" exec "$here/../../target/release/pgwarden-dcs" "$@"
