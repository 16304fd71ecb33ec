#!/usr/bin/env bash
# Python `websockets` both ways, compression on: its client against the
# release hub, and its server against the loop's client.
#
#   bash tests/python/run.sh
#
# Installs websockets (pinned) into a venv under ${WSMIO_CACHE:-~/.cache/wsmio}
# with python3's own venv and pip, builds the release hub (unless WSMIO_BIN
# is set), starts it on a free 127.0.0.1 port, runs deflate_client.py
# (bounded), and stops the hub it started (by PID). Then makes a
# self-signed certificate with openssl, starts echo_server.py (ws:// and
# wss:// on free ports) and runs examples/client_echo_check against both
# (bounded), and stops the server (by PID). Fails loudly when python3,
# venv, openssl or the package cannot be had.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WEBSOCKETS_VERSION=17.4
CACHE="${WSMIO_CACHE:-$HOME/.cache/wsmio}"
VENV="$CACHE/py-websockets-$WEBSOCKETS_VERSION"

die() { echo "tests/python/run.sh: ERROR: $*" >&2; exit 1; }
step() { echo "== $*"; }

command -v python3 >/dev/null || die "python3 not found"
command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"
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
# Stop a process we started (by PID only).
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_hub() { stop_pid "$HUB_PID"; }
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
stop_hub

# The loop's client (examples/client_echo_check) against the Python server.
step "cargo build --release --features tls,deflate --example client_echo_check"
(cd "$REPO" && cargo build --release --features tls,deflate --example client_echo_check)
CHECK="$TARGET_DIR/release/examples/client_echo_check"
[[ -x "$CHECK" ]] || die "no client at $CHECK"
CERTS="$(mktemp -d /tmp/wsmio-python-certs-XXXXXX)"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" 2>"$CERTS/openssl.log" \
    || { cat "$CERTS/openssl.log" >&2; die "openssl could not make a certificate"; }
PORTS="$CERTS/ports"
"$VENV/bin/python" "$HERE/echo_server.py" "$CERTS/cert.pem" "$CERTS/key.pem" >"$PORTS" 2>"$CERTS/server.log" &
ECHO_PID=$!
trap 'stop_hub; stop_pid "$ECHO_PID"; rm -rf "$CERTS"' EXIT
for _ in $(seq 100); do
    grep -q '^wss ' "$PORTS" && break
    kill -0 "$ECHO_PID" 2>/dev/null || { cat "$CERTS/server.log" >&2; die "echo_server.py exited at startup"; }
    sleep 0.1
done
WS_PORT="$(awk '$1 == "ws" {print $2}' "$PORTS")"
WSS_PORT="$(awk '$1 == "wss" {print $2}' "$PORTS")"
[[ -n "$WS_PORT" && -n "$WSS_PORT" ]] || { cat "$CERTS/server.log" >&2; die "echo_server.py printed no ports"; }

step "the loop's client against python websockets $WEBSOCKETS_VERSION (ws:// and wss://, compression offered)"
if ! timeout 60 "$CHECK" "ws://127.0.0.1:$WS_PORT/" "wss://localhost:$WSS_PORT/" "$CERTS/cert.pem"; then
    cat "$CERTS/server.log" >&2
    die "client_echo_check failed"
fi
echo "2 passed, 0 failed"
