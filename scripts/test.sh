#!/usr/bin/env bash
# Runs every koji-adjutant test on a fresh Debian 12 machine, as root: installs podman, runc
# and the containers.conf these hosts need (scripts/setup-host.sh), Node.js 24 where the
# machine's is older (scripts/lib/prepare.sh), the Node packages, builds
# the offline images (scripts/build-images.sh, scripts/build-daemon-image.sh), then type-checks, builds and runs the whole
# suite, podman tests included (they fail rather than skip here: KOJI_ADJUTANT_REQUIRE_PODMAN).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/prepare.sh
prepare_machine "the tests drive a rootful podman" "$@"
bash scripts/build-images.sh
# The daemon image (issue 16) for test/image/; after build-images.sh, whose minbase it reuses.
bash scripts/build-daemon-image.sh
[ -x scripts/build-test-image.sh ] && bash scripts/build-test-image.sh
nix-instantiate --parse flake.nix >/dev/null
npm run typecheck
npm run build

mkdir -p .cache
export KOJI_ADJUTANT_REQUIRE_PODMAN=1
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest.json "$@" || status=$?
# One plain closing line for CI tools that do not read vitest's own summary.
node -e '
  const r = JSON.parse(require("fs").readFileSync(".cache/vitest.json", "utf8"));
  console.log(`Tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
exit "$status"
