#!/usr/bin/env bash
# `make demo`: start a private containerd, import the hello image built by `wasmpod image
# build`, run it through wasmpod with `ctr run`, print its output, stop the daemon.
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"

containerd_start /usr/bin/containerd
echo "== private containerd $(ctd version | awk '/Version/{print $2; exit}') at $CTD_SOCK"
image_import hello:demo "$WASMPOD_ROOT/test-images/out/hello.wasm"
echo "== ctr run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/hello:demo"
ctd run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/hello:demo demo-hello
echo "== and a component (WASI preview 2)"
image_import component:demo "$WASMPOD_ROOT/test-images/out/hello-component.wasm"
ctd run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/component:demo demo-component
echo "== done; stopping the private containerd"
