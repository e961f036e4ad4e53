#!/usr/bin/env bash
# Builds the .deb of the previous release, which tests/field_systemd.rs upgrades from.
#
#   scripts/package-previous.sh
#
# The previous release is the commit named in packaging/previous-release (there is no release
# tag yet). Its sources come from this checkout's git history (`git archive`), are unpacked
# under target/previous-src/ and packaged by that commit's own scripts/package.sh, into
# target/packages/previous/<commit>/. A package already there is reused: the commit never
# changes its contents.
#
# Cost: the old sources are built with this checkout's CARGO_TARGET_DIR, so the dependencies
# compiled for them are the ones the current sources reuse (same Cargo.lock, same profile);
# only the pgwarden crates build twice. Run it before scripts/package.sh to get that saving
# (scripts/test.sh does).
#
# Exit status 3: the commit is not in this checkout's history (a tarball, a shallow clone), so
# the package cannot be built here; the rolling-upgrade test then skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { echo "package-previous.sh: $*" >&2; }

commit=$(tr -d ' \n' <packaging/previous-release)
case "$commit" in
    *[!0-9a-f]* | "") say "packaging/previous-release must hold a full commit hash, not '$commit'"; exit 1 ;;
esac
[ ${#commit} -eq 40 ] || { say "packaging/previous-release must hold a full (40-digit) commit hash"; exit 1; }

out=$root/target/packages/previous/$commit
if ls "$out"/pgwarden_*.deb >/dev/null 2>&1; then
    say "reusing $(ls "$out"/pgwarden_*.deb)"
    ls -1 "$out"/pgwarden_*.deb
    exit 0
fi

if ! git rev-parse --git-dir >/dev/null 2>&1; then
    say "this checkout has no git history: cannot build the previous release $commit"
    say "(clone the repository, or put that release's .deb in target/packages/previous/$commit/)"
    exit 3
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    say "commit $commit (the previous release) is not in this checkout's history"
    say "(a shallow clone? run: git fetch --unshallow)"
    exit 3
fi

# Everything cargo builds goes to this checkout's target directory.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { say "cannot find cargo's target directory"; exit 1; }

src=$root/target/previous-src/$commit
rm -rf "$src" "$out.partial"
mkdir -p "$src" "$out.partial"
git archive --format=tar "$commit" | tar -x -C "$src"
say "building the previous release $commit (sources in $src, target directory $target_dir)"
started=$(date +%s)
# GIT_CEILING_DIRECTORIES: the old package.sh dates its Debian changelog with `git log`, which
# must not find this checkout's repository above the unpacked sources (it would date the old
# package with the current commit).
(cd "$src" && CARGO_TARGET_DIR=$target_dir GIT_CEILING_DIRECTORIES=$root/target/previous-src \
    ./scripts/package.sh "$out.partial")
mv "$out.partial" "$out"
# Only the packages are kept; the unpacked sources are rebuilt from git when needed.
rm -rf "$src"
say "built in $(($(date +%s) - started)) s"
ls -1 "$out"/pgwarden_*.deb
