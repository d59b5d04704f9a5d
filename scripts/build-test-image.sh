#!/usr/bin/env bash
# Builds localhost/koji-adjutant-testbase:latest, a ~2 MB busybox image for the container tests,
# offline and idempotently (no registry): a static busybox, its applet links, /etc/passwd with
# root and an unprivileged "builder" (1000:1000), and empty /tmp and /var/tmp.
# Rebuilt only when this script or the busybox binary changes (label io.koji.adjutant.inputs).
# Usage: scripts/build-test-image.sh [--force]
set -euo pipefail

IMAGE=${KOJI_ADJUTANT_TEST_IMAGE:-localhost/koji-adjutant-testbase:latest}
BUSYBOX=${BUSYBOX:-}

find_busybox() {
  for b in "$BUSYBOX" /bin/busybox /usr/bin/busybox; do
    if [ -n "$b" ] && [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then echo "$b"; return 0; fi
  done
  return 1
}

if ! bb=$(find_busybox); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build-test-image.sh: installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    bb=$(find_busybox)
  else
    echo "build-test-image.sh: needs a static busybox: apt-get install busybox-static (or set BUSYBOX=path)" >&2
    exit 1
  fi
fi

inputs=$( (cat "$0"; cat "$bb") | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && podman image exists "$IMAGE"; then
  have=$(podman image inspect --format '{{ index .Config.Labels "io.koji.adjutant.inputs" }}' "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$inputs" ]; then exit 0; fi
fi

work=$(mktemp -d /tmp/koji-adjutant-testbase.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/tmp,root,home/builder,proc,sys,dev,run}
chmod 1777 "$root/tmp" "$root/var/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nbuilder:x:1000:\n' > "$root/etc/group"
: > "$root/etc/mtab"
chown 1000:1000 "$root/home/builder"
tar --numeric-owner -C "$root" -cf "$work/root.tar" .

# podman import keeps the old image untagged only if a container still uses it; never rmi -f.
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
podman import --quiet \
  --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL io.koji.adjutant.inputs=$inputs" \
  "$work/root.tar" "$IMAGE" >/dev/null
if [ -n "$old" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
echo "build-test-image.sh: built $IMAGE ($inputs)"
