# Routes of the Qdrant stand-in (sourced by /srv/http-request.sh), shaped like Qdrant's REST API:
# health probes, collections, and collection / full-storage snapshots kept on the volumes
# /qdrant/storage and /qdrant/snapshots (what a pre-deploy backup step would call).

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
    ok "{\"status\":\"green\",\"optimizer_status\":\"ok\",\"points_count\":0,\"segments_count\":1,\"config\":{\"params\":$config}}"
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
