# Routes of the Qdrant stand-in (sourced by /srv/http-request.sh), shaped like Qdrant's REST API:
# health probes, collections, points (upsert and count), and collection / full-storage snapshots kept on the
# volumes /qdrant/storage and /qdrant/snapshots: create, list, download, delete, and a collection recovered from a
# snapshot file (what the backups and the restore drill call).

STORAGE=${QDRANT_STORAGE:-/qdrant/storage}
SNAPSHOTS=${QDRANT_SNAPSHOTS:-/qdrant/snapshots}

ok() { json "200 OK" "{\"result\":$1,\"status\":\"ok\",\"time\":0.000021}"; }
fail() { json "$1" "{\"status\":{\"error\":$(json_string "$2")},\"time\":0.000012}"; }

valid_name() { case "$1" in "" | *[!A-Za-z0-9_.-]* | .*) return 1 ;; esac; }

collections() {
    out=""
    for dir in "$STORAGE"/collections/*/; do
        [ -d "$dir" ] || continue
        name=$(basename "$dir")
        out="$out${out:+,}{\"name\":\"$name\"}"
    done
    ok "{\"collections\":[$out]}"
}

collection_info() {
    [ -d "$STORAGE/collections/$1" ] || { fail "404 Not Found" "Not found: Collection \`$1\` doesn't exist!"; return; }
    config=$(cat "$STORAGE/collections/$1/config.json")
    ok "{\"status\":\"green\",\"optimizer_status\":\"ok\",\"points_count\":$(points_count "$1"),\"segments_count\":1,\"config\":{\"params\":$config}}"
}

# Points: one id per line in points.ids (an upsert of a known id changes nothing); vectors and payloads are kept
# as sent in points.jsonl. Enough for what the pipeline asks: how many points a collection holds.
points_count() {
    if [ -f "$STORAGE/collections/$1/points.ids" ]; then wc -l <"$STORAGE/collections/$1/points.ids" | tr -d ' '; else echo 0; fi
}

# PUT /collections/NAME/points {"points":[{"id":1,"vector":[...],"payload":{...}},...]}
upsert_points() {
    dir="$STORAGE/collections/$1"
    ids=$(printf '%s' "$BODY" | grep -o '"id" *: *\("[^"]*"\|[0-9][0-9]*\)' | sed 's/^"id" *: *//')
    [ -n "$ids" ] || { fail "400 Bad Request" "Format error in JSON body: no points"; return; }
    printf '%s\n' "$BODY" >>"$dir/points.jsonl"
    { [ -f "$dir/points.ids" ] && cat "$dir/points.ids"; printf '%s\n' "$ids"; } | sort -u >"$dir/points.ids.tmp"
    mv "$dir/points.ids.tmp" "$dir/points.ids"
    ok '{"operation_id":0,"status":"completed"}'
}

