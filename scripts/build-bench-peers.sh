#!/usr/bin/env bash
# Build the peers of the HTTP benchmark, once each:
#   bench/hyper-hello  native hyper server (release): the floor
#   wasmtime serve     wasmtime-cli of wasmpod's wasmtime version (scripts/build-wasmtime-cli.sh)
# Prints the binaries' paths at the end. The wasmtime-cli build is long on 2 cores; run niced:
#   nice -n 10 scripts/build-bench-peers.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

echo "build-bench-peers: bench/hyper-hello (cargo build --release --locked)"
(cd "$ROOT/bench/hyper-hello" && cargo build --release --locked)
HYPER=$ROOT/bench/hyper-hello/target/release/hyper-hello

"$ROOT/scripts/build-wasmtime-cli.sh"
WASMTIME=${WASMTIME_CLI_ROOT:-$ROOT/.work/wasmtime-cli}/bin/wasmtime

echo "build-bench-peers: done"
echo "  hyper-hello: $HYPER"
echo "  wasmtime:    $WASMTIME ($("$WASMTIME" --version))"
