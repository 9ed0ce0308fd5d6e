#!/usr/bin/env bash
# Installs what the gate needs on a fresh Debian 12 (or later) machine, and nothing into the system Python:
#  - from the OS packages: RabbitMQ and PostgreSQL (no service is started: envfixtures runs its own nodes as
#    child processes), git, iproute2 and procps (ss and ps, for the host checks), podman, runc, the CNI plugins,
#    iptables, docker-registry and debootstrap (docker apps as containers), and python3-venv where
#    `python3 -m venv` is missing;
#  - tox with tox-uv in a project-local virtual environment, .venv/ (PEP 668: Debian's python3 refuses
#    system-wide pip), so every tox env is created by uv. The Makefile runs tox from there.
# Idempotent: a second run installs nothing and takes a fraction of a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ENVFIXTURES_VENV:-.venv}

need_apt=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# The host checks (testinfra) read listeners with ss and processes with ps; a minimal Debian has neither.
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
# Docker apps run as containers (envfixtures/drivers/marathon/containerizer.py): podman with runc (Debian's crun
# refuses hybrid cgroup hierarchies), the CNI plugins and iptables for BRIDGE port mappings, a registry on
# loopback, and debootstrap for base images made offline (scripts/base-image.sh).
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[ -x /usr/lib/cni/portmap ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
[ -x /bin/busybox ] || need_apt+=(busybox-static)  # the project's own tests' base image (envfixtures/testing.py)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)  # the hosts' boot scripts (templates/hosts)
command -v aws >/dev/null 2>&1 || need_apt+=(awscli)  # which those scripts call (their tests run them against moto)
if [ ! -x "$VENV/bin/python" ]; then
  # Debian splits venv and ensurepip out of python3; a venv made without ensurepip has no pip.
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=("python3-venv")
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing ${need_apt[*]}"
  # Keep the packages' own services from starting: the gate starts its nodes itself, on loopback.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  [ -z "$added_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

if ! "$VENV/bin/python" -m tox --version >/dev/null 2>&1 || [ ! -f "$VENV/.tox-uv" ]; then
  echo "bootstrap: tox and tox-uv into $VENV/"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # Only this venv's own pip, and none of the caller's pip configuration (find-links, constraints).
  PIP_CONSTRAINT="" PIP_REQUIRE_VIRTUALENV=1 "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c constraints.txt tox tox-uv
  touch "$VENV/.tox-uv"
fi
