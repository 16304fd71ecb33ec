#!/usr/bin/env bash
# Side-by-side benchmark: wsmio against other WebSocket servers, same box, same run.
#
#   bench/compare.sh            # full run: 3 rounds (~15 min on 2 vCPUs), writes BENCHMARKS.md
#   bench/compare.sh --quick    # 1 round, short runs, fewer connections (< 3 min once built)
#
# Every server is started fresh, pinned to CPU 0 (taskset -c 0); the load generator
# (bench/loadgen, one thread) runs on CPU 1 (taskset -c 1).  Each round runs every
# server of a suite in turn; the order is reversed every other round (A B, B A, ...),
# so slow drift of the machine does not favour one side.  Loopback (127.0.0.0/8) only;
# every loadgen run is bounded in time (duration + drain, and a hard `timeout`).
#
# Suites and scenarios (see bench/README.md for what each one measures):
#   echo   servers: wsmio (examples/echo) + ECHO_PEERS (tt-ct fastws ws floor); floor
#          (bench/floor) unmasks and echoes with no checks at all: the cost of the
#          kernel and the generator, which no server goes below on this machine
#          a1    100 conns x 20 B text, depth 32
#          c     100 conns x 16 KiB binary, depth 4
#          bs    1 conn, 20 B text, depth 1, busy-polling generator (p50/p99 latency)
#          e100  100 conns x 20 B text, depth 4     } scaling: throughput at
#          e10k  10,000 conns x 20 B text, depth 4  } SCALE_CONNS vs 100 connections
#          churn connect + upgrade + close cycles, 16 in flight
#   rss    servers: as echo; server RSS per idle connection with RSS_CONNS (10,000)
#          upgraded connections from 16 source addresses 127.0.0.1-16 (fresh server)
#   fanout servers: wsmio (examples/broadcast) + wsmio hub (`wsmio serve --listen`)
#          + FAN_PEERS (tt-batch tt fastws-bcast); 1 publisher, 64 B binary, window 64
#          s100  100 connections        s5k  FAN_BIG (5,000) connections
#   cluster the hub on its Redis engine (two nodes, A and B, and one redis-server
#          of this script's own) against the hub on its memory engine (one node),
#          same run, same generator options; publishers on node A, subscribers on
#          node B (on the memory node: both on it), 64 B payloads, one user's token
#          clat  10,000 publishes/s paced, CLUSTER_LAT_SUBS (10) subscribers:
#                publish -> delivery p50/p99 (goal p99 <= 2 ms)
#          c100  fan-out, 100 subscribers, window CLUSTER_WINDOW (256): deliveries/s
#          c5k   fan-out, FAN_BIG subscribers (goal: Redis >= 0.7x memory)
#          cack  CLUSTER_ACK_PUBS (4) publishers with ids, CLUSTER_ACK_WINDOW (64)
#                acks outstanding each, 1 subscriber on B: acked publishes/s (goal
#                >= 50,000/s), with Redis on CPU CACK_REDIS_CPU (1)
#          every Redis row also gives Redis round trips per publish from node A's
#          /metrics (goal: well under 1) and the CPU of node A, node B, Redis
#   acks   what subscriber acknowledgements cost the hub (issue 19): the same fan-out
#          with every subscriber acking every ACK_EVERY (10) deliveries and without
#          acks, in alternating order, on the memory engine (one node) and the Redis
#          engine (publisher on node A, subscribers on node B, a redis-server of this
#          script's own); anonymous users, one per connection, so every subscriber
#          acks its own (user, topic) position; window ACKS_WINDOW (256)
#          a100  100 subscribers        aN  FAN_BIG (5,000) subscribers (a5k)
#          reported: server CPU ns per delivery with / without acks (goal, memory
#          engine: <= 1.10x), acks the hub received (its /metrics), Redis writes per ack
#
# Environment knobs [full / --quick default]:
#   ROUNDS [3/1]  DUR [5/1] s measured per run  WARMUP [1/0.3]  DRAIN [3/3] (max; ends when all delivered)
#   SCALE_CONNS [10000/2000]  RSS_CONNS [10000/2000]  RSS_HOLD [6/3]  FAN_BIG [5000/1000]
#   SUITES ["echo rss fanout cluster acks"]  SCEN ["a1 c bs e100 eN churn"] (eN = the SCALE_CONNS run)
#   ECHO_PEERS ["tt-ct fastws ws floor"]  FAN_PEERS ["tt-batch tt fastws-bcast"]
#   OUT [/tmp/wsmio-compare-<timestamp>]  BENCH_MD [<repo>/BENCHMARKS.md] (BENCH_MD=none: don't write)
#   SKIP_BUILD [0]  PORT_BASE [19500]  CARGO_TARGET_DIR [<repo>/target]
#   cluster: CLUSTER_SCEN ["clat c100 cN cack"] (cN = the FAN_BIG run)  CLUSTER_RATE [10000]
#       CLUSTER_LAT_SUBS [10]  CLUSTER_WINDOW [256]  CLUSTER_ACK_PUBS [4]  CLUSTER_ACK_WINDOW [64]
#       CACK_REDIS_CPU [1] (0: Redis stays with the nodes on CPU 0 in cack too)
#       CLUSTER_REDIS_CPU [0] (Redis's CPU in the other scenarios; 1: next to the generator)
#       REDIS_SERVER [redis-server] (Debian: apt-get install redis-server; the suite is
#       skipped without it)
#   acks: ACKS_SCEN ["a100 aN"] (aN = the FAN_BIG run)  ACK_EVERY [10]  ACKS_WINDOW [256]
#       ACKS_ENGINES ["memory redis"] (redis is dropped without REDIS_SERVER)
#   IDLE_WAIT [180/0] s: before measuring, wait up to this long for the 1-minute load
#       average to fall to IDLE_LOAD [0.5] (a build just before leaves it high); a run
#       that starts above 0.5 anyway is flagged in the report
# The wsmio slots (defaults: target/release/examples/echo, .../examples/broadcast,
# target/release/wsmio; each takes IP:PORT as its first argument, the hub as
# `wsmio serve --listen IP:PORT`, driven with its JSON protocol: loadgen --hub) can be
# pointed elsewhere (a *_CMD hub slot is driven like the other broadcast servers):
#   WSMIO_ECHO_BIN / WSMIO_BCAST_BIN / WSMIO_HUB_BIN   another binary taking IP:PORT
#   WSMIO_HUB_ARGS ["--rate 1000000000 --burst 1000000000"]  extra `wsmio serve` flags (its
#       default request rate limit would throttle the publisher)
#   WSMIO_BUSY_POLL_US [0]  busy polling for every wsmio server (Config::busy_poll; the
#       peers have no such mode): trades a whole CPU for wake-up latency; the report
#       names the wsmio rows "busy-poll N us" so they are not mistaken for the default
#   WSMIO_ECHO_CMD / WSMIO_BCAST_CMD / WSMIO_HUB_CMD   a command template with {addr}
#       (= 127.0.0.1:PORT) and/or {port}, e.g. WSMIO_ECHO_CMD="target/release/fastws-echo {port}"
#       to test this script against a peer (the report then says the slot was overridden).
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
QUICK=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done

die() { echo "compare.sh: ERROR: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "required tool '$1' is missing ($2)"; }
need taskset "util-linux: apt-get install util-linux"
need python3 "apt-get install python3"
need timeout "coreutils"
need cargo "Rust toolchain"
need rustc "Rust toolchain"
need lscpu "util-linux"
need nproc "coreutils"
need awk "awk"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU 0, generator on CPU 1); nproc=$(nproc)"
taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null || die "taskset cannot pin to CPUs 0 and 1"

