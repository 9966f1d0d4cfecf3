#!/usr/bin/env bash
# Kubernetes' CRI conformance suite, critest (cri-tools v1.34.0), under runc and under wasmpod in
# the same setup, on the CRI of private containerd 1.7 and 2.1 daemons. Prints passed / failed /
# skipped side by side and fails when a spec that passes under runc does not pass under wasmpod,
# except the specs skipped by name in scripts/critest/skip.txt.
#
# usage: scripts/critest.sh [CONTAINERD_BINARY...]
#          default: .work/trixie/bin/containerd .work/forky/bin/containerd (make trixie forky)
# env:   CRITEST_TOOLS         dir holding critest.xz + crictl.xz (they cannot be built here);
#                              default: ../shared/tools beside this clone, then /work/shared/tools
#        SHIM_DIR              dir holding containerd-shim-wasmpod-v1 (default: target/release)
#        CRITEST_HANDLERS      the runtime handlers to run (default "runc wasmpod")
#        CRITEST_FOCUS         a ginkgo focus regexp, to run a subset while debugging
#        CRITEST_CALL_TIMEOUT  the deadline of every CRI call critest makes (default 30s; critest's
#                              own is 300s, and a pod whose stop hangs costs that much per call;
#                              the longest whole spec takes 7 s here). Ginkgo has no per-spec
#                              timeout flag: this bounds a hanging spec to about one deadline.
#        CRITEST_SUITE_TIMEOUT the deadline of one critest run (default 10m; what is left unrun
#                              then counts as not passed)
#        CRITEST_WORK          where each run keeps its logs (default /tmp/wasmpod-critest-make)
#        LOG_LEVEL             containerd's log level (default info)
#
# The setup (facts from ../shared/tools/README.md): critest always pulls, so its fixture images
# (scripts/critest/fixtures.sh, built once into .work/critest/images) are served under their exact
# names by a private docker-registry on 127.0.0.1, which containerd's registry hosts config makes
# the only host for registry.k8s.io, gcr.io and docker.io. Each run gets a fresh containerd with
# its own root, state and sockets, both handlers configured (runc, the default, with a private
# runc root; wasmpod), the CRI on a bridge on 10.231.19.0/24, restrict_oom_score_adj (no
# CAP_SYS_RESOURCE here). After each run: every daemon, shim and container process it left is
# stopped by PID, mounts, cgroups, the bridge and hostport rules are removed (cleanup.log says what
# had to be killed). Run dirs keep containerd.log (with the shims' log lines), critest.log,
# junit.xml and wall (seconds); report.txt is the side-by-side report.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/scripts/critest
CACHE=$ROOT/.work/critest
W=${CRITEST_WORK:-/tmp/wasmpod-critest-make}
SHIM_DIR=$(readlink -f "${SHIM_DIR:-$ROOT/target/release}")
read -r -a HANDLERS <<<"${CRITEST_HANDLERS:-runc wasmpod}"
CALL_TIMEOUT=${CRITEST_CALL_TIMEOUT:-30s}
SUITE_TIMEOUT=${CRITEST_SUITE_TIMEOUT:-10m}
BR=wpcrit0
SUBNET=10.231.19.0/24
NET=wasmpod-critest # the CNI network's name, which hostport rules carry
# Serializes with other critest runs on this machine (the shared tools' critest-run.sh takes the
# same lock): critest's host-network, hostPort and host IPC specs use fixed host resources.
LOCK_DIR=/tmp/wasmpod-critest

die() {
  echo "critest.sh: $*" >&2
  exit 2
}

