# Many idle wasm containers at once (`make bench`, scripts/bench-many.sh). Sourced, after
# scripts/lib/containerd.sh and scripts/lib/timing.sh, with a daemon running (ctd) and
# docker.io/library/sleeper:bench imported.
#
# many_idle N GROUP_SIZE: starts N idle sleepers, 8 at a time: each with its own shim when
# GROUP_SIZE is 0, else in opt-in groups of GROUP_SIZE (one shim each, the
# io.containerd.wasmpod.group annotation). Prints the start rate, how many are RUNNING by
# State, PSS per container with every process counted (shims included) and what the node's
# available memory lost per container (the kernel's objects included), then SIGTERMs each,
# counts /tasks/exit events with 143 and the time until the last, and removes them all.

# PSS (kB) and count of every process of the containers named PREFIX*: their shims and their
# cgroups' processes (a container process forked from its shim matches both: counted once).
pss_of_all() {
  local prefix=$1 total=0 n=0 p
  for p in $( (pgrep -f -- "-id $prefix[0-9]+ -address $CTD_SOCK"
    cat /sys/fs/cgroup/pids/default/$prefix*/cgroup.procs /sys/fs/cgroup/default/$prefix*/cgroup.procs 2>/dev/null) | sort -u); do
    total=$((total + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0)))
    n=$((n + 1))
  done
  echo "$total $n"
}

# In parallel, 8 at a time: `ctd ARGS...` for every line on stdin, `{}` in ARGS replaced by it.
each_task() { xargs -P 8 -I{} bash -c "CTD_SOCK='$CTD_SOCK'; ctd $*"; }

many_idle() {
  export -f ctd
  local n=$1 size=$2 prefix t0 t1 running r events e
  if ((size > 0)); then
    prefix=many-g
    echo "   $n in groups of $size (opt-in, one shim per group)"
  else
    prefix=many-o
    echo "   $n, each with its own shim (the default)"
  fi
  # Lines "ID [ANNOTATION]": the group of container i is i / size.
  seq "$n" | awk -v p="$prefix" -v s="$size" \
    '{ if (s > 0) printf "%s%d --annotation io.containerd.wasmpod.group=%s-%d\n", p, $1, p, int(($1 - 1) / s); else printf "%s%d\n", p, $1 }' \
    >"$CTD_DIR/many.ids"
  local avail0 avail1
  avail0=$(awk '/^MemAvailable:/{print $2}' /proc/meminfo)
  t0=$(now_ms)
  xargs -P 8 -L1 bash -c "CTD_SOCK='$CTD_SOCK'; id=\$0; ctd run -d \"\$@\" --runtime io.containerd.wasmpod.v1 docker.io/library/sleeper:bench \"\$id\" /app.wasm 100000 >/dev/null" \
    <"$CTD_DIR/many.ids"
  t1=$(now_ms)
  sleep 3
  running=$(ctd task ls | awk -v p="$prefix" 'index($1, p) == 1 && $3 == "RUNNING"' | wc -l)
  r=($(pss_of_all "$prefix"))
  avail1=$(awk '/^MemAvailable:/{print $2}' /proc/meminfo)
  awk -v n="$n" -v ms="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" -v s="${r[0]}" -v p="${r[1]}" -v up="$running" \
    'BEGIN{printf "   started in %.1f s (%.1f/s); %d RUNNING by State; %.2f MB PSS each, %d processes in all\n", ms / 1000, n / (ms / 1000), up, s / n / 1024, p}'
  # Kernel objects included (namespaces, cgroups, mounts, page tables) and containerd's share.
  awk -v n="$n" -v a="$avail0" -v b="$avail1" \
    'BEGIN{printf "   the node'"'"'s available memory fell by %.2f MB per container (kernel and containerd included)\n", (a - b) / n / 1024}'
  ctr -a "$CTD_SOCK" events >"$CTD_DIR/events" &
  events=$!
  sleep 0.5
  t0=$(now_ms)
  ctd task ls -q | grep "^$prefix" | each_task task kill {}
  for _ in $(seq 600); do
    [[ $(grep -c '/tasks/exit.*"exit_status":143' "$CTD_DIR/events") -ge $n ]] && break
    sleep 0.5
  done
  t1=$(now_ms)
  kill "$events"
  e=$(grep -c '/tasks/exit.*"exit_status":143' "$CTD_DIR/events")
  awk -v ms="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" -v e="$e" \
    'BEGIN{printf "   SIGTERM to each: %d exited with 143, all within %.1f s\n", e, ms / 1000}'
  # (ctr warns of each non-zero exit code as it deletes.)
  ctd task ls -q | grep "^$prefix" | each_task task rm {} 2>/dev/null
  ctd containers ls -q | grep "^$prefix" | each_task containers rm {}
}
