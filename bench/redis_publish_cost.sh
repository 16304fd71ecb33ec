#!/usr/bin/env bash
# What one publish costs inside Redis: the Redis engine's publish script
# (read from src/pubsub/engine/redis/scripts.rs, as built) and variants of it,
# each run by redis-benchmark against a redis-server of this script's own.
#
#   bench/redis_publish_cost.sh            # 200,000 calls per variant
#   N=500000 bench/redis_publish_cost.sh
#
# The cluster suite (compare.sh, scenario cack) finds Redis's CPU to be what
# bounds the publishes one node can push through it; this says which part of
# the script that CPU goes to. Variants:
#   engine              the publish script as the engine runs it for one publish
#   no-age-scan         without the age scan (every 16th publish: an XRANGE of
#                       the 16 oldest entries and the XTRIM it may lead to, which
#                       drops entries older than --history-age)
#   batch16             the publish_batch script with 16 publishes of one topic
#                       in one run (what the engine sends for publishes of one
#                       topic that wait in the same pipeline); per publish
#   reference           counter + XADD MAXLEN ~ 1000 + PUBLISH, the shape the
#                       project's notes on the anchors measured (no epoch, no
#                       TTLs, no age limit)
# Each runs with a history already full (--history-len 100 entries, as after the
# first 100 publishes of a topic), one subscriber on the channel (a node), 20
# clients with 16 calls pipelined each (a node pipelines its publishes).
# Redis (its own, on a free loopback port, fresh temporary directory, AOF
# everysec as the suite runs it) is pinned to CPU 1, redis-benchmark to CPU 0.
# Reported per variant: calls/s, Redis CPU per call (utime+stime from
# /proc/PID/stat over the run), and Redis's own time per call (INFO
# commandstats). Only loopback; every process started here is stopped by PID.
set -u -o pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
N=${N:-200000}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
die() { echo "redis_publish_cost.sh: ERROR: $*" >&2; exit 1; }
for t in "$REDIS_SERVER" redis-benchmark redis-cli python3 taskset; do
  command -v "$t" > /dev/null 2>&1 || die "'$t' is missing (Debian: apt-get install -y redis-server python3 util-linux)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"
SRC="$ROOT/src/pubsub/engine/redis/scripts.rs"
[ -f "$SRC" ] || die "no $SRC (the Redis engine)"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsmio-redis-cost.XXXXXX") || die "mktemp"
RPID=""; SPID=""
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  if [ -n "$RPID" ]; then
    kill "$RPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null
  fi
  rm -rf -- "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the variants, written to $TMP/<name>.lua
python3 - "$SRC" "$TMP" <<'PY' || die "could not read the publish script from $SRC"
import re, sys
src, out = sys.argv[1], sys.argv[2]
text = open(src).read()
def script(name):
    # `const NAME: &str = concat!(frag_a!(), frag_b!(), r#"..."#);` (each
    # `macro_rules! frag { () => { r#"..."# } }`) or a plain r#"..."#
    m = re.search(r'const ' + name + r': &str = concat!\(((?:\s*\w+!\(\),)*)\s*r#"(.*?)"#\s*\);', text, re.S)
    if m:
        body = ""
        for frag in re.findall(r'(\w+)!\(\)', m.group(1)):
            f = re.search(r'macro_rules! ' + frag + r' \{\s*\(\) => \{\s*r#"(.*?)"#', text, re.S)
            if not f:
                return None
            body += f.group(1)
        return body + m.group(2)
    m = re.search(r'const ' + name + r': &str = r#"(.*?)"#;', text, re.S)
    return m.group(1) if m else None
engine = script("PUBLISH")
if not engine:
    sys.exit(1)
open(out + "/engine.lua", "w").write(engine)
b = script("PUBLISH_BATCH")
if b:
    open(out + "/batch16.lua", "w").write(b)
# the age scan: the call of trim_age (every 16th seq)
scan = re.search(r"\n[ \t]*if seq % 16 == 0 then trim_age\(.*?\) end\n", engine)
if scan:
    open(out + "/no-age-scan.lua", "w").write(engine[:scan.start()] + "\n" + engine[scan.end():])
