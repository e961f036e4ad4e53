#!/usr/bin/env bash
# Runs pgwarden's whole test suite on a Debian 12 machine, installing what it needs first.
# Needs root (or passwordless sudo) the first time, to install packages.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "scripts/test.sh: need root to run: $*" >&2; exit 1; fi
}

# Packages the tests drive for real: PostgreSQL 15 (the server, its client tools),
# iproute2 for the network-namespace tests, protobuf is NOT needed (protox compiles protos).
need_pkgs=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql-15)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing: ${need_pkgs[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
# Debian's postgresql package starts a default cluster; the tests do not use it, but
# they never touch it either.

if ! command -v cargo >/dev/null; then
    echo "scripts/test.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings -D clippy::todo
cargo nextest run --workspace --profile ci --no-fail-fast