if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; DUR=${DUR:-1}; WARMUP=${WARMUP:-0.3}; DRAIN=${DRAIN:-3}
  SCALE_CONNS=${SCALE_CONNS:-2000}; RSS_CONNS=${RSS_CONNS:-2000}; RSS_HOLD=${RSS_HOLD:-3}; FAN_BIG=${FAN_BIG:-1000}
else
  ROUNDS=${ROUNDS:-3}; DUR=${DUR:-5}; WARMUP=${WARMUP:-1}; DRAIN=${DRAIN:-3}
  SCALE_CONNS=${SCALE_CONNS:-10000}; RSS_CONNS=${RSS_CONNS:-10000}; RSS_HOLD=${RSS_HOLD:-6}; FAN_BIG=${FAN_BIG:-5000}
fi
SUITES=${SUITES:-"echo rss fanout cluster acks"}
SCEN=${SCEN:-"a1 c bs e100 eN churn"}
ECHO_PEERS=${ECHO_PEERS:-"tt-ct fastws ws floor"}
FAN_PEERS=${FAN_PEERS:-"tt-batch tt fastws-bcast"}
OUT=${OUT:-${TMPDIR:-/tmp}/wsmio-compare-$(date +%Y%m%d-%H%M%S)}
BENCH_MD=${BENCH_MD:-$ROOT/BENCHMARKS.md}
PORT_BASE=${PORT_BASE:-19500}
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD="$ROOT/$TD" ;; esac
REL="$TD/release"
LG="$REL/loadgen"
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be >= 1"
for v in CACK_REDIS_CPU CLUSTER_REDIS_CPU; do case ${!v:-} in ""|0|1) ;; *) die "$v must be 0 or 1" ;; esac; done
for v in SCALE_CONNS RSS_CONNS FAN_BIG; do
  [ "${!v}" -ge 1 ] 2>/dev/null && [ "${!v}" -le 15000 ] || die "$v must be 1..15000 (fd limits)"
done

# name scenarios after their connection counts: e10k / s5k (full), e2k / s1k (quick)
kname() { if [ $(($1 % 1000)) = 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }
EN="e$(kname "$SCALE_CONNS")"
SN="s$(kname "$FAN_BIG")"
SCEN=${SCEN//eN/$EN}

mkdir -p "$OUT/echo" "$OUT/fanout" "$OUT/cluster" "$OUT/acks" || die "cannot create $OUT"
: > "$OUT/skipped.txt"
: > "$OUT/notes.txt"
: > "$OUT/failures.txt"
# 10k connections need 10k+ descriptors in the generator and in the server
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ]; then
  for v in SCALE_CONNS RSS_CONNS FAN_BIG; do
    [ "${!v}" -le $((NOFILE - 100)) ] || die "open-file limit $NOFILE too low for $v=${!v} (raise ulimit -n)"
  done
fi

echo "compare.sh: mode=$([ "$QUICK" = 1 ] && echo quick || echo full) rounds=$ROUNDS dur=${DUR}s warmup=${WARMUP}s suites='$SUITES' out=$OUT"

# ------------------------------------------------------------------ build
PEER_PKGS="-p loadgen -p floor -p tungstenite-echo -p fastws-echo -p tungstenite-bcast -p fastws-bcast"
# the cluster and acks suites alone need neither the peers nor wsmio's examples
ONLY_CLUSTER=1
for x in echo rss fanout; do [[ " $SUITES " == *" $x "* ]] && ONLY_CLUSTER=0; done
[ "$ONLY_CLUSTER" = 1 ] && PEER_PKGS="-p loadgen" && ECHO_PEERS=""
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "compare.sh: building $([ "$ONLY_CLUSTER" = 1 ] && echo loadgen || echo "loadgen + peers") (release)"
  (cd "$ROOT" && cargo build --release -q $PEER_PKGS) || die "build of loadgen/peers failed: cargo build --release $PEER_PKGS"
  if [[ " $ECHO_PEERS " == *" ws "* ]]; then
    (cd "$ROOT" && cargo build --release -q -p ws-echo) ||
      { echo "compare.sh: WARNING: ws-echo (ws 0.9) did not build; dropping the ws peer" >&2; echo "ws-echo did not build: skipped" >> "$OUT/skipped.txt"; }
  fi
  if [ "$ONLY_CLUSTER" = 1 ]; then
    : # the cluster and acks suites need only the hub binary (below)
  elif echo "compare.sh: building wsmio examples (release)"; ! (cd "$ROOT" && cargo build --release -q --examples); then
    if [ -n "${WSMIO_ECHO_CMD:-}${WSMIO_ECHO_BIN:-}" ] && [ -n "${WSMIO_BCAST_CMD:-}${WSMIO_BCAST_BIN:-}" ]; then
      echo "compare.sh: WARNING: 'cargo build --release --examples' failed; continuing with the WSMIO_* overrides" >&2
    else
      die "'cargo build --release --examples' failed (wsmio does not build); nothing to compare"
    fi
  fi
  # the hub binary, if the package has one
  if (cd "$ROOT" && cargo metadata --no-deps --format-version 1 2>/dev/null) |
     python3 -c 'import json,sys; m=json.load(sys.stdin); sys.exit(0 if any(t["name"]=="wsmio" and "bin" in t["kind"] for p in m["packages"] if p["name"]=="wsmio" for t in p["targets"]) else 1)'; then
    echo "compare.sh: building the wsmio hub binary (release)"
    (cd "$ROOT" && cargo build --release -q -p wsmio --features cli --bin wsmio) || echo "compare.sh: WARNING: the wsmio hub binary did not build" >&2
  fi
fi
[ -x "$LG" ] || die "loadgen not found at $LG"

WSMIO_ECHO_BIN=${WSMIO_ECHO_BIN:-$REL/examples/echo}
WSMIO_BCAST_BIN=${WSMIO_BCAST_BIN:-$REL/examples/broadcast}
WSMIO_HUB_BIN=${WSMIO_HUB_BIN:-$REL/wsmio}
# the hub rate-limits requests per connection (default 50/s); the publisher needs far more
WSMIO_HUB_ARGS=${WSMIO_HUB_ARGS:---rate 1000000000 --burst 1000000000}
# the cluster suite's connections are all one user's: its nodes lift the per-user
# quotas (64 connections, 1,000 subscriptions by default), where the hub has them
HUB_USER_QUOTA_ARGS=""
if [ -x "$WSMIO_HUB_BIN" ] && "$WSMIO_HUB_BIN" serve --help 2>/dev/null | grep -q -- --max-connections-per-user; then
  HUB_USER_QUOTA_ARGS="--max-connections-per-user 0 --max-subscriptions-per-user 0"
fi
# read by examples/echo, examples/broadcast and `wsmio serve`
export WSMIO_BUSY_POLL_US=${WSMIO_BUSY_POLL_US:-0}
[[ "$WSMIO_BUSY_POLL_US" =~ ^[0-9]+$ ]] || die "WSMIO_BUSY_POLL_US must be a number of microseconds"
[ "$WSMIO_BUSY_POLL_US" != 0 ] && echo "BUSY POLL: every wsmio server polls $WSMIO_BUSY_POLL_US us before sleeping (not the default)" | tee -a "$OUT/notes.txt"
# a slot pointed elsewhere is labelled as such in the report
OV_ECHO=${WSMIO_ECHO_CMD:-}; [ -z "$OV_ECHO" ] && [ "$WSMIO_ECHO_BIN" != "$REL/examples/echo" ] && OV_ECHO="$WSMIO_ECHO_BIN {addr}"
OV_BCAST=${WSMIO_BCAST_CMD:-}; [ -z "$OV_BCAST" ] && [ "$WSMIO_BCAST_BIN" != "$REL/examples/broadcast" ] && OV_BCAST="$WSMIO_BCAST_BIN {addr}"
OV_HUB=${WSMIO_HUB_CMD:-}; [ -z "$OV_HUB" ] && [ "$WSMIO_HUB_BIN" != "$REL/wsmio" ] && OV_HUB="$WSMIO_HUB_BIN serve --listen {addr}"
[ -n "$OV_ECHO" ] && echo "OVERRIDDEN: the wsmio echo slot runs '$OV_ECHO' (these rows are not the project's examples/echo)" | tee -a "$OUT/notes.txt"
[ -n "$OV_BCAST" ] && echo "OVERRIDDEN: the wsmio broadcast slot runs '$OV_BCAST' (these rows are not the project's examples/broadcast)" | tee -a "$OUT/notes.txt"
[ -n "$OV_HUB" ] && echo "OVERRIDDEN: the wsmio hub slot runs '$OV_HUB' (these rows are not the project's hub)" | tee -a "$OUT/notes.txt"

# ------------------------------------------------------------------ servers
# the first word of a command must be an executable file
cmd_ok() { local c; read -r c _ <<< "$1"; [ -n "$c" ] && { [ -x "$c" ] || command -v "$c" >/dev/null 2>&1; }; }
tmpl() { local s=$1; s=${s//\{addr\}/127.0.0.1:$2}; s=${s//\{port\}/$2}; echo "$s"; }
cmd_of() { # server port -> command line
  local p=$2 e="$WSMIO_ECHO_BIN {addr}" b="$WSMIO_BCAST_BIN {addr}" h="$WSMIO_HUB_BIN serve --listen {addr} $WSMIO_HUB_ARGS"
  case $1 in
    wsmio)        tmpl "${WSMIO_ECHO_CMD:-$e}" "$p" ;;
    wsmio-bcast)  tmpl "${WSMIO_BCAST_CMD:-$b}" "$p" ;;
    wsmio-hub)    tmpl "${WSMIO_HUB_CMD:-$h}" "$p" ;;
    tt-ct)        echo "$REL/tungstenite-echo $p ct" ;;
    fastws)       echo "$REL/fastws-echo $p" ;;
    ws)           echo "$REL/ws-echo $p" ;;
    floor)        echo "$REL/floor $p" ;;
    tt)           echo "$REL/tungstenite-bcast $p 65536 idiomatic" ;;
    tt-batch)     echo "$REL/tungstenite-bcast $p 65536 batch" ;;
    fastws-bcast) echo "$REL/fastws-bcast $p 65536" ;;
    *) return 1 ;;
  esac
}
# keep only servers whose binary exists; report the others
filter_servers() { # list... -> available list (echo), skipped ones logged
  local s out=""
  for s in "$@"; do
    local c; c=$(cmd_of "$s" 0) || { echo "compare.sh: unknown server '$s'" >&2; continue; }
    if cmd_ok "$c"; then out+="$s "
    else
      local why="$s: binary ${c%% *} not found: skipped"
      [ "$s" = wsmio ] && why="wsmio echo: examples/echo not built: skipped (no ${c%% *})"
      [ "$s" = wsmio-bcast ] && why="wsmio broadcast: examples/broadcast not built: skipped (no ${c%% *})"
      [ "$s" = wsmio-hub ] && why="wsmio hub: hub not built: skipped (no ${c%% *})"
      echo "compare.sh: $why" >&2
      grep -qxF "$why" "$OUT/skipped.txt" || echo "$why" >> "$OUT/skipped.txt"
    fi
  done
  echo "$out"
}

