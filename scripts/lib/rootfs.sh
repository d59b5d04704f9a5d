# Sourced by scripts/build-daemon-image.sh: the Debian rootfs steps of scripts/build-images.sh
# (mirror from apt's sources, the cached debootstrap minbase tarball, chroot mounts that are
# always undone, removal that never crosses into another file system). build-images.sh keeps its
# own copy because its image tag is a hash of its own text; the base tarball key is computed the
# same way here, so both scripts share one cached minbase.
#
# Needs: log, die, ROOTFS, CACHE, DEB_CACHE, SUITE.

# The mirror apt is configured with (one-line or deb822 sources).
apt_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
           -e 's/^[[:space:]]*URIs:[[:space:]]*//p' | tr ' ' '\n' | sed '/^$/d'
}
debian_mirror() {
  local m=${KOJI_ADJUTANT_MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -n1 || true)}
  echo "${m:-http://deb.debian.org/debian}"
}
debian_security_mirror() {
  local m=${KOJI_ADJUTANT_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security/?$' | head -n1 || true)}
  echo "${m:-http://deb.debian.org/debian-security}"
}

# Unmount everything below the rootfs, deepest first (a killed run may have left mounts).
umount_chroot() {
  [ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || return 0
  local m
  awk -v r="$ROOTFS" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" || log "warning: could not unmount $m"
    done
}
# Leftover bind mounts go first, and rm never crosses file systems (a stale /dev bind mount
# must never cost the host its device nodes).
remove_tree() {
  umount_chroot
  [ -e "$1" ] && rm -rf --one-file-system "$1"
  return 0
}
mount_chroot() {
  mount -t proc proc "$ROOTFS/proc"
  mount --bind /dev "$ROOTFS/dev"
  mount --bind /dev/pts "$ROOTFS/dev/pts"
  mkdir -p "$ROOTFS/var/cache/apt/archives" "$DEB_CACHE/apt/partial"
  mount --bind "$DEB_CACHE/apt" "$ROOTFS/var/cache/apt/archives"
}
in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# A Debian minbase in $ROOTFS: from build-images.sh's cached tarball when there is a fresh one,
# else debootstrap (and the tarball is written for the next build of either image).
unpack_minbase() {
  local key tar
  key=$(printf '%s minbase %s' "$SUITE" "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || debootstrap --version)" | sha256sum | cut -c1-12)
  tar=$CACHE/base-$SUITE-minbase-$key.tar.zst
  remove_tree "$ROOTFS"
  mkdir -p "$ROOTFS" "$DEB_CACHE/debootstrap"
  if [ -s "$tar" ] && [ -z "$(find "$tar" -mtime +30)" ]; then
    log "unpacking the cached $SUITE base $tar"
    zstd -dcq "$tar" | tar -C "$ROOTFS" --numeric-owner --xattrs --acls -xpf -
    return 0
  fi
  local mirror
  mirror=$(debian_mirror)
  log "debootstrap $SUITE from $mirror (cache $DEB_CACHE/debootstrap)"
  debootstrap --variant=minbase --cache-dir="$DEB_CACHE/debootstrap" "$SUITE" "$ROOTFS" "$mirror" \
    > "$ROOTFS.debootstrap.log" 2>&1 || { tail -n 30 "$ROOTFS.debootstrap.log" >&2; die "debootstrap failed (log $ROOTFS.debootstrap.log)"; }
  rm -f "$CACHE"/base-"$SUITE"-minbase-*.tar.zst
  tar -C "$ROOTFS" --numeric-owner --xattrs --acls -cf - . | zstd -q -f -1 -T0 -o "$tar.tmp"
  mv "$tar.tmp" "$tar"
}

# apt sources and "no recommends, no docs" config in $ROOTFS.
configure_apt() {
  cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $(debian_mirror) $SUITE main
deb $(debian_mirror) $SUITE-updates main
deb $(debian_security_mirror) $SUITE-security main
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
}
