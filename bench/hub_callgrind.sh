#!/usr/bin/env bash
# What the hub's hot paths cost in user-space instructions: `wsmio serve` (memory engine)
# under `valgrind --tool=callgrind`, driven by bench/loadgen, marginal method.
#
#   bench/hub_callgrind.sh                                   # target/release/wsmio, all scenarios
#   BINS="old=/some/where/wsmio new=target/release/wsmio" bench/hub_callgrind.sh   # two builds
#   SCEN="s100 s5k" ACK_EVERY="0 10" bench/hub_callgrind.sh  # fan-out with and without acks
#   bench/hub_callgrind.sh --report OUT_DIR                  # print the tables of a finished run again
#
# Scenarios (the server on CPU 0 under callgrind, the generator on CPU 1; 64 B payloads):
#   s100  fan-out: 100 subscribers, 1 publisher apart (it never subscribes), window 64
#         -> instructions per delivery (and per publish = per delivery x 100)
#   sN    the same with FAN_BIG (5,000) subscribers from 16 source addresses (s5k)
#   p1    1 subscriber, 1 publisher apart, window 64 -> instructions per publish (take the
#         request, sequence it, keep it in history, encode it, deliver it once)
#   pid1  as p1, every publish with an `id`, 64 acks outstanding -> per publish (its ack too)
#   e1    one connection that publishes to a topic only it subscribes to, window 64 ->
#         per round trip (the hub has no echo op: this is its echo-like path)
# ACK_EVERY (default "0"): `loadgen --ack-every K` values for the fan-out scenarios (s100, sN);
#   0 = subscribers never ack. The other scenarios run with 0 only.
#
# Method: every (binary, scenario, K) is run SHORT and LONG seconds (publishing time; default
# 2 and 6), each time with a fresh server. Ir = callgrind's total for the server process;
# marginal = (Ir_long - Ir_short) / (units_long - units_short), units = publishes sent x
# subscribers (deliveries) or publishes sent (p1, pid1, e1). Start-up, connecting, the
# subscriptions and their join events, and shutdown are in both runs and cancel out. Only runs
# that passed the generator's verification (every delivery once, in order) count. REPS
# repetitions (default 1); the binaries' order alternates between repetitions.
# Every connection carries one user's token (--auth-secret), so the setup has one join
# event per topic instead of S^2 (under callgrind S^2 = 25M at S = 5,000 would take hours);
# on a binary that has per-user quotas (`--max-connections-per-user`), they are lifted
# (0) for these runs. So with acks, every subscriber acks one (user, topic) position.
# AUTH=anon instead: no --auth-secret, every connection its own anonymous user (S^2 join
# events in the setup: fine at S = 100, far too slow under callgrind at S = 5,000).
#
# Knobs: BINS ["new=<target>/release/wsmio"] (label=path ...), SCEN ["s100 sN p1 pid1 e1"], AUTH [token],
#   ACK_EVERY ["0"], SHORT [2], LONG [6], REPS [1], FAN_BIG [5000], WINDOW [64],
#   OUT [${TMPDIR:-/tmp}/wsmio-callgrind-<timestamp>], PORT_BASE [19700], LOADGEN [<target>/release/loadgen],
#   LG_EXTRA [""] (more loadgen flags, e.g. "--deflate": subscribers with permessage-deflate).
# Output: $OUT/runs.tsv (one line per run), $OUT/marginal.tsv, and per (binary, scenario, K)
#   $OUT/functions-<label>-<scen>-k<K>.txt: the top functions' marginal instructions per unit
#   (callgrind_annotate, exclusive counts, long minus short); callgrind files cg-*.out kept.
# Instructions are user space only (no kernel time) and stable run to run; the server under
# callgrind runs ~50x slower, so it reads bigger batches per turn than a native server would.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TD=${CARGO_TARGET_DIR:-$ROOT/target}
case $TD in /*) ;; *) TD="$ROOT/$TD" ;; esac
die() { echo "hub_callgrind.sh: ERROR: $*" >&2; exit 1; }

report() { # OUT -> marginal table (and marginal.tsv)
  python3 - "$1" <<'PY'
import collections, csv, os, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "runs.tsv")), delimiter="\t"))
per = collections.defaultdict(dict)  # (bin, scen, k, rep) -> {len: row}
for r in rows:
    if r["ok"] == "1" and r["ir"] not in ("", "na"):
        per[(r["bin"], r["scen"], r["k"], r["rep"])][r["len"]] = r
res = collections.defaultdict(list)
lines = ["bin\tscen\tk\trep\tunit\tir_short\tir_long\tunits_short\tunits_long\tmarginal"]
for key, d in sorted(per.items()):
    if "short" not in d or "long" not in d:
        continue
    s, l = d["short"], d["long"]
    du = float(l["units"]) - float(s["units"])
    if du <= 0:
        continue
    m = (float(l["ir"]) - float(s["ir"])) / du
    res[key[:3]].append(m)
    lines.append("\t".join(list(key) + [s["unit"], s["ir"], l["ir"], s["units"], l["units"], "%.1f" % m]))
open(os.path.join(out, "marginal.tsv"), "w").write("\n".join(lines) + "\n")
unit = {r["scen"]: r["unit"] for r in rows}
bins = []
for r in rows:
    if r["bin"] not in bins:
        bins.append(r["bin"])
print("| scenario | acks every | unit | " + " | ".join(bins) + " |" + (" %s / %s |" % (bins[-1], bins[0]) if len(bins) > 1 else ""))
print("|---|---|---|" + "---|" * len(bins) + ("---|" if len(bins) > 1 else ""))
keys = sorted({(k[1], k[2]) for k in res}, key=lambda x: (x[0], int(x[1])))
for scen, k in keys:
    cells, meds = [], []
    for b in bins:
        v = res.get((b, scen, k), [])
        med = statistics.median(v) if v else None
        meds.append(med)
        cells.append("n/a" if med is None else ("%.1f" % med) + (" (%s)" % ", ".join("%.1f" % x for x in v) if len(v) > 1 else ""))
    ratio = ""
    if len(bins) > 1:
        ratio = " %.3f |" % (meds[-1] / meds[0]) if meds[0] and meds[-1] else " n/a |"
    print("| %s | %s | %s | %s |%s" % (scen, k if k != "0" else "—", unit.get(scen, "?"), " | ".join(cells), ratio))
bad = [r for r in rows if r["ok"] != "1" or r["ir"] in ("", "na")]
for r in bad:
    print("- failed: %s %s k=%s %s rep %s (%s)" % (r["bin"], r["scen"], r["k"], r["len"], r["rep"], r.get("why", "")))
PY
}

if [ "${1:-}" = --report ]; then
  [ -f "${2:-}/runs.tsv" ] || die "usage: $0 --report OUT_DIR (with runs.tsv)"
  report "$2"; exit 0
fi
[ $# = 0 ] || die "unknown argument '$1' (see the header of this script)"

for t in valgrind callgrind_annotate taskset python3 timeout; do
  command -v "$t" > /dev/null 2>&1 || die "needs $t"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU 0, generator on CPU 1)"

BINS=${BINS:-"new=$TD/release/wsmio"}
FAN_BIG=${FAN_BIG:-5000}
kname() { if [ $(($1 % 1000)) = 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }
SN="s$(kname "$FAN_BIG")"
SCEN=${SCEN:-"s100 sN p1 pid1 e1"}
SCEN=${SCEN//sN/$SN}
ACK_EVERY=${ACK_EVERY:-0}
SHORT=${SHORT:-2}; LONG=${LONG:-6}; REPS=${REPS:-1}; WINDOW=${WINDOW:-64}
PORT=${PORT_BASE:-19700}
LG=${LOADGEN:-$TD/release/loadgen}
OUT=${OUT:-${TMPDIR:-/tmp}/wsmio-callgrind-$(date +%Y%m%d-%H%M%S)}
[ -x "$LG" ] || die "loadgen not found at $LG (cargo build --release -p loadgen)"
for b in $BINS; do [ -x "${b#*=}" ] || die "no binary at ${b#*=} ($b)"; done
mkdir -p "$OUT" || die "cannot create $OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
AUTH=${AUTH:-token}
case $AUTH in
  token) WSMIO_AUTH_SECRET=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n'); export WSMIO_AUTH_SECRET ;;
  anon) unset WSMIO_AUTH_SECRET ;;
  *) die "AUTH must be token or anon" ;;
esac

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
SPID=""
cleanup() { [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
trap 'echo "hub_callgrind.sh: interrupted" >&2; cleanup; exit 130' INT TERM

lg_args() { # scen port -> loadgen arguments, unit name, subscribers per publish
  case $1 in
    s100) echo "--conns 100 --publishers 1 --pub-port $2 --window $WINDOW|delivery|100" ;;
    "$SN") echo "--conns $FAN_BIG --publishers 1 --pub-port $2 --window $WINDOW --src-ips 16|delivery|$FAN_BIG" ;;
    p1) echo "--conns 1 --publishers 1 --pub-port $2 --window $WINDOW|publish|1" ;;
    pid1) echo "--conns 1 --publishers 1 --pub-port $2 --window $WINDOW --acks|publish|1" ;;
    e1) echo "--conns 1 --publishers 1 --window $WINDOW|round trip|1" ;;
    *) return 1 ;;
  esac
}

{
  echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) $(valgrind --version) git $(cd "$ROOT" && git rev-parse --short HEAD) auth $AUTH short ${SHORT}s long ${LONG}s"
  for b in $BINS; do echo "# ${b%%=*}: ${b#*=}"; done
} > "$OUT/meta.txt"
printf "bin\tscen\tk\tlen\trep\tunit\tir\tsent\tunits\tsubs_acks\tok\twhy\n" > "$OUT/runs.tsv"
echo "hub_callgrind.sh: out=$OUT scen='$SCEN' acks='$ACK_EVERY' short=${SHORT}s long=${LONG}s reps=$REPS load $(cut -d' ' -f1 /proc/loadavg)"

run_one() { # label bin scen k len secs rep
  local label=$1 bin=$2 scen=$3 k=$4 len=$5 secs=$6 rep=$7 extra="" spec args unit subs cg line i why=""
  spec=$(lg_args "$scen" "$PORT") || die "unknown scenario $scen"
  IFS='|' read -r args unit subs <<< "$spec"
  # lift the per-user quotas where the binary has them (all connections are one user)
  if [ "$AUTH" = token ] && "$bin" serve --help 2>/dev/null | grep -q -- --max-connections-per-user; then
    extra="--max-connections-per-user 0 --max-subscriptions-per-user 0"
  fi
  while port_busy "$PORT"; do PORT=$((PORT + 1)); done
  spec=$(lg_args "$scen" "$PORT"); IFS='|' read -r args unit subs <<< "$spec"
  cg="$OUT/cg-$label-$scen-k$k-$len-r$rep.out"
  # shellcheck disable=SC2086
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$cg" \
    "$bin" serve --listen "127.0.0.1:$PORT" --rate 1000000000 --burst 1000000000 $extra \
    > "$OUT/server-$label-$scen-k$k-$len-r$rep.log" 2>&1 &
  SPID=$!
  for i in $(seq 600); do port_busy "$PORT" && break; kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  local token=""
  [ "$AUTH" = token ] && token="--token $("$bin" token --user bench --ttl 86400)"
  # shellcheck disable=SC2086
  line=$(timeout -k 5 $((secs + 400)) taskset -c 1 "$LG" --port "$PORT" --mode fanout --hub --size 64 $args \
    $token ${LG_EXTRA:-} --ack-every "$k" --duration "$secs" --warmup 0 --drain 60 --connect-timeout 120 --quiet \
    2> "$OUT/lg-$label-$scen-k$k-$len-r$rep.err" | grep '^RESULT' | head -1)
  echo "$label $scen k=$k $len rep $rep: $line" >> "$OUT/raw.txt"
  kill -TERM "$SPID" 2>/dev/null
  for i in $(seq 1200); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SPID" 2>/dev/null && { kill -KILL "$SPID"; why="server did not exit within 120 s of SIGTERM"; }
  wait "$SPID" 2>/dev/null; SPID=""
  PORT=$((PORT + 1))
  get() { echo "$line" | grep -oE "(^| )$1=[^ ]+" | head -1 | cut -d= -f2; }
  local ok ir sent units
  ok=$(get ok); sent=$(get sent)
  ir=$(grep -m1 -E '^(summary|totals):' "$cg" 2>/dev/null | awk '{ print $2 }')
  [ -z "$line" ] && why="no RESULT line"
  [ "$ok" != 1 ] && [ -z "$why" ] && why="loadgen ok=$ok: $(grep -m1 -oE 'error="[^"]*"' <<< "$line")"
  units=$(( ${sent:-0} * subs ))
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$label" "$scen" "$k" "$len" "$rep" "$unit" "${ir:-na}" \
    "${sent:-na}" "$units" "$(get sub_acks)" "${ok:-0}" "$why" >> "$OUT/runs.tsv"
  echo "  $label $scen k=$k $len: Ir=${ir:-na} sent=${sent:-na} $unit""s=$units ok=${ok:-0} ${why}"
}

functions() { # label scen k rep -> top functions, marginal per unit
  local short="$OUT/cg-$1-$2-k$3-short-r$4.out" long="$OUT/cg-$1-$2-k$3-long-r$4.out"
  [ -f "$short" ] && [ -f "$long" ] || return 0
  callgrind_annotate --inclusive=no --threshold=100 "$short" > "$short.txt" 2>/dev/null
  callgrind_annotate --inclusive=no --threshold=100 "$long" > "$long.txt" 2>/dev/null
  python3 - "$short.txt" "$long.txt" "$OUT/runs.tsv" "$1" "$2" "$3" "$4" > "$OUT/functions-$1-$2-k$3.txt" <<'PY'
import csv, re, sys
def fns(p):
    d = {}
    for l in open(p):
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$", l)
        if m and ":" in m.group(2) and not l.lstrip().startswith("Ir"):
            # "file:function [object]": keep the object's file name only, so
            # that two builds' names compare and no path is printed
            k = re.sub(r"\[([^\]]*/)?([^\]/]*)\]$", r"[\2]", m.group(2))
            d[k] = d.get(k, 0) + int(m.group(1).replace(",", ""))
    return d
