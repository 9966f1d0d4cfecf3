#!/usr/bin/env bash
# The wasmpod CI recipe: build a wasm program, package it as an OCI image, push it, and
# smoke-run it with Docker through wasmpod. Plain shell steps any CI can run.
#
# Environment:
#   REGISTRY        registry host[:port] to push to (required), e.g. ghcr.io/me or 127.0.0.1:5000
#   IMAGE           repository:tag (default hello-wasm:ci)
#   MANIFEST        Cargo.toml of the program (default: this repo's test-images/rust/Cargo.toml)
#   PACKAGE         cargo package to build (default hello)
#   EXPECT          a line the program must print (default "hello from wasmpod")
#   INSECURE=1      push over plain HTTP (a registry on loopback)
#   WASMPOD, DOCKER the CLIs (default: wasmpod and docker on PATH); DOCKER_HOST as docker reads it
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
: "${REGISTRY:?set REGISTRY to the registry to push to}"
IMAGE=${IMAGE:-hello-wasm:ci}
MANIFEST=${MANIFEST:-$here/test-images/rust/Cargo.toml}
PACKAGE=${PACKAGE:-hello}
EXPECT=${EXPECT:-hello from wasmpod}
WASMPOD=${WASMPOD:-wasmpod}
DOCKER=${DOCKER:-docker}
ref=$REGISTRY/$IMAGE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
insecure=()
[[ ${INSECURE:-} == 1 ]] && insecure=(--insecure)

echo "== 1. build $PACKAGE for wasm32-wasip1"
CARGO_TARGET_DIR=$work/target cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path "$MANIFEST" -p "$PACKAGE"
wasm=$work/target/wasm32-wasip1/release/$PACKAGE.wasm

echo "== 2. package it: wasmpod image build"
"$WASMPOD" image build "$wasm" -t "$ref" -o "$work/image.tar"
"$WASMPOD" image inspect "$work/image.tar"

echo "== 3. push $ref"
"$WASMPOD" image push "$ref" --from "$work/image.tar" "${insecure[@]}"

echo "== 4. smoke run: docker run --runtime io.containerd.wasmpod.v1"
"$DOCKER" pull --platform wasip1/wasm "$ref"
out=$("$DOCKER" run --rm --runtime io.containerd.wasmpod.v1 --platform wasip1/wasm "$ref")
echo "$out"
if ! grep -qxF "$EXPECT" <<<"$out"; then
  echo "smoke run: expected a line '$EXPECT'" >&2
  exit 1
fi
echo "== ok: $ref runs through wasmpod"
