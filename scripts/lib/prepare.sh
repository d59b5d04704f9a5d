# Sourced by scripts/run.sh and scripts/test.sh (the README's two commands), from the checkout's
# root: makes sure we are root (re-running the calling script through sudo where there is one),
# then installs the host packages (scripts/setup-host.sh), Node.js 24 where the machine's is
# older, and the Node packages when stale.
# Usage: prepare_machine WHY-ROOT "$@"
prepare_machine() {
  local why=$1
  shift
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then exec sudo -- "$(readlink -f "$0")" "$@"; fi
    echo "scripts/$(basename "$0"): run as root: $why" >&2
    exit 1
  fi
  bash scripts/setup-host.sh
  ensure_node
  # node_modules follows package-lock.json and the Node it was installed with (native addons).
  local abi stamp=node_modules/.koji-adjutant-node-abi
  abi=$(node -p 'process.platform + "-" + process.arch + "-" + process.versions.modules')
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
     || [ "$(cat "$stamp" 2>/dev/null)" != "$abi" ]; then
    npm ci --no-audit --no-fund
    echo "$abi" > "$stamp"
  fi
}

# The Node.js major the project runs on (package.json's engines allows 22.15 and later; CI, the
# RPM, the container image and the NixOS package use 24).
KOJI_ADJUTANT_NODE_MAJOR=24

# True when the node at $1 is KOJI_ADJUTANT_NODE_MAJOR or newer.
node_is_current() {
  "$1" -e "process.exit(Number(process.versions.node.split('.')[0]) >= $KOJI_ADJUTANT_NODE_MAJOR ? 0 : 1)" \
    >/dev/null 2>&1
}

# Makes `node` (and so npm, npx, tsc, vitest and dist/main.js) Node.js 24 for the rest of the
# calling script. The machine's node is kept when it is new enough. Otherwise Node 24 comes from
# the npm registry's node-linux-<arch> package (the official Linux build, headers included) under
# $KOJI_ADJUTANT_NODE_PREFIX (default /usr/local: lib/node_modules/node-linux-<arch>, and
# bin/node, which comes before /usr/bin on PATH, so later shells use it too); the distribution's
# nodejs package is left alone. Once installed it is not fetched again.
ensure_node() {
  local prefix=${KOJI_ADJUTANT_NODE_PREFIX:-/usr/local}
  local machine
  machine=$(command -v node || true)
  if [ -n "$machine" ] && node_is_current "$machine"; then
    :
  else
    if ! node_is_current "$prefix/bin/node"; then
      if ! command -v npm >/dev/null 2>&1; then
        # A machine without Node at all: Debian's npm (and its older nodejs) only to fetch Node 24.
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
      fi
      local arch
      case "$(uname -m)" in
        x86_64) arch=x64 ;;
        aarch64) arch=arm64 ;;
        ppc64le) arch=ppc64le ;;
        s390x) arch=s390x ;;
        *) echo "prepare: no node-linux package for $(uname -m); install Node.js $KOJI_ADJUTANT_NODE_MAJOR yourself" >&2; exit 1 ;;
      esac
      echo "prepare: installing Node.js $KOJI_ADJUTANT_NODE_MAJOR (npm package node-linux-$arch) under $prefix" \
        "(the machine has ${machine:-no node}${machine:+ $("$machine" --version 2>/dev/null)})" >&2
      npm install --global --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "node-linux-$arch@$KOJI_ADJUTANT_NODE_MAJOR"
    fi
    PATH="$prefix/bin:$PATH"
    export PATH
    hash -r
    if ! node_is_current "$(command -v node)"; then
      echo "prepare: node on PATH is still $(node --version 2>/dev/null) after installing Node.js $KOJI_ADJUTANT_NODE_MAJOR under $prefix" >&2
      exit 1
    fi
  fi
  # node-gyp (the optional kerberos addon) builds against the running node's own headers, which
  # the node-linux package ships; no header download.
  local home
  home=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  if [ -f "$home/include/node/node_api.h" ]; then
    npm_config_nodedir=$home
    export npm_config_nodedir
  fi
}
