#!/usr/bin/env bash
# Installs what the gate needs on a fresh Debian 12 machine: RabbitMQ and PostgreSQL from the OS packages
# (no service is started: envfixtures runs its own nodes as child processes), and tox.
set -euo pipefail

need_apt=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v git >/dev/null 2>&1 || need_apt+=(git)

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

if ! python3 -m tox --version >/dev/null 2>&1; then
  echo "bootstrap: installing tox"
  python3 -m pip install -q 'tox>=4.11'
fi
