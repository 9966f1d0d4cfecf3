#!/usr/bin/env bash
# `make bench`, HTTP part: wasmpod serving a wasi:http/incoming-handler component
# (test-images/out/http-handler.wasm, GET / -> "hello from wasm") against its peers, measured in
# the same run, on a private containerd:
#   wasmpod            ctr run -d --net-host ... --env WASMPOD_HTTP_LISTEN=127.0.0.1:PORT
#   wasmpod, metering  the same with WASMPOD_HTTP_METERING=1 (and --null-io, see below)
#   wasmtime serve     wasmtime-cli of wasmpod's wasmtime version, -S cli, the same .wasm
#   hyper-hello        native hyper server (bench/hyper-hello): the floor
#   1. first 200: from `ctr run -d` and from the task's Start (the /tasks/start event, stamped by
#      the shim when Start returns) to the first 200 answer, median of HTTP_START_RUNS cached
#      starts (a first, discarded start compiles); wasmtime serve's spawn-to-200 beside it.
#   2. throughput and latency: wrk -t2 -cN -dHTTP_SECONDS --latency at N = 10 and 64, each peer
#      right after the other (reversed order at 64), after an HTTP_WARMUP s warm-up each; req/s,
#      p50, p99, errors, and the server's CPU (its processes' utime + stime over the run).
#   3. PSS (and private memory) of one idle HTTP container, every process counted (shim and
#      init), peers beside it.
# The metered container runs with --null-io: with plain `ctr run -d` its stdout is a fifo that
# nobody reads once ctr has detached, and the metering lines fill it (64 KiB, ~500 requests)
# and then block the server (the shim does not take --log-uri file:// URIs).
# wasmtime serve starts afresh for every measurement (and is checked for spinning after it).
# A wasmpod container that dies or stops answering is reported (its row says so; a note gives
# its exit status from the /tasks/exit event) and replaced by a new one for the next
# measurement; the end counts the kernel log's segfaults of wasmpod processes during the run.
# Environment: HTTP_SECONDS (default 10), HTTP_WARMUP (default 2), HTTP_START_RUNS (default 10),
# HTTP_PORT (first of the loopback ports used, default 18400), CONTAINERD binary.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib/containerd.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib/apt.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib/timing.sh"

HTTP_SECONDS=${HTTP_SECONDS:-10}
HTTP_WARMUP=${HTTP_WARMUP:-2}
HTTP_START_RUNS=${HTTP_START_RUNS:-10}
HTTP_PORT=${HTTP_PORT:-18400}
NS=default
IMAGE=docker.io/library/http-handler:bench
WASM_FILE=$WASMPOD_ROOT/test-images/out/http-handler.wasm
HYPER=$WASMPOD_ROOT/bench/hyper-hello/target/release/hyper-hello
WASMTIME=${WASMTIME_CLI_ROOT:-$WASMPOD_ROOT/.work/wasmtime-cli}/bin/wasmtime
TICK=$(getconf CLK_TCK)
# No peer captures backtraces: with RUST_BACKTRACE set, wasmtime serve spends ~8% of its CPU in
# Backtrace::capture for an error made per request.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

echo "== HTTP: peers and load tool"
apt_install_missing bench-http wrk
nice -n 10 "$WASMPOD_ROOT/scripts/build-bench-peers.sh" 2>&1 | sed 's/^/   /'
[[ -f $WASM_FILE ]] || { echo "bench-http: $WASM_FILE missing: make test-images" >&2; exit 1; }

