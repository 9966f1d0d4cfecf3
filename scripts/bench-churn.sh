#!/usr/bin/env bash
# `make bench`, churn with leak accounting: the churn driver (integration/src/bin/churn.rs)
# talks to containerd's gRPC API directly (no ctr process per cycle, whose CPU bounds the ctr
# churn figure of scripts/bench.sh) and runs create/start/wait/delete cycles, 8 at a time, on
# each containerd given (default: 1.7 and 2.1 from `make trixie forky`), in four lanes on one
# private daemon:
#   wasmpod-mix    the mix: wasm modules, components, native busybox, execs into running
#                  tasks, creates that must fail (bad wasm, missing entrypoint)
#   wasmpod-hello  hello.wasm on wasmpod
#   wasmpod-group-hello  the same, every container in one opt-in group (one shim serves them)
#   runc-echo      busybox `echo hello` on runc, the same driver
#   runwasi-hello  hello.wasm on runwasi's wasmtime shim (io.containerd.wasmtime.v1,
#                  ../shared/tools/containerd-shim-wasmtime-v1.xz), the same driver
# The lanes run interleaved, in CHURN_ROUNDS rounds (default 4), each a share of every lane's
# cycles: a drift of the machine's speed during the run then moves wasmpod and its peers alike
# (one lane after another, a drift moved the ratio: 2.37x runwasi on 1.7, 4.35x on 2.1, minutes
# apart). Each round of a lane counts what the daemon holds before and after (processes, shim
# sockets, mounts, cgroups, bundles and state dirs, containerd's fds, snapshots, the compile
# cache against its bound) and fails on any difference or any cycle that did not end as its
# kind says. Prints
# tasks/s and p50/p99 per cycle of every lane, side by side, and wasmpod's ratios.
#
# Usage: scripts/bench-churn.sh [CONTAINERD...]
# Environment: CHURN_CYCLES (cycles of each wasmpod lane, default 10000), CHURN_PEER_CYCLES
# (of the runc and runwasi lanes, default CHURN_CYCLES), CHURN_ROUNDS, RUNWASI_XZ (the runwasi
# shim, xz).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cycles=${CHURN_CYCLES:-10000}
peer_cycles=${CHURN_PEER_CYCLES:-$cycles}
churn=$repo/target/release/churn
containerds=("$@")
if ((${#containerds[@]} == 0)); then
  containerds=("$repo/.work/trixie/bin/containerd" "$repo/.work/forky/bin/containerd")
fi

if [[ ! -x $churn ]]; then
  echo "bench-churn: $churn is missing (make build)" >&2
  exit 1
fi
for c in "${containerds[@]}"; do
  if [[ ! -x $c ]]; then
    # containerd 1.7 and 2.1 are fetched into .work (Debian packages, extracted) when missing.
    make -C "$repo" --no-print-directory trixie forky
    if [[ ! -x $c ]]; then
      echo "bench-churn: $c is missing (make trixie forky)" >&2
      exit 1
    fi
  fi
done

# runwasi's shim, unpacked once into .work/runwasi (its dir goes on the daemon's PATH).
source "$repo/scripts/lib/runwasi.sh"
runwasi=$(runwasi_shim) || { echo "bench-churn: runwasi's shim is needed" >&2; exit 1; }

# A group's shim lingers after its last container (5 s by default): a short linger lets it leave
# before the leak accounting's baseline and final counts, which would otherwise count it (and
# the next lane would see it go).
export WASMPOD_GROUP_LINGER_MS=${WASMPOD_GROUP_LINGER_MS:-500}

echo "== churn through containerd's API: $cycles cycles per wasmpod lane, $peer_cycles per peer" \
  "lane, 8 at a time; runwasi $("$runwasi" -v 2>/dev/null | awk '/Version/{print $2}')"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
status=0
for c in "${containerds[@]}"; do
  echo "== containerd $("$c" --version | awk '{print $3}') ($c)"
  log=$(mktemp)
  # (pipefail: the pipeline's status is churn's.)
  if nice -n 5 "$churn" --containerd "$c" --cycles "$cycles" --runwasi "$runwasi" --rounds "${CHURN_ROUNDS:-4}" \
    --lane wasmpod-mix --lane wasmpod-hello --lane wasmpod-group-hello \
    --lane "runc-echo:$peer_cycles" --lane "runwasi-hello:$peer_cycles" 2>&1 | tee "$log"; then
    rc=0
  else
    rc=$?
  fi
  grep '^churn-result ' "$log" >>"$results" || true
  rm -f "$log"
  if ((rc != 0)); then
    echo "== churn on $c FAILED (exit $rc)" >&2
    status=1
  fi
done

# Side by side: every lane of every containerd, then wasmpod's ratios per containerd.
echo
echo "== churn summary (tasks/s of wall time; p50/p99 of one cycle, ms)"
awk '
  function f(line, key,   i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++) if (index(kv[i], key "=") == 1) return substr(kv[i], length(key) + 2)
    return ""
  }
  BEGIN { printf "   %-15s %-20s %7s %6s %6s %8s %8s %8s\n", "containerd", "lane", "cycles", "unexp", "leaks", "tasks/s", "p50", "p99" }
  {
    c = f($0, "containerd"); l = f($0, "lane")
    tps[c, l] = f($0, "tasks_per_s"); p50[c, l] = f($0, "p50_ms"); p99[c, l] = f($0, "p99_ms")
    if (!(c in seen)) { seen[c] = 1; order[++nc] = c }
    printf "   %-15s %-20s %7s %6s %6s %8s %8s %8s\n", c, l, f($0, "cycles"), f($0, "unexpected"), f($0, "leaks"), tps[c, l], p50[c, l], p99[c, l]
  }
  END {
    for (i = 1; i <= nc; i++) {
      c = order[i]
      for (w = 1; w <= 3; w++) {
        wl = (w == 1) ? "wasmpod-hello" : (w == 2) ? "wasmpod-group-hello" : "wasmpod-mix"
        if (!((c, wl) in tps)) continue
        for (p = 1; p <= 2; p++) {
          pl = (p == 1) ? "runc-echo" : "runwasi-hello"
          if (!((c, pl) in tps) || tps[c, pl] == 0) continue
          printf "   containerd %s: %s / %s: tasks/s %.2fx, p50 %.2fx, p99 %.2fx\n", c, wl, pl,
            tps[c, wl] / tps[c, pl], p50[c, wl] / p50[c, pl], p99[c, wl] / p99[c, pl]
        }
      }
      for (w = 1; w <= 2; w++) {
        wl = (w == 1) ? "wasmpod-hello" : "wasmpod-group-hello"
        if (((c, wl) in tps) && ((c, "runwasi-hello") in tps) && tps[c, "runwasi-hello"] > 0) {
          r = tps[c, wl] / tps[c, "runwasi-hello"]
          printf "   containerd %s: goal of at least 3x runwasi tasks/s (%s): %.2fx, %s\n", c, wl, r, (r >= 3 ? "met" : "NOT met")
        }
      }
    }
  }' "$results"
exit "$status"
