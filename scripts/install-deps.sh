#!/usr/bin/env bash
# Install what wasmpod's build and tests need on a Debian bookworm machine (run as root).
# Idempotent: installs only what is missing and prints nothing when everything is present.
set -euo pipefail

packages=(
  containerd runc busybox-static
  clang lld wasi-libc libclang-rt-14-dev-wasm32
  libseccomp-dev pkg-config protobuf-compiler
  wabt skopeo umoci docker-registry containernetworking-plugins iproute2
  bsdutils  # script(1): gives ctr and docker a terminal in the -t tests
  gcc libc6-dev iptables xz-utils curl python3 procps  # critest's fixtures, registry and report (make critest)
)
targets=(wasm32-wasip1 wasm32-wasip2)

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing install-deps "${packages[@]}"

if ! command -v rustup >/dev/null 2>&1; then
  echo "install-deps: rustup not found; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "install-deps: adding rust target $t"
    rustup target add "$t" >/dev/null
  fi
done
