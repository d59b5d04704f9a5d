# Sourced by scripts/run.sh and scripts/test.sh (the README's two commands), from the checkout's
# root: makes sure we are root (re-running the calling script through sudo where there is one),
# then installs the host packages (scripts/setup-host.sh) and the Node packages when stale.
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
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
}