CACHE=$(mktemp -d /tmp/wasmpod-bench-cache.XXXXXX)
# shellcheck disable=SC2034 # read by containerd_start
CTD_ENV="WASMPOD_CACHE_DIR=$CACHE"
containerd_start "${CONTAINERD:-/usr/bin/containerd}"
WT_PID='' HY_PID='' EV_PID=''
cleanup() {
  local p
  for p in $WT_PID $HY_PID $EV_PID; do { kill "$p" && wait "$p"; } 2>/dev/null || true; done
  containerd_stop
  rm -rf "$CACHE"
}
trap 'cleanup' EXIT
image_import http-handler:bench "$WASM_FILE"
# Segfaults of wasmpod processes in the kernel log since this run began (any on this machine).
BOOT_S=$(cut -d' ' -f1 /proc/uptime)
shim_segfaults() {
  dmesg 2>/dev/null | awk -v t="$BOOT_S" -F'[][]' '/segfault.* in containerd-shim-wasmpod/ && $2 + 0 > t' | wc -l
}
ctr -a "$CTD_SOCK" events >"$CTD_DIR/events" &
EV_PID=$!
# wasmtime's compile cache, private to this run (its default is ~/.cache/wasmtime).
printf '[cache]\ndirectory = "%s"\n' "$CTD_DIR/wasmtime-cache" >"$CTD_DIR/wasmtime-cache.toml"
# A pipe nobody writes: `read -t` on it naps without a fork.
mkfifo "$CTD_DIR/nap"
exec {NAP}<>"$CTD_DIR/nap"

ms_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f\n", (b - a) * 1000}'; }

# probe PORT: one `GET /` on a new connection; true if it answers 200.
probe() {
  local fd line=
  { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  { printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&"$fd"; } 2>/dev/null || true
  IFS= read -r -t 2 line <&"$fd" || true
  exec {fd}>&-
  [[ $line == HTTP/1.?" 200"* ]]
}
# wait_200 PORT [SECONDS]: probes every ~0.2 ms until a 200 (false after SECONDS, default 10).
wait_200() {
  local deadline=$((SECONDS + ${2:-10}))
  until probe "$1"; do
    if ((SECONDS >= deadline)); then
      echo "bench-http: 127.0.0.1:$1 gave no 200 within ${2:-10} s" >&2
      return 1
    fi
    read -r -t 0.0002 -u "$NAP" || true
  done
}
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "bench-http: 127.0.0.1:$1 is in use; set HTTP_PORT to a free range" >&2
    return 1
  fi
}
body_is() { # PORT TEXT: the body of GET / is TEXT (a line)
  local got; got=$(curl -sf --max-time 5 "http://127.0.0.1:$1/")
  [[ $got == "$2" ]] || { echo "bench-http: 127.0.0.1:$1 answered '$got', not '$2'" >&2; return 1; }
}

# Containers. wasmpod_run ID PORT [ctr run options...]
wasmpod_run() {
  local id=$1 port=$2
  shift 2
  if ! ctd run -d --net-host --runtime io.containerd.wasmpod.v1 "$@" \
    --env "WASMPOD_HTTP_LISTEN=127.0.0.1:$port" "$IMAGE" "$id" >"$CTD_DIR/run-$id.log" 2>&1; then
    echo "bench-http: ctr run $id failed:" >&2
    cat "$CTD_DIR/run-$id.log" >&2
    return 1
  fi
}
task_status() { ctd task ls | awk -v id="$1" '$1 == id {print $3}'; }
# How task ID ended, from its /tasks/exit event: "exit status N" (and the signal's name).
exit_note() {
  local st
  st=$(grep -F "/tasks/exit {\"container_id\":\"$1\"" "$CTD_DIR/events" | grep -o '"exit_status":[0-9]*' | cut -d: -f2 | head -1)
  [[ -n $st ]] || { echo "no exit event"; return; }
  if ((st > 128)); then echo "exit status $st (SIG$(kill -l $((st - 128))))"; else echo "exit status $st"; fi
}
shim_pid() { pgrep -f -- "-id $1 -address $CTD_SOCK" | head -1; }
# The container's processes: its shim and its cgroup's processes (the init process).
container_pids() {
  (shim_pid "$1"; cat "/sys/fs/cgroup/pids/$NS/$1/cgroup.procs" "/sys/fs/cgroup/$NS/$1/cgroup.procs" 2>/dev/null) | sort -u
}
# SIGTERM (the server drains and exits 0), then delete; SIGKILL if it has not stopped in 5 s.
wasmpod_stop() {
  local id=$1
  ctd task kill "$id" >/dev/null 2>&1 || true
  for _ in $(seq 100); do
    [[ $(task_status "$id") == RUNNING ]] || break
    read -r -t 0.05 -u "$NAP" || true
  done
  ctd task rm -f "$id" >/dev/null 2>&1 || true
  ctd containers rm "$id" >/dev/null
}
# Peers, one process each. wasmtime_up PORT; hyper_up PORT. Each in a session of its own: with
# autogroup scheduling (kernel.sched_autogroup_enabled) a process shares its session's CPU share,
# and a peer in this script's session would share wrk's, while a container (its own cgroup) and
# its shim (a session of its own) do not.
wasmtime_up() {
  port_free "$1"
  setsid "$WASMTIME" serve -S cli -C cache-config="$CTD_DIR/wasmtime-cache.toml" --addr "127.0.0.1:$1" \
    "$WASM_FILE" >>"$CTD_DIR/wasmtime.log" 2>&1 &
  WT_PID=$!
}
wasmtime_down() { [[ -z $WT_PID ]] || { kill "$WT_PID"; wait "$WT_PID" 2>/dev/null || true; WT_PID=; }; }
hyper_up() {
  port_free "$1"
  setsid "$HYPER" "127.0.0.1:$1" >>"$CTD_DIR/hyper.log" 2>&1 &
  HY_PID=$!
}

