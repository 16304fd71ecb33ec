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
python3 - "$OUT" $CONNS <<'PY'
import csv, os, statistics, sys
out, counts = sys.argv[1], sys.argv[2:]
def f(x):
    try: return float(x)
    except (TypeError, ValueError): return None
rows = {}
for n in counts:
    p = os.path.join(out, "c%s" % n, "echo", "results.tsv")
    for r in csv.DictReader(open(p), delimiter="\t"):
        if r.get("ok") == "1":
            rows.setdefault((r["peer"], int(n)), []).append(r)
med = lambda rs, k: statistics.median([f(r[k]) for r in rs if f(r.get(k)) is not None] or [float("nan")])
servers = []
for (s, _) in rows:
    if s not in servers: servers.append(s)
print("| server | connections | msg/s | kept vs %s | p50 round trip ms | server CPU %% | generator CPU %% | TCP segments/s | pure-ACK share | delayed ACKs/s (timer) | runs ok |" % counts[0])
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in servers:
    base = None
    for n in counts:
        rs = rows.get((s, int(n)), [])
        if not rs:
            print("| %s | %s | n/a | | | | | | | | 0 |" % (s, n)); continue
        for r in rs:
            segs, data = f(r.get("tcp_segs")), f(r.get("tcp_data_segs"))
            r["share"] = max(segs - data, 0) / segs if segs and data is not None else None
        m, segs = med(rs, "msgs_per_s"), med(rs, "tcp_segs")
        base = base or m
        print("| %s | %s | %.0fk | %.2f | %.1f | %.0f | %.0f | %.0fk | %.0f %% | %.0fk | %d |" % (
            s, n, m / 1e3, m / base, med(rs, "p50_us") / 1e3, med(rs, "server_cpu"), med(rs, "client_cpu"), segs / 1e3,
            100 * med(rs, "share"), med(rs, "tcp_delayed_acks") / 1e3, len(rs)))
PY
echo "raw: $OUT"
