#!/usr/bin/env bash
# The kernels of the kernel matrix (`cargo xtask test-kernels`): Debian's own kernel packages,
# fetched by package name from Debian's archive (the mirror this machine's apt already uses, with
# the other suites added in a private apt configuration: the host's apt state is not touched),
# unpacked (not installed) and cached. Prints one line per kernel: LABEL VERSION VMLINUZ.
#
# Usage: scripts/kernels.sh [--refresh] [LABEL...]     LABEL: 5.10 6.1 6.12 (default: all)
# Cache: $LEAKPROF_KERNELS, else ~/.cache/leakprof/kernels. A cached kernel is used as it is;
# --refresh looks for a newer package first.
set -euo pipefail

say() { printf '[kernels] %s\n' "$*" >&2; }

CACHE=${LEAKPROF_KERNELS:-$HOME/.cache/leakprof/kernels}
REFRESH=0
LABELS=()
for a in "$@"; do
  case "$a" in
    --refresh) REFRESH=1 ;;
    5.10|6.1|6.12) LABELS+=("$a") ;;
    *) say "unknown kernel $a (known: 5.10 6.1 6.12)"; exit 2 ;;
  esac
done
[ ${#LABELS[@]} -eq 0 ] && LABELS=(5.10 6.1 6.12)

# label -> the suite whose linux-image-amd64 names the kernel (Debian 11, 12, 12's backports)
declare -A SUITE=([5.10]=bullseye-security [6.1]=bookworm-security [6.12]=bookworm-backports)

# The archive's URIs as this machine's apt has them (deb822 .sources or one-line .list files):
# the main archive (a suite without a dash) and the security archive (a -security suite).
archive_uris() {
  local main="" sec=""
  local files=(/etc/apt/sources.list.d/*.sources)
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    while read -r uri suites; do
      for s in $suites; do
        case "$s" in
          *-security) [ -z "$sec" ] && sec=$uri ;;
          *-*) ;;
          *) [ -z "$main" ] && main=$uri ;;
        esac
      done
    done < <(awk '/^URIs:/{u=$2} /^Suites:/{$1=""; print u, $0}' "$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    while read -r uri suite; do
      case "$suite" in
        *-security) [ -z "$sec" ] && sec=$uri ;;
        *-*) ;;
        *) [ -z "$main" ] && main=$uri ;;
      esac
    done < <(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f")
  done
  if [ -z "$main" ] || [ -z "$sec" ]; then
    say "cannot tell Debian's archive from this machine's apt sources (need a main and a -security suite)"
    exit 1
  fi
  printf '%s %s\n' "$main" "$sec"
}

APT_DIR="$CACHE/apt"
apt_setup() {
  local main sec
  read -r main sec < <(archive_uris)
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    for s in bullseye bookworm bookworm-backports; do echo "deb [signed-by=$key] $main $s main"; done
    for s in bullseye-security bookworm-security; do echo "deb [signed-by=$key] $sec $s main"; done
  } > "$APT_DIR/sources.list"
  : > "$APT_DIR/status"
  cat > "$APT_DIR/apt.conf" <<EOF
Dir::State "$APT_DIR";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/status";
Dir::Cache "$APT_DIR";
Dir::Cache::Archives "$APT_DIR/archives";
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "$APT_DIR/none";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
  say "apt-get update (private: $APT_DIR)"
  APT_CONFIG="$APT_DIR/apt.conf" apt-get update -qq
}

updated=0
for label in "${LABELS[@]}"; do
  dir="$CACHE/$label"
  if [ "$REFRESH" -eq 1 ] || [ ! -s "$dir/version" ]; then
    [ $updated -eq 0 ] && apt_setup && updated=1
    suite=${SUITE[$label]}
    pkg=$(APT_CONFIG="$APT_DIR/apt.conf" apt-cache depends "linux-image-amd64/$suite" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
    if [ -z "$pkg" ]; then
      say "no linux-image-amd64 in $suite"
      exit 1
    fi
    ver=${pkg#linux-image-}
    if [ "$(cat "$dir/version" 2>/dev/null)" != "$ver" ]; then
      say "$label: downloading $pkg ($suite)"
      rm -rf "$dir.new" && mkdir -p "$dir.new"
      (cd "$dir.new" && APT_CONFIG="$APT_DIR/apt.conf" apt-get download -qq "$pkg/$suite")
      dpkg-deb -x "$dir.new"/*.deb "$dir.new/root"
      rm -f "$dir.new"/*.deb
      depmod -b "$dir.new/root" "$ver"
      echo "$ver" > "$dir.new/version"
      rm -rf "$dir" && mv "$dir.new" "$dir"
    fi
  fi
  ver=$(cat "$dir/version")
  printf '%s %s %s\n' "$label" "$ver" "$dir/root/boot/vmlinuz-$ver"
done
