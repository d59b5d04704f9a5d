#!/usr/bin/env bash
# Builds the offline bootstrap image localhost/koji-adjutant-bootstrap:<hash> (and :latest):
# Debian bookworm minbase via debootstrap + rpm/rpmbuild, dnf, createrepo_c, git, compilers,
# imported with `podman import`. No container registry is needed; only the Debian mirror apt
# uses. <hash> is a content hash of this script (package list and config snippets are inline),
# so a rebuild happens only when they change. Run as root. Idempotent and resumable (stamps).
#
#   scripts/build-images.sh            build if missing, print the image name
#   scripts/build-images.sh --force    rebuild even if the image with this hash exists
#   scripts/build-images.sh --print    print the image name this script would build, and exit
#
# Environment: KOJI_ADJUTANT_MIRROR (Debian mirror; default: read from apt's sources),
# KOJI_ADJUTANT_SECURITY_MIRROR, KOJI_ADJUTANT_BUILD_DIR (default /var/lib/koji-adjutant/build),
# KOJI_ADJUTANT_CACHE (default /var/cache/koji-adjutant; keep it between CI runs): the .deb
# cache, the debootstrap base tarball and the finished image's rootfs tarball, so a machine
# whose podman store is empty re-imports in seconds instead of rebuilding.
set -euo pipefail

SUITE=bookworm
IMAGE_REPO=localhost/koji-adjutant-bootstrap
STATE_DIR=/var/lib/koji-adjutant
STATE_FILE=$STATE_DIR/bootstrap-image
BUILD_ROOT=${KOJI_ADJUTANT_BUILD_DIR:-$STATE_DIR/build}
CACHE=${KOJI_ADJUTANT_CACHE:-/var/cache/koji-adjutant}
DEB_CACHE=$CACHE/debs
BASE_MAX_AGE_DAYS=30

PACKAGES=(
  rpm dnf dnf-plugins-core createrepo-c git cpio tar gzip xz-utils zstd bzip2 unzip make patch
  diffutils file findutils gawk sed grep ca-certificates gcc libc6-dev passwd
)

force=0 print_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print) print_only=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

script_path=$(readlink -f "$0")
script_dir=$(dirname "$script_path")
# Inputs of the hash: this script (package list and config snippets live in it) and any
# helper files under scripts/images/bootstrap/.
inputs_hash() {
  {
    cat "$script_path"
    if [ -d "$script_dir/images/bootstrap" ]; then
      find "$script_dir/images/bootstrap" -type f -print0 | LC_ALL=C sort -z | xargs -0r cat
    fi
  } | sha256sum | cut -c1-12
}
HASH=$(inputs_hash)
IMAGE=$IMAGE_REPO:$HASH

if [ "$print_only" = 1 ]; then echo "$IMAGE"; exit 0; fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and rootful podman need it)"
command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/setup-host.sh"
command -v podman >/dev/null || die "podman missing: run scripts/setup-host.sh"
# One build at a time on a machine; a second run waits, then finds the image and exits.
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/build-images.lock"
flock 9

publish() {
  podman tag "$IMAGE" "$IMAGE_REPO:latest"
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$IMAGE" > "$STATE_FILE.tmp" && mv "$STATE_FILE.tmp" "$STATE_FILE"
  echo "$IMAGE"
}

IMAGE_TAR=$CACHE/bootstrap-$HASH.tar.zst

# The rootfs tarball becomes the image; labels and config say what it is.
import_tar() {
  zstd -dcq "$1" |
    podman import \
      --change 'CMD ["/bin/bash"]' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'WORKDIR /' \
      --change 'LABEL io.koji.adjutant.image=bootstrap' \
      --change "LABEL io.koji.adjutant.inputs-hash=$HASH" \
      --change "LABEL org.opencontainers.image.title=koji-adjutant-bootstrap" \
      --message "koji-adjutant bootstrap image ($SUITE, inputs $HASH)" \
      --quiet - "$IMAGE" >/dev/null
}

