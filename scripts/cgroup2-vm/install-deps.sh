#!/usr/bin/env bash
# What the cgroup v2 lane needs beyond scripts/install-deps.sh: QEMU, a stock Debian kernel
# (vmlinuz in /boot, its modules in /lib/modules, both read by the VM) and a static busybox
# for the initramfs. Idempotent: installs only what is missing, silent when all is there.
set -euo pipefail

packages=(qemu-system-x86 linux-image-amd64 busybox-static kmod cpio gzip coreutils)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0

if ((EUID != 0)); then
  echo "cgroup2-vm: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "cgroup2-vm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
