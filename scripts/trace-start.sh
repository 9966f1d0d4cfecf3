#!/usr/bin/env bash
# `make trace`: where the time of one cached `ctr run --rm` hello goes, wasmpod beside runc and
# the floor (a shim that runs nothing, integration/src/bin/null_shim.rs), on
# a private containerd with debug logging. Milestones come from the daemon's own log (the shim
# started, the shim gone), `ctr events` (the task's create, start, exit and delete events, time-
# stamped by the shim that published them) and the clock around ctr. wasmpod's shim adds its
# own stage timings at debug level (shim/src/stages.rs): bootstrap, Create's stages, Start, the
# guest's run and Delete's stages. Each figure is the median of TRACE_RUNS runs (default 7),
# wasmpod and runc interleaved, after two warm-up runs each (the compile cache is warm).
#
# Usage: scripts/trace-start.sh [CONTAINERD]   (default: containerd 1.7 of `make trixie`)
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"

runs=${TRACE_RUNS:-7}
bin=${1:-$WASMPOD_ROOT/.work/trixie/bin/containerd}
CTD_ARGS="--log-level debug" containerd_start "$bin"
log=$CTD_DIR/containerd.log
echo "== containerd $(ctd version 2>/dev/null | awk '/Server/{s=1} s && /Version/{print $2; exit}'), $runs runs each, median ms"

image_import hello:trace "$WASMPOD_ROOT/test-images/out/hello.wasm"
busybox_rootfs "$CTD_DIR/busybox"
image_import busybox:trace --dir "$CTD_DIR/busybox:/" --entrypoint /bin/sh --platform linux/amd64
# The floor: a shim that runs nothing (integration/src/bin/null_shim.rs), run by its path.
null_shim=$WASMPOD_ROOT/target/release/containerd-shim-null-v1
[[ -x $null_shim ]] || { echo "no $null_shim: make build first" >&2; exit 1; }
# wasmpod-info: wasmpod again, with its shim at its default log level (info: the debug lines
# that give the stage timings above cost Create about 1 ms) and WASMPOD_TIMELINE on, where
# the shim and each build's processes mark their steps (shim/src/isolation/timeline.rs). Run
# by its path through a wrapper that sets both (the wrapper's exec is in the shim's start,
# before Create). Its runs give the timeline below, not the table's rows.
cat >"$CTD_DIR/containerd-shim-wasmpod-v1" <<EOF
#!/bin/sh
WASMPOD_LOG=info WASMPOD_TIMELINE=$CTD_DIR/timeline exec $WASMPOD_BIN/containerd-shim-wasmpod-v1 "\$@"
EOF
chmod +x "$CTD_DIR/containerd-shim-wasmpod-v1"
kinds=(wasmpod runc null wasmpod-info)
run() { # run KIND ID
  if [[ $1 == wasmpod-info ]]; then
    ctd run --rm --runtime "$CTD_DIR/containerd-shim-wasmpod-v1" docker.io/library/hello:trace "$2" >/dev/null
  elif [[ $1 == wasmpod ]]; then
    ctd run --rm --runtime io.containerd.wasmpod.v1 docker.io/library/hello:trace "$2" >/dev/null
  elif [[ $1 == null ]]; then
    ctd run --rm --runtime "$null_shim" docker.io/library/hello:trace "$2" >/dev/null
  else
    ctd run --rm --runc-root "$CTD_DIR/runc" --runtime io.containerd.runc.v2 \
      docker.io/library/busybox:trace "$2" echo hello >/dev/null
  fi
}
for i in 1 2; do for kind in "${kinds[@]}"; do run "$kind" "warm-$kind-$i"; done; done

ctd events >"$CTD_DIR/events" 2>/dev/null &
events_pid=$!
sleep 0.3
: >"$CTD_DIR/clock"
for i in $(seq "$runs"); do
  for kind in "${kinds[@]}"; do
    id=trace-$kind-$i
    echo "$id start $(date +%s.%N)" >>"$CTD_DIR/clock"
    run "$kind" "$id"
    echo "$id end $(date +%s.%N)" >>"$CTD_DIR/clock"
  done
done
sleep 0.5
kill "$events_pid" 2>/dev/null || true

