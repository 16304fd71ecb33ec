#!/usr/bin/env bash
# The Python `websockets` client (compression on) against the release hub.
#
#   bash tests/python/run.sh
#
# Installs websockets (pinned) into a venv under ${WSMIO_CACHE:-~/.cache/wsmio}
# with python3's own venv and pip, builds the release hub (unless WSMIO_BIN
# is set), starts it on a free 127.0.0.1 port, runs deflate_client.py
# (bounded), and stops the hub it started (by PID). Fails loudly when
# python3, venv or the package cannot be had.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WEBSOCKETS_VERSION=17.4
CACHE="${WSMIO_CACHE:-$HOME/.cache/wsmio}"
VENV="$CACHE/py-websockets-$WEBSOCKETS_VERSION"

die() { echo "tests/python/run.sh: ERROR: $*" >&2; exit 1; }
step() { echo "== $*"; }

command -v python3 >/dev/null || die "python3 not found"
if ! "$VENV/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
    step "creating $VENV (websockets==$WEBSOCKETS_VERSION)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install -y python3-venv)"
    "$VENV/bin/python" -m pip install -q "websockets==$WEBSOCKETS_VERSION" || die "pip install websockets==$WEBSOCKETS_VERSION failed"
fi

TARGET_DIR="$(cd "$REPO" && realpath -m "${CARGO_TARGET_DIR:-target}")"
BIN="${WSMIO_BIN:-$TARGET_DIR/release/wsmio}"
if [[ -z "${WSMIO_BIN:-}" ]]; then
    step "cargo build --release --features cli --bin wsmio"
    (cd "$REPO" && cargo build --release --features cli --bin wsmio)
fi
[[ -x "$BIN" ]] || die "no hub binary at $BIN"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOG="$(mktemp /tmp/wsmio-python-XXXXXX.log)"
"$BIN" serve --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
HUB_PID=$!
stop_hub() {
    if kill -0 "$HUB_PID" 2>/dev/null; then
        kill "$HUB_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$HUB_PID" 2>/dev/null || true
    fi
    wait "$HUB_PID" 2>/dev/null || true
}
trap stop_hub EXIT

for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$HUB_PID" 2>/dev/null || { cat "$LOG" >&2; die "hub exited at startup"; }
    sleep 0.1
done

step "python websockets $WEBSOCKETS_VERSION against the hub on 127.0.0.1:$PORT"
if ! timeout 60 "$VENV/bin/python" "$HERE/deflate_client.py" "http://127.0.0.1:$PORT"; then
    cat "$LOG" >&2
    die "deflate_client.py failed"
fi
echo "1 passed, 0 failed"
