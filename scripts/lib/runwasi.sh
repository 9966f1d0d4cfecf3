# runwasi's wasmtime shim, the peer of `make bench` (it cannot be built here: it comes prebuilt,
# xz-compressed, in ../shared/tools or RUNWASI_XZ). Sourced; `runwasi_shim` prints its path,
# unpacking it once into .work/runwasi, or fails saying where it looked.
runwasi_shim() {
  local repo bin xz_src="${RUNWASI_XZ:-}" cand
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  bin=$repo/.work/runwasi/containerd-shim-wasmtime-v1
  if [[ ! -x $bin ]]; then
    for cand in "$repo/../shared/tools/containerd-shim-wasmtime-v1.xz" /work/shared/tools/containerd-shim-wasmtime-v1.xz; do
      [[ -z $xz_src && -f $cand ]] && xz_src=$cand
    done
    if [[ -z $xz_src ]]; then
      echo "no containerd-shim-wasmtime-v1.xz (../shared/tools, or set RUNWASI_XZ)" >&2
      return 1
    fi
    mkdir -p "${bin%/*}"
    xz -dc "$xz_src" >"$bin.tmp" && chmod +x "$bin.tmp" && mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}