NEXT_PORT=$PORT_BASE
SPID=""; SPORT=""; SNAME=""; LPID=""; NSTART=0
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_server() { # name -> sets SPID SPORT; returns 1 if it does not come up
  local name=$1 c i
  while port_busy "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  SPORT=$NEXT_PORT; NEXT_PORT=$((NEXT_PORT + 1)); NSTART=$((NSTART + 1))
  c=$(cmd_of "$name" "$SPORT")
  SLOG="$OUT/server-$NSTART-$name.log"
  echo "# $c" > "$SLOG"
  # shellcheck disable=SC2086
  taskset -c 0 $c >> "$SLOG" 2>&1 &
  SPID=$!; SNAME=$name
  for i in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then
      echo "compare.sh: server $name exited at start (log $SLOG):" >&2; tail -5 "$SLOG" >&2
      wait "$SPID" 2>/dev/null; SPID=""; return 1
    fi
    if port_busy "$SPORT"; then return 0; fi
    sleep 0.1
  done
  echo "compare.sh: server $name did not listen on 127.0.0.1:$SPORT within 10 s (log $SLOG)" >&2
  stop_server; return 1
}
stop_server() {
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null
  local i
  for i in $(seq 30); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
cleanup() {
  [ -n "$LPID" ] && kill "$LPID" 2>/dev/null && wait "$LPID" 2>/dev/null
  LPID=""
  if [ -n "${CL_PIDS:-}" ]; then stop_cluster; else stop_server; fi
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; cleanup; exit 130' INT TERM

# server alive? (restart it if it died, so one crash does not void the rest of the round)
ensure_server() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then return 0; fi
  echo "compare.sh: WARNING: server $SNAME is not running (crashed?), restarting; log: $SLOG" >&2
  echo "server $SNAME died during round $r (log $SLOG)" >> "$OUT/notes.txt"
  SPID=""; start_server "$SNAME"
}

get() { echo "$LINE" | grep -oE "(^| )$1=[^ ]+" | head -1 | cut -d= -f2; }
# The host's TCP counters (/proc/net/snmp and /proc/net/netstat, one
# "Table:Name value" per line), and the ones that tell why a connection
# was refused or reset, as deltas between two snapshots: what the kernel saw
# of a failed run (listen queue overflows, resets sent, aborts, SYN cookies).
tcp_snapshot() { awk 'FNR % 2 == 1 { split($0, h) } FNR % 2 == 0 { for (i = 2; i <= NF; i++) print h[1] h[i], $i }' /proc/net/snmp /proc/net/netstat > "$1" 2>/dev/null || :; }
tcp_diag() { # before after out
  awk 'NR == FNR { a[$1] = $2; next } ($1 in a) && $2 != a[$1] &&
       $1 ~ /^(Tcp:(EstabResets|OutRsts|AttemptFails|RetransSegs)|TcpExt:(ListenOverflows|ListenDrops|TCPAbortOn[A-Za-z]+|Syncookies[A-Za-z]+|TCPTimeouts|TCPSynRetrans|TCPBacklogDrop|TCPReqQFullDrop|TCPReqQFullDoCookies|PruneCalled|TCPRcvQDrop))$/ { print $1, $2 - a[$1] }' "$1" "$2" > "$3" 2>/dev/null || :
}
# run the generator on CPU 1 with a hard time limit; sets LINE (the RESULT line or "")
run_lg() { # scen tmo args...
  local scen=$1 tmo=$2 err="$OUT/lg-last.err"; shift 2
  LINE=$(timeout -k 5 "$tmo" taskset -c 1 "$LG" --port "$SPORT" --server-pid "$SPID" "$@" 2>"$err" | grep '^RESULT' | head -1)
  { echo "== round $r $SNAME $scen"; cat "$err"; } >> "$OUT/loadgen.err"
  echo "round $r $SNAME $scen: $* -> ${LINE:-<no RESULT line>}" >> "$OUT/raw.txt"
  if [ "$(get ok)" != 1 ]; then
    local why
    why=$(grep -m1 -E 'first error|connect #[0-9]+ failed|timed out' "$err" | sed 's/^loadgen: //')
    if [ -z "$LINE" ]; then
      why="no RESULT line (generator killed by the time limit or crashed) ${why}"
    else
      # the counters that made ok=0
      local k v bad=""
      for k in verify_errors closed gaps missing stalled errors unfinished timeouts open_at_end unacked seq_mismatch; do
        v=$(get "$k"); case $v in ""|0) ;; *) bad+="$k=$v " ;; esac
      done
      why="${bad}${why}"
    fi
    echo "round $r $SNAME $scen: ${why:-see $OUT/loadgen.err}" >> "$OUT/failures.txt"
  fi
}
# save the hub's /metrics (after a fan-out run; cumulative since the server started)
hub_metrics() { # file
  python3 - "http://127.0.0.1:$SPORT/metrics" > "$1" 2>&1 <<'PY' || echo "(could not read the hub's /metrics)" >> "$1"
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())
PY
}
fsum() { python3 -c "import sys; print(int(sum(float(a) for a in sys.argv[1:]) + 0.999))" "$@"; }