# PUT /collections/NAME/snapshots/recover {"location":"file:///qdrant/snapshots/NAME/FILE.snapshot"}: the
# collection replaced by the snapshot's content (created if missing). Only file locations under the snapshots
# directory (Qdrant also fetches http(s) URLs; the pipeline uploads the file next to the others instead).
recover_snapshot() {
    location=$(printf '%s' "$BODY" | sed -n 's/.*"location" *: *"\([^"]*\)".*/\1/p')
    file=${location#file://}
    case "$location" in
        file://*) ;;
        "") fail "400 Bad Request" "Format error in JSON body: missing field \`location\`"; return ;;
        *) fail "400 Bad Request" "Bad request: only file:// locations are supported by this stand-in"; return ;;
    esac
    case "$file" in
        "$SNAPSHOTS"/*) ;;
        *) fail "403 Forbidden" "Forbidden: snapshot location must be inside $SNAPSHOTS"; return ;;
    esac
    case "$file" in *..*) fail "400 Bad Request" "invalid path"; return ;; esac
    [ -f "$file" ] || { fail "404 Not Found" "Not found: Snapshot file $file does not exist"; return; }
    tar -tf "$file" >/dev/null 2>&1 || { fail "400 Bad Request" "Bad request: snapshot $file is not a valid snapshot archive"; return; }
    target="$STORAGE/collections/$1"
    rm -rf "$target.recover" && mkdir -p "$target.recover" && tar -C "$target.recover" -xf "$file" \
        && [ -f "$target.recover/config.json" ] \
        || { rm -rf "$target.recover"; fail "400 Bad Request" "Bad request: snapshot $file holds no collection"; return; }
    rm -rf "$target" && mv "$target.recover" "$target"
    ok true
}

create_collection() {
    config=${BODY:-"{}"}
    mkdir -p "$STORAGE/collections/$1"
    printf '%s' "$config" >"$STORAGE/collections/$1/config.json"
    ok true
}

# snapshot_list DIR
snapshot_list() {
    out=""
    for file in "$1"/*.snapshot; do
        [ -f "$file" ] || continue
        out="$out${out:+,}$(snapshot_json "$file")"
    done
    ok "[$out]"
}

snapshot_json() {
    size=$(wc -c <"$1")
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    when=$(date -u -r "$1" +%Y-%m-%dT%H:%M:%S)
    printf '{"name":"%s","creation_time":"%s","size":%s,"checksum":"%s"}' "$(basename "$1")" "$when" "$size" "$sum"
}

# snapshot_create SOURCE-DIR TARGET-DIR PREFIX
snapshot_create() {
    mkdir -p "$2"
    file="$2/$3-$(date -u +%s)$$-$(date -u +%Y-%m-%d-%H-%M-%S).snapshot"
    tar -C "$1" -cf "$file.part" . && mv "$file.part" "$file"
    ok "$(snapshot_json "$file")"
}

# snapshot_download FILE
snapshot_download() {
    [ -f "$1" ] || { fail "404 Not Found" "Not found: Snapshot $(basename "$1") not found"; return; }
    printf 'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$(wc -c <"$1")"
    cat "$1"
}

snapshot_delete() {
    [ -f "$1" ] || { fail "404 Not Found" "Not found: Snapshot $(basename "$1") not found"; return; }
    rm -f "$1"
    ok true
}

route() {
    method=$1
    path=${2%/}
    case "$path" in
        "") json "200 OK" "{\"title\":\"qdrant - vector search engine\",\"version\":\"$APP_VERSION\"}"; return ;;
        /healthz | /livez) reply "200 OK" "text/plain" "healthz check passed"; return ;;
        /readyz) reply "200 OK" "text/plain" "all shards are ready"; return ;;
    esac
    # /collections[/NAME[/snapshots[/FILE]]] and /snapshots[/FILE]
    set -- $(printf '%s' "$path" | tr '/' ' ')
    for part in "$@"; do valid_name "$part" || { fail "400 Bad Request" "invalid path"; return; }; done
    case "$method $1 $#" in
        "GET collections 1") collections ;;
        "GET collections 2") collection_info "$2" ;;
        "PUT collections 2") create_collection "$2" ;;
        "GET snapshots 1") snapshot_list "$SNAPSHOTS" ;;
        "POST snapshots 1") snapshot_create "$STORAGE" "$SNAPSHOTS" full-snapshot ;;
        "GET snapshots 2") snapshot_download "$SNAPSHOTS/$2" ;;
        "DELETE snapshots 2") snapshot_delete "$SNAPSHOTS/$2" ;;
        "PUT collections 3" | "POST collections 4" | "PUT collections 4")
            if [ "$3 $# $method" = "points 3 PUT" ] && [ -d "$STORAGE/collections/$2" ]; then
                upsert_points "$2"
            elif [ "$3 $4 $method" = "points count POST" ] && [ -d "$STORAGE/collections/$2" ]; then
                ok "{\"count\":$(points_count "$2")}"
            elif [ "$3 $4 $method" = "snapshots recover PUT" ]; then
                recover_snapshot "$2"
            elif [ ! -d "$STORAGE/collections/$2" ]; then
                fail "404 Not Found" "Not found: Collection \`$2\` doesn't exist!"
            else
                fail "404 Not Found" "Not found"
            fi
            ;;
        "GET collections 3" | "POST collections 3" | "GET collections 4" | "DELETE collections 4")
            if [ "$3" != snapshots ]; then
                fail "404 Not Found" "Not found"
            elif [ ! -d "$STORAGE/collections/$2" ]; then
                fail "404 Not Found" "Not found: Collection \`$2\` doesn't exist!"
            else
                case "$method $#" in
                    "GET 3") snapshot_list "$SNAPSHOTS/$2" ;;
                    "POST 3") snapshot_create "$STORAGE/collections/$2" "$SNAPSHOTS/$2" "$2" ;;
                    "GET 4") snapshot_download "$SNAPSHOTS/$2/$4" ;;
                    "DELETE 4") snapshot_delete "$SNAPSHOTS/$2/$4" ;;
                esac
            fi
            ;;
        *) fail "404 Not Found" "Not found" ;;
    esac
}
