#!/bin/sh
# One HTTP/1.0 exchange on stdin/stdout: `nc -ll -e` forks this script per connection.
# busybox httpd cannot route /api/health or /collections/x to a CGI (it only runs
# /cgi-bin/* or *.ext scripts), hence this small router in busybox sh.
# It reads the request line, the headers and a Content-Length body, then calls
# `route METHOD PATH QUERY` from /srv/routes.sh with the body in $BODY.

CR=$(printf '\r')

# reply STATUS CONTENT-TYPE BODY
reply() {
    length=$(printf '%s' "$3" | wc -c)
    printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nServer: technicia-sandbox\r\nConnection: close\r\n\r\n%s' \
        "$1" "$2" "$length" "$3"
}

# json STATUS BODY
json() { reply "$1" "application/json" "$2"; }

# json_string TEXT: TEXT as a JSON string literal (quotes, backslashes, control characters handled).
json_string() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\010\013-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | sed -e ':a;N;$!ba;s/\n/\\n/g')"
}

# query_param NAME: the URL-decoded value of NAME in $QUERY.
query_param() {
    printf '%s' "$QUERY" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n 1 | sed 's/+/ /g' | {
        read -r raw
        busybox httpd -d "$raw"
    }
}

read -r METHOD TARGET PROTO || exit 0
PROTO=${PROTO%"$CR"}
LENGTH=0
while IFS= read -r line; do
    line=${line%"$CR"}
    [ -z "$line" ] && break
    case "$line" in
        [Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]:*)
            LENGTH=$(printf '%s' "${line#*:}" | tr -dc '0-9')
            ;;
    esac
done
BODY=""
if [ "${LENGTH:-0}" -gt 0 ] 2>/dev/null; then
    BODY=$(head -c "$LENGTH")
fi
REQ_PATH=${TARGET%%\?*}
QUERY=""
case "$TARGET" in *\?*) QUERY=${TARGET#*\?} ;; esac
export METHOD REQ_PATH QUERY BODY

# ROUTES: overridable so the routes can be exercised with the host's busybox, outside an image.
. "${ROUTES:-/srv/routes.sh}"
route "$METHOD" "$REQ_PATH" "$QUERY"