if [ "$force" = 0 ] && podman image exists "$IMAGE"; then
  publish
  exit 0
fi
command -v zstd >/dev/null || die "zstd missing: run scripts/setup-host.sh"
if [ "$force" = 0 ] && [ -s "$IMAGE_TAR" ]; then
  ti=$(date +%s)
  log "importing $IMAGE from the cached rootfs $IMAGE_TAR"
  if import_tar "$IMAGE_TAR"; then
    log "done in $(($(date +%s) - ti)) s (from cache)"
    publish
    exit 0
  fi
  log "the cached rootfs did not import; rebuilding"
  rm -f "$IMAGE_TAR"
fi

# The mirror apt is configured with (one-line or deb822 sources), unless given.
apt_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
           -e 's/^[[:space:]]*URIs:[[:space:]]*//p' | tr ' ' '\n' | sed '/^$/d'
}
MIRROR=${KOJI_ADJUTANT_MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KOJI_ADJUTANT_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security/?$' | head -n1 || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

WORK=$BUILD_ROOT/$HASH
ROOTFS=$WORK/rootfs
STAMPS=$WORK/stamps

# Unmount everything below the rootfs, deepest first; a killed earlier run may have left
# /proc, /dev, /dev/pts or the apt cache mounted there.
umount_chroot() {
  [ -d "$ROOTFS" ] || return 0
  local m
  awk -v r="$ROOTFS" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" || log "warning: could not unmount $m"
    done
}
# Leftover bind mounts are removed first, and rm never crosses into another file system, so
# a stale /dev bind mount can never delete host device nodes.
remove_tree() {
  umount_chroot
  [ -e "$1" ] && rm -rf --one-file-system "$1"
  return 0
}
trap umount_chroot EXIT
trap 'exit 130' INT TERM

mkdir -p "$STAMPS" "$DEB_CACHE/debootstrap" "$DEB_CACHE/apt/partial"
umount_chroot
if [ "$force" = 1 ] && [ -f "$STAMPS/imported" ]; then rm -f "$STAMPS"/*; fi

stamp() { touch "$STAMPS/$1"; }
done_() { [ -f "$STAMPS/$1" ]; }

mount_chroot() {
  mount -t proc proc "$ROOTFS/proc"
  mount --bind /dev "$ROOTFS/dev"
  mount --bind /dev/pts "$ROOTFS/dev/pts"
  mkdir -p "$ROOTFS/var/cache/apt/archives"
  mount --bind "$DEB_CACHE/apt" "$ROOTFS/var/cache/apt/archives"
}
in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# The bare debootstrap result is cached as a tarball keyed by suite and debootstrap version;
# it is refreshed after BASE_MAX_AGE_DAYS (apt dist-upgrade brings a cached one up to date).
BASE_KEY=$(printf '%s minbase %s' "$SUITE" "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || debootstrap --version)" | sha256sum | cut -c1-12)
BASE_TAR=$CACHE/base-$SUITE-minbase-$BASE_KEY.tar.zst

t0=$(date +%s)
if ! done_ debootstrap; then
  remove_tree "$ROOTFS"
  if [ -s "$BASE_TAR" ] && [ -z "$(find "$BASE_TAR" -mtime +"$BASE_MAX_AGE_DAYS")" ]; then
    log "unpacking the cached $SUITE base $BASE_TAR"
    mkdir -p "$ROOTFS"
    zstd -dcq "$BASE_TAR" | tar -C "$ROOTFS" --numeric-owner --xattrs --acls -xpf -
  else
    log "debootstrap $SUITE from $MIRROR (cache $DEB_CACHE/debootstrap)"
    debootstrap --variant=minbase --cache-dir="$DEB_CACHE/debootstrap" "$SUITE" "$ROOTFS" "$MIRROR" \
      > "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log $WORK/debootstrap.log)"; }
    rm -f "$CACHE"/base-"$SUITE"-minbase-*.tar.zst
    tar -C "$ROOTFS" --numeric-owner --xattrs --acls -cf - . | zstd -q -f -1 -T0 -o "$BASE_TAR.tmp"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
  fi
  stamp debootstrap
fi
t1=$(date +%s)

if ! done_ configure; then
  log "configuring apt, dpkg and rpm in the rootfs"
  cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  cat > "$ROOTFS/etc/apt/apt.conf.d/90koji-adjutant" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/90koji-adjutant-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
  mkdir -p "$ROOTFS/etc/rpm"
  # Debian's rpm keeps its database in ~/.rpmdb (a Debian patch); koji buildroots and
  # `dnf --installroot` need the standard location (podman-notes §2).
  printf '%%_dbpath /var/lib/rpm\n' > "$ROOTFS/etc/rpm/macros.dbpath"
  stamp configure
fi

if ! done_ packages; then
  log "installing ${#PACKAGES[@]} packages (apt cache $DEB_CACHE/apt)"
  mount_chroot
  {
    in_chroot dpkg --configure -a
    in_chroot apt-get update -q
    in_chroot apt-get -y -q -f install
    in_chroot apt-get -y -q dist-upgrade
    in_chroot apt-get -y -q install "${PACKAGES[@]}"
  } > "$WORK/apt.log" 2>&1 || { umount_chroot; tail -n 30 "$WORK/apt.log" >&2; die "apt failed (log $WORK/apt.log)"; }
  umount_chroot
  stamp packages
fi
t2=$(date +%s)

if ! done_ finish; then
  log "builder user, rpm database, cleanup"
  in_chroot sh -c 'getent passwd builder >/dev/null || useradd -m -u 1000 -U -s /bin/bash builder'
  in_chroot sh -c 'mkdir -p /var/lib/rpm && rpm --initdb'
  for tool in rpm rpmbuild dnf createrepo_c mergerepo_c git cpio tar gzip xz zstd bzip2 make patch diff file find gawk sed grep gcc; do
    in_chroot sh -c "command -v $tool >/dev/null" || die "$tool missing in the image"
  done
  [ "$(in_chroot rpm --eval '%_dbpath')" = /var/lib/rpm ] || die "rpm %_dbpath is not /var/lib/rpm"
  in_chroot dnf builddep --help >/dev/null 2>&1 || die "dnf builddep (dnf-plugins-core) missing"
  rm -rf --one-file-system "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
    "$ROOTFS"/usr/share/doc/*/[!c]* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/tmp/*
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf --one-file-system {} + 2>/dev/null || true
  stamp finish
fi

log "importing $IMAGE"
umount_chroot
rm -f "$CACHE"/bootstrap-*.tar.zst
tar -C "$ROOTFS" --numeric-owner --xattrs --acls -cf - . | zstd -q -f -1 -T0 -o "$IMAGE_TAR.tmp"
mv "$IMAGE_TAR.tmp" "$IMAGE_TAR"
import_tar "$IMAGE_TAR"
stamp imported
t3=$(date +%s)

# The rootfs is not needed once imported; the caches stay for the next build.
remove_tree "$WORK"
# Older bootstrap builds: drop their work dirs, and untag images no container uses (never -f).
for d in "$BUILD_ROOT"/*; do
  [ -d "$d" ] && [ "$d" != "$WORK" ] || continue
  ROOTFS=$d/rootfs remove_tree "$d"
done
podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE_REPO" |
  { grep -v -e ":$HASH\$" -e ':latest$' || true; } | while read -r old; do
    podman rmi "$old" >/dev/null 2>&1 && log "removed old $old" || log "kept old $old (in use)"
  done
# Earlier builds left untagged (replaced by --force, or in use when untagged): prune removes
# only dangling images that no container uses.
podman image prune --force --filter label=io.koji.adjutant.image=bootstrap >/dev/null 2>&1 || true

log "done in $((t3 - t0)) s (debootstrap $((t1 - t0)) s, packages $((t2 - t1)) s, finish+import $((t3 - t2)) s)"
publish
