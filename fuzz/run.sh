#!/usr/bin/env bash
# Fuzz smoke run, as CI runs it: build every cargo-fuzz target once, then run
# each for FUZZ_SECONDS (default 30) starting from a temporary COPY of its
# committed seed corpus (fuzz/corpus/<target>/), so new inputs found during
# the run never land in git. Any crash, panic, leak or timeout fails the
# script, and the path of the input that triggered it is printed.
#
#   FUZZ_SECONDS=10 bash fuzz/run.sh            # all targets
#   FUZZ_SECONDS=60 bash fuzz/run.sh connection # some targets
#
# Reproduce a failure with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact path>   (in fuzz/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
# cargo-fuzz needs nightly-only flags (sanitizers); the stable toolchain
# accepts them with this.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz/run.sh: ERROR: 'cargo install cargo-fuzz --locked' failed" >&2
        exit 1
    fi
fi
cargo fuzz --version

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz/run.sh: ERROR: no fuzz targets found" >&2
    exit 1
fi

if [ "$#" -gt 0 ]; then
    for t in "${targets[@]}"; do
        echo "fuzz/run.sh: building $t"
        cargo fuzz build "$t"
    done
else
    echo "fuzz/run.sh: building all targets: ${targets[*]}"
    cargo fuzz build
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/wsmio-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    if [ ! -d "corpus/$t" ]; then
        echo "fuzz/run.sh: ERROR: no committed corpus at fuzz/corpus/$t" >&2
        exit 1
    fi
    mkdir -p "$work/$t" "artifacts/$t"
    cp -R "corpus/$t/." "$work/$t/"
    stamp="$work/$t.stamp"
    touch "$stamp"
    echo "fuzz/run.sh: running $t for ${FUZZ_SECONDS}s ($(ls "$work/$t" | wc -l) seeds)"
    if cargo fuzz run "$t" "$work/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=20 -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)' "$work/$t.log" | sed "s/^/fuzz\/run.sh: $t: /" || true
    else
        failed+=("$t")
        echo "fuzz/run.sh: FAILED: $t; last lines of its log:" >&2
        tail -n 60 "$work/$t.log" >&2
        found=0
        while IFS= read -r a; do
            echo "fuzz/run.sh: $t: crashing input saved at $(pwd)/$a" >&2
            found=1
        done < <(find "artifacts/$t" -type f -newer "$stamp" 2>/dev/null)
        if [ "$found" -eq 0 ]; then
            echo "fuzz/run.sh: $t: no artifact was written (see the log above)" >&2
        fi
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz/run.sh: FAILED targets: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz/run.sh: all ${#targets[@]} targets ran ${FUZZ_SECONDS}s each without a crash"