# Seconds since the epoch of a log's RFC 3339 time, or of ctr events' `2026-11-30 10:13:34.85
# +0000 UTC`.
epoch() { date -d "$1" +%s.%N; }
# The time of the first log line on stdin that starts with a whole one. Two shims' lines
# written at once into the daemon's log can cut one in two (`time="...Ztime="...`): such a
# line gives none, and its run is left out below.
log_time() { grep -m1 -oE '^time="[0-9][0-9TZ:.+-]*"' | sed -E 's/^time="(.*)"$/\1/'; }
# milestones ID: `name seconds` lines, in the order they happen.
milestones() {
  local id=$1 t
  awk -v id="$id" '$1 == id && $2 == "start" { print "ctr " $3 }' "$CTD_DIR/clock"
  t=$(grep -F "id=$id " "$log" | grep -F 'msg="shim disconnected"' | log_time)
  # The shim serving: its first log line (wasmpod: its bootstrap line; runc's shim: "starting
  # signal loop"; the null shim's "serving" line).
  local serving
  serving=$(grep -E "($id: shim bootstrap|starting signal loop.*/$id |$id: null shim serving)" "$log" | log_time)
  [[ -n $serving ]] && echo "serving $(epoch "$serving")"
  for topic in create start exit delete; do
    local line
    line=$(grep -F "/tasks/$topic " "$CTD_DIR/events" | grep -F "\"$id\"" | head -1 | awk '{print $1 " " $2}')
    [[ -n $line ]] && echo "$topic $(epoch "$line")"
  done
  [[ -n $t ]] && echo "gone $(epoch "$t")"
  awk -v id="$id" '$1 == id && $2 == "end" { print "done " $3 }' "$CTD_DIR/clock"
}
# stage_ms ID PATTERN NAME: NAME's milliseconds in the stages line of ID matching PATTERN.
stage_ms() {
  grep -F "$1: $2" "$log" | head -1 | awk -v name="$3 " '{ i = index($0, name); if (i) { split(substr($0, i + length(name)), w, " "); print w[1] } }'
}

rows=(
  "serving|ctr and containerd until the shim serves (shim start, exec, bootstrap)"
  "create|Create, until /tasks/create"
  "start|Start, until /tasks/start"
  "exit|the process runs and exits, until /tasks/exit"
  "delete|ctr sees the exit and deletes, until /tasks/delete"
  "gone|Shutdown: the shim exits"
  "done|ctr: snapshot removed, ctr exits"
)
create_stages=("spec" "rootfs mount" "loader (plan, program, cache map)" "stdio"
  "container (libcontainer: cgroup, clone, namespaces, pivot_root)")
: >"$CTD_DIR/rows"
: >"$CTD_DIR/details"
for i in $(seq "$runs"); do
  for kind in "${kinds[@]}"; do
    [[ $kind != wasmpod-info ]] || continue
    id=trace-$kind-$i
    milestones "$id" >"$CTD_DIR/m"
    # A run missing one of its 8 milestones would fold two stages into one: left out.
    if (($(wc -l <"$CTD_DIR/m") != 8)); then
      skipped="${skipped:-}$id "
      continue
    fi
    awk -v kind="$kind" 'NR == 1 { t0 = $2; prev = $2; next }
      { printf "%s %s %.2f\n", kind, $1, ($2 - prev) * 1000; prev = $2; last = $2 }
      END { printf "%s total %.2f\n", kind, (last - t0) * 1000 }' "$CTD_DIR/m" >>"$CTD_DIR/rows"
    if [[ $kind == wasmpod ]]; then
      {
        printf 'bootstrap\t%s\n' "$(grep -F "$id: shim bootstrap" "$log" | grep -oE '[0-9.]+ ms from' | awk '{print $1}')"
        for s in "${create_stages[@]}" total; do
          printf 'create: %s\t%s\n' "$s" "$(stage_ms "$id" "create stages" "$s")"
        done
        printf 'start: signal init\t%s\n' "$(stage_ms "$id" "start stages" total)"
        printf 'guest: instantiate and run\t%s\n' "$(stage_ms "$id" "guest stages" total)"
        for s in "container (cgroup, state)" "rootfs unmount"; do
          printf 'delete: %s\t%s\n' "$s" "$(stage_ms "$id" "delete stages" "$s")"
        done
      } >>"$CTD_DIR/details"
    fi
  done
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m }'; }
med() { awk -v k="$1" -v n="$2" '$1 == k && $2 == n && $3 != "" { print $3 }' "$CTD_DIR/rows" | median; }

