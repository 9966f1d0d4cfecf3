#!/bin/bash
# The cgroup v2 lane inside the VM (run by /init, chrooted into the host's / under a tmpfs
# overlay). $1 is the lane file run.sh wrote: STAGE (the binaries it snapshotted), LANES
# (NAME=CONTAINERD...), SELECTION (TEST_BINARY:test_name...), THREADS.
#
# For each containerd it runs the selected integration tests with the same variables as the
# Makefile's lanes, then fails if anything is left in the cgroup tree (empty at boot) or any
# process other than /init and this script is still running. Lines starting with '@@' are
# for run.sh.
set -uo pipefail
# shellcheck source=/dev/null
. "$1"

say() { echo "@@ $*"; }

fstype=$(stat -fc %T /sys/fs/cgroup)
if [[ $fstype != cgroup2fs ]] || [[ -e /sys/fs/cgroup/memory/tasks ]]; then
  say "error: /sys/fs/cgroup is $fstype, not cgroup v2 only"
  exit 2
fi
say "cgroup controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

# Derived data the shim and CNI write outside the tests' temp dirs: plain tmpfs, so the
# host's compile cache (built for another CPU) is not used and nothing lands in the overlay.
for d in /var/cache/wasmpod /var/lib/cni /root; do
  mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d"
done

export TMPDIR=/tmp HOME=/root
export WASMPOD_BIN_DIR=$STAGE/bin WASMPOD_CLI=$STAGE/bin/wasmpod
export WASMPOD_TEST_PROGRAMS=$STAGE/programs
# The churn test: the staged driver, run.sh's CHURN_CYCLES (100 rather than the host's 1,000:
# under TCG a run took 90 to 105 s per containerd, and 30 cycles hardly less than 100).
export WASMPOD_CHURN_BIN=$STAGE/bin/churn CHURN_CYCLES
before=/run/wasmpod-cgroups.before
find /sys/fs/cgroup -mindepth 1 -type d | sort >"$before"

total=0 passed=0 failed=0
failures=()
for lane in "${LANES[@]}"; do
  name=${lane%%=*} containerd=${lane#*=}
  lane_start=$SECONDS
  say "lane $name: $("$containerd" --version)"
  # As the Makefile's lanes: ctr and CRI tests on this containerd; its dir first on PATH
  # (links to containerd, ctr and the runc shim only: bookworm's /usr/sbin/runc is used).
  export WASMPOD_CONTAINERD=$containerd WASMPOD_CRI_CONTAINERD=$containerd
  export WASMPOD_DOCKERD=${containerd%/*}/dockerd
  export PATH=${containerd%/*}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  declare -A names=()
  for sel in "${SELECTION[@]}"; do
    names[${sel%%:*}]+=" ${sel#*:}"
  done
  for bin in $(printf '%s\n' "${!names[@]}" | sort); do
    read -ra tests <<<"${names[$bin]}"
    say "run ${bin##*/} ${tests[*]}"
    log=$(mktemp)
    "$STAGE/tests/$bin" --exact --test-threads="$THREADS" "${tests[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    for t in "${tests[@]}"; do
      total=$((total + 1))
      if grep -qx "test $t \.\.\. ok" "$log"; then
        passed=$((passed + 1))
        say "result $name ok $bin::$t"
      else
        failed=$((failed + 1))
        failures+=("$name $bin::$t")
        say "result $name FAILED $bin::$t"
      fi
    done
    ((rc == 0)) || say "note: ${bin} exited $rc"
    rm -f "$log"
  done
  unset names
  say "lane $name took $((SECONDS - lane_start)) s"
done

# Nothing of the tests may outlive them: no cgroup (the tree was empty at boot), no
# containerd, shim or container process.
status=0
if ! left=$(find /sys/fs/cgroup -mindepth 1 -type d | sort | comm -13 "$before" -); then
  say "error: cannot list the cgroup tree"
  status=1
elif [[ -n $left ]]; then
  say "leftover cgroups:"
  while read -r d; do
    say "  $d procs: $(tr '\n' ' ' <"$d/cgroup.procs")"
  done <<<"$left"
  status=1
fi
procs=()
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  ((pid == 1 || pid == $$)) && continue
  args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
  [[ -n $args ]] || continue # kernel threads and zombies
  stat=$(cat "$p/stat" 2>/dev/null) || continue
  read -r _ ppid _ <<<"${stat##*)}"
  ((ppid == $$)) && continue # this script's own pipelines
  procs+=("$pid $args")
done
if ((${#procs[@]})); then
  say "leftover processes:"
  for p in "${procs[@]}"; do say "  $p"; done
  status=1
fi
[[ -z $left ]] && ((${#procs[@]} == 0)) && say "cgroup tree and processes clean"

say "summary tests=$total passed=$passed failed=$failed"
for f in "${failures[@]}"; do say "failed $f"; done
((failed == 0)) || status=1
exit "$status"
