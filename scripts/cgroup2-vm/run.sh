#!/usr/bin/env bash
# The cgroup v2 lane (`make cgroup2-test`): this host is cgroup v1 hybrid, users' nodes are
# cgroup v2 only. Boots a throwaway QEMU VM (TCG: this host's /dev/kvm is a PVM host that
# stock kernels cannot use) of the host's own kernel package, whose only hierarchy is cgroup
# v2, and runs the integration tests that touch cgroups inside it against containerd 1.7 and
# 2.1. The VM's root is the host's / shared read-only over 9p under a tmpfs overlay (init);
# the tests run from binaries snapshotted here (guest.sh). Prints each test, the counts, the
# boot and total times; exits non-zero on any failure, leftover or hang.
#
# Environment: CG2_TIMEOUT (s, the whole VM run, default 1500), CG2_THREADS (test threads
# in the VM, default 2), CG2_SMP / CG2_MEM (default 2 / 4096), CG2_CONTAINERDS ("NAME=PATH
# ..."), CG2_TESTS ("TARGET:test_name ..." instead of the selection below), CG2_KEEP=1
# (keep the run dir), CG2_CHURN_CYCLES (cycles of the churn test, default 100).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/scripts/cgroup2-vm
base=$repo/.work/cgroup2-vm
timeout_s=${CG2_TIMEOUT:-1500}
threads=${CG2_THREADS:-2}
containerds=${CG2_CONTAINERDS:-"containerd-1.7=$repo/.work/trixie/bin/containerd containerd-2.1=$repo/.work/forky/bin/containerd"}

# What must hold on a cgroup v2 node, and the tests that show it (TARGET:test):
# limits in memory.max, cpu.max, cpu.weight and pids.max, and Update of each; Stats in the
# v2 shape (ctr task metrics, CRI ContainerStats); pause/resume through cgroup.freeze;
# OOM as 137 plus TaskOOM (memory.events for native, the guest's report for wasm) under ctr
# and the CRI; cgroups removed on delete (every ctr test checks the namespace's cgroups are
# gone afterwards, cgroups.rs right after the delete); a CRI pod with limits; kubelet's
# systemd-style cgroupsPath; killing what is left in a container's cgroup on a shared-PID
# pod's stop (the shim reads cgroup.procs); execs, wasm and native, joining a running
# container: its cgroup, namespaces (a cgroup namespace of its own on v2), root and mounts;
# churn with leak accounting, CG2_CHURN_CYCLES (100) cycles of the whole mix, execs of both
# kinds among them, every container cgroup gone and every count back where it started;
# opt-in groups (one shim for many containers, each in its own v2 cgroup) and their shim's
# leaving as the next container starts.
default_tests=(
  resources:limits_reach_the_cgroup_and_update_changes_them
  cgroups:pids_limit_reaches_pids_max_and_update_changes_it
  cgroups:metrics_have_the_shape_of_the_hosts_cgroup_version
  lifecycle:metrics_and_ps_of_a_running_task
  cri:container_stats_report_cpu_and_memory
  lifecycle:pause_and_resume_sleeper
  cgroups:pause_freezes_the_cgroup_and_delete_removes_it
  events:lifecycle_events_reach_ctr_events
  limits:memhog_that_aborts_at_the_limit_ends_out_of_memory
  cgroups:oom_kills_publish_task_oom_before_the_exit
  cri:oom_killed_containers_are_reported_as_oomkilled
  cri:resources_reach_the_cgroup
  cgroups:systemd_cgroups_path_of_a_cri_pod_becomes_slices_and_scopes
  cri_conformance:stopping_init_in_a_shared_pid_namespace_ends_its_workers
  exec:execs_run_in_the_containers_root_and_mounts
  exec:wasm_exec_runs_another_program_of_the_image
  churn:churn_ends_every_cycle_as_expected_and_leaks_nothing
  groups:a_group_shares_one_shim_which_lingers_then_leaves_with_its_socket
  groups:containers_starting_while_their_group_shim_leaves_all_run
)
read -ra tests <<<"${CG2_TESTS:-${default_tests[*]}}"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

"$here/install-deps.sh"
kv=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -1)
if [[ -z $kv || ! -d /lib/modules/$kv ]]; then
  echo "cgroup2-vm: no kernel with modules in /boot and /lib/modules (linux-image-amd64)" >&2
  exit 1