# CPU ticks (utime + stime, all threads) of the PIDs given.
cpu_ticks() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# pss_kb PID: "PSS private" in kB (private: Private_Clean + Private_Dirty, which sharing with
# other processes of the same binary does not lower).
pss_kb() {
  awk '/^Pss:/{p = $2} /^Private_(Clean|Dirty):/{u += $2} END{print p + 0, u + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0 0
}

echo "== HTTP 1. first 200 after start, cached compile: median of $HTTP_START_RUNS runs (one warm-up run first)"
# The Start timestamp (s since the epoch) of task ID: its /tasks/start event's.
start_stamp() {
  local line
  for _ in $(seq 100); do
    line=$(grep -F "/tasks/start {\"container_id\":\"$1\"" "$CTD_DIR/events" || true)
    [[ -n $line ]] && break
    read -r -t 0.01 -u "$NAP" || true
  done
  [[ -n $line ]] || { echo "bench-http: no /tasks/start event for $1" >&2; return 1; }
  date -d "$(awk '{print $1, $2, $3}' <<<"$line")" +%s.%N
}
: >"$CTD_DIR/run.ms"; : >"$CTD_DIR/start.ms"; : >"$CTD_DIR/ctr.ms"; : >"$CTD_DIR/wt.ms"
for i in $(seq 0 "$HTTP_START_RUNS"); do
  id=http-start$i port=$((HTTP_PORT + 10))
  port_free "$port"
  t0=$EPOCHREALTIME
  wasmpod_run "$id" "$port" &
  ctr_pid=$!
  wait_200 "$port" 30 || { echo "bench-http: $id: $(exit_note "$id")" >&2; exit 1; }
  t1=$EPOCHREALTIME
  wait "$ctr_pid"
  ts=$(start_stamp "$id")
  wasmpod_stop "$id"
  wport=$((HTTP_PORT + 11))
  w0=$EPOCHREALTIME
  wasmtime_up "$wport"
  wait_200 "$wport" 30
  w1=$EPOCHREALTIME
  wasmtime_down
  ((i > 0)) || continue # the warm-up run: it compiled
  ms_between "$t0" "$t1" >>"$CTD_DIR/run.ms"
  ms_between "$ts" "$t1" >>"$CTD_DIR/start.ms"
  ms_between "$t0" "$ts" >>"$CTD_DIR/ctr.ms"
  ms_between "$w0" "$w1" >>"$CTD_DIR/wt.ms"
