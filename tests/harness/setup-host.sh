#!/usr/bin/env bash
# make setup: prepare this (Debian/Ubuntu) machine to run the simulated
# classroom and every test. Idempotent; a second run takes seconds.
#   - Debian packages: Docker engine, debootstrap, and RabbitMQ + Debian's
#     python3-pika for the integration tests (pika 1.2 as the Pis have it),
#     python3-prometheus-client (the worker's metrics, as the Pis have it),
#     chromium + chromium-driver (the teacher page's browser test)
#   - dockerd running (started in the background where no init manages it)
#   - .venv (pinned tools), .venv-deb (system python + Debian bookworm's pika 1.2)
#     and .venv-pika13 (system python + pika 1.3.2, Debian trixie's version)
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

need_debs=(docker.io debootstrap rabbitmq-server python3-pika python3-prometheus-client python3-yaml python3-venv openssh-client python3-cryptography openssl tcpdump chromium chromium-driver)
missing=()
for p in "${need_debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}) and not root: run 'make setup' as root or install them yourself"
    SUDO=sudo
  else
    SUDO=
  fi
  say "installing Debian packages: ${missing[*]}"
  # RabbitMQ's postinst must not start a broker on this machine: the tests
  # run their own, on ports of their choosing.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO rm -f /usr/sbin/policy-rc.d; die "apt-get install failed (see above): is a Debian package mirror reachable?"; }
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# A Docker engine that answers.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and you are not root: start dockerd, or add yourself to the 'docker' group, or run 'make setup' as root"
  if command -v systemctl >/dev/null && [ "$(cat /proc/1/comm)" = systemd ]; then
    say "starting docker.service"
    systemctl start docker || true
  fi
  # A dockerd still starting or stopping is waited for; one killed outright
  # (a machine reused after a hard stop) leaves pid files that block the next.
  for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null || break; docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    say "starting dockerd in the background (log: /var/log/pimq-dockerd.log)"
    nohup dockerd >/var/log/pimq-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not come up in 60 s; see /var/log/pimq-dockerd.log"
fi

# Every simulated Pi runs systemd, and every systemd (PID 1, journald, logind,
# .path units) holds inotify instances, all counted against root on the host:
# the kernel's default of 128 runs out with a few rooms up (path units then
# fail and a Pi boots "degraded"). Raise it (root only; a no-op if higher).
if [ "$(id -u)" -eq 0 ] && [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
  say "raising fs.inotify.max_user_instances to 1024 (systemd in many containers)"
  sysctl -q -w fs.inotify.max_user_instances=1024 || say "could not raise fs.inotify.max_user_instances; rooms with many Pis may boot degraded"
fi

# The project venv with pinned tools; reinstalled only when the pins change.
stamp=.venv/.requirements.sha256
want=$(cat requirements-dev.txt worker/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv with the pinned tools (a minute or two)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  [ -f worker/pyproject.toml ] && .venv/bin/pip install -q --disable-pip-version-check --no-deps -e worker
  echo "$want" > "$stamp"
fi

# The Pis' Python: Debian's interpreter and Debian's pika 1.2 (tests run twice).
stamp=.venv-deb/.requirements.sha256
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv-deb (Debian's python3 + python3-pika)"
  [ -x .venv-deb/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv-deb
  .venv-deb/bin/pip install -q --disable-pip-version-check \
    "$(grep '^pytest==' requirements-dev.txt)" "$(grep '^pytest-timeout==' requirements-dev.txt)" \
    "$(grep '^hypothesis==' requirements-dev.txt)"
  [ -f worker/pyproject.toml ] && .venv-deb/bin/pip install -q --disable-pip-version-check --no-deps -e worker
  echo "$want" > "$stamp"
fi
# Debian trixie's pika (1.3.2; bookworm cannot install the .deb), from PyPI
# into a venv like .venv-deb: the integration suite against RabbitMQ 4.0 runs on it.
stamp=.venv-pika13/.requirements.sha256
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv-pika13 (Debian's python3 + pika 1.3.2, as trixie has it)"
  [ -x .venv-pika13/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv-pika13
  .venv-pika13/bin/pip install -q --disable-pip-version-check pika==1.3.2 \
    "$(grep '^pytest==' requirements-dev.txt)" "$(grep '^pytest-timeout==' requirements-dev.txt)" \
    "$(grep '^hypothesis==' requirements-dev.txt)"
  [ -f worker/pyproject.toml ] && .venv-pika13/bin/pip install -q --disable-pip-version-check --no-deps -e worker
  echo "$want" > "$stamp"
fi
say "ready: $(.venv/bin/ansible --version | sed -n 1p), $(docker version -f 'docker {{.Server.Version}}')"
