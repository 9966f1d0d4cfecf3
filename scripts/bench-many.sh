#!/usr/bin/env bash
# `make bench-many`: MANY idle wasm containers at once on a private containerd (scripts/lib/
# many.sh): start rate, RUNNING by State, PSS each with every process counted, SIGTERM to each
# and the time until every one exited with 143.
# Environment: MANY (default 10000), GROUP_SIZE (containers per opt-in group, default 100; 0:
# a shim each), CONTAINERD binary (default /usr/bin/containerd).
set -euo pipefail
source "$(dirname "$0")/lib/containerd.sh"
source "$(dirname "$0")/lib/timing.sh"
source "$(dirname "$0")/lib/many.sh"

MANY=${MANY:-10000}
GROUP_SIZE=${GROUP_SIZE:-100}
# Each container is a process with a thread of the engine's, each shim a process with a few
# threads: the node's pid space must hold them all, with room for everything else.
need=$((MANY * (GROUP_SIZE > 0 ? 3 : 7) + 2000))
if (($(cat /proc/sys/kernel/pid_max) < need)); then
  echo "bench-many: kernel.pid_max $(cat /proc/sys/kernel/pid_max) is below the $need pids $MANY containers need" >&2
  exit 1
fi
# Each idle container costs the node about 2.3 MB at 3,000 with the kernel's objects
# (namespaces, cgroups, mounts, page tables) and containerd's share, and more as their number
# grows (every memory cgroup's shrinker table, README): about 2.85 MB at 10,000. Refuse what
# would not fit.
avail_mb=$(awk '/^MemAvailable:/{print int($2 / 1024)}' /proc/meminfo)
if ((MANY * 3 > avail_mb * 9 / 10)); then
  echo "bench-many: $MANY containers need about $((MANY * 3)) MB; this node has $avail_mb MB available (MANY=$((avail_mb * 9 / 10 / 3)) would fit)" >&2
  exit 1
fi
containerd_start "${CONTAINERD:-/usr/bin/containerd}"
image_import sleeper:bench "$WASMPOD_ROOT/test-images/out/sleeper.wasm"
echo "== $MANY idle wasm containers at once, containerd $(ctd version | awk '/Server/{s=1} s && /Version/{print $2; exit}')"
many_idle "$MANY" "$GROUP_SIZE"