done
printf '   wasmpod  ctr run -d -> first 200   median %6.1f ms  (min %.1f, max %.1f)\n' \
  "$(median <"$CTD_DIR/run.ms")" "$(sort -n "$CTD_DIR/run.ms" | head -1)" "$(sort -n "$CTD_DIR/run.ms" | tail -1)"
printf '            of which ctr run -d -> Start   %6.1f ms\n' "$(median <"$CTD_DIR/ctr.ms")"
printf '   wasmpod  Start -> first 200        median %6.1f ms  (min %.1f, max %.1f; target <= 10 ms)\n' \
  "$(median <"$CTD_DIR/start.ms")" "$(sort -n "$CTD_DIR/start.ms" | head -1)" "$(sort -n "$CTD_DIR/start.ms" | tail -1)"
printf '   wasmtime serve spawn -> first 200  median %6.1f ms  (cached compile)\n' "$(median <"$CTD_DIR/wt.ms")"
echo "   (Start = the /tasks/start event, stamped by the shim as Start returns; first 200 = a fresh"
echo "    connection's GET / answered 200, probed every ~0.2 ms from bash /dev/tcp)"

echo "== HTTP 2. GET / at concurrency 10 and 64: wrk -t2 -cN -d${HTTP_SECONDS}s --latency, after a ${HTTP_WARMUP}s warm-up each"
P_W=$((HTTP_PORT + 0)) P_M=$((HTTP_PORT + 1)) P_T=$((HTTP_PORT + 2)) P_H=$((HTTP_PORT + 3))
W_ID='' M_ID='' UPS=0
# server_state ID PORT: "serving" (RUNNING and a GET / answers 200 within 2 s), "hangs" (RUNNING,
# no answer) or "died: exit status N (SIGNAME)".
server_state() {
  if [[ $(task_status "$1") != RUNNING ]]; then
    echo "died: $(exit_note "$1")"
  elif probe "$2"; then
    echo serving
  else
    echo "hangs (RUNNING, no answer to GET / within 2 s)"
  fi
}
# wasmpod_up wasmpod|metered: (re)starts that container unless it is running; W_ID, M_ID.
wasmpod_up() {
  local kind=$1 id port opts=() try
  case $kind in
    wasmpod) id=$W_ID port=$P_W ;;
    metered) id=$M_ID port=$P_M opts=(--null-io --env WASMPOD_HTTP_METERING=1) ;;
  esac
  if [[ -n $id ]]; then
    [[ $(server_state "$id" "$port") != serving ]] || return 0
    echo "   note: $id $(server_state "$id" "$port"): a new container replaces it"
    wasmpod_stop "$id"
  fi
  for try in 1 2 3; do
    UPS=$((UPS + 1))
    id=http-$kind$UPS
    port_free "$port"
    wasmpod_run "$id" "$port" "${opts[@]}"
    if wait_200 "$port" 30 && body_is "$port" "hello from wasm"; then break; fi
    echo "   note: $id did not serve: $(server_state "$id" "$port")"
    wasmpod_stop "$id"
    ((try < 3)) || exit 1
  done
  if [[ $kind == wasmpod ]]; then W_ID=$id; else M_ID=$id; fi
}
wasmpod_up wasmpod
wasmpod_up metered
hyper_up "$P_H"
wait_200 "$P_H" 30
body_is "$P_H" "hello from native"

