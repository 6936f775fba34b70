# Routes of the TechnicIA API stand-in (sourced by /srv/http-request.sh).
# APP_VERSION and API_HEALTHY are baked into the image at build time; the API keys
# come from the deployment's .env (compose env_file): only their presence is reported.

# The names .env.example declares (the deployment checks them against what it writes).
KEY_NAMES="GOOGLE_CLOUD_PROJECT GOOGLE_APPLICATION_CREDENTIALS_JSON DOCUMENTAI_LOCATION DOCUMENTAI_PROCESSOR_ID VOYAGE_API_KEY VOYAGE_MODEL ANTHROPIC_API_KEY ANTHROPIC_MODEL"

keys_json() {
    out=""
    for name in $KEY_NAMES; do
        eval "value=\${$name:-}"
        if [ -n "$value" ]; then present=true; else present=false; fi
        out="$out${out:+,}\"$name\":$present"
    done
    printf '{%s}' "$out"
}

health() {
    if [ "$API_HEALTHY" = "yes" ]; then
        json "200 OK" "{\"status\":\"ok\",\"service\":\"api\",\"version\":\"$APP_VERSION\",\"keys\":$(keys_json)}"
    else
        # The broken release: it starts, but its health check fails (what a rollback must catch).
        json "503 Service Unavailable" "{\"status\":\"error\",\"service\":\"api\",\"version\":\"$APP_VERSION\",\"error\":\"schema migration 0042 failed: column documents.embedding_model missing\"}"
    fi
}

# /api/ask: a request that crosses the stack (api -> qdrant over the compose network).
ask() {
    question=$(query_param q)
    [ -n "$question" ] || question=$BODY
    if [ -z "$question" ]; then
        json "400 Bad Request" '{"error":"give a question: GET /api/ask?q=... or POST the text"}'
        return
    fi
    if collections=$(timeout 3 wget -q -O - "${QDRANT_URL:-http://qdrant:6333}/collections" 2>/dev/null); then
        count=$(printf '%s' "$collections" | grep -o '"name"' | wc -l)
        json "200 OK" "{\"question\":$(json_string "$question"),\"answer\":\"TechnicIA $APP_VERSION (sandbox) searched $count collection(s)\",\"version\":\"$APP_VERSION\",\"qdrant\":{\"collections\":$count}}"
    else
        json "502 Bad Gateway" "{\"error\":\"qdrant unreachable at ${QDRANT_URL:-http://qdrant:6333}\",\"version\":\"$APP_VERSION\"}"
    fi
}

route() {
    case "$1 $2" in
        "GET /api/health") health ;;
        "GET /api/version") json "200 OK" "{\"version\":\"$APP_VERSION\"}" ;;
        "POST /api/echo") json "200 OK" "{\"echo\":$(json_string "$BODY"),\"version\":\"$APP_VERSION\"}" ;;
        "GET /api/echo") json "200 OK" "{\"echo\":$(json_string "$(query_param message)"),\"version\":\"$APP_VERSION\"}" ;;
        "GET /api/ask" | "POST /api/ask") ask ;;
        *) json "404 Not Found" "{\"error\":\"no route $(printf '%s' "$1 $2" | tr -dc 'A-Za-z0-9/_. -')\"}" ;;
    esac
}
