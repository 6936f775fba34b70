#!/bin/sh
# PID 1 of the api / n8n / qdrant stand-ins: prepare, then serve HTTP on $PORT until stopped.
# `nc -ll -e` forks one /srv/http-request.sh per connection (a persistent server).
# The server runs as a child so that SIGTERM (docker stop) ends the container at once:
# a PID 1 without a handler ignores it and docker waits out the grace period.
set -e
[ -x /srv/prepare.sh ] && /srv/prepare.sh
echo "technicia sandbox ${SERVICE:-service} ${APP_VERSION:-} listening on :${PORT}"
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
nc -ll -p "$PORT" -e /srv/http-request.sh &
server=$!
wait "$server"
