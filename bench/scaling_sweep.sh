#!/usr/bin/env bash
# bench/scaling_sweep.sh — echo throughput against the number of connections.
#
# The scaling goal compares e10k with e100 (bench/compare.sh). This sweep
# fills in the points between, so the knee shows: for each connection count
# it runs compare.sh's scaling scenario (20 B text, 4 in flight per
# connection, 16 source addresses) against wsmio and the peers in
# ECHO_PEERS (default: floor), ROUNDS rounds each, servers alternating, and
# prints per count and server the medians of: msg/s, p50 round trip, the
# host's TCP segments/s, the pure-ACK share of them and the delayed-ACK timer
# firings per second (loadgen's host-wide counters: run it on an idle host).
#
#   bench/scaling_sweep.sh                         # 100 ... 10000, 3 rounds
#   CONNS="100 2000 10000" ROUNDS=1 bench/scaling_sweep.sh
#   bench/scaling_sweep.sh --report /tmp/wsmio-sweep-...   # the table again
#
# Every run is a compare.sh run (same pinning, time limits and
# verification); raw results stay in $OUT/c<count>/. BENCHMARKS.md is not
# touched. Takes about (counts x servers x rounds x 9 s): ~6 min by default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONNS=${CONNS:-"100 1000 2000 3000 4000 6000 8000 10000"}
OUT=${OUT:-/tmp/wsmio-sweep-$(date +%Y%m%d-%H%M%S)}
export ROUNDS=${ROUNDS:-3} ECHO_PEERS=${ECHO_PEERS:-floor}
report_only=0
if [ "${1:-}" = --report ]; then
  [ -d "${2:-}" ] || { echo "usage: $0 [--report DIR]" >&2; exit 2; }
  OUT=$2 report_only=1
  CONNS=$(cd "$OUT" && for d in c[0-9]*/; do d=${d%/}; echo "${d#c}"; done | sort -n | tr '\n' ' ')
fi
mkdir -p "$OUT"
first=1
[ "$report_only" = 1 ] || for n in $CONNS; do
  # build once (compare.sh's own build step), then reuse it
  SKIP=$([ "$first" = 1 ] && echo "${SKIP_BUILD:-}" || echo 1)
  first=0
  echo "scaling_sweep: $n connections"
  SKIP_BUILD=$SKIP IDLE_WAIT=0 SCALE_CONNS=$n SUITES=echo SCEN=eN BENCH_MD=none OUT="$OUT/c$n" \
    bash "$ROOT/bench/compare.sh" > "$OUT/c$n.log" 2>&1 || { echo "compare.sh failed for $n (see $OUT/c$n.log)" >&2; exit 1; }
done
python3 - "$ROOT/bench" "$OUT" $CONNS <<'PY'
import os, sys
sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, sys.argv[1])
from compare_report import Cell, load, num  # the report's own median over ok runs
out, counts = sys.argv[2], sys.argv[3:]
rows = {}
for n in counts:
    for r in load(os.path.join(out, "c%s" % n, "echo", "results.tsv")):
        if r.get("ok") == "1":
            segs, data = num(r.get("tcp_segs")), num(r.get("tcp_data_segs"))
            r["share"] = max(segs - data, 0) / segs if segs and data is not None else None
            rows.setdefault((r["peer"], int(n)), []).append(r)
med = lambda rs, k: Cell([num(r.get(k)) for r in rs], len(rs)).med
servers = []
for (s, _) in rows:
    if s not in servers: servers.append(s)
print("| server | connections | msg/s | kept vs %s | p50 round trip ms | server CPU %% | generator CPU %% | TCP segments/s | pure-ACK share | delayed ACKs/s (timer) | runs ok |" % counts[0])
print("|---|---|---|---|---|---|---|---|---|---|---|")
fmt = lambda x, scale, f: f % (x / scale) if x is not None else "n/a"
for s in servers:
    base = None
    for n in counts:
        rs = rows.get((s, int(n)), [])
        if not rs:
            print("| %s | %s | n/a | | | | | | | | 0 |" % (s, n)); continue
        m = med(rs, "msgs_per_s")
        base = base or m
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            s, n, fmt(m, 1e3, "%.0fk"), fmt(m / base if m and base else None, 1, "%.2f"),
            fmt(med(rs, "p50_us"), 1e3, "%.1f"), fmt(med(rs, "server_cpu"), 1, "%.0f"),
            fmt(med(rs, "client_cpu"), 1, "%.0f"), fmt(med(rs, "tcp_segs"), 1e3, "%.0fk"),
            fmt(med(rs, "share"), 0.01, "%.0f %%"), fmt(med(rs, "tcp_delayed_acks"), 1e3, "%.0fk"), len(rs)))
PY
echo "raw: $OUT"
