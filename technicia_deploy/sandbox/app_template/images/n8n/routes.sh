# Routes of the n8n stand-in (sourced by /srv/http-request.sh): n8n's own health endpoints.
route() {
    case "$1 $2" in
        "GET /healthz" | "GET /healthz/readiness") json "200 OK" '{"status":"ok"}' ;;
        "GET /")
            reply "200 OK" "text/html; charset=utf-8" "<!doctype html><title>n8n</title><h1>n8n (TechnicIA sandbox stand-in $APP_VERSION)</h1>"
            ;;
        *) json "404 Not Found" '{"code":404,"message":"The requested webhook is not registered."}' ;;
    esac
}
