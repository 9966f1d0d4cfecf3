#!/usr/bin/env bash
# `make bench`: wasmpod against runc in the same run, on a private containerd.
#   1. `ctr run --rm` hello: wasmpod (hello.wasm; a shim each, and in an opt-in group) vs runc
#      (busybox echo), runwasi (hello.wasm) and the floor (a shim that runs nothing),
#      interleaved, medians, ratios.
#   2. first start (compiles) vs cached start of a wasm module never seen before.
#   3. churn: create/start/wait/delete of N tasks, 8 at a time, tasks/s for each runtime.
#   4. PSS of idle long-running containers, every process counted (their shims included):
#      wasmpod (a shim each, and all in one opt-in group), runc and runwasi, IDLE of each.
#   5. the engine alone: start of a cached program (shim/benches/instantiate.rs).
#   6. MANY idle wasm containers at once, a shim each and in groups of 100: start time, PSS,
#      every one answers State and stops on SIGTERM with 143.
#   7. HTTP serving, wasmpod vs wasmtime serve vs native hyper: scripts/bench-http.sh (after
#      this containerd stops; its environment: HTTP_SECONDS, HTTP_WARMUP, HTTP_START_RUNS...).
# Environment: RUNS (default 15), CHURN (default 100), IDLE (default 20), ENGINE_RUNS (default
# 2000), MANY (default 1000), CONTAINERD binary.
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"
source "$(dirname "$0")/lib/timing.sh"
source "$(dirname "$0")/lib/runwasi.sh"
source "$(dirname "$0")/lib/many.sh"

RUNS=${RUNS:-15}
CHURN=${CHURN:-100}
IDLE=${IDLE:-20}
MANY=${MANY:-1000}
ENGINE_RUNS=${ENGINE_RUNS:-2000}
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

# The peers, run by their binaries' paths: runwasi's wasmtime shim, and the floor, a shim that
# starts, reports its task exited and runs nothing (integration/src/bin/null_shim.rs).
RUNWASI=$(runwasi_shim) || { echo "bench: runwasi's shim is needed" >&2; exit 1; }
NULL_SHIM=$WASMPOD_ROOT/target/release/containerd-shim-null-v1
wasm_run() { ctd run --rm --runtime io.containerd.wasmpod.v1 "$WASM" "$1" >/dev/null; }
# In an opt-in group: each run finds the group's shim of the run before, lingering.
group_run() { ctd run --rm --annotation io.containerd.wasmpod.group=bench --runtime io.containerd.wasmpod.v1 "$WASM" "$1" >/dev/null; }
runc_run() { ctd run --rm --runc-root "$CTD_DIR/runc" --runtime io.containerd.runc.v2 "$NATIVE" "$1" echo hello >/dev/null; }
runwasi_run() { ctd run --rm --runtime "$RUNWASI" "$WASM" "$1" >/dev/null; }
floor_run() { ctd run --rm --runtime "$NULL_SHIM" "$WASM" "$1" >/dev/null; }

echo "== 1. ctr run --rm hello: $RUNS runs each, interleaved (2 warm-up runs each first)"
kinds=(wasm group runc runwasi floor)
for i in 1 2; do for k in "${kinds[@]}"; do "${k}_run" "warm-$k-$i"; done; done
for k in "${kinds[@]}"; do : >"$CTD_DIR/$k.ms"; done
for i in $(seq "$RUNS"); do
  for k in "${kinds[@]}"; do timed "${k}_run" "$k$i" >>"$CTD_DIR/$k.ms"; done
done
rm_=$(median <"$CTD_DIR/runc.ms")
for k in "${kinds[@]}"; do
  m=$(median <"$CTD_DIR/$k.ms")
  case $k in
    wasm) label="wasmpod hello.wasm" ;;
    group) label="wasmpod, a group" ;;
    runc) label="runc busybox echo" ;;
    runwasi) label="runwasi hello.wasm" ;;
    floor) label="floor (null shim)" ;;
  esac
  awk -v l="$label" -v m="$m" -v r="$rm_" 'BEGIN{printf "   %-20s median %7.1f ms   %.2fx runc\n", l, m, m / r}'
