#!/usr/bin/env bash
# Fairness under load (issue 20), at the benchmark's scale, on this machine:
#
#   bench/fairness.sh            # flood (2,000 subscribers) and join storm (5,000)
#   FLOOD_SUBS=1000 JOIN_STORM_N=2000 bench/fairness.sh
#
# 1. Flood: FLOOD_SUBS subscribers of one topic (half never read), one
#    publisher sending 24 messages of 63 KiB, a canary measuring round
#    trips meanwhile; with the hub's turn budgets and, as the control,
#    without them. Prints RESULT lines (canary p50/p99/max, time until
#    every reading subscriber had the flood).
# 2. Join storm: JOIN_STORM_N clients joining one topic at once from 8
#    threads against the `wsmio` binary: time until all are subscribed,
#    the host's ListenOverflows (SYNs dropped), the server's RSS growth per
#    member.
#
# Clients and hub share the machine (2 cores here): run it quiet, and
# compare the two flood lines of the same run. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLOOD_SUBS="${FLOOD_SUBS:-2000}" JOIN_STORM_N="${JOIN_STORM_N:-5000}"
ulimit -n "$(ulimit -Hn)" || true
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test --release --features full --test hub_fairness -- \
  --ignored --nocapture --exact bench_flood_with_and_without_slices 2>&1 | grep -E '^RESULT|panicked'
cargo test --release --features full --test bin_serve -- \
  --nocapture --exact a_join_storm_costs_bounded_memory_per_member 2>&1 | grep -E 'join storm|panicked'
