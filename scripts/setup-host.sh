#!/usr/bin/env bash
# Installs what koji-adjutant needs on a Debian 12 host (run as root): podman with runc and
# catatonit (containers run with init), debootstrap for the offline images, nix-bin to check
# flake.nix, docker-registry + skopeo + openssl + apache2-utils (htpasswd) for the registry
# tests, MIT krb5 (libkrb5-dev to build the optional `kerberos` addon that npm ci compiles for
# GSSAPI login; krb5-kdc, krb5-admin-server, krb5-user and libapache2-mod-auth-gssapi for the
# GSSAPI login test's throwaway realm and Apache), e2fsprogs and util-linux (mkfs.ext4 and loop
# mounts for each buildroot's bounded disk), systemd (systemd-analyze, systemd-tmpfiles),
# logrotate and groff-base for the RPM test's checks of the unit, tmpfiles.d and logrotate files
# and man page, a containers.conf that works where the daemon lacks CAP_SYS_RESOURCE and cgroups
# are hybrid (see README "Troubleshooting"), and the subordinate id range `--userns=auto` needs.
# Idempotent: a second run changes nothing.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup-host.sh: must run as root (it installs packages and /etc/containers/containers.conf)" >&2
  exit 1
fi

PKGS=(podman runc conmon catatonit uidmap slirp4netns fuse-overlayfs debootstrap nix-bin
      docker-registry skopeo openssl apache2-utils busybox-static curl ca-certificates xz-utils
      zstd git apache2 e2fsprogs util-linux
      libkrb5-dev krb5-kdc krb5-admin-server krb5-user libapache2-mod-auth-gssapi
      python3 make g++ pkg-config
      systemd logrotate groff-base)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # apache2 (the TLS login test's stand-in for the stock koji hub front end), docker-registry
  # and krb5-kdc/krb5-admin-server would start system services (:80, :5000, :88, :749) when
  # installed; the tests run their own instances on loopback ports, so keep the package
  # scripts from starting any. krb5-config asks for a default realm: noninteractive leaves it.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ -n "$own_policy" ] && rm -f "$policy"
  [ "$status" = 0 ] || exit "$status"
fi

conf=/etc/containers/containers.conf
want=$(cat <<'CONF'
# Written by koji-adjutant scripts/setup-host.sh.
# runc: crun rejects hybrid cgroup hierarchies. default_ulimits: podman's built-in
# 1048576 exceeds the hard limits of a process without CAP_SYS_RESOURCE.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  mkdir -p /etc/containers
  [ -f "$conf" ] && cp "$conf" "$conf.bak.$(date +%s)"
  printf '%s\n' "$want" > "$conf"
  echo "setup-host.sh: wrote $conf"
fi
# podman's --userns=auto takes host ids from the "containers" user's subordinate ranges
# (podman-notes §3); without an entry it fails with "no subuid ranges found".
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q '^containers:' "$f"; then
    echo "containers:2147483647:2147483648" >> "$f"
    echo "setup-host.sh: added the containers range to $f"
  fi
done

podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' >/dev/null
echo "setup-host.sh: podman $(podman version --format '{{.Client.Version}}') ready"
