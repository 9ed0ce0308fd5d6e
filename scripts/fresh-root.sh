#!/usr/bin/env bash
# A fresh, minimal Debian 12 root for tests that run host scripts for real (issue 18: templates/hosts/), made from
# the same cached debootstrap as scripts/fresh-debian.sh and mounted the same way, in three steps a test calls:
#
#   scripts/fresh-root.sh create                 prints the root's path (made from the cache, mounted)
#   scripts/fresh-root.sh run ROOT CMD [ARG...]  runs CMD as root inside it, with only HOME, LANG, PATH, TERM and the
#                                                caller's EF_* and AWS_* variables (values stay off command lines)
#   scripts/fresh-root.sh destroy ROOT           kills whatever still runs inside, unmounts, removes the root; prints
#                                                how many processes it had to kill
#
#   FRESH_DEBIAN_CACHE    the debootstrap tarball, made once (the same default and recipe as fresh-debian.sh)
#   FRESH_ROOT_APT_CACHE  a directory mounted on the root's /var/cache/apt/archives, so the .debs its apt
#                         downloads are kept for the next root (default none: every root downloads them)
#   DEBIAN_MIRROR         the Debian mirror (default: this machine's, else deb.debian.org)
#
# Needs root. The root shares this machine's network (and so its loopback) and has no systemd: what a script
# starts there runs as a plain process, which destroy kills if the test did not stop it.
set -euo pipefail

die() {
  echo "fresh-root: $*" >&2
  exit 2
}
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, mount and chroot need it)"
cache=${FRESH_DEBIAN_CACHE:-/var/cache/envfixtures/debian-bookworm-minbase.tar}
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
prefix=/var/tmp/envfixtures-root.

check_root() {
  [[ ${1:-} == "$prefix"* && -d $1 ]] || die "not a root made by fresh-root.sh create: ${1:-(none)}"
}

create() {
  if [ ! -f "$cache" ]; then # the recipe of scripts/fresh-debian.sh, so both share one cache
    command -v debootstrap >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    mkdir -p "$(dirname "$cache")"
    local base
    base=$(mktemp -d /var/tmp/envfixtures-debootstrap.XXXXXX)
    debootstrap --variant=minbase --include=python3,git,make,gcc,ca-certificates bookworm "$base" "$mirror" \
      >"$base.log" 2>&1 || { tail -n 20 "$base.log" >&2; rm -rf "$base"; exit 1; }
    tar -C "$base" -cf "$cache.part" . && mv "$cache.part" "$cache"
    rm -rf "$base" "$base.log"
  fi
  local root
  root=$(mktemp -d "${prefix}XXXXXX")
  # On any failure below, what was done is undone.
  trap 'destroy "$root" >/dev/null 2>&1 || true' ERR
  mount --bind "$root" "$root"
  tar -C "$root" -xf "$cache"
  chmod 755 "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount -t tmpfs -o mode=755 run "$root/run"
  mkdir -p "$root/run/lock"
  mount --bind /dev "$root/dev"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  if [ -n "${FRESH_ROOT_APT_CACHE:-}" ]; then
    mkdir -p "$FRESH_ROOT_APT_CACHE/partial"
    mount --bind "$FRESH_ROOT_APT_CACHE" "$root/var/cache/apt/archives"
  fi
  cp /etc/resolv.conf /etc/hosts "$root/etc/"
  # As fresh-debian.sh: where the network intercepts TLS, its CA is in this machine's bundle only.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  hostname >"$root/etc/hostname"
  trap - ERR
  echo "$root"
}

run() {
  local root=$1
  shift
  check_root "$root"
  [ $# -gt 0 ] || die "run: no command"
  local name
  for name in $(compgen -e); do
    [[ $name =~ ^(EF_|AWS_) ]] || unset "$name"
  done
  export HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  exec chroot "$root" "$@"
}

destroy() {
  local root=$1 killed=0 proc
  check_root "$root"
  # Whatever still runs inside the root (a leak, or an interrupted test) is killed before unmounting.
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && kill -KILL "${proc#/proc/}" 2>/dev/null; then
      killed=$((killed + 1))
    fi
  done
  # Every mount under the root, deepest first, then the root's own.
  awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ! grep -q " $root " /proc/mounts || umount -l "$root" 2>/dev/null || true
  if awk -v r="$root" '$2 == r || index($2, r "/") == 1' /proc/mounts | grep -q .; then
    die "destroy: mounts left under $root"
  fi
  rm -rf --one-file-system "$root"
  echo "$killed"
}

case ${1:-} in
  create) create ;;
  run) shift && run "$@" ;;
  destroy) destroy "${2:-}" ;;
  *) die "usage: fresh-root.sh create | run ROOT CMD [ARG...] | destroy ROOT" ;;
esac