fi
for lane in $containerds; do
  if [[ ! -x ${lane#*=} ]]; then
    echo "cgroup2-vm: ${lane#*=} is missing (make trixie forky)" >&2
    exit 1
  fi
done

echo "== cgroup v2 lane: building the integration tests"
# Integration test targets only: the churn binary's own unit tests are named churn-<hash> too.
# Selected in the whole workspace, as the Makefile's lanes do, so that they reuse its build
# (`-p wasmpod-integration` builds the suite's dependencies again, with other features).
suite=()
for f in "$repo"/integration/tests/*.rs; do suite+=(--test "$(basename "$f" .rs)"); done
exes=$(cd "$repo" && cargo test --release --workspace "${suite[@]}" --no-run --message-format=json |
  grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')

mkdir -p "$base"
work=$(mktemp -d "$base/run.XXXXXX")
qemu_pid= tail_pid=
cleanup() {
  [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  [[ -n $tail_pid ]] && kill "$tail_pid" 2>/dev/null
  if [[ ${CG2_KEEP:-} == 1 ]]; then
    echo "cgroup2-vm: kept $work"
  else
    rm -rf "$work"
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A snapshot of what the VM runs, so a rebuild on the host during the run changes nothing.
stage=$work/stage
mkdir -p "$stage/bin" "$stage/tests" "$stage/programs"
cp "$repo/target/release/containerd-shim-wasmpod-v1" "$repo/target/release/wasmpod" "$stage/bin/"
# The churn driver, which the churn test runs (built with the tests: it is their binary).
cp "$repo/target/release/churn" "$stage/bin/"
cp -a "$repo/test-images/out/." "$stage/programs/"
selection=()
for t in "${tests[@]}"; do
  target=${t%%:*}
  exe=$(grep -E "/${target}-[0-9a-f]{16}\$" <<<"$exes" | head -1)
  if [[ -z $exe ]]; then
    echo "cgroup2-vm: no test executable for $target" >&2
    exit 1
  fi
  [[ -e $stage/tests/$target ]] || cp "$exe" "$stage/tests/$target"
  selection+=("$t")
done
lanes=()
for lane in $containerds; do lanes+=("$lane"); done
{
  printf 'STAGE=%q\nTHREADS=%q\nCHURN_CYCLES=%q\n' "$stage" "$threads" "${CG2_CHURN_CYCLES:-100}"
  printf 'LANES=(%s)\n' "$(printf '%q ' "${lanes[@]}")"
  printf 'SELECTION=(%s)\n' "$(printf '%q ' "${selection[@]}")"
} >"$work/lane.env"

# The initramfs: static busybox, /init, the modules that mount the 9p root.
ird=$work/initramfs
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,modules}
cp /bin/busybox "$ird/bin/busybox"
install -m 0755 "$here/init" "$ird/init"
mknod -m 0600 "$ird/dev/console" c 5 1
mknod -m 0666 "$ird/dev/null" c 1 3
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe --show-depends -S "$kv" "$m" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r ko; do
  name=$(basename "$ko")
  case $ko in
    *.xz) xz -dc "$ko" >"$ird/modules/${name%.xz}" && name=${name%.xz} ;;
    *.zst) zstd -qdc "$ko" >"$ird/modules/${name%.zst}" && name=${name%.zst} ;;
    *) cp "$ko" "$ird/modules/" ;;
  esac
  echo "$name" >>"$ird/modules/order"
done
(cd "$ird" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$work/initrd.gz"

console=$work/console.log
echo "== cgroup v2 lane: booting kernel $kv (TCG, ${CG2_SMP:-2} cpus, ${CG2_MEM:-4096} MiB)," \
  "timeout ${timeout_s} s"
t_boot=$(now)
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -cpu max -smp "${CG2_SMP:-2}" -m "${CG2_MEM:-4096}" \
  -nodefaults -display none -monitor none -serial stdio -no-reboot \
  -kernel "/boot/vmlinuz-$kv" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 loglevel=3 panic=1 wasmpod.cmd=$here/guest.sh wasmpod.arg=$work/lane.env" \
  -virtfs "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap" \
  </dev/null >"$console" 2>&1 &
qemu_pid=$!
tail -n +1 -f --pid="$qemu_pid" "$console" | tr -d '\r' &
tail_pid=$!

booted=
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [[ -z $booted ]] && grep -q '^wasmpod-vm: booted' "$console"; then
    booted=$(secs "$t_boot" "$(now)")
  fi
  sleep 0.5
done
rc=0
wait "$qemu_pid" || rc=$?
qemu_pid=
wait "$tail_pid" 2>/dev/null || true
tail_pid=
t_end=$(now)
cp "$console" "$base/last-console.log"

log=$(tr -d '\r' <"$console")
status=$(sed -n 's/^wasmpod-vm: exit status \([0-9]*\)$/\1/p' <<<"$log" | tail -1)
mapfile -t results < <(sed -n 's/^@@ result //p' <<<"$log")
n_ok=$(printf '%s\n' "${results[@]}" | grep -c ' ok ' || true)
n_failed=$(printf '%s\n' "${results[@]}" | grep -c ' FAILED ' || true)

echo
echo "== cgroup v2 lane: results"
for r in "${results[@]}"; do echo "   $r"; done
sed -n 's/^@@ \(lane .*\)$/   \1/p; s/^@@ \(leftover.*\|  .*\|cgroup tree.*\)$/   \1/p' <<<"$log"
echo "   tests run: ${#results[@]}, passed: $n_ok, failed: $n_failed"
uptime=$(sed -n 's/^wasmpod-vm: booted in \([0-9.]*\) s.*/\1/p' <<<"$log")
echo "   VM boot: ${booted:-never} s from QEMU's start to /init's mark (kernel uptime" \
  "${uptime:-?} s), VM run: $(secs "$t_boot" "$t_end") s," \
  "total (deps, build, snapshot, VM): $(secs "$t_start" "$t_end") s"
echo "   console log: $base/last-console.log"

fail=
if ((rc == 124 || rc == 137)); then
  fail="the VM did not finish within ${timeout_s} s (killed)"
elif [[ -z $status ]]; then
  fail="the VM ended (qemu status $rc) without reporting an exit status"
elif ((status != 0)); then
  fail="the lane in the VM exited $status"
elif ((${#results[@]} != ${#selection[@]} * ${#lanes[@]})); then
  fail="${#results[@]} results for $((${#selection[@]} * ${#lanes[@]})) tests"
elif ((n_failed > 0 || n_ok == 0)); then
  fail="$n_failed tests failed"
fi
if [[ -n $fail ]]; then
  echo "== cgroup v2 lane FAILED: $fail" >&2
  exit 1
fi
echo "== cgroup v2 lane passed"