# measure NAME PORT CONC PIDS...: warm-up, then the measured wrk run; appends a result line
# "NAME CONC req/s p50_ms p99_ms errors cores cpu_us_per_req" to $CTD_DIR/results.
measure() {
  local name=$1 port=$2 c=$3 out c0 c1 t0 t1
  shift 3
  # (wrk fails when it cannot connect: a server that died is reported by the caller.)
  wrk -t2 -c"$c" -d"${HTTP_WARMUP}s" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  c0=$(cpu_ticks "$@"); t0=$EPOCHREALTIME
  out=$(wrk -t2 -c"$c" -d"${HTTP_SECONDS}s" --latency "http://127.0.0.1:$port/" 2>&1) || true
  c1=$(cpu_ticks "$@"); t1=$EPOCHREALTIME
  echo "$out" >>"$CTD_DIR/wrk.log"
  awk -v name="$name" -v c="$c" -v ticks=$((c1 - c0)) -v hz="$TICK" -v secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
      if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
    }
    $1 == "50%" {p50 = ms($2)} $1 == "99%" {p99 = ms($2)}
    /^Requests\/sec:/ {rps = $2} /^ *[0-9]+ requests in/ {n = $1}
    /Socket errors:/ {gsub(/,/, ""); err += $4 + $6 + $8 + $10}
    /Non-2xx or 3xx responses:/ {err += $5}
    END {
      cpu = ticks / hz
      printf "%s %s %.1f %.3f %.3f %d %.2f %.1f\n", name, c, rps, p50, p99, err, cpu / secs, (n ? cpu * 1e6 / n : 0)
    }' <<<"$out" >>"$CTD_DIR/results"
}
# idle_cpu_pct PIDS...: the CPU share they take while nothing is asked of them (0.5 s), in %.
idle_cpu_pct() {
  local c0 c1
  c0=$(cpu_ticks "$@"); read -r -t 0.5 -u "$NAP" || true; c1=$(cpu_ticks "$@")
  echo $(((c1 - c0) * 100 * 2 / TICK))
}
: >"$CTD_DIR/results"
run_peer() { # PEER CONC
  local pct pids id port state
  case $1 in
    wasmpod | metered)
      wasmpod_up "$1"
      if [[ $1 == wasmpod ]]; then id=$W_ID; else id=$M_ID; fi
      if [[ $1 == wasmpod ]]; then port=$P_W; else port=$P_M; fi
      mapfile -t pids < <(container_pids "$id")
      measure "$([[ $1 == wasmpod ]] && echo wasmpod || echo wasmpod+metering)" "$port" "$2" "${pids[@]}"
      state=$(server_state "$id" "$port")
      if [[ $state != serving ]]; then
        sed -i "\$ s/\$/ ${state%%[: ]*}/" "$CTD_DIR/results"
        echo "   note: $id, after its c$2 run: $state"
        pct=0
      else
        pct=$(idle_cpu_pct "${pids[@]}")
      fi ;;
    wasmtime)
      wasmtime_up "$P_T"
      wait_200 "$P_T" 30
      body_is "$P_T" "hello from wasm"
      measure wasmtime-serve "$P_T" "$2" "$WT_PID"
      pct=$(idle_cpu_pct "$WT_PID")
      wasmtime_down ;;
    hyper)
      measure hyper-hello "$P_H" "$2" "$HY_PID"
      pct=$(idle_cpu_pct "$HY_PID") ;;
  esac
  if ((pct >= 10)); then
    echo "   note: $1 kept ${pct}% of a CPU busy with no load after its c$2 run$([[ $1 != wasmtime ]] || echo " (it is restarted for each run)")"
  fi
}
for peer in wasmpod metered wasmtime hyper; do run_peer "$peer" 10; done
for peer in hyper wasmtime metered wasmpod; do run_peer "$peer" 64; done

printf '   %-17s %4s %10s %8s %8s %6s %6s %10s\n' peer conc "req/s" "p50 ms" "p99 ms" errors "CPU" "CPU us/req"
awk '
  BEGIN { o["wasmpod"] = 1; o["wasmpod+metering"] = 2; o["wasmtime-serve"] = 3; o["hyper-hello"] = 4 }
  { print o[$1], $0 }' "$CTD_DIR/results" | sort -k3,3n -k1,1n | cut -d' ' -f2- |
  awk '$9 != "" {printf "   %-17s %4d %10.1f %8.2f %8.2f %6d %6s %10s  the server %s in this run\n", $1, $2, $3, $4, $5, $6, "-", "-", ($9 == "died" ? "died" : "hung"); next}
    {printf "   %-17s %4d %10.1f %8.2f %8.2f %6d %6.2f %10.1f\n", $1, $2, $3, $4, $5, $6, $7, $8}'