printf '   %-72s %8s %8s %8s\n' "stage (each from the end of the one before)" wasmpod runc "floor"
for row in "${rows[@]}"; do
  key=${row%%|*}
  printf '   %-72s %8s %8s %8s\n' "${row#*|}" "$(med wasmpod "$key")" "$(med runc "$key")" "$(med null "$key")"
done
printf '   %-72s %8s %8s %8s\n' "total, ctr run --rm" "$(med wasmpod total)" "$(med runc total)" "$(med null total)"
echo "   (floor: containerd-shim-null-v1, a shim that starts, reports the task exited and runs nothing)"
[[ -z ${skipped:-} ]] || echo "   (left out, a milestone missing from the logs: $skipped)"
echo "   inside wasmpod's shim (its own timings):"
for d in bootstrap "${create_stages[@]/#/create: }" "create: total" "start: signal init" \
  "guest: instantiate and run" "delete: container (cgroup, state)" "delete: rootfs unmount"; do
  printf '     %-70s %8s\n' "$d" "$(awk -F '\t' -v k="$d" '$1 == k && $2 != "" { print $2 }' "$CTD_DIR/details" | median)"
done
# The timeline of each measured wasmpod-info run, from the shim's "shim: create" to its
# "shim: create done": each step from the one before on the build's path, in this order
# (the main process waits meanwhile; its "intermediate ready" is off the path), then Start.
echo "   inside Create, across its processes, the shim at info (WASMPOD_TIMELINE; each from the step before):"
python3 - "$CTD_DIR/timeline" "$runs" <<'PY'
import statistics, sys
path = [
    ("shim: create", None),
    ("shim: rootfs, loader and stdio done", "shim: spec, ahead, rootfs mount, loader, stdio"),
    ("shim: bundle written, forking the builder", "shim: seccomp filter, libcontainer's bundle"),
    ("builder: start", "the builder's thread and fork (from the shim)"),
    ("builder: spec loaded", "builder: shim sockets closed, spec validated"),
    ("builder: state and config saved", "builder: state dir, state and config written"),
    ("intermediate: start", "clone of the intermediate process"),
    ("intermediate: joining cgroups", "intermediate: cgroup manager, its setup"),
    ("intermediate: cloning init", "intermediate: joins the cgroups, namespaces"),
    ("init: start", "clone of the init process"),
    ("init: namespaces set", "init: namespaces, session"),
    ("init: rootfs mounted and pivot_root done", "init: rootfs, mounts, /dev, pivot_root"),
    ("init: ready", "init: sysctl, masked paths, capabilities, seccomp"),
    ("main: init ready", "init ready reaches the main process"),
    ("main: state saved", "main: state written"),
    ("builder: answered", "builder: answer written"),
    ("shim: answer received", "shim: answer received"),
    ("shim: state read back", "shim: thread joined, state read back"),
    ("shim: create done", "shim: oom score, the rest"),
]
marks = []
try:
    for line in open(sys.argv[1]):
        parts = line.split()
        marks.append((int(parts[-1]), " ".join(parts[1:-1])))
except FileNotFoundError:
    print("     (no timeline: the shim wrote none)")
    sys.exit(0)
marks.sort()
runs, current = [], None
for t, label in marks:
    if label == "shim: create":
        current = {}
        runs.append(current)
    if current is not None and label not in current:
        current[label] = t
# The measured runs are the last ones (the warm-ups came first).
runs = [r for r in runs[-int(sys.argv[2]):] if all(label in r for label, _ in path)]
if not runs:
    print("     (no complete timeline)")
    sys.exit(0)
for (before, _), (label, what) in zip(path, path[1:]):
    step = statistics.median((r[label] - r[before]) / 1e6 for r in runs)
    print("     %-70s %8.2f" % (what, step))
create = statistics.median((r["shim: create done"] - r["shim: create"]) / 1e6 for r in runs)
print("     %-70s %8.2f   (%d runs)" % ("Create, total", create, len(runs)))
started = [r for r in runs if "shim: start done" in r]
if started:
    start = statistics.median((r["shim: start done"] - r["shim: start"]) / 1e6 for r in started)
    both = statistics.median(
        (r["shim: create done"] - r["shim: create"] + r["shim: start done"] - r["shim: start"]) / 1e6
        for r in started
    )
    print("     %-70s %8.2f" % ("Start (the init told to run)", start))
    print("     %-70s %8.2f" % ("Create plus Start (issue 14's target: 5 ms)", both))
PY