order() { # round list... -> list in round order (reversed on even rounds)
  local r=$1; shift
  if [ $((r % 2)) = 1 ]; then echo "$@"; else local out="" s; for s in "$@"; do out="$s $out"; done; echo "$out"; fi
}

echo_args() {
  case $1 in
    a1)   echo "--conns 100 --size 20 --depth 32" ;;
    c)    echo "--conns 100 --size 16384 --binary --depth 4" ;;
    bs)   echo "--conns 1 --size 20 --depth 1 --spin" ;;
    e100) echo "--conns 100 --size 20 --depth 4" ;;
    "$EN") echo "--conns $SCALE_CONNS --size 20 --depth 4 --src-ips 16 --connect-timeout 60" ;;
    *) return 1 ;;
  esac
}

# ------------------------------------------------------------------ cluster
# The cluster suite runs several processes at once (a redis-server of its
# own, two hub nodes): their PIDs are in CL_PIDS (stopped by PID, nodes
# first, then Redis), Redis's data directory is a fresh temporary one.
CLUSTER_SCEN=${CLUSTER_SCEN:-"clat c100 cN cack"}
CLUSTER_RATE=${CLUSTER_RATE:-10000}
CLUSTER_LAT_SUBS=${CLUSTER_LAT_SUBS:-10}
CLUSTER_WINDOW=${CLUSTER_WINDOW:-256}
CLUSTER_ACK_PUBS=${CLUSTER_ACK_PUBS:-4}
CLUSTER_ACK_WINDOW=${CLUSTER_ACK_WINDOW:-64}
CACK_REDIS_CPU=${CACK_REDIS_CPU:-1}
CLUSTER_REDIS_CPU=${CLUSTER_REDIS_CPU:-0}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
CN="c$(kname "$FAN_BIG")"
CLUSTER_SCEN=${CLUSTER_SCEN//cN/$CN}
CL_PIDS=""; CL_REDIS_PID=""; CL_REDIS_DIR=""
free_port() { while port_busy "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done; FP=$NEXT_PORT; NEXT_PORT=$((NEXT_PORT + 1)); }
# start a process pinned to a CPU, its output in a log; sets BG_PID
start_bg() { # cpu log cmd...
  local cpu=$1 log=$2; shift 2
  echo "# $*" > "$log"
  taskset -c "$cpu" "$@" >> "$log" 2>&1 &
  BG_PID=$!
  CL_PIDS="$CL_PIDS $BG_PID"
}
stop_pid() { # pid [seconds before KILL]
  local p=$1 n=$(( ${2:-3} * 10 )) i
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq "$n"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
stop_cluster() {
  local p
  for p in $CL_PIDS; do [ "$p" = "$CL_REDIS_PID" ] || stop_pid "$p" 8; done
  stop_pid "$CL_REDIS_PID" 5
  CL_PIDS=""; CL_REDIS_PID=""; SPID=""
  [ -n "$CL_REDIS_DIR" ] && [ -d "$CL_REDIS_DIR" ] && rm -rf -- "$CL_REDIS_DIR"
  CL_REDIS_DIR=""
}
cl_alive() { local p; for p in $CL_PIDS; do kill -0 "$p" 2>/dev/null || return 1; done; }
redis_ping() { # port -> 0 if Redis answers PONG
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
PY
}
http_get() { # url -> body on stdout; fails unless 200
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())
PY
}
wait_ready() { # pid port -> 0 once /readyz says 200 (the engine reached Redis)
  local i
  for i in $(seq 150); do
    kill -0 "$1" 2>/dev/null || return 1
    http_get "http://127.0.0.1:$2/readyz" > /dev/null && return 0
    sleep 0.1
  done
  return 1
}
# a hub node: engine (memory|redis) name cpu -> sets BG_PID, FP (its port).
# With CL_SECRET empty the node admits anonymous users (one per connection;
# a WSMIO_AUTH_SECRET from the environment is not passed on).
start_node() {
  local engine=$1 name=$2 cpu=$3 extra="" auth
  free_port
  [ "$engine" = redis ] && extra="--engine redis --redis-url redis://127.0.0.1:$CL_REDIS_PORT/0"
  # every connection of the cluster suite is the one user "bench": lift the
  # per-user quotas (64 connections, 1,000 subscriptions) where the hub has them
  [ -n "$CL_SECRET" ] && extra+=" $HUB_USER_QUOTA_ARGS"
  if [ -n "$CL_SECRET" ]; then auth="WSMIO_AUTH_SECRET=$CL_SECRET"; else auth="--unset=WSMIO_AUTH_SECRET"; fi
  NSTART=$((NSTART + 1))
  # shellcheck disable=SC2086
  start_bg "$cpu" "$OUT/server-$NSTART-cluster-$engine-$name.log" env "$auth" \
    "$WSMIO_HUB_BIN" serve --listen "127.0.0.1:$FP" --node "$name" $WSMIO_HUB_ARGS $extra
  wait_ready "$BG_PID" "$FP" || { echo "compare.sh: hub node $name ($engine) not ready within 15 s (log $OUT/server-$NSTART-cluster-$engine-$name.log)" >&2; return 1; }
}
# engine [anon] -> starts its processes; sets CL_PUB (port of the publishers'
# node), CL_SUB (subscribers' node), CL_PUB_PID, CL_SUB_PID, CL_WATCH (--watch
# list), CL_TOKEN (empty with anon: no --auth-secret, anonymous users)
start_cluster() {
  local engine=$1 anon=${2:-}
  CL_SECRET=""
  [ -z "$anon" ] && CL_SECRET=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  if [ "$engine" = memory ]; then
    start_node memory M 0 || { stop_cluster; return 1; }
    CL_PUB=$FP; CL_SUB=$FP; CL_PUB_PID=$BG_PID; CL_SUB_PID=$BG_PID
    CL_WATCH="node=$BG_PID"
  else
    CL_REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/wsmio-bench-redis.XXXXXX") || return 1
    free_port; CL_REDIS_PORT=$FP
    start_bg "$CLUSTER_REDIS_CPU" "$OUT/redis-$r.log" "$REDIS_SERVER" --port "$CL_REDIS_PORT" --bind 127.0.0.1 --dir "$CL_REDIS_DIR" \
      --appendonly yes --appendfsync everysec --save '' --daemonize no
    CL_REDIS_PID=$BG_PID
    local i up=0
    for i in $(seq 100); do
      kill -0 "$CL_REDIS_PID" 2>/dev/null || break
      redis_ping "$CL_REDIS_PORT" && { up=1; break; }
      sleep 0.1
    done
    [ "$up" = 1 ] || { echo "compare.sh: redis-server did not answer on port $CL_REDIS_PORT (log $OUT/redis-$r.log)" >&2; stop_cluster; return 1; }
    start_node redis A 0 || { stop_cluster; return 1; }
    CL_PUB=$FP; CL_PUB_PID=$BG_PID
    start_node redis B 0 || { stop_cluster; return 1; }
    CL_SUB=$FP; CL_SUB_PID=$BG_PID
    CL_WATCH="nodeA=$CL_PUB_PID,nodeB=$CL_SUB_PID,redis=$CL_REDIS_PID"
  fi
  CL_TOKEN=""
  if [ -z "$anon" ]; then
    CL_TOKEN=$(WSMIO_AUTH_SECRET=$CL_SECRET "$WSMIO_HUB_BIN" token --user bench --ttl 86400) || { stop_cluster; return 1; }
  fi
  # run_lg drives SPORT (the subscribers' node) and reports SPID's CPU
  SPORT=$CL_SUB; SPID=$CL_SUB_PID; SNAME="cluster-$engine"
}
cluster_args() { # scenario -> loadgen arguments
  case $1 in
    clat) echo "--conns $CLUSTER_LAT_SUBS --publishers 1 --rate $CLUSTER_RATE" ;;
    c100) echo "--conns 100 --publishers 1 --window $CLUSTER_WINDOW" ;;
    "$CN") echo "--conns $FAN_BIG --publishers 1 --window $CLUSTER_WINDOW --src-ips 16 --connect-timeout 60" ;;
    cack) echo "--conns 1 --publishers $CLUSTER_ACK_PUBS --window $CLUSTER_ACK_WINDOW --acks" ;;
    *) return 1 ;;
  esac
}
# Redis round trips per publish etc. from two /metrics snapshots of node A
engine_delta() { # before after -> "rt_per_pub cmds_per_rt rt_mean_us publishes round_trips"
  python3 - "$1" "$2" <<'PY'
import sys
def read(p):
    m = {}
    try:
        for l in open(p):
            if l.startswith("wsmio_engine_") and " " in l:
                k, v = l.rsplit(" ", 1)
                m[k] = float(v)
    except OSError:
        pass
    return m
a, b = read(sys.argv[1]), read(sys.argv[2])
d = lambda k: b[k] - a[k] if k in a and k in b else None
pubs, rts = d("wsmio_engine_publishes_total"), d("wsmio_engine_round_trip_seconds_count")
cmds, rsum = d("wsmio_engine_commands_total"), d("wsmio_engine_round_trip_seconds_sum")
f = lambda x, y, s: s % (x / y) if x is not None and y else "na"
print(f(rts, pubs, "%.4f"), f(cmds, rts, "%.1f"), f(rsum * 1e6 if rsum is not None else None, rts, "%.0f"),
      "%d" % pubs if pubs is not None else "na", "%d" % rts if rts is not None else "na")
PY
}
# Redis's own accounting (INFO commandstats): "cmdstat_evalsha calls=... usec=..."
redis_stats() { # port -> one "name calls usec" line per command
  python3 - "$1" <<'PY' 2>/dev/null
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"INFO commandstats\r\n")
buf = b""
while True:
    if buf.startswith(b"$") and b"\r\n" in buf:
        n = int(buf[1:buf.index(b"\r\n")])
        if len(buf) >= buf.index(b"\r\n") + 2 + n:
            break
    c = s.recv(65536)
    if not c:
        break
    buf += c
