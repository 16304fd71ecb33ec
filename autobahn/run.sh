#!/usr/bin/env bash
# Run the Autobahn conformance suite in both modes and compare each result
# with its committed expectations:
#   server mode: wstest fuzzingclient against an echo server (examples/echo)
#                on 127.0.0.1:9001 (fuzzingclient.json's port), compared with
#                expected-server.json;
#   client mode: wstest fuzzingserver on 127.0.0.1:9002 (fuzzingserver.json's
#                port), driven by examples/autobahn_client (the reactor
#                loop's client: Ctx::connect, the proto core in the client
#                role), compared with expected-client.json.
#
#   bash autobahn/run.sh [server|client|both]     (default: both, the two at once)
#
# Environment:
#   WSMIO_SERVER_CMD   simple command (program + args, run via exec so its PID is
#                      known) that starts the server under test on 127.0.0.1:9001
#                      (default: build and run `examples/echo 127.0.0.1:9001`)
#   WSMIO_AUTOBAHN_TIMEOUT  time limit for each mode's run, in seconds (default 1500;
#                      sections 12 and 13 take about 450 s per mode here)
#   WSMIO_CACHE        where install.sh keeps the wstest venv (see install.sh)
#
# Output: autobahn/reports/ (git-ignored): servers/ and clients/ with
# index.json + per-case reports, server.log, wstest.log, wstest-server.log,
# client.log. Exits non-zero on any failure or regression.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
HOST=127.0.0.1
MODE="${1:-both}"
case "$MODE" in server|client|both) ;; *) echo "usage: $0 [server|client|both]" >&2; exit 2 ;; esac
SUITE_TIMEOUT="${WSMIO_AUTOBAHN_TIMEOUT:-1500}"
STARTUP_TIMEOUT=30   # seconds for the server to accept connections
REPORTS="$HERE/reports"

die() { echo "autobahn/run.sh: ERROR: $*" >&2; exit 1; }
log() { echo "==> $*"; }

# True when something accepts TCP connections on $HOST:${1:-$PORT}.
port_open() { (exec 3<>"/dev/tcp/$HOST/${1:-$PORT}") 2>/dev/null; }

