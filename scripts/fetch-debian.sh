#!/usr/bin/env bash
# Download a newer Debian suite's containerd, docker.io and docker-cli debs into DIR and unpack
# them into DIR/x without installing them (their libc is newer than bookworm's; see
# /work/shared/ENVIRONMENT.md): trixie gives containerd 1.7 + Docker 26, forky containerd 2.1 +
# Docker 28. Idempotent: does nothing when DIR/x holds containerd and docker.
#
# Use bookworm's /usr/sbin/runc with these binaries: the newer runc needs glibc >= 2.38. DIR/bin
# holds symlinks to the daemons and clients only (never runc), so that it can go first on a PATH.
#
# usage: scripts/fetch-debian.sh SUITE DIR
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 SUITE DIR" >&2
  exit 2
fi
SUITE=$1
mkdir -p "$2"
D=$(cd "$2" && pwd)

link_bin() {
  mkdir -p "$D/bin"
  for b in usr/bin/containerd usr/bin/ctr usr/bin/containerd-shim-runc-v2 usr/sbin/dockerd \
    usr/bin/docker usr/bin/docker-proxy usr/sbin/docker-proxy; do
    [[ -e $D/x/$b ]] && ln -sfn "$D/x/$b" "$D/bin/$(basename "$b")"
  done
  return 0
}

if [[ -x $D/x/usr/bin/containerd && -x $D/x/usr/bin/docker ]]; then
  link_bin
  exit 0
fi

# The mirror apt already uses (deb822 sources first, then the one-line format).
uri=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $uri && -f /etc/apt/sources.list ]]; then
  uri=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
fi
uri=${uri:-http://deb.debian.org/debian}

mkdir -p "$D/lists/partial" "$D/cache/archives/partial"
echo "deb $uri $SUITE main" >"$D/sources.list"
o=(-o "Dir::Etc::sourcelist=$D/sources.list" -o "Dir::Etc::sourceparts=-"
   -o "Dir::State::Lists=$D/lists" -o "Dir::Cache=$D/cache" -o "APT::Sandbox::User=root")

echo "fetch-debian: downloading containerd, docker.io and docker-cli from $uri $SUITE into $D"
apt-get "${o[@]}" -qq update
rm -f "$D"/*.deb
(cd "$D" && apt-get "${o[@]}" -qq download containerd docker.io docker-cli)

rm -rf "$D/x.tmp"
mkdir -p "$D/x.tmp"
for f in "$D"/*.deb; do
  dpkg -x "$f" "$D/x.tmp"
done
rm -rf "$D/x"
mv "$D/x.tmp" "$D/x"
link_bin
echo "fetch-debian: $("$D/x/usr/bin/containerd" --version)"