if (($# == 0)); then
  set -- "$ROOT/.work/trixie/bin/containerd" "$ROOT/.work/forky/bin/containerd"
fi
for c; do [[ -x $c ]] || die "no containerd at $c (make trixie forky)"; done
if [[ " ${HANDLERS[*]} " == *" wasmpod "* ]]; then
  [[ -x $SHIM_DIR/containerd-shim-wasmpod-v1 ]] || die "no $SHIM_DIR/containerd-shim-wasmpod-v1 (make build)"
fi

# --- critest and crictl, unpacked from the prebuilt tools (cri-tools cannot be built here)
TOOLS_SRC=""
if [[ -n ${CRITEST_TOOLS:-} ]]; then
  [[ -f $CRITEST_TOOLS/critest.xz ]] || die "CRITEST_TOOLS=$CRITEST_TOOLS holds no critest.xz"
  TOOLS_SRC=$CRITEST_TOOLS
else
  for d in "$ROOT/../shared/tools" /work/shared/tools; do
    if [[ -f $d/critest.xz && -f $d/crictl.xz ]]; then
      TOOLS_SRC=$(cd "$d" && pwd)
      break
    fi
  done
fi
[[ -n $TOOLS_SRC ]] || die "critest not found: no critest.xz + crictl.xz (cri-tools v1.34.0, prebuilt) in
  \$CRITEST_TOOLS, $ROOT/../shared/tools or /work/shared/tools; set CRITEST_TOOLS to the dir holding them"
mkdir -p "$CACHE/bin" "$W" "$LOCK_DIR"
for t in critest crictl; do
  if [[ ! $CACHE/bin/$t -nt $TOOLS_SRC/$t.xz ]]; then
    xz -dc "$TOOLS_SRC/$t.xz" >"$CACHE/bin/$t.new" && chmod 755 "$CACHE/bin/$t.new" \
      && mv "$CACHE/bin/$t.new" "$CACHE/bin/$t" || die "cannot unpack $TOOLS_SRC/$t.xz"
  fi
done
CRITEST=$CACHE/bin/critest
CRICTL_BIN=$CACHE/bin/crictl

exec 9>"$LOCK_DIR/lock"
if ! flock -n 9; then
  echo "== waiting for another critest run on this machine ($LOCK_DIR/lock)"
  flock -w 3600 9 || die "another critest run held $LOCK_DIR/lock for an hour"
fi
ip link show "$BR" >/dev/null 2>&1 && die "bridge $BR exists (a leftover? ip link del $BR)"
# Every run uses a copy of the shim taken now, so that a rebuild during the runs cannot mix two.
SHIM_INFO="none"
if [[ -x $SHIM_DIR/containerd-shim-wasmpod-v1 ]]; then
  rm -rf "$W/shim" && mkdir -p "$W/shim"
  cp "$SHIM_DIR/containerd-shim-wasmpod-v1" "$W/shim/"
  SHIM_INFO="$SHIM_DIR/containerd-shim-wasmpod-v1, built $(date -r "$SHIM_DIR/containerd-shim-wasmpod-v1" '+%F %T'), sha256 $(sha256sum "$W/shim/containerd-shim-wasmpod-v1" | cut -c1-12)"
  SHIM_DIR=$W/shim
fi
echo "== wasmpod shim: $SHIM_INFO"

# --- fixture images, rebuilt when their sources change
IMG=$CACHE/images
if [[ ! -f $IMG/index.json ]] \
  || [[ -n $(find "$HERE/fixtures.sh" "$HERE/fixtures" -newer "$IMG/index.json" -print -quit) ]]; then
  echo "== building critest's fixture images into $IMG"
  "$HERE/fixtures.sh" build "$IMG"
fi

# --- the registry: plain HTTP on a free loopback port, data kept in .work/critest/registry
REG_PORT=""
for p in $(seq 5393 5499); do
  if ! ss -Hltn "sport = :$p" | grep -q .; then
    REG_PORT=$p
    break
  fi
done
[[ -n $REG_PORT ]] || die "no free port in 5393-5499 for the registry"
REGPID=""
CPID=""
R=""
cat >"$CACHE/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $CACHE/registry}, delete: {enabled: true}}
http: {addr: "127.0.0.1:$REG_PORT"}
EOF
setsid docker-registry serve "$CACHE/registry.yml" >"$W/registry.log" 2>&1 &
REGPID=$!

CRICTL() {
  "$CRICTL_BIN" --runtime-endpoint "unix://$R/containerd.sock" --image-endpoint "unix://$R/containerd.sock" \
    --timeout 10s "$@"
}
SHM0=$(awk 'NR>1{print $2}' /proc/sysvipc/shm)

# Stops this run's daemon and everything it left, by PID; keeps the logs.
stop_run() {
  [[ -n $R ]] || return 0
  local -
  set +e
  local ids p m d id chain rule
  if [[ -n $CPID ]]; then
    for p in $(CRICTL pods -q 2>/dev/null); do
      CRICTL stopp "$p" >/dev/null 2>&1
      CRICTL rmp -f "$p" >/dev/null 2>&1
    done
    ids=$(ls "$R/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null)
    kill "$CPID" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$CPID" 2>/dev/null
    wait "$CPID" 2>/dev/null
    CPID=""
    # Its shims carry its socket on their command line.
    for p in $(pgrep -f -- "-address $R/containerd.sock"); do
      echo "killed shim $p $( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null)" >>"$R/cleanup.log"
      kill -9 "$p" 2>/dev/null
    done
    # Processes whose root is one of its snapshots (containers the runtime did not end).
    for p in /proc/[0-9]*; do
      awk '$5=="/"' "$p/mountinfo" 2>/dev/null | grep -qF "$R/" || continue
      echo "killed leftover ${p#/proc/} $( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" >>"$R/cleanup.log"
      kill -9 "${p#/proc/}" 2>/dev/null
    done
    sleep 1
    for id in $ids; do
      find /sys/fs/cgroup -mindepth 2 -maxdepth 5 -depth -type d -name "*$id*" -exec rmdir {} + 2>/dev/null
    done
  fi
  for m in $(awk -v r="$R/" 'index($2,r)==1{print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  # hostport rules of pods whose CNI DEL never ran
  iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -F "dnat name: \\\"$NET\\\"" | while read -r rule; do
    chain=$(grep -o 'CNI-DN-[0-9a-f]*' <<<"$rule")
    eval "iptables -t nat ${rule/-A/-D}" && iptables -t nat -F "$chain" && iptables -t nat -X "$chain"
  done
  ip link del "$BR" 2>/dev/null
  rmdir /sys/fs/cgroup/*/test.slice 2>/dev/null # critest's cgroup parent, once empty
  # critest's mount propagation specs leave /tmp/test<pod id>... when the container never starts
  for d in /tmp/test*; do
    [[ ${d:9:64} =~ ^[0-9a-f]{64}$ ]] && grep -qs "${d:9:64}" "$R/containerd.log" || continue
    for m in $(awk -v r="$d/" 'index($2,r)==1{print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
    echo "removed critest's leftover $d" >>"$R/cleanup.log"
    rm -rf --one-file-system "$d"
  done
  # critest's host IPC specs leave a 1 MiB SysV segment (ipcmk) each
  for id in $(awk 'NR>1 && $4==1048576 && $7==0 {print $2}' /proc/sysvipc/shm); do
    grep -qx "$id" <<<"$SHM0" || ipcrm -m "$id" 2>/dev/null
  done
  rm -rf --one-file-system "$R/root" "$R/state" "$R/opt" "$R/runc"
  R=""
}
on_exit() {
  stop_run
  [[ -z $REGPID ]] || kill "$REGPID" 2>/dev/null || true
}
trap on_exit EXIT

for _ in $(seq 40); do curl -fs "http://127.0.0.1:$REG_PORT/v2/" >/dev/null && break; sleep 0.25; done
curl -fs "http://127.0.0.1:$REG_PORT/v2/" >/dev/null || die "the registry did not start (see $W/registry.log)"
if [[ ! $CACHE/registry/pushed -nt $IMG/index.json ]]; then
  echo "== pushing the fixtures to the registry"
  "$HERE/fixtures.sh" list | while read -r tag ref; do
    skopeo copy -q --dest-tls-verify=false "oci:$IMG:$tag" "docker://127.0.0.1:$REG_PORT/${ref#*/}" >/dev/null \
      || die "pushing $ref failed"
  done
  touch "$CACHE/registry/pushed"
fi

# write_config R MAJOR: containerd's config, CNI conflist and registry hosts for run dir R.
write_config() {
  local r=$1 major=$2 host p
  for host in registry.k8s.io gcr.io docker.io; do
    mkdir -p "$r/certs.d/$host"
    printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "$REG_PORT" "$REG_PORT" >"$r/certs.d/$host/hosts.toml"
  done
  cat >"$r/net.d/10-$NET.conflist" <<EOF
{"cniVersion":"0.4.0","name":"$NET","plugins":[
 {"type":"bridge","bridge":"$BR","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$SUBNET"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$r/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
EOF
  if ((major >= 2)); then
    p="plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes"
    cat >"$r/config.toml" <<EOF
version = 3
root = '$r/root'
state = '$r/state'
[grpc]
  address = '$r/containerd.sock'
[ttrpc]
  address = '$r/containerd.sock.ttrpc'
[debug]
  level = '${LOG_LEVEL:-info}'
[plugins.'io.containerd.internal.v1.opt']
  path = '$r/opt'
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.transfer.v1.local']
  config_path = '$r/certs.d'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$r/certs.d'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '$r/net.d'
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [$p.runc]
      runtime_type = 'io.containerd.runc.v2'
      [$p.runc.options]
        Root = '$r/runc'
    [$p.wasmpod]
      runtime_type = 'io.containerd.wasmpod.v1'
EOF
  else
    p='plugins."io.containerd.grpc.v1.cri".containerd.runtimes'
    cat >"$r/config.toml" <<EOF
version = 2
root = "$r/root"
state = "$r/state"
[grpc]
  address = "$r/containerd.sock"
[ttrpc]
  address = "$r/containerd.sock.ttrpc"
[debug]
  level = "${LOG_LEVEL:-info}"
[plugins."io.containerd.internal.v1.opt"]
  path = "$r/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$r/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$r/certs.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [$p.runc]
      runtime_type = "io.containerd.runc.v2"
      [$p.runc.options]
        Root = "$r/runc"
    [$p.wasmpod]
      runtime_type = "io.containerd.wasmpod.v1"
EOF
  fi
}

# Ginkgo skips: the specs skip.txt names, as literal regexps (for every handler, or for wasmpod).
skips_for() {
  local h=$1 who spec
  while IFS='|' read -r who spec _; do
    who=$(xargs <<<"$who")
    spec=$(sed -E 's/^ +| +$//g' <<<"$spec")
    [[ $who == both || $who == "$h" ]] || continue
    printf '%s\n' "--ginkgo.skip=$(sed -E 's/[][\\.^$*+?(){}|/]/\\&/g' <<<"$spec")"
  done < <(grep -vE '^\s*(#|$)' "$HERE/skip.txt")
}

# run_one CONTAINERD HANDLER: one critest run against a fresh daemon; prints its counts.
run_one() {
  local ctd=$1 h=$2 ver major t0 skips
  ver=$("$ctd" --version | awk '{print $3}')
  ver=${ver%%[~+]*}
  major=${ver%%.*}
  R=$W/$ver-$h
  for m in $(awk -v r="$R/" 'index($2,r)==1{print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  rm -rf --one-file-system "$R"
  mkdir -p "$R/net.d" "$R/ipam" "$R/bin"
  write_config "$R" "$major"
  # containerd-shim-runc-v2 from the containerd binary's own dir; runc is bookworm's (/usr/sbin)
  ln -s "$(dirname "$(readlink -f "$ctd")")/containerd-shim-runc-v2" "$R/bin/"
  PATH=$SHIM_DIR:$R/bin:/usr/sbin:/usr/bin:/sbin:/bin setsid "$ctd" --config "$R/config.toml" \
    >"$R/containerd.log" 2>&1 &
  CPID=$!
  for _ in $(seq 60); do CRICTL info >/dev/null 2>&1 && break; sleep 0.5; done
  CRICTL info >/dev/null 2>&1 || die "containerd $ver's CRI did not come up (see $R/containerd.log)"
  echo "== critest: containerd $ver, handler $h; logs in $R"
  mapfile -t skips < <(skips_for "$h")
  t0=$(date +%s)
  # No retries (--ginkgo.flake-attempts stays 0): a spec that passes only sometimes is a finding.
  env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    "$CRITEST" --runtime-endpoint "unix://$R/containerd.sock" --image-endpoint "unix://$R/containerd.sock" \
    --runtime-handler "$h" --runtime-service-timeout "$CALL_TIMEOUT" --image-service-timeout "$CALL_TIMEOUT" \
    --ginkgo.timeout "$SUITE_TIMEOUT" --ginkgo.junit-report "$R/junit.xml" --ginkgo.seed 1 \
    --ginkgo.no-color --ginkgo.v "${skips[@]}" ${CRITEST_FOCUS:+--ginkgo.focus="$CRITEST_FOCUS"} \
    >"$R/critest.log" 2>&1 || true
  echo $(($(date +%s) - t0)) >"$R/wall"
  "$ctd" --version >"$R/version"
  stop_run
  grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$W/$ver-$h/critest.log" || echo "   critest did not finish (see critest.log)"
  RUNS+=("$ver:$h:$W/$ver-$h")
}

RUNS=()
T0=$(date +%s)
for ctd; do
  for h in "${HANDLERS[@]}"; do run_one "$ctd" "$h"; done
done
echo "== critest: all runs took $(($(date +%s) - T0)) s"
{
  echo "wasmpod shim: $SHIM_INFO"
  python3 "$HERE/report.py" --skip-list "$HERE/skip.txt" "${RUNS[@]}"
} | tee "$W/report.txt"