# Stop a process we started (by PID only).
stop_pid() {
    local pid=$1
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

# Stop what we started whenever the script exits.
SERVER_PID=""
SUITE_PID=""
cleanup() {
    stop_pid "$SERVER_PID"
    stop_pid "$SUITE_PID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. wstest (install.sh prints its path on stdout).
WSTEST="$(bash "$HERE/install.sh")" || die "install.sh failed"
[ -x "$WSTEST" ] || die "install.sh did not yield an executable wstest ($WSTEST)"
command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for compare.py)"

# The ports come from the suite's own configuration, so they are set in one
# place: our echo server's (server mode) and wstest's fuzzingserver's (client mode).
url_port() { # wstest config file: the port of its "url", or of its first server's
    python3 - "$1" <<'PY'
import json, sys, urllib.parse
c = json.load(open(sys.argv[1]))
url = c["url"] if "url" in c else c["servers"][0]["url"]
port = urllib.parse.urlparse(url).port
sys.exit(f"no port in {url}") if port is None else print(port)
PY
}
PORT="$(url_port "$HERE/fuzzingclient.json")" || die "no server URL with a port in fuzzingclient.json"
SUITE_PORT="$(url_port "$HERE/fuzzingserver.json")" || die "no url port in fuzzingserver.json"

TARGET_DIR="$(cd "$ROOT" && realpath -m "${CARGO_TARGET_DIR:-target}")"

# ---------------------------------------------------------------- server mode
server_mode() {
local SERVER_CMD deadline start rc server_alive
# 2. The server under test.
if [ -n "${WSMIO_SERVER_CMD:-}" ]; then
    SERVER_CMD="$WSMIO_SERVER_CMD"
else
    # With permessage-deflate (RFC 7692): cases 12.* and 13.* compress.
    log "building echo example (cargo build --release --features deflate --example echo)"
    (cd "$ROOT" && cargo build --release --features deflate --example echo) || die "cargo build failed"
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
(cd "$HERE" && timeout --foreground "$SUITE_TIMEOUT" "$WSTEST" -m fuzzingclient -s fuzzingclient.json) \
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
log "autobahn server mode: all cases at or above expectations"
stop_pid "$SERVER_PID"
SERVER_PID=""
}

# ---------------------------------------------------------------- client mode
client_mode() {
log "building the client (cargo build --release --features deflate --example autobahn_client)"
(cd "$ROOT" && cargo build --release --features deflate --example autobahn_client) || die "cargo build failed"
local client="$TARGET_DIR/release/examples/autobahn_client"
[ -x "$client" ] || die "no binary at $client"
port_open "$SUITE_PORT" && die "$HOST:$SUITE_PORT is already in use; stop that process first"
rm -rf "$REPORTS/clients"
mkdir -p "$REPORTS"
log "starting wstest fuzzingserver on $HOST:$SUITE_PORT (log: $REPORTS/wstest-server.log)"
(cd "$HERE" && exec "$WSTEST" -m fuzzingserver -s fuzzingserver.json) \
    >"$REPORTS/wstest-server.log" 2>&1 &
SUITE_PID=$!
local deadline=$((SECONDS + STARTUP_TIMEOUT))
until port_open "$SUITE_PORT"; do
    kill -0 "$SUITE_PID" 2>/dev/null \
        || { tail -n 30 "$REPORTS/wstest-server.log" >&2; die "wstest fuzzingserver exited before listening"; }
    [ "$SECONDS" -lt "$deadline" ] \
        || die "wstest fuzzingserver not listening on $HOST:$SUITE_PORT after ${STARTUP_TIMEOUT}s"
    sleep 0.2
done
log "running examples/autobahn_client (limit ${SUITE_TIMEOUT}s, log: $REPORTS/client.log)"
local start=$SECONDS rc=0
timeout --foreground "$SUITE_TIMEOUT" "$client" "$HOST:$SUITE_PORT" wsmio >"$REPORTS/client.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 30 "$REPORTS/client.log" >&2
    [ "$rc" -eq 124 ] && die "autobahn_client timed out after ${SUITE_TIMEOUT}s"
    die "autobahn_client exited with status $rc"
fi
kill -0 "$SUITE_PID" 2>/dev/null || die "wstest fuzzingserver exited during the run"
stop_pid "$SUITE_PID"
SUITE_PID=""
[ -s "$REPORTS/clients/index.json" ] || die "wstest wrote no $REPORTS/clients/index.json"
log "client run finished in $((SECONDS - start))s"
rc=0
python3 "$HERE/compare.py" --report "$REPORTS/clients/index.json" \
    --expected "$HERE/expected-client.json" || rc=$?
[ "$rc" -eq 0 ] || die "compare.py reported failure (status $rc); HTML report: $REPORTS/clients/index.html"
log "autobahn client mode: all cases at or above expectations"
}

# Both modes at once: each wstest is one Python process busy on one core
# (sections 12 and 13 spend nearly all their time in its compression), so
# on two cores the pair takes about as long as one mode. Each mode runs in
# a subshell that stops what it started; its output is shown when it ends.
run_mode() { # mode -> exit status of that mode, its output in $REPORTS/<mode>-mode.out
    local out="$REPORTS/$1-mode.out"
    ( trap cleanup EXIT; "$1_mode" ) >"$out" 2>&1
}

case "$MODE" in
    server) server_mode ;;
    client) client_mode ;;
    both)
        mkdir -p "$REPORTS"
        start=$SECONDS
        run_mode server & server_job=$!
        run_mode client & client_job=$!
        rc_server=0; rc_client=0
        wait "$server_job" || rc_server=$?
        wait "$client_job" || rc_client=$?
        for m in server client; do
            echo "---------------- autobahn $m mode ----------------"
            grep -v '^Running test case' "$REPORTS/$m-mode.out" || true
        done
        log "both modes finished in $((SECONDS - start))s"
        [ "$rc_server" -eq 0 ] || die "server mode failed (status $rc_server)"
        [ "$rc_client" -eq 0 ] || die "client mode failed (status $rc_client)"
        ;;
esac
