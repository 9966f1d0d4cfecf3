#!/usr/bin/env bash
# `make bench`, Docker: `docker run --rm` of hello.wasm through wasmpod beside busybox `echo
# hello` through runc, on one private dockerd (and the containerd it manages), interleaved,
# medians of RUNS after two warm-up runs each, and the ratio against the goal of 0.6x runc.
# For each dockerd given (default: Docker 26 with containerd 1.7 and Docker 28 with containerd
# 2.1, from `make trixie forky`); each daemon lives in a temp dir and is stopped by PID.
#
# Usage: scripts/bench-docker.sh [DOCKERD...]      Environment: RUNS (default 15).
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"
source "$(dirname "$0")/lib/timing.sh"

RUNS=${RUNS:-15}
dockerds=("$@")
((${#dockerds[@]})) || dockerds=("$WASMPOD_ROOT/.work/trixie/bin/dockerd" "$WASMPOD_ROOT/.work/forky/bin/dockerd")


DK_DIR= DK_PID=
dockerd_stop() {
  [[ -n $DK_PID ]] || return 0
  kill "$DK_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$DK_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$DK_PID" 2>/dev/null || true
  # Its managed containerd and shims, if dockerd left any.
  pkill -9 -f -- "$DK_DIR" 2>/dev/null || true
  local m
  { grep -o " $DK_DIR[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$DK_DIR"
  # dockerd's cgroup parent, empty by now.
  rmdir /sys/fs/cgroup/*/wasmpod-dk-bench /sys/fs/cgroup/wasmpod-dk-bench 2>/dev/null || true
  DK_PID=
}
trap dockerd_stop EXIT

# The client: the machine's, else trixie's (Docker 26's CLI speaks to Docker 28 too).
DOCKER_CLI=$(command -v docker || echo "$WASMPOD_ROOT/.work/trixie/bin/docker")
dk() { "$DOCKER_CLI" -H "unix://$DK_DIR/docker.sock" "$@"; }

for dockerd in "${dockerds[@]}"; do
  [[ -x $dockerd ]] || make -C "$WASMPOD_ROOT" --no-print-directory trixie forky
  dockerd=$(readlink -f "$dockerd")
  bin=$(dirname "$dockerd")
  DK_DIR=$(mktemp -d /tmp/wasmpod-dk-bench.XXXXXX)
  cat >"$DK_DIR/daemon.json" <<EOF
{"data-root": "$DK_DIR/data", "exec-root": "$DK_DIR/exec", "pidfile": "$DK_DIR/docker.pid",
 "hosts": ["unix://$DK_DIR/docker.sock"], "iptables": false, "ip6tables": false,
 "bridge": "none", "userland-proxy": false, "cgroup-parent": "wasmpod-dk-bench",
 "features": {"containerd-snapshotter": true},
 "runtimes": {"wasmpod": {"runtimeType": "io.containerd.wasmpod.v1"}}}
EOF
  PATH=$WASMPOD_BIN:$bin:/usr/sbin:/usr/bin:/sbin:/bin setsid "$dockerd" --config-file "$DK_DIR/daemon.json" \
    >"$DK_DIR/dockerd.log" 2>&1 &
  DK_PID=$!
  for _ in $(seq 120); do dk version >/dev/null 2>&1 && break; sleep 0.5; done
  dk version >/dev/null || { tail -20 "$DK_DIR/dockerd.log"; exit 1; }
  echo "== docker run --rm hello: Docker $(dk version -f '{{.Server.Version}}'), $RUNS runs each, interleaved"

  busybox_rootfs "$DK_DIR/busybox"
  "$WASMPOD_BIN/wasmpod" image build "$WASMPOD_ROOT/test-images/out/hello.wasm" -t hello:bench -o "$DK_DIR/hello.tar" >/dev/null
  "$WASMPOD_BIN/wasmpod" image build --dir "$DK_DIR/busybox:/" --entrypoint /bin/sh --platform linux/amd64 \
    -t busybox:bench -o "$DK_DIR/busybox.tar" >/dev/null
  hello=$(dk load -i "$DK_DIR/hello.tar" | sed -n 's/^Loaded image: //p')
  busybox=$(dk load -i "$DK_DIR/busybox.tar" | sed -n 's/^Loaded image: //p')

  wasm_run() { dk run --rm --network none --runtime io.containerd.wasmpod.v1 --platform wasip1/wasm "$hello" >/dev/null; }
  runc_run() { dk run --rm --network none --entrypoint /bin/echo "$busybox" hello >/dev/null; }
  # The floor: the null shim (integration/src/bin/null_shim.rs, on dockerd's PATH by its
  # runtime type), which runs nothing: what Docker and containerd cost with any runtime.
  floor_run() { dk run --rm --network none --runtime io.containerd.null.v1 --platform wasip1/wasm "$hello" >/dev/null; }
  for _ in 1 2; do wasm_run; runc_run; floor_run; done
  for k in wasm runc floor; do : >"$DK_DIR/$k.ms"; done
  for _ in $(seq "$RUNS"); do
    for k in wasm runc floor; do timed "${k}_run" >>"$DK_DIR/$k.ms"; done
  done
  w=$(median <"$DK_DIR/wasm.ms")
  r=$(median <"$DK_DIR/runc.ms")
  f=$(median <"$DK_DIR/floor.ms")
  awk -v w="$w" -v r="$r" -v f="$f" 'BEGIN{
    printf "   wasmpod hello.wasm   median %7.1f ms   %.2fx runc\n", w, w / r
    printf "   runc busybox echo    median %7.1f ms\n", r
    printf "   floor (null shim)    median %7.1f ms   %.2fx runc\n", f, f / r
    printf "   goal: wasmpod at most 0.6x runc: %.2fx, %s\n", w / r, (w / r <= 0.6 ? "met" : "NOT met") }'
  dockerd_stop
done