for m in re.finditer(rb"cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)", buf):
    print(m.group(1).decode(), m.group(2).decode(), m.group(3).decode())
PY
}
# Redis's time per publish script (us) and in the XRANGE inside it, when publish
# scripts (one XADD each) are at least 90 % of the scripts run (presence scripts
# of many subscribers' joins and leaves would be counted in otherwise); wall time
# inside Redis, so it includes preemption when Redis shares its core
redis_delta() { # before after -> "script_us_per_call xrange_us_per_call"
  awk 'NR == FNR { c[$1] = $2; u[$1] = $3; next } { dc[$1] = $2 - c[$1]; du[$1] = $3 - u[$1] }
       END { n = dc["evalsha"]; x = dc["xadd"]
             if (n > 0 && x >= 0.9 * n) printf "%.1f %.1f\n", du["evalsha"] / n, du["xrange"] / x; else print "na na" }' "$1" "$2" 2>/dev/null || echo "na na"
}
mget() { # metrics file, name -> value or na
  awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "na" }' "$1" 2>/dev/null || echo na
}

# ------------------------------------------------------------------ acks
# The acks suite (issue 19): fan-out with and without subscriber acks, on
# both engines, started by start_cluster with anonymous users.
ACKS_SCEN=${ACKS_SCEN:-"a100 aN"}
ACK_EVERY=${ACK_EVERY:-10}
ACKS_WINDOW=${ACKS_WINDOW:-256}
ACKS_ENGINES=${ACKS_ENGINES:-"memory redis"}
AN="a$(kname "$FAN_BIG")"
ACKS_SCEN=${ACKS_SCEN//aN/$AN}
[ "$ACK_EVERY" -ge 1 ] 2>/dev/null || die "ACK_EVERY must be >= 1"
acks_args() { # scenario -> loadgen arguments
  case $1 in
    a100) echo "--conns 100 --publishers 1 --window $ACKS_WINDOW" ;;
    "$AN") echo "--conns $FAN_BIG --publishers 1 --window $ACKS_WINDOW --src-ips 16 --connect-timeout 60" ;;
    *) return 1 ;;
  esac
}
# the subscribers' node's ack counters between two /metrics snapshots
acks_delta() { # before after -> "acks_received engine_commands engine_round_trips"
  python3 - "$1" "$2" <<'PY'
import sys
def read(p):
    m = {}
    try:
        for l in open(p):
            if l.startswith("wsmio_") and " " in l:
                k, v = l.rsplit(" ", 1)
                m[k] = float(v)
    except OSError:
        pass
    return m
a, b = read(sys.argv[1]), read(sys.argv[2])
d = lambda k: "%d" % (b[k] - a[k]) if k in a and k in b else "na"
print(d("wsmio_acks_total"), d("wsmio_engine_commands_total"), d("wsmio_engine_round_trip_seconds_count"))
PY
}

# ------------------------------------------------------------------ settle
# The 1-minute load average decays with a 1-minute time constant, so after a
# build it takes a minute or two to say "idle" again.
IDLE_WAIT=${IDLE_WAIT:-$([ "$QUICK" = 1 ] && echo 0 || echo 180)}
IDLE_LOAD=${IDLE_LOAD:-0.5}
load1() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while [ "$waited" -lt "$IDLE_WAIT" ] && awk -v l="$(load1)" -v m="$IDLE_LOAD" 'BEGIN { exit !(l > m) }'; do
  [ "$waited" = 0 ] && echo "compare.sh: waiting up to ${IDLE_WAIT}s for the 1-min load average ($(load1)) to fall to $IDLE_LOAD"
  sleep 5
  waited=$((waited + 5))
done
[ "$waited" -gt 0 ] && echo "compare.sh: load average $(load1) after ${waited}s"

# ------------------------------------------------------------------ machine
{
  echo "# $(date -u +%FT%TZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
  echo "# load before: $(cat /proc/loadavg)"
} > "$OUT/meta.txt"
{
  echo "date=$(date -u +%FT%TZ)"
  echo "cpu=$(lscpu | awk -F: '/^Model name/{gsub(/^[ \t]+/,"",$2); print $2; exit}')"
  echo "hypervisor=$(lscpu | awk -F: '/^Hypervisor vendor/{gsub(/^[ \t]+/,"",$2); print $2; exit}')"
  echo "nproc=$(nproc)"
  echo "kernel=$(uname -sr)"
  echo "rustc=$(rustc --version)"
  echo "git=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)$(cd "$ROOT" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
  echo "mode=$([ "$QUICK" = 1 ] && echo quick || echo full)"
  echo "rounds=$ROUNDS"
  echo "dur=$DUR"
  echo "warmup=$WARMUP"
  echo "drain=$DRAIN"
  echo "scale_conns=$SCALE_CONNS"
  echo "rss_conns=$RSS_CONNS"
  echo "fan_big=$FAN_BIG"
  echo "en=$EN"
  echo "sn=$SN"
  echo "scen=$SCEN"
  echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "busy_poll_us=$WSMIO_BUSY_POLL_US"
  echo "override_echo=$OV_ECHO"
  echo "override_bcast=$OV_BCAST"
  echo "override_hub=$OV_HUB"
  echo "cluster_scen=$CLUSTER_SCEN"
  echo "cn=$CN"
  echo "cluster_rate=$CLUSTER_RATE"
  echo "cluster_lat_subs=$CLUSTER_LAT_SUBS"
  echo "cluster_window=$CLUSTER_WINDOW"
  echo "cluster_ack_pubs=$CLUSTER_ACK_PUBS"
  echo "cluster_ack_window=$CLUSTER_ACK_WINDOW"
  echo "cack_redis_cpu=$CACK_REDIS_CPU"
  echo "cluster_redis_cpu=$CLUSTER_REDIS_CPU"
  echo "acks_scen=$ACKS_SCEN"
  echo "an=$AN"
  echo "ack_every=$ACK_EVERY"
  echo "acks_window=$ACKS_WINDOW"
} > "$OUT/machine.txt"

