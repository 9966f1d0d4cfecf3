# apt_install_missing LABEL PACKAGE...: installs the Debian packages that are not installed yet
# (root needed only then); silent when all are there. LABEL prefixes its messages. Source it.
apt_install_missing() {
  local label=$1 p status
  shift
  local missing=()
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if ((EUID != 0)); then
    echo "$label: need root to install: ${missing[*]}" >&2
    return 1
  fi
  echo "$label: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
