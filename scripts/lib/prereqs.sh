# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): root for apt, Debian packages,
# and a Rust toolchain new enough for pgwarden. Only apt needs root; everything else runs as the
# calling user.

# pgwarden's minimum Rust version (Cargo.toml's rust-version).
PGWARDEN_MIN_RUST=1.88

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "$0: need root to run: $*" >&2; exit 1; fi
}

# apt_install PKG...: installs the packages (one apt-get update first), none if the list is empty.
apt_install() {
    [ $# -gt 0 ] || return 0
    echo "installing: $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# build_pkgs: names of the packages the build itself needs that are missing (a C compiler and
# linker for ring and the sled/zstd dependencies, pkg-config).
build_pkgs() {
    command -v cc >/dev/null || echo build-essential
    command -v pkg-config >/dev/null || echo pkg-config
}

# need_rust [COMPONENT...]: cargo present and at least PGWARDEN_MIN_RUST; with rustup, the given
# components (rustfmt, clippy) are added when missing.
need_rust() {
    if ! command -v cargo >/dev/null; then
        for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
            [ -x "$d/cargo" ] && PATH="$d:$PATH" && export PATH && break
        done
    fi
    if ! command -v cargo >/dev/null; then
        echo "$0: cargo is missing. Install Rust $PGWARDEN_MIN_RUST or newer with rustup" >&2
        echo "  (curl https://sh.rustup.rs -sSf | sh), then run this again." >&2
        exit 1
    fi
    local have
    have="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "$PGWARDEN_MIN_RUST" "${have%%-*}" | sort -V | head -n1)" != "$PGWARDEN_MIN_RUST" ]; then
        if command -v rustup >/dev/null; then
            echo "Rust $have is older than pgwarden's minimum $PGWARDEN_MIN_RUST: rustup update stable"
            rustup update stable
        else
            echo "$0: Rust $have is older than pgwarden's minimum $PGWARDEN_MIN_RUST; install a newer one with rustup" >&2
            exit 1
        fi
    fi
    local c
    for c in "$@"; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null; then
                echo "adding the Rust component $c"
                rustup component add "$c"
            else
                echo "$0: the Rust component $c is missing (cargo ${c/rustfmt/fmt}); install it with rustup" >&2
                exit 1
            fi
        fi
    done
}
