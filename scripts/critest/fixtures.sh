#!/usr/bin/env bash
# Builds the images critest v1.34.0 pulls, as an OCI layout (umoci), and prints the list of
# "LAYOUT_TAG IMAGE_NAME" pairs that the harness pushes to its registry.
#
# usage: scripts/critest/fixtures.sh build OUT_DIR     the OCI layout at OUT_DIR (replaced)
#        scripts/critest/fixtures.sh list              the tag/name pairs, one a line
#
# critest always pulls, and its images (registry.k8s.io, gcr.io/k8s-staging-cri-tools) cannot be
# fetched here, so these are stand-ins built from Debian's dynamic busybox (every applet a hard
# link in /bin, its libc copied in), like upstream's busybox-based test images. What each must
# contain comes from cri-tools' pkg/validate, pkg/framework and images/ (the facts are in
# ../shared/tools/README.md). Not built: gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:...,
# a digest no rebuild can reproduce (its spec is skipped by name, see skip.txt).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/fixtures

list() {
  cat <<'EOF'
pause               registry.k8s.io/pause:3.10
busybox             registry.k8s.io/e2e-test-images/busybox:1.29-2
nginx               registry.k8s.io/e2e-test-images/nginx:1.14-2
httpd               registry.k8s.io/e2e-test-images/httpd:2.4.39-4
nonewprivs          registry.k8s.io/e2e-test-images/nonewprivs:1.3
hostnet-nginx       gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest
user-uid            gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest
user-username       gcr.io/k8s-staging-cri-tools/test-image-user-username:latest
user-uid-group      gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest
user-username-group gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest
predefined-group    gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest
test-latest         gcr.io/k8s-staging-cri-tools/test-image-latest:latest
test-test           gcr.io/k8s-staging-cri-tools/test-image-tag:test
test-all            gcr.io/k8s-staging-cri-tools/test-image-tag:all
test-1              gcr.io/k8s-staging-cri-tools/test-image-1:latest
test-2              gcr.io/k8s-staging-cri-tools/test-image-2:latest
test-3              gcr.io/k8s-staging-cri-tools/test-image-3:latest
test-same           gcr.io/k8s-staging-cri-tools/test-image-tags:1
test-same           gcr.io/k8s-staging-cri-tools/test-image-tags:2
test-same           gcr.io/k8s-staging-cri-tools/test-image-tags:3
EOF
}

die() {
  echo "critest fixtures: $*" >&2
  exit 1
}
U() { umoci "$@" >/dev/null || die "umoci $*"; }

