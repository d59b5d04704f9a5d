#!/usr/bin/env bash
# Makes the offline fixture: a koji topdir holding tag fixture-build's repo 1 (as the hub's
# repo_init and kojid's createrepo write it) whose RPMs are the bootstrap image's own Debian
# userland, so `dnf --installroot=ROOT install @build` from it gives a root rpmbuild can run in
# (podman-notes §9); example SRPMs and a git repository for SCM builds; and fixture.json, the
# manifest a fake hub serves (builds, rpms with hub ids, groups, repo). No registry, no network:
# everything is built in one `podman run --network=none` of the bootstrap image.
#
#   scripts/make-fixture-repo.sh [OUTDIR]    default OUTDIR: /var/lib/koji-adjutant/fixture
#   scripts/make-fixture-repo.sh --force [OUTDIR]   rebuild even if the inputs are unchanged
#   scripts/make-fixture-repo.sh --print [OUTDIR]   print the paths only (exit 1 if not built)
#
# Environment: KOJI_ADJUTANT_FIXTURE_DIR (OUTDIR when no argument is given),
# KOJI_ADJUTANT_BOOTSTRAP_IMAGE (default: what scripts/build-images.sh prints; it builds the
# image when missing). Rebuilds only when the content hash of this script, scripts/fixture/**
# and the bootstrap image id changes; a warm run takes a fraction of a second. Concurrent runs
# wait on a lock; the new tree replaces the old one with renames. Run as root.
# Prints KEY=VALUE lines: FIXTURE_DIR, FIXTURE_MANIFEST, FIXTURE_REPO (the repo dir of the
# machine's arch), FIXTURE_REPO_URL (file://), FIXTURE_SRPMS, FIXTURE_GIT, FIXTURE_HASH.
#
# OUTDIR is a koji topdir (serve it as kojid's topurl, or mount it whole: toplink points 4 up):
#   packages/<name>/<ver>/<rel>/{src,noarch,x86_64}/*.rpm   fixture-setup, -base, -gcc, -extra
#   repos/fixture-build/1/{repo.json,groups/comps.xml}      as the hub's repo_init writes them
#   repos/fixture-build/1/x86_64/{pkglist,rpmlist.jsonl,blocklist,toplink,repodata/}
#   repos/fixture-build/latest -> 1
#   srpms/fixture-{hello,hello-c,needs,dynreq,fail}-1.0-1.src.rpm
#   git/fixture-hello.git        bare, branch main, tag fixture-hello-1.0-1, dumb-HTTP ready
#   fixture.json                 manifest: tag, repo, groups, builds, rpms (hub ids), srpms, scm
#   debian-packages.txt          the Debian packages inside fixture-base and fixture-gcc
# Groups: build = setup+base+gcc, srpm-build = setup+base. Build user: mockbuild, uid/gid 1000,
# home /builddir; %_dbpath /var/lib/rpm. Same inputs give byte-identical RPMs.
set -euo pipefail

force=0 print_only=0 out=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print) print_only=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    -*) echo "make-fixture-repo.sh: unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-${KOJI_ADJUTANT_FIXTURE_DIR:-/var/lib/koji-adjutant/fixture}}
mkdir -p "$(dirname "$out")"
out=$(readlink -m "$out")

log() { printf '[make-fixture-repo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

print_paths() {
  local repo="$out/repos/fixture-build/1/$(uname -m)"
  echo "FIXTURE_DIR=$out"
  echo "FIXTURE_MANIFEST=$out/fixture.json"
  echo "FIXTURE_REPO=$repo"
  echo "FIXTURE_REPO_URL=file://$repo"
  echo "FIXTURE_SRPMS=$out/srpms"
  echo "FIXTURE_GIT=$out/git/fixture-hello.git"
  echo "FIXTURE_HASH=$(cat "$out/.inputs-hash")"
}

if [ "$print_only" = 1 ]; then
  [ -f "$out/.inputs-hash" ] || die "$out is not built: run $0 first"
  print_paths
  exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (rootful podman; the fixture files are root's)"
command -v podman >/dev/null || die "podman missing: run scripts/setup-host.sh"

script_path=$(readlink -f "$0")
script_dir=$(dirname "$script_path")
image=${KOJI_ADJUTANT_BOOTSTRAP_IMAGE:-}
if [ -z "$image" ]; then
  image=$(bash "$script_dir/build-images.sh" | tail -n 1)
fi
image_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null) ||
  die "bootstrap image $image not found (scripts/build-images.sh builds it)"

hash=$({
  cat "$script_path"
  (cd "$script_dir" && find fixture -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  echo "$image_id"
} | sha256sum | cut -c1-16)

# One builder at a time; the others find the finished tree.
exec 9>"$out.lock"
flock 9

if [ "$force" = 0 ] && [ -f "$out/fixture.json" ] && [ "$(cat "$out/.inputs-hash" 2>/dev/null)" = "$hash" ]; then
  print_paths
  exit 0
fi

start=$(date +%s.%N)
new="$out.new.$$"
name="koji-adjutant-fixture-$$"
cleanup() {
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  rm -rf --one-file-system "$new"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf --one-file-system "$out".new.* "$out".old.*
mkdir -p "$new"

log "building the fixture in $image (inputs $hash)"
podman run --rm --name "$name" --network=none --label io.koji.adjutant.fixture=1 \
  --hostname fixture.koji-adjutant \
  -v "$script_dir/fixture:/fixture:ro" -v "$new:/out" \
  -e FIXTURE_TOPDIR="$out" -e FIXTURE_HASH="$hash" -e FIXTURE_IMAGE="$image" \
  "$image" bash /fixture/build.sh >&2 || {
  status=$?
  die "podman run of scripts/fixture/build.sh in $image exited $status"
}

echo "$hash" > "$new/.inputs-hash"
chmod -R a+rX "$new"
if [ -e "$out" ]; then
  mv "$out" "$out.old.$$"
fi
mv "$new" "$out"
rm -rf --one-file-system "$out.old.$$"
log "built in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
print_paths
