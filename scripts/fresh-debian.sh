#!/usr/bin/env bash
# Runs README commands the way a new user would: in a fresh, minimal Debian 12 root (debootstrap) that has
# Debian's own python3 (3.11.2, PEP 668 applies), git, make and gcc, and nothing else — no tox, RabbitMQ or
# PostgreSQL, no pip configuration of this machine. The repository is cloned into it (committed HEAD only,
# like a user's checkout) and `make TARGET...` runs there; the exit code is that of make.
#
#   scripts/fresh-debian.sh [TARGET ...]        default: test   (e.g. `scripts/fresh-debian.sh verify`)
#
#   FRESH_DEBIAN_CACHE   the debootstrap result, made once and reused (default /var/cache/envfixtures/...)
#   FRESH_DEBIAN_KEEP=1  keep the root afterwards (its path is printed) to look around
#   DEBIAN_MIRROR        the Debian mirror (default: this machine's, else deb.debian.org)
#
# Needs root (debootstrap, mount, chroot). The root shares this machine's network (PyPI and the Debian
# mirror must be reachable) and its loopback; everything started inside is stopped on exit.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "fresh-debian: run as root (debootstrap, mount and chroot need it)" >&2; exit 2; }
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(test)

cache=${FRESH_DEBIAN_CACHE:-/var/cache/envfixtures/debian-bookworm-minbase.tar}
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "fresh-debian: installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

if [ ! -f "$cache" ]; then
  echo "fresh-debian: debootstrap bookworm from $mirror (once; cached in $cache)"
  mkdir -p "$(dirname "$cache")"
  base=$(mktemp -d /var/tmp/envfixtures-debootstrap.XXXXXX)
  debootstrap --variant=minbase --include=python3,git,make,gcc,ca-certificates bookworm "$base" "$mirror" \
    >"$base.log" 2>&1 || { tail -n 20 "$base.log" >&2; rm -rf "$base"; exit 1; }
  tar -C "$base" -cf "$cache.part" . && mv "$cache.part" "$cache"
  rm -rf "$base" "$base.log"
fi

root=$(mktemp -d /var/tmp/envfixtures-fresh.XXXXXX)
mounted=()
links_before=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1)
cleanup() {
  # Whatever still runs inside the root (a leak, or an interrupted run) is stopped before unmounting.
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && kill -KILL "${proc#/proc/}" 2>/dev/null
  done
  # What podman mounted inside (layers, network namespaces) goes too, deepest first, then ours.
  awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  # The root shares this machine's network namespace: a bridge its podman made (cni-podman0, 10.88.0.0/16) would
  # shadow this machine's own podman bridge on the same subnet, and break its port mappings, if it stayed.
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^cni-podman'); do
    grep -qxF "$link" <<<"$links_before" || ip link delete "$link" 2>/dev/null || true
  done
  if [ "${FRESH_DEBIAN_KEEP:-}" = 1 ]; then echo "fresh-debian: kept $root"; else rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# "/" of the root is a mount point of its own: podman's layer extraction remounts "/" private, which fails on a
# directory that is not one.
mount --bind "$root" "$root" && mounted+=("$root")
tar -C "$root" -xf "$cache"
chmod 755 "$root"  # it becomes "/": mktemp made it 0700, which no other user (postgres) could traverse
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount -t sysfs sys "$root/sys" && mounted+=("$root/sys")
mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup" && mounted+=("$root/sys/fs/cgroup")  # containers' cgroups
mount -t tmpfs -o mode=755 run "$root/run" && mounted+=("$root/run")  # podman's runtime state, as on a booted system
mkdir -p "$root/run/lock"
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" && mounted+=("$root/dev/pts")
mount -t tmpfs -o mode=1777 shm "$root/dev/shm" && mounted+=("$root/dev/shm")
cp /etc/resolv.conf /etc/hosts "$root/etc/"
# The root trusts what this machine trusts: where the network intercepts TLS (as this project's build machines'
# does), its CA is in this machine's bundle and not in Debian's. Nothing else of this machine is copied.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
hostname >"$root/etc/hostname"
git clone -q --no-hardlinks "$repo" "$root/root/envfixtures"

python=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
echo "fresh-debian: root $root, Debian $(cat "$root/etc/debian_version"), python3 $python; make ${targets[*]}"
start=$(date +%s)
set +e
bundle=/etc/ssl/certs/ca-certificates.crt  # uv reads SSL_CERT_FILE, pip PIP_CERT: see the CA note above
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
  SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash -c 'cd /root/envfixtures && make "$@"' make "${targets[@]}"
rc=$?
set -e
promotion=$root/root/envfixtures/reports/promotion.json
[ ! -f "$promotion" ] || echo "fresh-debian: reports/promotion.json written: $(head -c 300 "$promotion" | tr -d '\n')"
echo "fresh-debian: make ${targets[*]} exited $rc after $(($(date +%s) - start)) s (python3 $python)"
exit $rc
