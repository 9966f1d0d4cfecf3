#!/usr/bin/env bash
# Build wasmtime-cli (the same wasmtime version as wasmpod's engine) from the crate registry,
# once, into .work/wasmtime-cli/ (bin/wasmtime). It is the peer of `make bench`'s HTTP part:
# `wasmtime serve` runs the same wasi:http/proxy component that wasmpod serves.
# Skips the build when .work/wasmtime-cli/bin/wasmtime already reports that version.
# Takes a long while on 2 cores (~25-40 min); run it niced: `nice -n 10 scripts/build-wasmtime-cli.sh`.
# Environment: WASMTIME_CLI_VERSION (default 48.0.8), WASMTIME_CLI_ROOT (default .work/wasmtime-cli),
# WASMTIME_CLI_FEATURES: "default" (the default feature set, `serve` included) or a
# comma-separated list to build with --no-default-features --features LIST instead.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${WASMTIME_CLI_VERSION:-48.0.8}
DEST=${WASMTIME_CLI_ROOT:-$ROOT/.work/wasmtime-cli}
FEATURES=${WASMTIME_CLI_FEATURES:-default}
BIN=$DEST/bin/wasmtime

# `wasmtime --version` prints "wasmtime 48.0.8" (a build from the registry has no commit after it).
installed_version() { [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | awk '$1 == "wasmtime" {print $2; exit}'; }
if [[ $(installed_version) == "$VERSION" ]]; then
  echo "build-wasmtime-cli: $BIN is already $VERSION"
  exit 0
fi

feature_args=()
if [[ $FEATURES != default ]]; then
  feature_args=(--no-default-features --features "$FEATURES")
fi

mkdir -p "$DEST"
echo "build-wasmtime-cli: cargo install wasmtime-cli $VERSION (features: $FEATURES) into $DEST"
# Its own target dir under .work, so an interrupted build resumes where it stopped.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/.work/wasmtime-cli-target} \
  cargo install wasmtime-cli --version "$VERSION" --locked --root "$DEST" "${feature_args[@]}"
"$BIN" --version
