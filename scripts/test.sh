#!/usr/bin/env bash
# Runs pgwarden's whole test suite on a Debian 12 machine, installing what it needs first.
# Needs root (or passwordless sudo) the first time, to install packages.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/prereqs.sh

# Packages the tests drive for real: PostgreSQL 15 (the server, its client tools),
# iproute2 for the network-namespace tests, HAProxy (tests/e2e/t85_haproxy.rs), pgBackRest
# (tests/e2e/t25_datain.rs) and Python's venv (check_patroni below); protobuf is NOT needed
# (protox compiles protos).
need_pkgs=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql-15)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
[ -x /usr/bin/pgbackrest ] || need_pkgs+=(pgbackrest)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# Debian's own Python for the Patroni virtualenv below: the postgres user runs Patroni, and must be
# able to execute the interpreter the virtualenv links to (a Python under /root is not).
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# The in-place takeover test (tests/e2e/t27_takeover.rs) runs a real Patroni + etcd cluster first.
[ -x /usr/bin/etcd ] || need_pkgs+=(etcd-server)
# The chaos suite steps one node's wall clock with libfaketime preloaded into its daemon.
ls /usr/lib/*-linux-gnu/faketime/libfaketime.so.1 >/dev/null 2>&1 || need_pkgs+=(libfaketime)
need_pkgs+=($(build_pkgs))
# Packaging: dpkg-shlibdeps and strip for scripts/package.sh; lintian, rpm and systemd-analyze
# for tests/packaging_checks.rs.
command -v dpkg-shlibdeps >/dev/null || need_pkgs+=(dpkg-dev)
command -v strip >/dev/null || need_pkgs+=(binutils)
command -v lintian >/dev/null || need_pkgs+=(lintian)
command -v rpm >/dev/null || need_pkgs+=(rpm)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
# tests/field_systemd.rs: boots Debian 12 containers (mmdebstrap builds their root once, cached
# under target/field-root) with systemd-nspawn.
command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
command -v systemd-nspawn >/dev/null || need_pkgs+=(systemd-container)
apt_install "${need_pkgs[@]}"
# Debian's postgresql package starts a default cluster; the tests do not use it, but
# they never touch it either. Debian's haproxy package likewise starts its own service,
# which the tests leave alone: they run HAProxy as a child on ports of their own.

# check_patroni (PyPI), the monitoring plugin tests/e2e/t86_check_patroni.rs runs, lives in a
# virtualenv under the target directory, made once and kept across runs; the test finds it
# there or through PGWARDEN_CHECK_PATRONI.
check_patroni_version=2.2.0
venv="${CARGO_TARGET_DIR:-target}/tools/check_patroni"
if ! "$venv/bin/check_patroni" --version 2>/dev/null | grep -qx "Version $check_patroni_version"; then
    echo "installing check_patroni $check_patroni_version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "check_patroni==$check_patroni_version"
fi
PGWARDEN_CHECK_PATRONI="$(cd "$venv/bin" && pwd)/check_patroni"
export PGWARDEN_CHECK_PATRONI

# Patroni 4.1.5 (PyPI), which tests/e2e/t27_takeover.rs runs and then takes over, lives in a
# virtualenv of Debian's Python under the target directory, made once and kept across runs.
patroni_version=4.1.5
pvenv="${CARGO_TARGET_DIR:-target}/tools/patroni"
# Patroni runs as postgres: when this checkout is somewhere postgres cannot reach (under /root),
# the virtualenv goes to a cache directory it can.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$PWD"; then
    pvenv=/var/cache/pgwarden-tests/patroni
    mkdir -p "$(dirname "$pvenv")"
    chmod 755 "$(dirname "$pvenv")"
fi
if ! "$pvenv/bin/patroni" --version 2>/dev/null | grep -qx "patroni $patroni_version"; then
    echo "installing Patroni $patroni_version into $pvenv"
    rm -rf "$pvenv"
    /usr/bin/python3 -m venv "$pvenv"
    "$pvenv/bin/pip" install --quiet --disable-pip-version-check "patroni[etcd3,psycopg3]==$patroni_version"
fi
PGWARDEN_PATRONI="$(cd "$pvenv/bin" && pwd)/patroni"
export PGWARDEN_PATRONI

# promtool checks packaging/monitoring's alert rules (tests/monitoring.rs). It comes from Debian's
# prometheus package, unpacked under the target directory and never installed, so no Prometheus
# service is set up on the machine.
promtool="${CARGO_TARGET_DIR:-target}/tools/prometheus/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
    echo "unpacking promtool from Debian's prometheus package"
    dl="$(mktemp -d)"
    # (As root apt warns that its sandbox user cannot write to the folder, and downloads anyway.)
    if ! (cd "$dl" && apt-get download -qq prometheus 2>/dev/null); then
        as_root apt-get update -qq
        (cd "$dl" && apt-get download -qq prometheus)
    fi
    mkdir -p "${promtool%/usr/bin/promtool}"
    dpkg-deb -x "$dl"/prometheus_*.deb "${promtool%/usr/bin/promtool}"
    rm -rf "$dl" "${promtool%/promtool}/prometheus"
fi
PGWARDEN_PROMTOOL="$(cd "$(dirname "$promtool")" && pwd)/promtool"
export PGWARDEN_PROMTOOL

need_rust rustfmt clippy
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings -D clippy::todo
# The previous release's .deb, which tests/field_systemd.rs upgrades from (cached under
# target/packages/previous/<commit>). Built first, with the same target directory, so that
# package.sh below reuses its compiled dependencies.
# Status 3: the previous release's commit is not in this clone's history (shallow): the
# upgrade test skips and says so; anything else is a failure.
previous_rc=0
./scripts/package-previous.sh || previous_rc=$?
if [ "$previous_rc" -eq 3 ]; then
    echo "test.sh: the previous release cannot be built from this clone: the rolling-upgrade test will be skipped" >&2
elif [ "$previous_rc" -ne 0 ]; then
    exit "$previous_rc"
fi
# The .deb and .rpm that tests/packaging_checks.rs and tests/packaging_netns.rs check
# (target/packages). As root (CI), those tests must run rather than skip.
./scripts/package.sh
if [ "$(id -u)" -eq 0 ]; then export PGWARDEN_REQUIRE_PACKAGE_TESTS=1; fi
cargo nextest run --workspace --profile ci --no-fail-fast