# derive NEW FROM [DIR_TO_ADD|""] [umoci config options...]
derive() {
  local new=$1 from=$2 dir=$3
  shift 3
  U tag --image "$IMG:$from" "$new"
  [[ -z $dir ]] || U insert --image "$IMG:$new" "$dir" /
  (($# == 0)) || U config --image "$IMG:$new" "$@"
}

build() {
  IMG=$1
  local b r
  b=$(mktemp -d /tmp/wasmpod-critest-fixtures.XXXXXX)
  # shellcheck disable=SC2064 # expand now: $b is local
  trap "rm -rf '$b'" EXIT
  r=$b/bb
  mkdir -p "$b/deb"
  (cd "$b" && apt-get download busybox && dpkg -x busybox_*.deb deb) >/dev/null 2>&1 \
    || die "cannot get Debian's busybox package (apt-get download busybox)"

  # The busybox root every image starts from.
  mkdir -p "$r"/{bin,etc,root,home,var/run,usr/sbin,usr/bin,lib/x86_64-linux-gnu,lib64}
  install -d -m 1777 "$r/tmp"
  cp "$b/deb/bin/busybox" "$r/bin/"
  for a in $("$r/bin/busybox" --list); do [[ -e $r/bin/$a ]] || ln "$r/bin/busybox" "$r/bin/$a"; done
  for l in $(ldd "$r/bin/busybox" | grep -o '/[^ ]*'); do cp -L "$l" "$r/lib/x86_64-linux-gnu/"; done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"
  install -m 0755 "$SRC/pgrep" "$SRC/ipcs" "$r/bin/"
  # The user images need their users and groups (images/image-user of cri-tools).
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
  printf '%s\n' root:x:0: daemon:x:1: bin:x:2: sys:x:3: adm:x:4: tty:x:5: wheel:x:10:root \
    www-data:x:33: users:x:100: nogroup:x:65534: >"$r/etc/group"

  # pause and nnp: small static C programs.
  mkdir -p "$b/pause" "$b/nnp/usr/local/bin"
  gcc -static -Os -s -o "$b/pause/pause" "$SRC/pause.c" \
    && gcc -static -Os -s -o "$b/nnp/usr/local/bin/nnp" "$SRC/nnp.c" \
    || die "gcc -static failed (gcc and libc6-dev installed?)"
  chmod 4755 "$b/nnp/usr/local/bin/nnp"

  # nginx, hostnet-nginx (port 12003, as images/hostnet-nginx) and httpd stand-ins.
  mkdir -p "$b/nginx/usr/sbin" "$b/nginx/etc/nginx/conf.d" "$b/nginx/usr/share/nginx/html" \
    "$b/hostnet/etc/nginx/conf.d" "$b/httpd/usr/local/bin" "$b/httpd/usr/local/apache2/htdocs"
  install -m 0755 "$SRC/nginx" "$b/nginx/usr/sbin/"
  echo '<html><body>nginx stand-in</body></html>' >"$b/nginx/usr/share/nginx/html/index.html"
  printf 'server {\n    listen       %s;\n    root /usr/share/nginx/html;\n}\n' 80 \
    >"$b/nginx/etc/nginx/conf.d/default.conf"
  printf 'server {\n    listen       %s;\n    root /usr/share/nginx/html;\n}\n' 12003 \
    >"$b/hostnet/etc/nginx/conf.d/default.conf"
  install -m 0755 "$SRC/httpd-foreground" "$b/httpd/usr/local/bin/"
  echo '<html><body>It works!</body></html>' >"$b/httpd/usr/local/apache2/htdocs/index.html"

  # images/image-predefined-group: default-user (1000) is also in group-defined-in-image (50000).
  mkdir -p "$b/group/etc" "$b/group/home/default-user"
  { cat "$r/etc/passwd"; echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh'; } \
    >"$b/group/etc/passwd"
  { cat "$r/etc/group"; echo 'default-user:x:1000:'; echo 'group-defined-in-image:x:50000:default-user'; } \
    >"$b/group/etc/group"

  rm -rf "$IMG"
  U init --layout "$IMG"
  U new --image "$IMG:pause"
  U insert --image "$IMG:pause" "$b/pause" /
  U config --image "$IMG:pause" --config.entrypoint /pause
  U new --image "$IMG:busybox"
  U insert --image "$IMG:busybox" "$r" /
  U config --image "$IMG:busybox" --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  derive nginx busybox "$b/nginx" --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
    --config.exposedports 80/tcp
  derive hostnet-nginx nginx "$b/hostnet" --config.exposedports 12003/tcp
  derive httpd busybox "$b/httpd" --config.cmd httpd-foreground --config.exposedports 80/tcp
  derive nonewprivs busybox "$b/nnp" --config.entrypoint /usr/local/bin/nnp --clear=config.cmd
  # images/image-user, with each USER of its build script
  derive user-uid busybox "" --config.user 1002
  derive user-username busybox "" --config.user www-data
  derive user-uid-group busybox "" --config.user 1003:1004
  derive user-username-group busybox "" --config.user www-data:1004
  derive predefined-group busybox "$b/group" --config.user 1000
  # images/image-test: one file each, so that every image differs
  for t in latest test all 1 2 3 same; do
    mkdir -p "$b/t-$t"
    echo "$t" >"$b/t-$t/test-image-$t"
    derive "test-$t" busybox "$b/t-$t"
  done
}

case ${1:-} in
  list) list ;;
  build) build "${2:?usage: fixtures.sh build OUT_DIR}" ;;
  *) die "usage: fixtures.sh build OUT_DIR | list" ;;
esac
