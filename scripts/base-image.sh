#!/usr/bin/env bash
# The reference platform's base image (configured in pyproject.toml, [tool.envfixtures.images] bases): Debian 12
# (debootstrap, minbase) with Debian's python3 and the services' dependencies (services/pyproject.toml, at the
# versions of constraints.txt), installed by uv for Python 3.11 on glibc 2.36 from this machine, so that the
# image build itself needs no network (uv trusts the system's certificates, --native-tls, as apt does). envfixtures runs it once per machine (in the checkout) and imports the
# root filesystem tarball it writes to $ENVFIXTURES_BASE_TAR; the image name's tag names the dependency set:
# change it with services' dependencies.
#
#   DEBIAN_MIRROR   the Debian mirror (default: this machine's, else deb.debian.org)
set -euo pipefail
: "${ENVFIXTURES_BASE_TAR:?set by envfixtures: where to write the root filesystem tarball}"
[ "$(id -u)" -eq 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is missing (scripts/bootstrap.sh installs it)" >&2; exit 2; }
uv=$(command -v uv || true)
[ -n "$uv" ] || uv=$(dirname "$0")/../.venv/bin/uv
[ -x "$uv" ] || { echo "base-image: uv is missing (scripts/bootstrap.sh installs it in .venv/)" >&2; exit 2; }

# This machine's mirror: deb822 sources (a Debian 12 install), else a sources.list (a debootstrap root).
mirror=${DEBIAN_MIRROR:-$( { sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true; } | head -n 1)}
mirror=${mirror:-$( { awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null || true; } | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/envfixtures-base.XXXXXX)
trap 'rm -rf --one-file-system "$root"' EXIT

echo "base-image: debootstrap bookworm (minbase, python3) from $mirror"
debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror"
deps=$(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("services/pyproject.toml", "rb"))["project"]["dependencies"]))')
echo "base-image: the services' dependencies: $(echo "$deps" | tr '\n' ' ')"
# shellcheck disable=SC2086
printf '%s\n' "$deps" >"$root/tmp/requirements.txt"
"$uv" pip install --quiet --native-tls --target "$root/usr/local/lib/python3.11/dist-packages" --python-version 3.11 \
  --python-platform x86_64-manylinux_2_36 --only-binary :all: -c constraints.txt -r "$root/tmp/requirements.txt"
rm -rf "$root/tmp/requirements.txt" "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -cf "$ENVFIXTURES_BASE_TAR" .
