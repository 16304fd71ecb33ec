#!/usr/bin/env bash
# End-to-end test of the demo page in a real headless Chromium.
#
#   bash tests/browser/run.sh
#
# Installs Debian's chromium if it is missing, installs playwright-core from
# the lockfile (no browser download), builds the release hub and runs
# tests/browser/demo.test.mjs with node's test runner. Exits non-zero on any
# failure. Environment: WSMIO_BIN, CHROMIUM_PATH, WSMIO_E2E_KEEP_LOG (see
# demo.test.mjs); CARGO_TARGET_DIR is honoured.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"

die() { echo "tests/browser/run.sh: $*" >&2; exit 1; }
step() { echo "== $*"; }

# --- Chromium (Debian's package; Playwright never downloads a browser here)
if [[ ! -x "$CHROMIUM" ]]; then
  [[ "$CHROMIUM" == /usr/bin/chromium ]] || die "CHROMIUM_PATH=$CHROMIUM is not executable"
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "chromium is missing and we are not root (no sudo either)"
    SUDO="sudo"
  fi
  step "installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y chromium; then
    step "apt-get install failed; apt-get update and retry"
    $SUDO apt-get update
    $SUDO apt-get install -y chromium
  fi
  [[ -x "$CHROMIUM" ]] || die "chromium still missing at $CHROMIUM after apt-get install"
fi
# The Debian launcher script prints a harmless shell warning on some hosts.
step "$("$CHROMIUM" --version 2>/dev/null || true)"

# --- node and npm (playwright-core needs node >= 20)
command -v node >/dev/null || die "node is missing (apt-get install -y nodejs npm)"
command -v npm >/dev/null || die "npm is missing (apt-get install -y npm)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
(( NODE_MAJOR >= 20 )) || die "node $(node --version) is too old: playwright-core needs >= 20"
step "node $(node --version), npm $(npm --version 2>/dev/null)"

# --- playwright-core from the lockfile (uses the npm cache when it can)
step "npm ci (tests/browser)"
(
  cd "$HERE"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefer-offline --no-audit --no-fund --loglevel=error
)

# --- the hub
if [[ -z "${WSMIO_BIN:-}" ]]; then
  step "cargo build --release --features cli --bin wsmio"
  (cd "$REPO" && cargo build --release --features cli --bin wsmio)
fi

# --- the test (bounded by the test file's own timeouts; this is a backstop)
step "node --test tests/browser/ (demo on one node; chat across two nodes over Redis; the JS client)"
cd "$REPO"
timeout --kill-after=10 420 node --test tests/browser/demo.test.mjs tests/browser/cluster.test.mjs tests/browser/client.test.mjs