T_START=$(date +%s)
printf "round\tpeer\tscen\tmsgs_per_s\tMB_per_s\tp50_us\tp99_us\tp999_us\tserver_cpu\tclient_cpu\tok\tserver_user\ttcp_segs\ttcp_data_segs\ttcp_delayed_acks\n" > "$OUT/echo/results.tsv"
printf "round\tpeer\tcycles_per_s\ths_p50_us\tp50_us\tp99_us\terrors\tno_fin\tserver_fds_start\tserver_fds_end\tserver_cpu\tok\n" > "$OUT/echo/churn.tsv"
printf "peer\trss_start_kb\trss_idle_kb\tconns_open\tkb_per_conn\tround\tok\n" > "$OUT/echo/rss.tsv"
printf "round\tengine\tscen\tsubs\tpublishers\twindow\trate\tpublishes_per_s\tdeliveries_per_s\tp50_us\tp99_us\tp999_us\tacks_per_s\tack_p50_us\tack_p99_us\tpace_p99_us\tcpu_pub_node\tcpu_sub_node\tcpu_redis\tclient_cpu\trt_per_pub\tcmds_per_rt\trt_mean_us\tengine_publishes\tround_trips\tfills\tlost\tengine_errors\tack_no_epoch\tgaps\tmissing\tverify_errors\tsent_per_s\tredis_script_us\tredis_xrange_us\tok\n" > "$OUT/cluster/results.tsv"
printf "round\tengine\tscen\tsubs\tack_every\twindow\tpublishes_per_s\tdeliveries_per_s\tp50_us\tp99_us\tcpu_pub_node\tcpu_sub_node\tcpu_redis\tclient_cpu\tsub_acks\tsub_acks_per_s\tacks_received\tsub_engine_cmds\tsub_engine_rts\tgaps\tmissing\tverify_errors\tok\n" > "$OUT/acks/results.tsv"
printf "round\tpeer\tscen\tsubs\twindow\tpublishes_per_s\tdeliveries_per_s\tp50_us\tp99_us\tp999_us\tserver_cpu\tclient_cpu\tns_per_delivery\tcore_busy\tcore_irq\tgaps\tmissing\tverify_errors\tok\n" > "$OUT/fanout/results.tsv"

ECHO_SERVERS=""; FAN_SERVERS=""
if [[ " $SUITES " == *" echo "* || " $SUITES " == *" rss "* ]]; then
  # shellcheck disable=SC2086
  ECHO_SERVERS=$(filter_servers wsmio $ECHO_PEERS)
  if [[ " $ECHO_SERVERS " != *" wsmio "* ]]; then
    echo "compare.sh: WARNING: no wsmio echo server: the echo and rss suites are skipped" >&2
    SUITES=$(echo " $SUITES " | sed 's/ echo / /; s/ rss / /')
  fi
fi
if [[ " $SUITES " == *" fanout "* ]]; then
  # shellcheck disable=SC2086
  FAN_SERVERS=$(filter_servers wsmio-bcast wsmio-hub $FAN_PEERS)
  if [[ " $FAN_SERVERS " != *" wsmio-"* ]]; then
    echo "compare.sh: WARNING: neither wsmio examples/broadcast nor the hub is available: the fanout suite is skipped" >&2
    SUITES=$(echo " $SUITES " | sed 's/ fanout / /')
  fi
fi
if [[ " $SUITES " == *" cluster "* ]]; then
  why=""
  if [ ! -x "$WSMIO_HUB_BIN" ]; then why="cluster: hub not built: skipped (no $WSMIO_HUB_BIN)"
  elif ! command -v "$REDIS_SERVER" > /dev/null 2>&1; then why="cluster: $REDIS_SERVER not found: skipped (Debian: apt-get install -y redis-server)"
  elif [ -n "${WSMIO_HUB_CMD:-}" ]; then why="cluster: WSMIO_HUB_CMD is set; the cluster suite runs only WSMIO_HUB_BIN (wsmio serve): skipped"
  fi
  if [ -n "$why" ]; then
    echo "compare.sh: $why" >&2
    echo "$why" >> "$OUT/skipped.txt"
    SUITES=$(echo " $SUITES " | sed 's/ cluster / /')
  else
    echo "redis_version=$("$REDIS_SERVER" --version | grep -oE 'v=[^ ]+' | cut -d= -f2)" >> "$OUT/machine.txt"
  fi
fi
if [[ " $SUITES " == *" acks "* ]]; then
  why=""
  if [ ! -x "$WSMIO_HUB_BIN" ]; then why="acks: hub not built: skipped (no $WSMIO_HUB_BIN)"
  elif [ -n "${WSMIO_HUB_CMD:-}" ]; then why="acks: WSMIO_HUB_CMD is set; the acks suite runs only WSMIO_HUB_BIN (wsmio serve): skipped"
  elif ! "$WSMIO_HUB_BIN" serve --help 2>/dev/null | grep -q -- --session-ttl; then why="acks: this hub has no acknowledgements (no --session-ttl): skipped"
  fi
  if [ -n "$why" ]; then
    echo "compare.sh: $why" >&2
    echo "$why" >> "$OUT/skipped.txt"
    SUITES=$(echo " $SUITES " | sed 's/ acks / /')
  elif [[ " $ACKS_ENGINES " == *" redis "* ]] && ! command -v "$REDIS_SERVER" > /dev/null 2>&1; then
    echo "acks: $REDIS_SERVER not found: the Redis engine's rows are skipped (Debian: apt-get install -y redis-server)" | tee -a "$OUT/skipped.txt" >&2
    ACKS_ENGINES=$(echo " $ACKS_ENGINES " | sed 's/ redis / /')
  fi
  if [[ " $ACKS_ENGINES " == *" redis "* ]] && ! grep -q '^redis_version=' "$OUT/machine.txt"; then
    echo "redis_version=$("$REDIS_SERVER" --version | grep -oE 'v=[^ ]+' | cut -d= -f2)" >> "$OUT/machine.txt"
  fi
  echo "acks_engines=$(echo $ACKS_ENGINES)" >> "$OUT/machine.txt"
fi
[ -n "$(echo $SUITES)" ] || die "no wsmio server to compare (see the 'skipped' lines above); build wsmio or set WSMIO_*_BIN / WSMIO_*_CMD"
echo "suites=$SUITES" >> "$OUT/machine.txt"

