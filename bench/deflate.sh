#!/usr/bin/env bash
# permessage-deflate (RFC 7692) against plain, same binaries, same run:
#
#   bash bench/deflate.sh            # every suite, 1 round
#   SUITES="fanout" ROUNDS=3 bash bench/deflate.sh
#
# Suites (server on CPU 0, bench/loadgen on CPU 1; loadgen --deflate offers the
# extension, inflates and checks every message, and fills payloads with
# chat-like words in both variants of a pair):
#   echo    examples/echo (built with --features deflate, so it offers it):
#           100 connections, depth 4, text of SIZES (default "200 4096") bytes:
#           messages/s, server CPU per message, wire bytes per message
#   fanout  `wsmio serve` (deflate on by default): the hub's JSON fan-out, 1
#           publisher, window 64, --size 200 chat words, S = 100 and FAN_BIG
#           (5,000) subscribers: deliveries/s, server CPU per delivery, wire
#           bytes per frame received; unpaced, then both paced (--rate) at 80 %
#           of the compressed run's publishes/s (the generator, which inflates
#           every delivery, is the bottleneck there)
#   rss     examples/echo's RSS per idle upgraded connection, RSS_CONNS (10,000)
#           connections with and without the extension
# Knobs: SUITES ["echo fanout rss"], ROUNDS [1], DUR [5], WARMUP [1], SIZES ["200 4096"],
#   FAN_BIG [5000], RSS_CONNS [10000], PORT [19900], OUT [/tmp/wsmio-deflate-<time>].
# Output: $OUT/results.tsv (one line per run: suite, scenario, deflate, figures) and
# the loadgen lines in $OUT/raw.txt. Loopback only; every run is bounded by `timeout`.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD="$ROOT/$TD" ;; esac
SUITES=${SUITES:-"echo fanout rss"}
ROUNDS=${ROUNDS:-1}
DUR=${DUR:-5}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"200 4096"}
FAN_BIG=${FAN_BIG:-5000}
RSS_CONNS=${RSS_CONNS:-10000}
PORT=${PORT:-19900}
OUT=${OUT:-${TMPDIR:-/tmp}/wsmio-deflate-$(date +%Y%m%d-%H%M%S)}
LG="$TD/release/loadgen"
die() { echo "deflate.sh: ERROR: $*" >&2; exit 1; }

mkdir -p "$OUT" || die "cannot create $OUT"
(cd "$ROOT" && cargo build --release -q --features deflate --example echo &&
  cargo build --release -q --features cli --bin wsmio && cargo build --release -q -p loadgen) ||
  die "build failed"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
printf "round\tsuite\tscenario\tdeflate\trate_per_s\tserver_ns_per_unit\twire_bytes_per_unit\tkb_per_conn\tok\n" > "$OUT/results.tsv"

