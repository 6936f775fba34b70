#!/bin/sh
# First start on an empty volume: the collection TechnicIA indexes its documents into.
storage=${QDRANT_STORAGE:-/qdrant/storage}
mkdir -p "$storage/collections" "${QDRANT_SNAPSHOTS:-/qdrant/snapshots}"
[ -d "$storage/collections/technicia_docs" ] || {
    mkdir -p "$storage/collections/technicia_docs"
    echo '{"vectors":{"size":1024,"distance":"Cosine"}}' >"$storage/collections/technicia_docs/config.json"
}
