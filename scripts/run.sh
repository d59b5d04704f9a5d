#!/usr/bin/env bash
# The README's "set up and run" command for a newcomer on a fresh Debian 12 machine, as root.
# Installs podman + runc and a working containers.conf (scripts/setup-host.sh), Node.js 24
# where the machine's is older, the Node packages, builds the daemon, the offline bootstrap image and the offline koji fixture repo,
# makes sure a podman API service is listening, then runs the main job:
#
#   ./scripts/run.sh                      build the example package fixture-hello locally
#   ./scripts/run.sh build-local --repo URL|DIR [--arch A] [--result DIR] X.src.rpm
#   ./scripts/run.sh -c /etc/kojid/kojid.conf --fg --force-lock -v     run the daemon
#
# With no arguments it builds the fixture's noarch example through the same buildroot and
# build code the daemon uses, with the fixture repo standing in for a koji repo; the RPMs and
# logs land in ./build-local-result.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/prepare.sh
prepare_machine "it installs podman and drives a rootful podman" "$@"
npm run build --silent
image=$(bash scripts/build-images.sh | tail -n 1)

# A podman API service on the standard root socket: systemd's podman.socket where there is
# systemd, else one started here for the duration of this command.
sock=/run/podman/podman.sock
started=""
if ! curl -fsS --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl enable --now podman.socket >/dev/null 2>&1 \
     && curl -fsS --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
    :
  else
    mkdir -p /run/podman /var/lib/koji-adjutant/podman-cwd
    # podman's conmon drops `oom` marker files into the service's cwd: keep it in a scratch dir.
    (cd /var/lib/koji-adjutant/podman-cwd && exec podman system service --time=0 "unix://$sock") \
      >/var/log/koji-adjutant-podman.log 2>&1 &
    started=$!
    trap '[ -n "$started" ] && kill "$started" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
      curl -fsS --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
fi

if [ "$#" -eq 0 ]; then
  eval "$(bash scripts/make-fixture-repo.sh | grep -E '^FIXTURE_[A-Z_]+=')"
  set -- build-local --repo "$FIXTURE_REPO" --image "$image" --result "$PWD/build-local-result" \
    "$FIXTURE_SRPMS/fixture-hello-1.0-1.src.rpm"
  echo "scripts/run.sh: building the example package: koji-adjutant $*"
fi
node dist/main.js "$@"