echo "   (CPU: the server processes' CPU time over the run, in cores: for wasmpod its shim and"
echo "    init process; wrk runs on the same 2 cores)"
# result NAME CONC FIELD: one field of the results (3 req/s, 8 CPU us per request, 9 died/hangs).
result() { awk -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c {print $f}' "$CTD_DIR/results"; }
# ratio A B CONC FIELD: A's over B's, "n/a" when a server of the two died in its run.
ratio() {
  if [[ -n $(result "$1" "$3" 9)$(result "$2" "$3" 9) ]]; then echo "n/a (a server failed)"; return; fi
  awk -v a="$(result "$1" "$3" "$4")" -v b="$(result "$2" "$3" "$4")" 'BEGIN{printf "%.2fx", b ? a / b : 0}'
}
for c in 10 64; do
  echo "   c$c req/s: wasmpod/wasmtime serve $(ratio wasmpod wasmtime-serve "$c" 3) (target >= 1.0x)," \
    "metered/unmetered $(ratio wasmpod+metering wasmpod "$c" 3), wasmpod/hyper $(ratio wasmpod hyper-hello "$c" 3);" \
    "CPU per request wasmpod/wasmtime serve $(ratio wasmpod wasmtime-serve "$c" 8)"
done

echo "== HTTP 3. PSS of one idle HTTP container, every process counted; peers beside it (private: not lowered by other processes of the same binary)"
# pss_line LABEL PIDS...
pss_line() {
  local label=$1 total=0 private=0 parts=() p k
  shift
  for p in "$@"; do
    read -r -a k <<<"$(pss_kb "$p")"
    total=$((total + k[0])) private=$((private + k[1]))
    parts+=("$(tr -d '\0' <"/proc/$p/comm" 2>/dev/null || echo "?") $(awk -v k="${k[0]}" 'BEGIN{printf "%.2f", k / 1024}')")
  done
  local IFS=,
  awk -v l="$label" -v t="$total" -v u="$private" -v n="$#" -v d="${parts[*]}" \
    'BEGIN{gsub(/,/, ", ", d); printf "   %-34s %6.2f MB PSS (%5.2f MB private), %d process%s (PSS %s MB)\n", l, t / 1024, u / 1024, n, n == 1 ? "" : "es", d}'
}
P_I=$((HTTP_PORT + 20))
port_free "$P_I"
wasmpod_run http-idle1 "$P_I"
wait_200 "$P_I" 30
sleep 3
if [[ $(task_status http-idle1) == RUNNING ]]; then
  # shellcheck disable=SC2046
  pss_line "wasmpod, fresh (1 request served)" $(container_pids http-idle1)
  # shellcheck disable=SC2046
  awk -v p="$(idle_cpu_pct $(container_pids http-idle1))" 'BEGIN{printf "   %-34s %d%% of a CPU (0.5 s sample)\n", "   its idle CPU", p}'
else
  echo "   wasmpod, fresh: http-idle1 died idle after its one request: $(exit_note http-idle1)"
fi
if [[ $(task_status "$W_ID") == RUNNING ]]; then
  # shellcheck disable=SC2046
  pss_line "wasmpod, after the load runs" $(container_pids "$W_ID")
fi
wasmtime_up "$P_T"
wait_200 "$P_T" 30
sleep 3
pss_line "wasmtime serve, fresh (1 request)" "$WT_PID"
wasmtime_down
pss_line "hyper-hello, after the load runs" "$HY_PID"

# Everything down, by name and PID: the containers, then the peers (the EXIT trap catches the rest).
for id in http-idle1 "$W_ID" "$M_ID"; do wasmpod_stop "$id"; done
kill "$HY_PID"; wait "$HY_PID" 2>/dev/null || true; HY_PID=
left=$(ctd task ls -q; ctd containers ls -q)
[[ -z $left ]] || echo "   left behind in containerd: $left"
segv=$(shim_segfaults)
((segv == 0)) || echo "   kernel log: $segv segfault(s) of containerd-shim-wasmpod-v1 processes during this run (on this machine)"
