#!/usr/bin/env bash
# `make bench`: wasmpod against runc in the same run, on a private containerd.
#   1. `ctr run --rm` hello: wasmpod (hello.wasm) vs runc (busybox echo), interleaved, medians.
#   2. first start (compiles) vs cached start of a wasm module never seen before.
#   3. churn: create/start/wait/delete of N tasks, 8 at a time, tasks/s for each runtime.
#   4. PSS of an idle long-running container, every process counted (its shim included).
# Environment: RUNS (default 15), CHURN (default 100), IDLE (default 10), CONTAINERD binary.
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"

RUNS=${RUNS:-15}
CHURN=${CHURN:-100}
IDLE=${IDLE:-10}
NS=default
WASM=docker.io/library/hello:bench
NATIVE=docker.io/library/busybox:bench

CACHE=$(mktemp -d /tmp/wasmpod-bench-cache.XXXXXX)
CTD_ENV="WASMPOD_CACHE_DIR=$CACHE"
containerd_start "${CONTAINERD:-/usr/bin/containerd}"
trap 'containerd_stop; rm -rf "$CACHE"' EXIT

busybox_rootfs "$CTD_DIR/busybox"
image_import busybox:bench --dir "$CTD_DIR/busybox:/" --entrypoint /bin/sh --platform linux/amd64
image_import hello:bench "$WASMPOD_ROOT/test-images/out/hello.wasm"
image_import printer:bench "$WASMPOD_ROOT/test-images/out/printer.wasm"
image_import sleeper:bench "$WASMPOD_ROOT/test-images/out/sleeper.wasm"

now_ms() { date +%s%N | awk '{printf "%.3f", $1 / 1000000}'; }
wasm_run() { ctd run --rm --runtime io.containerd.wasmpod.v1 "$WASM" "$1" >/dev/null; }
runc_run() { ctd run --rm --runc-root "$CTD_DIR/runc" --runtime io.containerd.runc.v2 "$NATIVE" "$1" echo hello >/dev/null; }
timed() { local t0; t0=$(now_ms); "$@"; awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{printf "%.1f\n", b - a}'; }
median() { sort -n | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2 }'; }

echo "== 1. ctr run --rm hello: $RUNS runs each, interleaved (2 warm-up runs each first)"
for i in 1 2; do wasm_run "warm-w$i"; runc_run "warm-r$i"; done
: >"$CTD_DIR/wasm.ms"; : >"$CTD_DIR/runc.ms"
for i in $(seq "$RUNS"); do
  timed wasm_run "w$i" >>"$CTD_DIR/wasm.ms"
  timed runc_run "r$i" >>"$CTD_DIR/runc.ms"
done
wm=$(median <"$CTD_DIR/wasm.ms"); rm_=$(median <"$CTD_DIR/runc.ms")
printf '   wasmpod hello.wasm   median %7.1f ms\n   runc busybox echo    median %7.1f ms\n' "$wm" "$rm_"
awk -v w="$wm" -v r="$rm_" 'BEGIN{printf "   ratio wasmpod/runc  %.2f\n", w / r}'

echo "== 2. first start (compile) vs cached start, printer.wasm"
first=$(timed ctd run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/printer:bench p1 /app.wasm 2>/dev/null | tail -1)
second=$(timed ctd run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/printer:bench p2 /app.wasm 2>/dev/null | tail -1)
printf '   first start %7.1f ms   cached start %7.1f ms   (%s compiled files in the cache)\n' \
  "$first" "$second" "$(ls "$CACHE" | grep -c '\.cwasm$')"

churn() {
  local kind=$1 t0 t1
  t0=$(now_ms)
  seq "$CHURN" | xargs -P 8 -I{} bash -c "source '$WASMPOD_ROOT/scripts/lib/containerd.sh'; CTD_SOCK='$CTD_SOCK'; CTD_DIR='$CTD_DIR'; WASM='$WASM'; NATIVE='$NATIVE'; ${kind}_run churn-$kind-{}"
  t1=$(now_ms)
  awk -v n="$CHURN" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", n / ((b - a) / 1000)}'
}
export -f wasm_run runc_run ctd
echo "== 3. churn: $CHURN x (create, start, wait, delete), 8 at a time"
cw=$(churn wasm); cr=$(churn runc)
printf '   wasmpod %6s tasks/s   runc %6s tasks/s   ratio %s\n' "$cw" "$cr" \
  "$(awk -v a="$cw" -v b="$cr" 'BEGIN{printf "%.2f", a / b}')"

# PSS (kB) of a container: its shim process plus every process in its cgroup.
pss_of() {
  local id=$1 total=0 pids
  pids=$(pgrep -f -- "-id $id -address $CTD_SOCK" || true)
  pids="$pids $(cat /sys/fs/cgroup/pids/$NS/$id/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/$NS/$id/cgroup.procs 2>/dev/null)"
  pids=$(echo $pids | tr " " "\n" | sort -u)
  for p in $pids; do
    total=$((total + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0)))
  done
  echo "$total $(echo $pids | wc -w)"
}
echo "== 4. idle long-running containers: $IDLE of each, PSS of all their processes"
for i in $(seq "$IDLE"); do
  ctd run -d --runtime io.containerd.wasmpod.v1 docker.io/library/sleeper:bench "idle-w$i" /app.wasm 100000 >/dev/null
  ctd run -d --runc-root "$CTD_DIR/runc" --runtime io.containerd.runc.v2 "$NATIVE" "idle-r$i" sleep 100000 >/dev/null
done
sleep 3
report_pss() {
  local prefix=$1 label=$2 sum=0 procs=0 r
  for i in $(seq "$IDLE"); do
    r=($(pss_of "$prefix$i")); sum=$((sum + r[0])); procs=$((procs + r[1]))
  done
  awk -v s="$sum" -v n="$IDLE" -v p="$procs" -v l="$label" \
    'BEGIN{printf "   %-8s %6.2f MB PSS per container, %.1f processes each\n", l, s / n / 1024, p / n}'
}
report_pss idle-w wasmpod
report_pss idle-r runc
