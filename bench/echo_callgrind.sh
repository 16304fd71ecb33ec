#!/usr/bin/env bash
# What the reactor's echo path costs in user-space instructions: examples/echo under
# `valgrind --tool=callgrind`, driven by bench/loadgen, marginal method.
#
#   bench/echo_callgrind.sh                                   # target/release/examples/echo, a1
#   BINS="old=/some/where/echo new=target/release/examples/echo" bench/echo_callgrind.sh
#   SCEN="a1 d1 c" REPS=2 bench/echo_callgrind.sh
#
# Scenarios (loadgen flags as in compare.sh; N1 and N2 messages per run):
#   a1  100 conns x 20 B text, depth 32      300,000 and 1,000,000 messages
#   d1  1 conn x 20 B text, depth 1           20,000 and 60,000 (a round trip per message)
#   c   100 conns x 16 KiB binary, depth 4    20,000 and 60,000
# Method: each (binary, scenario) runs twice with a fresh server, N1 and N2 messages;
# marginal = (Ir_N2 - Ir_N1) / (msgs_N2 - msgs_N1): start-up, connecting and shutdown cancel
# out. Instruction counts do not see the machine's load. REPS repetitions alternate the
# binaries' order. Output: one line per (binary, scenario, rep) and $OUT/marginal.tsv.
# Knobs: BINS ["new=<target>/release/examples/echo"], SCEN ["a1"], REPS [1], PORT [19310],
#   LOADGEN [<target>/release/loadgen], OUT [${TMPDIR:-/tmp}/wsmio-echo-callgrind-<timestamp>].
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD="$ROOT/$TD" ;; esac
die() { echo "echo_callgrind.sh: ERROR: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"

BINS=${BINS:-"new=$TD/release/examples/echo"}
SCEN=${SCEN:-a1}
REPS=${REPS:-1}
PORT=${PORT:-19310}
LOADGEN=${LOADGEN:-$TD/release/loadgen}
OUT=${OUT:-${TMPDIR:-/tmp}/wsmio-echo-callgrind-$(date +%Y%m%d-%H%M%S)}
[ -x "$LOADGEN" ] || die "no loadgen at $LOADGEN (cargo build --release -p loadgen)"
mkdir -p "$OUT"

args() {
  case $1 in
    a1) echo "--conns 100 --size 20 --depth 32" ;;
    d1) echo "--conns 1 --size 20 --depth 1" ;;
    c)  echo "--conns 100 --size 16384 --binary --depth 4" ;;
    *)  die "unknown scenario $1" ;;
  esac
}
counts() {
  case $1 in a1) echo "300000 1000000" ;; *) echo "20000 60000" ;; esac
}

# run BIN N ARGS... -> "Ir msgs"
run() {
  local bin=$1 n=$2 f; shift 2
  f="$OUT/cg.$$.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$f.out" "$bin" "127.0.0.1:$PORT" >/dev/null 2>"$f.log" &
  local vpid=$!
  for _ in $(seq 1 600); do grep -q listening "$f.log" 2>/dev/null && break; sleep 0.2; done
  # shellcheck disable=SC2068
  timeout 600 "$LOADGEN" --port "$PORT" --duration 300 --warmup 0 --max-msgs "$n" --quiet $@ 2>&1 |
    grep RESULT >"$f.res"
  kill -TERM "$vpid"; wait "$vpid" 2>/dev/null
  local ir msgs
  ir=$(grep -h '^summary' "$f.out" | awk '{print $2}')
  msgs=$(grep -o ' msgs=[0-9]*' "$f.res" | head -1 | cut -d= -f2)
  echo "${ir:-na} ${msgs:-na}"
}

echo -e "bin\tscen\trep\tmarginal" >"$OUT/marginal.tsv"
for rep in $(seq 1 "$REPS"); do
  order=$BINS
  [ $((rep % 2)) = 0 ] && order=$(echo "$BINS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for s in $SCEN; do
    read -r n1 n2 <<<"$(counts "$s")"
    for b in $order; do
      label=${b%%=*}; bin=${b#*=}
      read -r ir1 m1 <<<"$(run "$bin" "$n1" "$(args "$s")")"
      read -r ir2 m2 <<<"$(run "$bin" "$n2" "$(args "$s")")"
      m=$(python3 -c "print(round(($ir2-$ir1)/($m2-$m1),1))" 2>/dev/null || echo na)
      echo -e "$label\t$s\t$rep\t$m" | tee -a "$OUT/marginal.tsv"
    done
  done
done
