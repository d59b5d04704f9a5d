#!/usr/bin/env bash
# Builds the koji-adjutant RPM (packaging/koji-adjutant.spec) offline, in the bootstrap image
# (localhost/koji-adjutant-bootstrap:latest, from scripts/build-images.sh: Debian with rpmbuild;
# on a host without it, with the host's rpmbuild), and puts it in dist-rpm/ (or the directory
# given with -o).
#
# The container has no network, so everything npm would fetch is prepared here first, in a
# scratch directory outside the checkout: the checkout's files as git sees them (tracked, and new
# ones not ignored, as they are in the work tree), dist/ compiled from them, and the production
# node_modules (this checkout's node_modules with the dev dependencies pruned). That tree, as
# koji-adjutant-VERSION.tar, is the spec's Source0. Run as root (rootful podman holds the image); safe to run again: it
# replaces the koji-adjutant RPMs in the output directory and leaves nothing else behind.
#
# Usage: scripts/build-rpm.sh [-o OUTDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/dist-rpm
while getopts "o:" opt; do
  case $opt in
    o) out=$OPTARG ;;
    *) echo "usage: scripts/build-rpm.sh [-o OUTDIR]" >&2; exit 2 ;;
  esac
done
image=localhost/koji-adjutant-bootstrap:latest
spec=$root/packaging/koji-adjutant.spec

die() { echo "build-rpm.sh: $*" >&2; exit 1; }

# The bootstrap image; without podman or the image, the host's own rpmbuild (a Fedora or EL
# machine) builds the same spec.
use_image=""
if command -v podman >/dev/null && podman image exists "$image"; then
  use_image=1
elif command -v rpmbuild >/dev/null; then
  echo "build-rpm.sh: no podman image $image; building with this host's rpmbuild" >&2
elif command -v podman >/dev/null; then
  die "no image $image: run scripts/build-images.sh as root"
else
  die "neither podman (scripts/setup-host.sh installs it) nor rpmbuild is installed"
fi
version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
spec_version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
[ "$version" = "$spec_version" ] ||
  die "package.json has version $version but packaging/koji-adjutant.spec has $spec_version: make them equal"
# node_modules must match package-lock.json (the rule scripts/lib/prepare.sh uses).
if [ ! -f "$root/node_modules/.package-lock.json" ] || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
  (cd "$root" && npm ci --no-audit --no-fund)
fi

stage=$(mktemp -d "${TMPDIR:-/var/tmp}/koji-adjutant-rpm.XXXXXX")
trap 'rm -rf "$stage"' EXIT
name=koji-adjutant-$version
src=$stage/$name
mkdir -p "$src" "$stage/rpmbuild/SOURCES" "$stage/rpmbuild/SPECS"

# The checkout as git sees it: tracked files and new ones not ignored, with their work-tree
# contents (a tracked file deleted in the work tree is left out).
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$root" && tar --null --no-recursion --ignore-failed-read --files-from=- -cf -) |
  tar -xf - -C "$src"
# A copy of node_modules (not hard links: npm must not touch the checkout's files); the daemon
# compiled from those sources against it, without source maps (the .ts files are not shipped);
# then the dev dependencies pruned, offline, which leaves the production ones.
cp -a "$root/node_modules" "$src/node_modules"
"$src/node_modules/.bin/tsc" -p "$src/tsconfig.build.json" --outDir "$src/dist" --sourceMap false
(cd "$src" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null)

tar -cf "$stage/rpmbuild/SOURCES/$name.tar" -C "$stage" "$name"
rm -rf "$src"
cp "$spec" "$stage/rpmbuild/SPECS/"

if [ -n "$use_image" ]; then
  podman run --rm --network=none --label io.koji.adjutant.build-rpm=1 \
    -v "$stage/rpmbuild:/rpmbuild:Z" "$image" \
    rpmbuild --define "_topdir /rpmbuild" -bb /rpmbuild/SPECS/koji-adjutant.spec
else
  rpmbuild --define "_topdir $stage/rpmbuild" -bb "$stage/rpmbuild/SPECS/koji-adjutant.spec"
fi

shopt -s nullglob
rpms=("$stage"/rpmbuild/RPMS/*/koji-adjutant-*.rpm)
[ "${#rpms[@]}" -gt 0 ] || die "rpmbuild made no RPM"
mkdir -p "$out"
rm -f "$out"/koji-adjutant-*.rpm
cp "${rpms[@]}" "$out/"
for f in "${rpms[@]}"; do echo "build-rpm.sh: $out/$(basename "$f")"; done
