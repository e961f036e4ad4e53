#!/usr/bin/env bash
# Builds pgwarden's .deb and .rpm packages.
#
#   scripts/package.sh [OUTPUT_DIR]        (default: target/packages)
#
# Installs cargo-deb and cargo-generate-rpm with `cargo install --locked` when they are
# missing, builds the release binaries, stages what the packages carry under
# target/packaging/ (stripped binaries, gzipped man pages, bash/zsh/fish completions), then
# writes pgwarden_<version>-1_<arch>.deb and pgwarden-<version>-1.<arch>.rpm into OUTPUT_DIR
# and prints their paths. The package layout is in Cargo.toml ([package.metadata.deb] and
# [package.metadata.generate-rpm]); docs/install.md explains it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

out=${1:-target/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)

say() { echo "package.sh: $*" >&2; }

# Tools. dpkg-shlibdeps (dpkg-dev) computes the libc dependency of the .deb; strip (binutils)
# and gzip are in every build environment that has a C toolchain.
for tool in strip gzip dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { say "missing '$tool' (apt-get install binutils dpkg-dev gzip)"; exit 1; }
done
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install --locked cargo-deb
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
    say "installing cargo-generate-rpm"
    cargo install --locked cargo-generate-rpm
fi

say "building release binaries"
cargo build --release --locked -p pgwarden --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { say "cannot find cargo's target directory"; exit 1; }

# Staging, always under this checkout's target/ (the paths in Cargo.toml are relative to it).
stage=$root/target/packaging
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/man" "$stage/completions/bash" "$stage/completions/zsh" "$stage/completions/fish"
for bin in pgwarden pgwardenctl; do
    # Release builds keep line tables for profiling (profile.release debug = 1); the packages
    # carry binaries stripped as dh_strip strips them (the build id note stays).
    strip --remove-section=.comment --remove-section=.note -o "$stage/bin/$bin" "$target_dir/release/$bin"
done

# Man pages and completions come from each binary's own clap definitions
# (`<bin> generate man DIR`, `<bin> generate completions SHELL`).
generate() {
    local bin=$1
    "$stage/bin/$bin" generate man "$stage/man" || return 1
    "$stage/bin/$bin" generate completions bash >"$stage/completions/bash/$bin" || return 1
    "$stage/bin/$bin" generate completions zsh >"$stage/completions/zsh/_$bin" || return 1
    "$stage/bin/$bin" generate completions fish >"$stage/completions/fish/$bin.fish" || return 1
}
for bin in pgwarden pgwardenctl; do
    generate "$bin" || { say "'$bin generate' failed"; exit 1; }
done
# Compressed as Debian policy and RPM's brp-compress do; -n keeps the archive reproducible.
gzip -9n "$stage"/man/*.1

version=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"name":"pgwarden","version":"\([^"]*\)".*/\1/p')
[ -n "$version" ] || { say "cannot read pgwarden's version"; exit 1; }

# The Debian changelog the .deb must carry, generated so that its version is the package's.
# Dated by the last commit, so that rebuilding the same commit gives the same file.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
cat >"$stage/changelog" <<EOF
pgwarden ($version-1) unstable; urgency=medium

  * pgwarden $version, built from the project's sources (see its git history).

 -- pgwarden developers <pgwarden@example.invalid>  $date
EOF
say "version $version: writing packages into $out"

cargo deb --no-build --no-strip -p pgwarden -o "$out"
cargo generate-rpm -p . -o "$out"

ls -1 "$out"/pgwarden_"$version"-*.deb "$out"/pgwarden-"$version"-*.rpm
