#!/usr/bin/env bash
# Download Debian trixie's containerd (1.7) and docker.io debs into DIR and unpack them into
# DIR/x without installing them (trixie's libc is newer than bookworm's; see
# /work/shared/ENVIRONMENT.md). Idempotent: does nothing when DIR/x/usr/bin/containerd exists.
# Use bookworm's /usr/sbin/runc with these binaries: trixie's runc needs a newer glibc.
#
# usage: scripts/fetch-trixie.sh DIR
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 DIR" >&2
  exit 2
fi
mkdir -p "$1"
D=$(cd "$1" && pwd)

if [[ -x $D/x/usr/bin/containerd && -x $D/x/usr/bin/docker ]]; then
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
echo "deb $uri trixie main" >"$D/sources.list"
o=(-o "Dir::Etc::sourcelist=$D/sources.list" -o "Dir::Etc::sourceparts=-"
   -o "Dir::State::Lists=$D/lists" -o "Dir::Cache=$D/cache" -o "APT::Sandbox::User=root")

echo "fetch-trixie: downloading containerd, docker.io and docker-cli from $uri trixie into $D"
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
echo "fetch-trixie: $("$D/x/usr/bin/containerd" --version)"
