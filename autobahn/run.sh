#!/usr/bin/env bash
# Run the Autobahn server conformance suite (wstest fuzzingclient) against an
# echo server on 127.0.0.1:9001 and compare the result with expected-server.json.
#
#   bash autobahn/run.sh
#
# Environment:
#   WSMIO_SERVER_CMD   simple command (program + args, run via exec so its PID is
#                      known) that starts the server under test on 127.0.0.1:9001
#                      (default: build and run `examples/echo 127.0.0.1:9001`)
#   WSMIO_AUTOBAHN_TIMEOUT  overall wstest time limit in seconds (default 900)
#   WSMIO_CACHE        where install.sh keeps the wstest venv (see install.sh)
#
# Output: autobahn/reports/ (git-ignored): servers/index.json + per-case
# reports, server.log, wstest.log. Exits non-zero on any failure or regression.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
HOST=127.0.0.1
PORT=9001
SUITE_TIMEOUT="${WSMIO_AUTOBAHN_TIMEOUT:-900}"
STARTUP_TIMEOUT=30   # seconds for the server to accept connections
REPORTS="$HERE/reports"

die() { echo "autobahn/run.sh: ERROR: $*" >&2; exit 1; }
log() { echo "==> $*"; }

# True when something accepts TCP connections on $HOST:$PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Stop the server we started (by PID only) whenever the script exits.
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. wstest (install.sh prints its path on stdout).
WSTEST="$(bash "$HERE/install.sh")" || die "install.sh failed"
[ -x "$WSTEST" ] || die "install.sh did not yield an executable wstest ($WSTEST)"
command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for compare.py)"

# 2. The server under test.
if [ -n "${WSMIO_SERVER_CMD:-}" ]; then
    SERVER_CMD="$WSMIO_SERVER_CMD"
else
    log "building echo example (cargo build --release --example echo)"
    (cd "$ROOT" && cargo build --release --example echo) || die "cargo build failed"
    TARGET_DIR="$(cd "$ROOT" && realpath -m "${CARGO_TARGET_DIR:-target}")"
    [ -x "$TARGET_DIR/release/examples/echo" ] || die "no binary at $TARGET_DIR/release/examples/echo"
    SERVER_CMD="$(printf '%q' "$TARGET_DIR/release/examples/echo") $HOST:$PORT"
fi

# 3. Start it, refusing to test whatever else might hold the port.
port_open && die "$HOST:$PORT is already in use; stop that process first"
rm -rf "$REPORTS/servers"
mkdir -p "$REPORTS"
log "starting server: $SERVER_CMD"
bash -c "exec $SERVER_CMD" >"$REPORTS/server.log" 2>&1 &
SERVER_PID=$!
deadline=$((SECONDS + STARTUP_TIMEOUT))
until port_open; do
    kill -0 "$SERVER_PID" 2>/dev/null \
        || { cat "$REPORTS/server.log" >&2; die "server exited before accepting connections"; }
    [ "$SECONDS" -lt "$deadline" ] \
        || die "server not accepting on $HOST:$PORT after ${STARTUP_TIMEOUT}s"
    sleep 0.1
done
log "server up (pid $SERVER_PID)"

# 4. The suite, run from autobahn/ so outdir ./reports/servers lands in reports/.
log "running wstest fuzzingclient (limit ${SUITE_TIMEOUT}s, log: $REPORTS/wstest.log)"
start=$SECONDS
rc=0
(cd "$HERE" && timeout "$SUITE_TIMEOUT" "$WSTEST" -m fuzzingclient -s fuzzingclient.json) \
    >"$REPORTS/wstest.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 30 "$REPORTS/wstest.log" >&2
    [ "$rc" -eq 124 ] && die "wstest timed out after ${SUITE_TIMEOUT}s"
    die "wstest exited with status $rc"
fi
[ -s "$REPORTS/servers/index.json" ] || die "wstest wrote no $REPORTS/servers/index.json"
log "wstest finished in $((SECONDS - start))s"

# A server that died mid-suite is a failure even if the report looks fine.
server_alive=1
kill -0 "$SERVER_PID" 2>/dev/null || server_alive=0

# 5. Summary and comparison with expected-server.json.
rc=0
python3 "$HERE/compare.py" --report "$REPORTS/servers/index.json" \
    --expected "$HERE/expected-server.json" || rc=$?
[ "$server_alive" -eq 1 ] || die "server (pid $SERVER_PID) exited during the suite; see $REPORTS/server.log"
[ "$rc" -eq 0 ] || die "compare.py reported failure (status $rc); HTML report: $REPORTS/servers/index.html"
log "autobahn: all cases at or above expectations"
