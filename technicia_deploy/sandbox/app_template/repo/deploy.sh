#!/bin/sh
# Deploy this checkout: pull the release's images, then bring the services to it.
# Idempotent: run twice, the second run pulls nothing new and recreates nothing.
# Works with `docker compose` (v2 plugin) or `docker-compose` (v1, Debian bookworm).
set -eu
cd "$(dirname "$0")"
# One project name whatever the checkout directory is called.
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-technicia}"

if docker compose version >/dev/null 2>&1; then
    compose() { docker compose "$@"; }
elif command -v docker-compose >/dev/null 2>&1; then
    compose() { docker-compose "$@"; }
else
    echo "deploy.sh: neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed" >&2
    exit 1
fi

if [ ! -f .env ]; then
    echo "deploy.sh: .env is missing next to docker-compose.yml (copy .env.example and fill in the API keys)" >&2
    exit 1
fi

compose pull --quiet
compose up -d --remove-orphans
echo "deploy.sh: TechnicIA $(cat VERSION) deployed (project $COMPOSE_PROJECT_NAME)"