else:
    print("note: no age scan found in the script: variant no-age-scan skipped", file=sys.stderr)
open(out + "/reference.lua", "w").write("""
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local msg = ARGV[3] .. seq .. ',"epoch":"' .. ARGV[2] .. '"' .. ARGV[4]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'd', msg)
redis.call('PUBLISH', ARGV[1], msg)
return seq
""")
PY

PORT=${PORT:-19490}
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
taskset -c 1 "$REDIS_SERVER" --port "$PORT" --bind 127.0.0.1 --dir "$TMP" --appendonly yes \
  --appendfsync everysec --save '' --daemonize no > "$TMP/redis.log" 2>&1 &
RPID=$!
up=0
for _ in $(seq 50); do
  [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && { up=1; break; }
  sleep 0.1
done
[ "$up" = 1 ] || die "redis-server did not start (log: $TMP/redis.log)"
CH="wsmio:c:cost"
redis-cli -p "$PORT" subscribe "$CH" > /dev/null 2>&1 &
SPID=$!
# the arguments the engine passes (wire.rs keys, Delivery::parts around seq and epoch)
HEAD='{"type":"msg","topic":"cost","seq":'
TAIL=',"node":"A","from":"bench","ts":1796436000150,"data":"00000000000000000000000000000000000000ABCDEFGHIJKLMNOPQRSTUVWXYZ"}'
ARGS=(3 wsmio:m:cost wsmio:h:cost "wsmio:i:\x1f" "$CH" 0123456789ab "$HEAD" "$TAIL" 0123456789ab.1 100 600000 86400000 "" 300000 cost)
# publish_batch: 16 publishes per run
BATCH=16
BARGS=(2 wsmio:m:cost wsmio:h:cost "$CH" 0123456789ab 100 600000 86400000 "$BATCH")
for i in $(seq "$BATCH"); do BARGS+=("$HEAD" "$TAIL" "0123456789ab.$i"); done
ticks() { awk '{ print $14 + $15 }' "/proc/$RPID/stat"; }
echo "redis_publish_cost.sh: $("$REDIS_SERVER" --version | grep -oE 'v=[^ ]+'), $N calls per variant, 20 clients x 16 pipelined; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-18s %14s %24s %24s\n" variant "publishes/s" "Redis CPU us/publish" "Redis us/call (INFO)"
for v in engine no-age-scan batch16 reference; do
  [ -f "$TMP/$v.lua" ] || continue
  args=("${ARGS[@]}"); per=1
  [ "$v" = batch16 ] && { args=("${BARGS[@]}"); per=$BATCH; }
  sha=$(redis-cli -p "$PORT" script load "$(cat "$TMP/$v.lua")") || die "SCRIPT LOAD of $v failed"
  redis-cli -p "$PORT" del wsmio:m:cost wsmio:h:cost > /dev/null
  # a full history first (100 entries), as on a topic past its first 100 publishes
  taskset -c 0 redis-benchmark -p "$PORT" -n 200 -c 1 -q evalsha "$sha" "${args[@]}" > /dev/null 2>&1
  redis-cli -p "$PORT" config resetstat > /dev/null
  t0=$(ticks)
  n=$((N / per))
  rps=$(taskset -c 0 redis-benchmark -p "$PORT" -n "$n" -c 20 -P 16 -q evalsha "$sha" "${args[@]}" 2>&1 |
        tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
  t1=$(ticks)
  info=$(redis-cli -p "$PORT" info commandstats | grep -oE 'cmdstat_evalsha:calls=[0-9]+,usec=[0-9]+,usec_per_call=[0-9.]+' | grep -oE 'usec_per_call=[0-9.]+' | cut -d= -f2)
  pps=$(python3 -c "import sys; print('%.0f' % (float(sys.argv[1]) * int(sys.argv[2])))" "${rps:-0}" "$per")
  printf "%-18s %14s %24s %24s\n" "$v" "$pps" "$(python3 -c "import sys; print('%.1f' % ((int(sys.argv[2]) - int(sys.argv[1])) * 1e4 / int(sys.argv[3])))" "$t0" "$t1" "$N")" "${info:-?}"
done
