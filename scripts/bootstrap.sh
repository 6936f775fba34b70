#!/usr/bin/env bash
# Make this machine able to run technicia-deploy and its tests, from nothing:
# system packages (Docker engine, debootstrap, pebble, ...), a running dockerd,
# uv, and the Python environment from uv.lock. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v pebble >/dev/null || need_apt+=(pebble)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v git >/dev/null || need_apt+=(git)
command -v ip >/dev/null || need_apt+=(iproute2)
# The sandbox's sample application: images from scratch need a *static* busybox; its registry.
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
# The Prefect UI as the approval client in the e2e tests (driven by playwright; never `playwright install`).
command -v chromium >/dev/null || need_apt+=(chromium)
# The unit tests check the rendered nginx site with `nginx -t` and the sample app with Compose v1 (as on the VPS).
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# `sandbox up --orchestrator postgres`: the Prefect server on PostgreSQL (initdb/pg_ctl of Debian's package; no service).
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
# The e2e security test cross-checks our own findings with the standard tools (Debian's testssl.sh installs `testssl`).
command -v testssl >/dev/null || need_apt+=(testssl.sh)
command -v nmap >/dev/null || need_apt+=(nmap)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing system packages: ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) or run as root" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Install services without starting them (nginx would take the host's port 80): policy-rc.d says no.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && trap 'rm -f "$policy"' EXIT; fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# dockerd: these machines have no systemd; start it detached and wait for its socket.
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: the Docker engine is not running and this user cannot start it" >&2
    exit 1
  fi
  echo "bootstrap: starting dockerd (log: /var/log/technicia-dockerd.log)"
  setsid nohup dockerd >/var/log/technicia-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { echo "bootstrap: dockerd did not start; see /var/log/technicia-dockerd.log" >&2; exit 1; }
fi

# uv: from PATH, else pip's; a Python that is externally managed (Debian's own, PEP 668) gets uv in a venv of
# ours instead. The Makefile looks in the same two places (scripts/uv-path).
if ! command -v uv >/dev/null && [ ! -x "$(scripts/uv-path)" ]; then
  if ! python3 -m pip install -q uv 2>/dev/null; then
    tools="$(dirname "$(dirname "$(scripts/uv-path)")")"
    python3 -m venv "$tools" && "$tools/bin/pip" install -q uv
  fi
fi
uv() { "$(scripts/uv-path)" "$@"; }
# The platform's certificate store, as pip and git use it (a registry behind a TLS proxy is trusted there).
export UV_SYSTEM_CERTS=1
# Bytecode compiled at install: the SDKs are large and the first deployment would otherwise
# spend tens of seconds compiling them on first import.
uv sync --frozen -q --compile-bytecode
