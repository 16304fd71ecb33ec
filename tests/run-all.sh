#!/usr/bin/env bash
# The whole test suite, as the README's Quick start runs it and CI (.ci/run)
# calls it. It installs what it needs (apt, pip, cargo) and fails loudly
# when something is missing; nothing is skipped silently.
#
#   bash tests/run-all.sh
#
# Steps: format and lint, cargo test (unit, property, real-socket
# integration), the Autobahn suite in server and client modes, a smoke run of every fuzz target
# (FUZZ_SECONDS each, default 30), the headless-Chromium demo test, the
# Python `websockets` client (against the hub) and server (against the
# loop's client) with compression on.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

passed=0
failed=0
failures=()
step() {
    local name="$1"; shift
    echo
    echo "================ $name ================"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "---- $name: ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "---- $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

command -v cargo >/dev/null || { echo "cargo not found" >&2; exit 1; }

# Debian's redis-server for the cluster tests (tests/cluster.rs and the
# two-node browser test start their own instances on free ports; nothing
# uses a Redis already running).
if ! command -v redis-server >/dev/null; then
    echo "run-all.sh: installing redis-server (apt-get)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "redis-server is missing and we are not root" >&2; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y redis-server || { $SUDO apt-get update && $SUDO apt-get install -y redis-server; }
    command -v redis-server >/dev/null || { echo "redis-server still missing after apt-get" >&2; exit 1; }
fi
redis-server --version

step "cargo fmt --check" cargo fmt --all -- --check
# The lean default (proto + reactor) and the full set (hub, TLS, Redis, CLI).
step "cargo clippy (lean)" cargo clippy --all-targets -- -D warnings
step "cargo clippy (full)" cargo clippy --all-targets --features full -- -D warnings
step "cargo doc (full)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features full
step "cargo test (lean)" cargo test
step "cargo test (full)" cargo test --features full
step "autobahn suite (server and client modes)" bash autobahn/run.sh both
step "fuzz smoke" bash fuzz/run.sh
step "browser demo test" bash tests/browser/run.sh
step "python websockets client and server (permessage-deflate)" bash tests/python/run.sh

echo
echo "================ summary ================"
for f in "${failures[@]+"${failures[@]}"}"; do echo "FAILED: $f"; done
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
