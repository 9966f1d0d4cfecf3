#!/usr/bin/env bash
# The cargo-fuzz targets of fuzz/ (libFuzzer, nightly): builds them, then runs each on its
# committed corpus (fuzz/corpus/<target>) and the inputs of fixed crashes
# (fuzz/regressions/<target>) for FUZZ_SECONDS; exits non-zero on any crash,
# leak, timeout or out-of-memory, whose input libFuzzer leaves in fuzz/artifacts/<target>/.
# `make fuzz-smoke` (part of `make test`): 20 s per target. `make fuzz`: the long runs.
# Installs the nightly toolchain (minimal profile) and cargo-fuzz when missing.
#
# Environment: FUZZ_SECONDS (per target, default 20), FUZZ_RUNS (stop after this many
# executions too, default unlimited), FUZZ_TARGETS (default: every target), FUZZ_GROW=1
# (new inputs go into fuzz/corpus/<target>, to be minimised with `cargo fuzz cmin` before
# committing; by default they go into a temporary directory and the corpus is untouched),
# FUZZ_SANITIZER (none or address, default none: the fuzzed code is safe Rust, and without
# ASan each target runs several times as many inputs), FUZZ_TIMEOUT (s, one input, default 25).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz=$repo/fuzz
seconds=${FUZZ_SECONDS:-20}
runs=${FUZZ_RUNS:-}
sanitizer=${FUZZ_SANITIZER:-none}
timeout_s=${FUZZ_TIMEOUT:-25}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain (cargo-fuzz needs -Zsanitizer and sancov flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$fuzz"
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
start=$(date +%s)
echo "== building the fuzz targets (sanitizer: $sanitizer)"
build() {
    if ! cargo +nightly fuzz build -s "$sanitizer" "$@" >"$scratch/build.log" 2>&1; then
        tail -40 "$scratch/build.log"
        exit 1
    fi
}
# All targets in one cargo run when all are wanted: their links then share the cores.
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    for target in $targets; do build "$target"; done
else
    build
fi
built=$(date +%s)

failed=()
for target in $targets; do
    corpus=$fuzz/corpus/$target
    mkdir -p "$corpus" "$fuzz/artifacts/$target"
    if [[ ${FUZZ_GROW:-0} == 1 ]]; then
        dirs=("$corpus")
    else
        mkdir -p "$scratch/$target"
        dirs=("$scratch/$target" "$corpus")
    fi
    # Inputs of crashes already fixed: run first, never written to.
    [[ -d $fuzz/regressions/$target ]] && dirs+=("$fuzz/regressions/$target")
    args=(-max_total_time="$seconds" -timeout="$timeout_s" -print_final_stats=1)
    [[ -n $runs ]] && args+=(-runs="$runs")
    log=$scratch/$target.log
    t0=$(date +%s)
    if cargo +nightly fuzz run -s "$sanitizer" "$target" "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-16s %-6s %8s execs  cov %6s  %4ss  corpus %s files\n' "$target" "$status" \
        "${execs:-?}" "${cov:-?}" "$(($(date +%s) - t0))" "$(find "$corpus" -type f | wc -l)"
    if [[ $status != ok ]]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact_prefix' "$log" | head -20
        tail -30 "$log"
    fi
done
echo "== fuzz: build $((built - start))s, total $(($(date +%s) - start))s"
if ((${#failed[@]})); then
    echo "== fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with" \
        "cargo +nightly fuzz run -s $sanitizer <target> <input>)"
    exit 1
fi