for r in $(seq 1 "$ROUNDS"); do
  # ---------------------------------------------------------------- echo
  if [[ " $SUITES " == *" echo "* ]]; then
    for srv in $(order "$r" $ECHO_SERVERS); do
      if ! start_server "$srv"; then echo "server $srv failed to start in round $r: its echo rows are missing" >> "$OUT/notes.txt"; continue; fi
      for s in $SCEN; do
        ensure_server || break
        if [ "$s" = churn ]; then
          run_lg churn "$(fsum "$WARMUP" "$DUR" "$DRAIN" 40)" --mode churn --conns 16 --cycle-timeout 5 \
            --duration "$DUR" --warmup "$WARMUP" --drain "$DRAIN"
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$srv" "$(get cycles_per_s)" "$(get hs_p50_us)" \
            "$(get p50_us)" "$(get p99_us)" "$(get errors)" "$(get no_fin)" "$(get server_fds_start)" "$(get server_fds_end)" \
            "$(get server_cpu_pct)" "$(get ok)" >> "$OUT/echo/churn.tsv"
          echo "round $r $srv churn: $(get cycles_per_s) cycles/s p50=$(get p50_us)us errors=$(get errors) fds $(get server_fds_start)->$(get server_fds_end) ok=$(get ok)"
        else
          args=$(echo_args "$s") || { echo "compare.sh: unknown echo scenario '$s'" >&2; continue; }
          # shellcheck disable=SC2086
          run_lg "$s" "$(fsum "$WARMUP" "$DUR" 90)" $args --duration "$DUR" --warmup "$WARMUP"
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$srv" "$s" "$(get msgs_per_s)" "$(get MB_per_s)" \
            "$(get p50_us)" "$(get p99_us)" "$(get p999_us)" "$(get server_cpu_pct)" "$(get client_cpu_pct)" "$(get ok)" \
            "$(get server_user_pct)" "$(get tcp_segs_per_s)" "$(get tcp_data_segs_per_s)" "$(get tcp_delayed_acks_per_s)" >> "$OUT/echo/results.tsv"
          echo "round $r $srv $s: $(get msgs_per_s) msg/s $(get MB_per_s) MB/s p50=$(get p50_us)us p99=$(get p99_us)us srv_cpu=$(get server_cpu_pct)% ok=$(get ok)"
        fi
        sleep 0.2
      done
      stop_server
      sleep 0.3
    done
  fi
  # ---------------------------------------------------------------- rss
  if [[ " $SUITES " == *" rss "* ]]; then
    for srv in $(order "$r" $ECHO_SERVERS); do
      if ! start_server "$srv"; then echo "server $srv failed to start in round $r: its rss row is missing" >> "$OUT/notes.txt"; continue; fi
      sleep 0.3
      rss0=$(awk '/^VmRSS/{print $2}' "/proc/$SPID/status" 2>/dev/null)
      IDLE="$OUT/idle-$r-$srv.out"
      timeout -k 5 "$(fsum "$RSS_HOLD" 90)" taskset -c 1 "$LG" --port "$SPORT" --mode idle --conns "$RSS_CONNS" \
        --src-ips 16 --hold "$RSS_HOLD" --connect-timeout 60 > "$IDLE" 2>&1 &
      LPID=$!
      ready=0
      for _ in $(seq 700); do
        if grep -q '^READY' "$IDLE" 2>/dev/null; then ready=1; break; fi
        kill -0 "$LPID" 2>/dev/null || break
        sleep 0.1
      done
      sleep 2
      rss1=$(awk '/^VmRSS/{print $2}' "/proc/$SPID/status" 2>/dev/null)
      wait "$LPID"; LPID=""
      open=$(grep -oE 'READY open=[0-9]+' "$IDLE" | cut -d= -f2)
      open=${open:-0}
      rok=0
      if [ "$ready" = 1 ] && [ "$open" = "$RSS_CONNS" ] && [ -n "$rss0" ] && [ -n "$rss1" ] && grep -q '^RESULT.* ok=1' "$IDLE"; then rok=1; fi
      per=$(python3 -c "import sys; a,b,n=sys.argv[1:]; print('%.2f' % ((float(b)-float(a))/max(int(n),1)) if a and b else '')" "${rss0:-}" "${rss1:-}" "$open")
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$srv" "${rss0:-}" "${rss1:-}" "$open" "$per" "$r" "$rok" >> "$OUT/echo/rss.tsv"
      echo "round $r $srv rss: start=${rss0:-?}kB with $open idle conns=${rss1:-?}kB (${per:-?} kB/conn) ok=$rok"
      stop_server
      sleep 0.5
    done
  fi
  # ---------------------------------------------------------------- fanout
  if [[ " $SUITES " == *" fanout "* ]]; then
    for srv in $(order "$r" $FAN_SERVERS); do
      if ! start_server "$srv"; then echo "server $srv failed to start in round $r: its fan-out rows are missing" >> "$OUT/notes.txt"; continue; fi
      for s in s100 "$SN"; do
        ensure_server || break
        if [ "$s" = s100 ]; then fa="--conns 100"; else fa="--conns $FAN_BIG --src-ips 16 --connect-timeout 60"; fi
        # the hub speaks its JSON protocol on /ws (loadgen --hub); its setup includes O(S^2) join events
        [ "$srv" = wsmio-hub ] && [ -z "${WSMIO_HUB_CMD:-}" ] && fa+=" --hub"
        tcp_snapshot "$OUT/tcp-before"
        # shellcheck disable=SC2086
        run_lg "$s" "$(fsum "$WARMUP" "$DUR" "$DRAIN" 150)" --mode fanout --publishers 1 --size 64 --window 64 $fa \
          --duration "$DUR" --warmup "$WARMUP" --drain "$DRAIN" --server-core 0
        tcp_snapshot "$OUT/tcp-after"
        tcp_diag "$OUT/tcp-before" "$OUT/tcp-after" "$OUT/fanout/tcp-r$r-$srv-$s.txt"
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$srv" "$s" \
          "$(get subs)" "$(get window)" "$(get publishes_per_s)" "$(get deliveries_per_s)" "$(get p50_us)" "$(get p99_us)" \
          "$(get p999_us)" "$(get server_cpu_pct)" "$(get client_cpu_pct)" "$(get server_ns_per_delivery)" \
          "$(get server_core_busy_pct)" "$(get server_core_irq_pct)" "$(get gaps)" "$(get missing)" \
          "$(get verify_errors)" "$(get ok)" >> "$OUT/fanout/results.tsv"
        echo "round $r $srv $s: deliv/s=$(get deliveries_per_s) pub/s=$(get publishes_per_s) p50=$(get p50_us)us p99=$(get p99_us)us srv_cpu=$(get server_cpu_pct)% gaps=$(get gaps) missing=$(get missing) ok=$(get ok)"
        # the hub's own counters (closes by code, queue high-water mark, drops): what it saw of a failed run
        [ "$srv" = wsmio-hub ] && hub_metrics "$OUT/fanout/hub-metrics-r$r-$s.txt"
        sleep 0.2
      done
      stop_server
      sleep 0.3
    done
  fi
  # ---------------------------------------------------------------- cluster
  if [[ " $SUITES " == *" cluster "* ]]; then
    for eng in $(order "$r" memory redis); do
      if ! start_cluster "$eng"; then echo "cluster ($eng engine) failed to start in round $r: its rows are missing" >> "$OUT/notes.txt"; continue; fi
      for s in $CLUSTER_SCEN; do
        if ! cl_alive; then
          echo "compare.sh: WARNING: a process of the $eng cluster died (crashed?), restarting it; logs: $OUT/server-*-cluster-$eng-*.log $OUT/redis-$r.log" >&2
          echo "a process of the $eng cluster died during round $r (before $s); logs in $OUT" >> "$OUT/notes.txt"
          stop_cluster
          start_cluster "$eng" || break
        fi
        ca=$(cluster_args "$s") || { echo "compare.sh: unknown cluster scenario '$s'" >&2; continue; }
        pre="$OUT/cluster/metrics-r$r-$eng-$s"
        http_get "http://127.0.0.1:$CL_PUB/metrics" > "$pre-pub-before.txt"
        # cack: Redis moves to CPU CACK_REDIS_CPU (with the light generator), so
        # that the node and Redis each have a core and either can be the bound
        [ "$eng" = redis ] && redis_stats "$CL_REDIS_PORT" > "$pre-redis-before.txt"
        moved=0
        if [ "$s" = cack ] && [ "$eng" = redis ] && [ "$CACK_REDIS_CPU" != "$CLUSTER_REDIS_CPU" ]; then
          taskset -a -cp "$CACK_REDIS_CPU" "$CL_REDIS_PID" > /dev/null && moved=1
        fi
        # shellcheck disable=SC2086
        run_lg "$s" "$(fsum "$WARMUP" "$DUR" "$DRAIN" 150)" --mode fanout --hub --size 64 $ca \
          --pub-port "$CL_PUB" --topic "bench-r$r-$s" --expect-engine "$eng" --token "$CL_TOKEN" \
          --watch "$CL_WATCH" --duration "$DUR" --warmup "$WARMUP" --drain "$DRAIN"
        [ "$moved" = 1 ] && taskset -a -cp "$CLUSTER_REDIS_CPU" "$CL_REDIS_PID" > /dev/null
        http_get "http://127.0.0.1:$CL_PUB/metrics" > "$pre-pub-after.txt"
        [ "$CL_SUB" != "$CL_PUB" ] && http_get "http://127.0.0.1:$CL_SUB/metrics" > "$pre-sub-after.txt"
        read -r rtpp cpr rtus epubs erts <<< "$(engine_delta "$pre-pub-before.txt" "$pre-pub-after.txt")"
        rsus=na; rxus=na
        if [ "$eng" = redis ]; then
          redis_stats "$CL_REDIS_PORT" > "$pre-redis-after.txt"
          read -r rsus rxus <<< "$(redis_delta "$pre-redis-before.txt" "$pre-redis-after.txt")"
          cpub=$(get cpu_nodeA_pct); csub=$(get cpu_nodeB_pct); cred=$(get cpu_redis_pct)
          fills=$(mget "$pre-sub-after.txt" wsmio_engine_fills_total); lost=$(mget "$pre-sub-after.txt" wsmio_engine_lost_total)
          eerr=$(grep -E '^wsmio_engine_errors_total' "$pre-pub-after.txt" "$pre-sub-after.txt" 2>/dev/null | awk '{ s += $2 } END { print s + 0 }')
        else
          cpub=$(get cpu_node_pct); csub=$cpub; cred=na; fills=na; lost=na; eerr=na
        fi
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" \
          "$r" "$eng" "$s" "$(get subs)" "$(get publishers)" "$(get window)" "$(get rate)" "$(get publishes_per_s)" \
          "$(get deliveries_per_s)" "$(get p50_us)" "$(get p99_us)" "$(get p999_us)" "$(get acks_per_s)" "$(get ack_p50_us)" \
          "$(get ack_p99_us)" "$(get pace_p99_us)" "$cpub" "$csub" "$cred" "$(get client_cpu_pct)" "$rtpp" "$cpr" "$rtus" \
          "$epubs" "$erts" "$fills" "$lost" "$eerr" "$(get ack_no_epoch)" "$(get gaps)" "$(get missing)" "$(get verify_errors)" \
          "$(get sent_per_s)" "$rsus" "$rxus" "$(get ok)" >> "$OUT/cluster/results.tsv"
        echo "round $r cluster-$eng $s: deliv/s=$(get deliveries_per_s) pub/s=$(get publishes_per_s) acks/s=$(get acks_per_s) p50=$(get p50_us)us p99=$(get p99_us)us cpu pub/sub/redis/gen=$cpub/$csub/$cred/$(get client_cpu_pct)% rt/pub=$rtpp redis us/script=$rsus ok=$(get ok)"
        sleep 0.2
      done
      stop_cluster
      sleep 0.3
    done
  fi
  # ---------------------------------------------------------------- acks
  if [[ " $SUITES " == *" acks "* ]]; then
    for eng in $(order "$r" $ACKS_ENGINES); do
      if ! start_cluster "$eng" anon; then echo "acks: $eng engine failed to start in round $r: its rows are missing" >> "$OUT/notes.txt"; continue; fi
      for s in $ACKS_SCEN; do
        for k in $(order "$r" 0 "$ACK_EVERY"); do
          if ! cl_alive; then
            echo "compare.sh: WARNING: a process of the $eng cluster died (crashed?), restarting it; logs in $OUT" >&2
            echo "acks: a process of the $eng cluster died during round $r (before $s, acks every $k); logs in $OUT" >> "$OUT/notes.txt"
            stop_cluster
            start_cluster "$eng" anon || break 2
          fi
          aa=$(acks_args "$s") || { echo "compare.sh: unknown acks scenario '$s'" >&2; continue 2; }
          pre="$OUT/acks/metrics-r$r-$eng-$s-k$k"
          http_get "http://127.0.0.1:$CL_SUB/metrics" > "$pre-sub-before.txt"
          # shellcheck disable=SC2086
          run_lg "$s-k$k" "$(fsum "$WARMUP" "$DUR" "$DRAIN" 150)" --mode fanout --hub --size 64 $aa --ack-every "$k" \
            --pub-port "$CL_PUB" --topic "ack-r$r-$s-k$k" --expect-engine "$eng" \
            --watch "$CL_WATCH" --duration "$DUR" --warmup "$WARMUP" --drain "$DRAIN"
          sleep 0.3 # the last acks the generator wrote reach the hub
          http_get "http://127.0.0.1:$CL_SUB/metrics" > "$pre-sub-after.txt"
          read -r arecv acmds arts <<< "$(acks_delta "$pre-sub-before.txt" "$pre-sub-after.txt")"
          if [ "$eng" = redis ]; then
            cpub=$(get cpu_nodeA_pct); csub=$(get cpu_nodeB_pct); cred=$(get cpu_redis_pct)
          else
            cpub=$(get cpu_node_pct); csub=$cpub; cred=na; acmds=na; arts=na
          fi
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" \
            "$r" "$eng" "$s" "$(get subs)" "$k" "$(get window)" "$(get publishes_per_s)" "$(get deliveries_per_s)" \
            "$(get p50_us)" "$(get p99_us)" "$cpub" "$csub" "$cred" "$(get client_cpu_pct)" "$(get sub_acks)" \
            "$(get sub_acks_per_s)" "$arecv" "$acmds" "$arts" "$(get gaps)" "$(get missing)" "$(get verify_errors)" \
            "$(get ok)" >> "$OUT/acks/results.tsv"
          echo "round $r acks-$eng $s ack-every=$k: deliv/s=$(get deliveries_per_s) acks sent/received=$(get sub_acks)/$arecv cpu pub/sub/redis/gen=$cpub/$csub/$cred/$(get client_cpu_pct)% ok=$(get ok)"
          sleep 0.2
        done
      done
      stop_cluster
      sleep 0.3
    done
  fi
done
echo "# load after: $(cat /proc/loadavg)" >> "$OUT/meta.txt"
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo "elapsed_s=$(( $(date +%s) - T_START ))" >> "$OUT/machine.txt"

# ------------------------------------------------------------------ report
# details in the reference harness' format (kept for comparability with its figures)
python3 "$HERE/summarize.py" "$OUT/echo" > "$OUT/details-echo.md" 2>&1 || echo "(summarize.py failed)" >> "$OUT/details-echo.md"
python3 "$HERE/summarize_fanout.py" "$OUT/fanout" > "$OUT/details-fanout.md" 2>&1 || echo "(summarize_fanout.py failed)" >> "$OUT/details-fanout.md"
python3 "$HERE/compare_report.py" "$OUT" --root "$ROOT" --md "$BENCH_MD" || die "report generation failed (raw results in $OUT)"
