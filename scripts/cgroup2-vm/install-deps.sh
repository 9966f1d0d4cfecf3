#!/usr/bin/env bash
# What the cgroup v2 lane needs beyond scripts/install-deps.sh: QEMU, a stock Debian kernel
# (vmlinuz in /boot, its modules in /lib/modules, both read by the VM) and a static busybox
# for the initramfs. Idempotent: installs only what is missing, silent when all is there.
set -euo pipefail

packages=(qemu-system-x86 linux-image-amd64 busybox-static kmod cpio gzip coreutils)

source "$(dirname "$0")/../lib/apt.sh"
apt_install_missing cgroup2-vm "${packages[@]}"
