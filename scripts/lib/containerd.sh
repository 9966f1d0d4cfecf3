# Private containerd for scripts (demo, bench): own root, state and sockets under a temp dir,
# the wasmpod shim first on its PATH, stopped by PID on exit. Source it, then:
#   containerd_start [BINARY]   sets CTD_DIR, CTD_SOCK, CTD_PID; `ctd` runs ctr against it
#   containerd_stop             (also run by the EXIT trap)
# Never touches /run/containerd or /var/lib/containerd (shim sockets aside, which every shim
# places under /run/containerd/s and removes when it exits).

WASMPOD_ROOT=${WASMPOD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WASMPOD_BIN=${WASMPOD_BIN:-$WASMPOD_ROOT/target/release}

ctd() { ctr -a "$CTD_SOCK" "$@"; }

containerd_start() {
  local bin=${1:-/usr/bin/containerd}
  CTD_DIR=$(mktemp -d /tmp/wasmpod-ctd.XXXXXX)
  CTD_SOCK=$CTD_DIR/containerd.sock
  # containerd 1.x writes its config with double quotes, 2.x with single ones.
  "$bin" config default |
    sed -e "s|^root = .*|root = \"$CTD_DIR/root\"|" \
        -e "s|^state = .*|state = \"$CTD_DIR/state\"|" \
        -e "s|^disabled_plugins = .*|disabled_plugins = [\"io.containerd.grpc.v1.cri\"]|" \
        -e "s|address = [\"']/run/containerd/containerd.sock[\"']|address = \"$CTD_SOCK\"|" \
        -e "/^\[ttrpc\]/,/address/ s|address = [\"'][\"']|address = \"$CTD_DIR/ttrpc.sock\"|" \
        -e "s|path = [\"']/opt/containerd[\"']|path = \"$CTD_DIR/opt\"|" \
        >"$CTD_DIR/config.toml"
  # Refuse to start a daemon that would still serve on (or keep state in) the node's own
  # paths: a config layout the rewrite above does not know.
  if grep -qE "/run/containerd/containerd.sock|^(root|state) = .(/var/lib|/run)/containerd" "$CTD_DIR/config.toml"; then
    echo "containerd_start: cannot make $bin's default config private" >&2
    rm -rf "$CTD_DIR"
    return 1
  fi
  # Extra environment for the daemon (and so its shims), e.g. CTD_ENV="WASMPOD_CACHE_DIR=/x"
  # (@CTD_DIR@ in it stands for the daemon's private directory), and extra daemon flags, e.g.
  # CTD_ARGS="--log-level debug".
  local extra_env=${CTD_ENV:-}
  # containerd's state (bundles, shim and runtime state) on a tmpfs, as /run/containerd is on a
  # node: on a disk filesystem every state file rewritten costs a flush (ext4 writes out a file
  # truncated and written again when it is closed), for runc's containers as for wasmpod's.
  if [[ ${CTD_STATE_TMPFS:-1} == 1 ]]; then
    mkdir -p "$CTD_DIR/state"
    mount -t tmpfs -o mode=0711 wasmpod-ctd-state "$CTD_DIR/state"
  fi
  env ${extra_env//@CTD_DIR@/$CTD_DIR} PATH="$WASMPOD_BIN:/usr/sbin:/usr/bin:/sbin:/bin" \
    "$bin" --config "$CTD_DIR/config.toml" ${CTD_ARGS:-} >"$CTD_DIR/containerd.log" 2>&1 &
  CTD_PID=$!
  trap containerd_stop EXIT
  for _ in $(seq 100); do
    [[ -S $CTD_SOCK ]] && ctd version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "containerd did not start; its log:" >&2
  tail -20 "$CTD_DIR/containerd.log" >&2
  return 1
}

containerd_stop() {
  [[ -n ${CTD_PID:-} ]] || return 0
  # Every step runs even if one fails (errexit would end the EXIT trap at the first: a
  # `kill -9` of a daemon that already stopped left the shims, mounts and directory behind).
  local -
  set +e
  for t in $(ctd task ls -q 2>/dev/null); do ctd task kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 0.3
  for t in $(ctd task ls -q 2>/dev/null); do ctd task rm -f "$t" >/dev/null 2>&1; done
  for c in $(ctd containers ls -q 2>/dev/null); do ctd containers rm "$c" >/dev/null 2>&1; done
  kill "$CTD_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$CTD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$CTD_PID" 2>/dev/null
  # Shims of this daemon (they name its socket on their command line): SIGTERM first, which
  # an idle group shim takes to leave cleanly (its socket removed), then SIGKILL.
  if pkill -TERM -f -- "-address $CTD_SOCK" 2>/dev/null; then
    for _ in $(seq 10); do pgrep -f -- "-address $CTD_SOCK" >/dev/null || break; sleep 0.1; done
  fi
  pkill -9 -f -- "-address $CTD_SOCK" 2>/dev/null
  grep -o " $CTD_DIR[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$CTD_DIR"
  CTD_PID=
}

# image_import NAME [wasmpod image build args...] -> imports NAME into the daemon.
image_import() {
  local tar; tar=$CTD_DIR/$(echo "$1" | tr "/:" "__").tar
  local name=$1
  shift
  "$WASMPOD_BIN/wasmpod" image build "$@" -t "$name" -o "$tar" >/dev/null
  ctd images import --all-platforms "$tar" >/dev/null
}

# busybox_rootfs DIR: a minimal native rootfs from the node's static busybox.
busybox_rootfs() {
  local dir=$1
  mkdir -p "$dir/bin"
  cp "$(command -v busybox)" "$dir/bin/busybox"
  for c in sh echo cat sleep ls id true; do ln -sf busybox "$dir/bin/$c"; done
}
