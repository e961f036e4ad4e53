#!/usr/bin/env bash
# Sets up and runs pgwarden's demo on a Debian 12 machine: installs PostgreSQL 15 if it is
# missing (needs root or sudo), builds pgwarden, and starts a 3-node cluster on loopback.
# Extra arguments go to `pgwarden demo` (e.g. --witness, --duration 60, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "scripts/demo.sh: need root to run: $*" >&2; exit 1; fi
}
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15
fi
cargo build --release --bin pgwarden
exec ./target/release/pgwarden demo "$@"