done
awk -v w="$(median <"$CTD_DIR/wasm.ms")" -v r="$rm_" \
  'BEGIN{printf "   goal: wasmpod at most 0.6x runc: %.2fx, %s\n", w / r, (w / r <= 0.6 ? "met" : "NOT met")}'

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

echo "== 4. idle long-running containers: $IDLE of each, PSS of all their processes"
for i in $(seq "$IDLE"); do
  ctd run -d --runtime io.containerd.wasmpod.v1 docker.io/library/sleeper:bench "idle-w$i" /app.wasm 100000 >/dev/null
  ctd run -d --annotation io.containerd.wasmpod.group=idle --runtime io.containerd.wasmpod.v1 docker.io/library/sleeper:bench "idle-g$i" /app.wasm 100000 >/dev/null
  ctd run -d --runc-root "$CTD_DIR/runc" --runtime io.containerd.runc.v2 "$NATIVE" "idle-r$i" sleep 100000 >/dev/null
  ctd run -d --runtime "$RUNWASI" docker.io/library/sleeper:bench "idle-x$i" /app.wasm 100000 >/dev/null
done
sleep 3
# per_container_pss PREFIX: MB of PSS per container and processes per container.
per_container_pss() {
  local r; r=($(pss_of_all "$1"))
  awk -v s="${r[0]}" -v n="$IDLE" -v p="${r[1]}" 'BEGIN{printf "%.2f %.1f\n", s / n / 1024, p / n}'
}
read -r w_pss w_procs < <(per_container_pss idle-w)
read -r r_pss r_procs < <(per_container_pss idle-r)
read -r g_pss g_procs < <(per_container_pss idle-g)
read -r x_pss x_procs < <(per_container_pss idle-x)
printf '   %-16s %6.2f MB PSS per container, %s processes each\n' wasmpod "$w_pss" "$w_procs" \
  "wasmpod, a group" "$g_pss" "$g_procs" runc "$r_pss" "$r_procs" runwasi "$x_pss" "$x_procs"
awk -v w="$w_pss" -v r="$r_pss" -v x="$x_pss" 'BEGIN{
  printf "   wasmpod %.2fx runc, %.2fx runwasi; goal of at most 1.5 MB each: %s\n", w / r, w / x, (w <= 1.5 ? "met" : "NOT met") }'
awk -v w="$g_pss" -v r="$r_pss" -v x="$x_pss" -v n="$IDLE" 'BEGIN{
  printf "   wasmpod, the %d in one group: %.2fx runc, %.2fx runwasi; goal of at most 1.5 MB each: %s\n", n, w / r, w / x, (w <= 1.5 ? "met" : "NOT met") }'
for k in w g r x; do ctd task ls -q | grep "^idle-$k" | xargs -r -n1 -I{} ctr -a "$CTD_SOCK" task kill -s KILL {} 2>/dev/null || true; done

echo "== 5. the engine alone: a cached program's start (WASI context, instantiation, entry call)"
out=$WASMPOD_ROOT/test-images/out
(cd "$WASMPOD_ROOT" && RUNS=$ENGINE_RUNS cargo bench -q -p wasmpod-shim --bench instantiate -- \
  "$out/hello.wasm" "$out/hello-c.wasm" "$out/hello-component.wasm" 2>/dev/null)

echo "== 6. $MANY idle wasm containers at once (scripts/lib/many.sh; make bench-many for 10,000)"
many_idle "$MANY" 0
many_idle "$MANY" 100

# 7. HTTP serving (scripts/bench-http.sh): wasmpod vs wasmtime serve vs native hyper, on a
# private containerd of its own; this one stops first so its idle containers do not share the run.
containerd_stop
rm -rf "$CACHE"
"$WASMPOD_ROOT/scripts/bench-http.sh"