a, b = fns(sys.argv[1]), fns(sys.argv[2])
rows = list(csv.DictReader(open(sys.argv[3]), delimiter="\t"))
u = {r["len"]: float(r["units"]) for r in rows if (r["bin"], r["scen"], r["k"], r["rep"]) == tuple(sys.argv[4:8])}
du = u.get("long", 0) - u.get("short", 0)
if du <= 0:
    sys.exit(0)
diff = sorted(((b.get(k, 0) - a.get(k, 0)) / du, k) for k in set(a) | set(b))
diff.reverse()
tot = sum(x for x, _ in diff)
print("# %s %s ack-every %s rep %s: marginal instructions per unit by function (exclusive), total %.1f" % (*sys.argv[4:8], tot))
for x, k in diff[:80]:
    print("%9.2f  %5.1f %%  %s" % (x, 100 * x / tot if tot else 0, k))
PY
}

order() { # rep list... -> list, reversed on even repetitions
  local r=$1; shift
  if [ $((r % 2)) = 1 ]; then echo "$@"; else local out="" s; for s in "$@"; do out="$s $out"; done; echo "$out"; fi
}

for rep in $(seq 1 "$REPS"); do
  for scen in $SCEN; do
    ks=0
    case $scen in s100|"$SN") ks=$ACK_EVERY ;; esac
    for k in $ks; do
      for b in $(order "$rep" $BINS); do
        label=${b%%=*}; bin=${b#*=}
        # acks ({"op":"ack"}) came with --session-ttl; an older hub would refuse them
        if [ "$k" != 0 ] && ! "$bin" serve --help 2>/dev/null | grep -q -- --session-ttl; then
          echo "  $label $scen k=$k: skipped (this hub has no acks)"; continue
        fi
        run_one "$label" "$bin" "$scen" "$k" short "$SHORT" "$rep"
        run_one "$label" "$bin" "$scen" "$k" long "$LONG" "$rep"
        functions "$label" "$scen" "$k" "$rep"
      done
    done
  done
done
echo "# end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"
report "$OUT"
echo "raw: $OUT (runs.tsv, marginal.tsv, functions-*.txt, cg-*.out)"