SPID=""
stop_server() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill "$SPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null
  fi
  [ -n "$SPID" ] && wait "$SPID" 2>/dev/null
  SPID=""
}
trap stop_server EXIT
start_server() { # command...
  taskset -c 0 "$@" > "$OUT/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  die "server did not start: $*"
}
LINE=""
get() { echo "$LINE" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
lg() { # timeout args...
  local t=$1; shift
  LINE=$(timeout -k 5 "$t" taskset -c 1 "$LG" --port "$PORT" --server-pid "$SPID" "$@" 2>>"$OUT/loadgen.err" | grep '^RESULT' | head -1)
  echo "$* -> ${LINE:-<no RESULT>}" >> "$OUT/raw.txt"
}
row() { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$@" | tee -a "$OUT/results.tsv"; }
ns_per() { python3 -c "import sys; c,r=sys.argv[1:]; print('%.0f' % (float(c)/100*1e9/float(r)) if c not in ('','na') and r not in ('','0') else 'na')" "$1" "$2"; }

for r in $(seq "$ROUNDS"); do
  if [[ " $SUITES " == *" echo "* ]]; then
    start_server "$TD/release/examples/echo" "127.0.0.1:$PORT"
    for size in $SIZES; do
      for z in 0 1; do
        flag=""; [ "$z" = 1 ] && flag="--deflate"
        lg 60 --mode echo --conns 100 --depth 4 --size "$size" --text --duration "$DUR" --warmup "$WARMUP" $flag
        row "$r" echo "size$size" "$z" "$(get msgs_per_s)" "$(ns_per "$(get server_cpu_pct)" "$(get msgs_per_s)")" \
          "$(get wire_bytes_per_msg)" "" "$(get ok)"
      done
    done
    stop_server
  fi
  if [[ " $SUITES " == *" fanout "* ]]; then
    start_server "$TD/release/wsmio" serve --listen "127.0.0.1:$PORT" --rate 1000000000 --burst 1000000000 \
      --max-connections 20000 --max-connections-per-user 0 --max-subscriptions-per-user 0
    for s in 100 "$FAN_BIG"; do
      fa="--conns $s"; [ "$s" -gt 1000 ] && fa+=" --src-ips 16 --connect-timeout 60"
      for z in 0 1; do
        flag=""; [ "$z" = 1 ] && flag="--deflate"
        lg 200 --mode fanout --hub --publishers 1 --size 200 --window 64 $fa --duration "$DUR" \
          --warmup "$WARMUP" --drain 3 --server-core 0 --topic "z$z-s$s-r$r" $flag
        row "$r" fanout "s$s" "$z" "$(get deliveries_per_s)" "$(get server_ns_per_delivery)" \
          "$(get wire_bytes_per_frame)" "" "$(get ok)"
      done
      # The generator inflates every delivery, so with --deflate it sets the
      # pace; both variants again at 80 % of that rate: the same load.
      rate=$(python3 -c "print(int(float('$(get publishes_per_s)' or 0) * 0.8))")
      for z in 0 1; do
        flag=""; [ "$z" = 1 ] && flag="--deflate"
        lg 200 --mode fanout --hub --publishers 1 --size 200 --window 64 $fa --duration "$DUR" \
          --warmup "$WARMUP" --drain 3 --server-core 0 --topic "p$z-s$s-r$r" --rate "$rate" $flag
        row "$r" fanout "s$s-paced$rate" "$z" "$(get deliveries_per_s)" "$(get server_ns_per_delivery)" \
          "$(get wire_bytes_per_frame)" "" "$(get ok)"
      done
    done
    stop_server
  fi
  if [[ " $SUITES " == *" rss "* ]]; then
    for z in 0 1; do
      flag=""; [ "$z" = 1 ] && flag="--deflate"
      start_server "$TD/release/examples/echo" "127.0.0.1:$PORT"
      sleep 0.3
      rss0=$(awk '/^VmRSS/{print $2}' "/proc/$SPID/status")
      idle="$OUT/idle-$r-$z.out"
      timeout -k 5 120 taskset -c 1 "$LG" --port "$PORT" --mode idle --conns "$RSS_CONNS" --src-ips 16 \
        --hold 8 --connect-timeout 60 $flag > "$idle" 2>&1 &
      lpid=$!
      for _ in $(seq 700); do grep -q '^READY' "$idle" 2>/dev/null && break; kill -0 "$lpid" 2>/dev/null || break; sleep 0.1; done
      sleep 2
      rss1=$(awk '/^VmRSS/{print $2}' "/proc/$SPID/status")
      wait "$lpid"
      open=$(grep -oE 'READY open=[0-9]+' "$idle" | cut -d= -f2)
      per=$(python3 -c "import sys; a,b,n=map(float,sys.argv[1:]); print('%.3f' % ((b-a)/n))" "$rss0" "$rss1" "${open:-1}")
      row "$r" rss "c$RSS_CONNS" "$z" "" "" "" "$per" "$([ "${open:-0}" = "$RSS_CONNS" ] && echo 1 || echo 0)"
      stop_server
    done
  fi
done
echo "deflate.sh: results in $OUT/results.tsv"
