#!/bin/sh
# PID 1 of the front end: stamp the release into the page, then serve it with busybox httpd.
# httpd runs as a child so that SIGTERM (docker stop) ends the container at once.
set -e
sed -e "s/@APP_VERSION@/$APP_VERSION/g" /srv/www/index.html.in >/srv/www/index.html
echo "technicia sandbox frontend $APP_VERSION listening on :$PORT"
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
httpd -f -p "$PORT" -h /srv/www &
server=$!
wait "$server"
