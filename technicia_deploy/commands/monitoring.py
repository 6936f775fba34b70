"""The server's own monitoring: a script run by a systemd timer that alerts by itself.

Design. The server watches itself, independently of Prefect (which may be the
thing that is down): every ``period_s`` a systemd timer runs
``/usr/local/lib/technicia/monitor.sh``, which checks
- every container of the compose project is running and not unhealthy
  (the services expected are recorded at install time from the running project,
  so a container that vanished is noticed too),
- disk use of / and available memory against thresholds,
- the certificate's days left (alert below half of ``tls.min_days_left``:
  certbot's timer renews at 30 days, so only a renewal that keeps failing alerts),
- the public URL answers 2xx/3xx over HTTPS, pinned to the server's public
  address (DNS is the deployment's business, checked by the flow).
It alerts on *changes*: the set of problems is kept in
/var/lib/technicia-monitor/problems; a new problem sends an alert, a cleared one
a "resolved" message, and nothing is sent while the set stays the same. A
failed delivery leaves the state unchanged, so the next run tries again.

Delivery is done by the script with curl, to destinations converted from the
environment's apprise URLs (:func:`server_destinations`): ``json://``/``jsons://``
(apprise's JSON payload: version, title, message, type), ``slack://`` /
Slack webhook URLs, and ``mailto://``/``mailtos://`` (curl's SMTP). Other apprise
schemes are left to the flow's alerts and reported as such. The destinations
file is root-only (0600) and written from stdin, never on a command line; the
script hands each URL to curl through ``--config -`` (stdin), so a token never
shows in ``ps`` either.

``monitor.sh CONF --test ID`` sends a test alert to every destination and prints
``NAME ok`` / ``NAME failed ...`` per destination (the alert test step uses it).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .files import FileFact, WantedFile, ensure_file, ensure_file_from_stdin, file_fact_body, parse_file_section
from .shell import fact_script, parse_sections, q

SCRIPT = "/usr/local/lib/technicia/monitor.sh"
CONFIG = "/etc/technicia/monitor.conf"
DESTINATIONS = "/etc/technicia/monitor-destinations"
CA_FILE = "/etc/technicia/monitor-ca.pem"
SERVICE = "/etc/systemd/system/technicia-monitor.service"
TIMER = "/etc/systemd/system/technicia-monitor.timer"
UNIT = "technicia-monitor"
STATE_DIR = "/var/lib/technicia-monitor"
FILES = (SCRIPT, CONFIG, CA_FILE, SERVICE, TIMER)
SECTIONS = tuple(f"file.{i}" for i in range(len(FILES))) + ("destinations", "services", "enabled", "active")


class MonitoringError(ValueError):
    pass


@dataclass(frozen=True)
class MonitorSettings:
    environment: str
    domain: str
    public_address: str
    compose_project: str
    services: tuple[str, ...]
    public_port: int = 443
    disk_max_pct: int = 90
    mem_min_available_pct: int = 10
    cert_min_days: int = 15
    period_s: int = 60
    ca_pem: str | None = None  # trust anchor for the public URL check when the issuer is private (sandbox)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", self.compose_project):
            raise MonitoringError(f"compose project {self.compose_project!r} is not a valid project name")
        for service in self.services:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", service):
                raise MonitoringError(f"service name {service!r} is not a valid compose service name")
        if not re.fullmatch(r"[a-z0-9.-]+", self.domain) or not re.fullmatch(r"[0-9a-fA-F.:]+", self.public_address):
            raise MonitoringError(f"domain {self.domain!r} / address {self.public_address!r} look wrong")
        if self.period_s < 10:
            raise MonitoringError("period_s must be at least 10 seconds")

    @property
    def public_url(self) -> str:
        return f"https://{self.domain}{'' if self.public_port == 443 else f':{self.public_port}'}/"


# --- destinations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerDestination:
    name: str
    kind: str  # json | slack | smtp
    url: str  # http(s):// for json/slack, smtp(s)://[user:pass@]host:port for smtp
    mail_from: str = ""
    mail_to: str = ""

    def line(self) -> str:
        for value in (self.name, self.kind, self.url, self.mail_from, self.mail_to):
            if any(c in value for c in "\t\n\r\""):
                raise MonitoringError(f"destination {self.name!r}: a field contains a tab, newline or quote")
        return "\t".join((self.name, self.kind, self.url, self.mail_from, self.mail_to))

    def __repr__(self) -> str:  # the URL is a secret
        return f"ServerDestination(name={self.name!r}, kind={self.kind!r})"


def _auth(split) -> str:
    """'user:password@' exactly as written in the URL (still percent-encoded, as curl expects it)."""
    if split.username is None:
        return ""
    return split.netloc.rsplit("@", 1)[0] + "@"


def convert(name: str, url: str) -> ServerDestination | None:
    """The curl-deliverable form of an apprise URL, or None when the server script cannot deliver it."""
    split = urlsplit(url)
    scheme = split.scheme.lower()
    if scheme in ("json", "jsons"):
        port = f":{split.port}" if split.port else ""
        query = f"?{split.query}" if split.query else ""
        return ServerDestination(name, "json", f"{'https' if scheme == 'jsons' else 'http'}://{_auth(split)}"
                                 f"{split.hostname}{port}{split.path or '/'}{query}")
    if scheme == "slack":
        tokens = [t for t in [split.netloc.split("@")[-1], *split.path.split("/")] if t]
        if len(tokens) >= 3 and all(re.fullmatch(r"[A-Za-z0-9]+", t) for t in tokens[:3]):
            return ServerDestination(name, "slack", f"https://hooks.slack.com/services/{'/'.join(tokens[:3])}")
        return None
    if scheme == "https" and split.hostname == "hooks.slack.com":
        return ServerDestination(name, "slack", url)
    if scheme in ("mailto", "mailtos"):
        params = {k.lower(): v[-1] for k, v in parse_qs(split.query).items()}
        host = params.get("smtp") or split.hostname
        to = params.get("to") or (f"{split.username}@{split.hostname}" if split.username else "")
        sender = params.get("from") or to
        if not host or not to:
            return None
        secure = scheme == "mailtos"
        port = split.port or (465 if secure else 25)
        return ServerDestination(name, "smtp", f"{'smtps' if secure else 'smtp'}://{_auth(split)}{host}:{port}",
                                 sender, to.split(",")[0])
    return None


def server_destinations(urls: dict[str, str]) -> tuple[list[ServerDestination], list[str]]:
    """(deliverable destinations, names of those the server script cannot deliver)."""
    converted, unsupported = [], []
    for name, url in urls.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise MonitoringError(f"alert destination name {name!r}: use letters, digits, '.', '_' or '-'")
        dest = convert(name, url)
        (converted.append(dest) if dest else unsupported.append(name))
    return converted, unsupported


def destinations_content(destinations: list[ServerDestination]) -> str:
    header = "# technicia-monitor alert destinations (secret: root only). NAME<TAB>KIND<TAB>URL<TAB>FROM<TAB>TO\n"
    return header + "".join(d.line() + "\n" for d in destinations)


# --- rendered files ---------------------------------------------------------------------------------

def render_config(s: MonitorSettings) -> str:
    def v(value) -> str:
        return q(str(value))

    lines = [
        "# Managed by technicia-deploy (monitoring.script): edits are overwritten.",
        f"ENVIRONMENT={v(s.environment)}",
        f"DOMAIN={v(s.domain)}",
        f"PUBLIC_URL={v(s.public_url)}",
        f"PUBLIC_PORT={v(s.public_port)}",
        f"PUBLIC_ADDRESS={v(s.public_address)}",
        f"COMPOSE_PROJECT={v(s.compose_project)}",
        f"SERVICES={v(' '.join(s.services))}",
        f"DISK_MAX_PCT={v(s.disk_max_pct)}",
        f"MEM_MIN_AVAILABLE_PCT={v(s.mem_min_available_pct)}",
        f"CERT_FILE={v(f'/etc/letsencrypt/live/{s.domain}/fullchain.pem')}",
        f"CERT_MIN_DAYS={v(s.cert_min_days)}",
        f"CA_FILE={v(CA_FILE if s.ca_pem else '')}",
        f"DESTINATIONS={v(DESTINATIONS)}",
        f"STATE_DIR={v(STATE_DIR)}",
    ]
    return "\n".join(lines) + "\n"


MONITOR_SCRIPT = r'''#!/bin/bash
# technicia-monitor: checks this server and alerts on changes. Managed by technicia-deploy.
# Usage: monitor.sh CONF            one check round (run by technicia-monitor.timer)
#        monitor.sh CONF --test ID  send a test alert to every destination, report each by name
set -u
export LC_ALL=C PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONF=${1:?usage: monitor.sh CONF [--test ID]}
. "$CONF"
TAB=$(printf '\t')
HOST=$(hostname)

json_string() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | sed -e ':a;N;$!ba;s/\n/\\n/g')"
}

# deliver KIND URL FROM TO TYPE TITLE BODY: 0 if the destination accepted it.
deliver() {
    local kind=$1 url=$2 from=$3 to=$4 type=$5 title=$6 body=$7 payload code
    case "$kind" in
        json) payload="{\"version\":\"1.0\",\"title\":$(json_string "$title"),\"message\":$(json_string "$body"),\"type\":\"$type\"}" ;;
        slack) payload="{\"text\":$(json_string "$title
$body")}" ;;
        smtp)
            printf 'From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n' \
                "$from" "$to" "$title" "$(date -R)" "$body" >"$STATE_DIR/mail.txt"
            # The URL (it may hold a password) goes to curl on stdin, never on its command line.
            printf 'url = "%s"\n' "$url" | curl -sS --max-time 20 -K - --mail-from "$from" --mail-rcpt "$to" \
                -T "$STATE_DIR/mail.txt" >/dev/null
            return $? ;;
        *) echo "unknown destination kind $kind" >&2; return 1 ;;
    esac
    code=$(printf 'url = "%s"\n' "$url" | curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -K - \
        -H 'Content-Type: application/json' --data-binary "$payload")
    case "$code" in 2??) return 0 ;; *) echo "HTTP $code" >&2; return 1 ;; esac
}

# send_all TYPE TITLE BODY: every destination; prints "NAME ok|failed"; 0 only if all accepted.
send_all() {
    local failed=0 name kind url from to
    [ -r "$DESTINATIONS" ] || { echo "no destinations file $DESTINATIONS" >&2; return 1; }
    while IFS="$TAB" read -r name kind url from to; do
        case "$name" in "" | \#*) continue ;; esac
        if deliver "$kind" "$url" "$from" "$to" "$1" "$2" "$3" 2>"$STATE_DIR/last-error"; then
            echo "$name ok"
        else
            echo "$name failed: $(head -c 200 "$STATE_DIR/last-error" | tr '\n' ' ')"
            failed=1
        fi
    done <"$DESTINATIONS"
    return $failed
}

mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"

if [ "${2:-}" = "--test" ]; then
    send_all info "[technicia $ENVIRONMENT] test alert ${3:-}" "Test alert ${3:-} from the monitoring of $DOMAIN on $HOST. No action needed."
    exit $?
fi

problems=""
add() { problems="$problems$1"$'\n'; }

for svc in $SERVICES; do
    line=$(docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
        --filter "label=com.docker.compose.service=$svc" --format '{{.State}} {{.Status}}' 2>/dev/null | head -n 1)
    case "$line" in
        "") add "container $svc: missing" ;;
        running*"(unhealthy)"*) add "container $svc: unhealthy" ;;
        running*) ;;
        *) add "container $svc: ${line%% *}" ;;
    esac
done

used=$(df -P / | awk 'NR==2 {gsub("%", "", $5); print $5}')
[ -n "$used" ] && [ "$used" -ge "$DISK_MAX_PCT" ] && add "disk /: ${used}% used (alert at ${DISK_MAX_PCT}%)"

available=$(awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {if (t) printf "%d", a * 100 / t}' /proc/meminfo)
[ -n "$available" ] && [ "$available" -lt "$MEM_MIN_AVAILABLE_PCT" ] && add "memory: ${available}% available (alert below ${MEM_MIN_AVAILABLE_PCT}%)"

if end=$(openssl x509 -enddate -noout -in "$CERT_FILE" 2>/dev/null); then
    days=$(( ($(date -d "${end#notAfter=}" +%s) - $(date +%s)) / 86400 ))
    [ "$days" -lt "$CERT_MIN_DAYS" ] && add "certificate $DOMAIN: expires in $days day(s) (alert below $CERT_MIN_DAYS)"
else
    add "certificate $DOMAIN: $CERT_FILE unreadable"
fi

code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --resolve "$DOMAIN:$PUBLIC_PORT:$PUBLIC_ADDRESS" \
    ${CA_FILE:+--cacert "$CA_FILE"} "$PUBLIC_URL" 2>/dev/null)
case "$code" in 2?? | 3??) ;; *) add "public URL $PUBLIC_URL: HTTP $code" ;; esac

current=$(printf '%s' "$problems" | sed '/^$/d' | sort)
previous=$(sed '/^$/d' "$STATE_DIR/problems" 2>/dev/null | sort)
new=$(comm -13 <(printf '%s\n' "$previous") <(printf '%s\n' "$current") | sed '/^$/d')
cleared=$(comm -23 <(printf '%s\n' "$previous") <(printf '%s\n' "$current") | sed '/^$/d')
echo "technicia-monitor $ENVIRONMENT: $(printf '%s' "$current" | grep -c . ) problem(s)${current:+:
$current}"
delivered=0
if [ -n "$new" ]; then
    send_all failure "[technicia $ENVIRONMENT] ALERT on $DOMAIN" "New problem(s) on $HOST:
$new
All current problems:
$current" || delivered=1
fi
if [ -n "$cleared" ]; then
    send_all success "[technicia $ENVIRONMENT] resolved on $DOMAIN" "Resolved on $HOST:
$cleared" || delivered=1
fi
# Remember what was reported only once it was delivered: a failed delivery is retried next round.
[ "$delivered" -eq 0 ] && printf '%s\n' "$current" >"$STATE_DIR/problems"
[ -z "$current" ]
'''


def render_service() -> str:
    return f"""\
# Managed by technicia-deploy (monitoring.script).
[Unit]
Description=TechnicIA monitoring: containers, disk, memory, certificate, public URL
After=network-online.target docker.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={SCRIPT} {CONFIG}
TimeoutStartSec=120
"""


def render_timer(period_s: int) -> str:
    return f"""\
# Managed by technicia-deploy (monitoring.script).
[Unit]
Description=Run the TechnicIA monitoring every {period_s}s

[Timer]
OnBootSec=60
OnUnitActiveSec={period_s}
AccuracySec=1
Unit={UNIT}.service

[Install]
WantedBy=timers.target
"""


# --- facts and operations ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MonitorFacts:
    files: dict[str, FileFact]
    destinations: FileFact
    services: tuple[str, ...]  # compose services of the project, as running now
    timer_enabled: bool
    timer_active: bool


def fact_command(compose_project: str) -> str:
    sections = [(f"file.{i}", file_fact_body(path)) for i, path in enumerate(FILES)]
    sections += [
        ("destinations", file_fact_body(DESTINATIONS)),
        ("services", f"docker ps -a --filter label=com.docker.compose.project={q(compose_project)} "
                     "--format '{{.Label \"com.docker.compose.service\"}}' | sort -u"),
        ("enabled", f"systemctl is-enabled {UNIT}.timer"),
        ("active", f"systemctl is-active {UNIT}.timer"),
    ]
    return fact_script(sections)


def parse_facts(output: str) -> MonitorFacts:
    s = parse_sections(output, SECTIONS)
    return MonitorFacts(
        files={path: parse_file_section(path, s[f"file.{i}"]) for i, path in enumerate(FILES)},
        destinations=parse_file_section(DESTINATIONS, s["destinations"]),
        services=tuple(line.strip() for line in s["services"].lines) if s["services"].ok else (),
        timer_enabled=s["enabled"].lines[:1] == ["enabled"],
        timer_active=s["active"].lines[:1] == ["active"],
    )


def wanted_files(s: MonitorSettings) -> list[WantedFile]:
    return [
        WantedFile(SCRIPT, MONITOR_SCRIPT, 0o755),
        WantedFile(CONFIG, render_config(s), 0o644),
        WantedFile(CA_FILE, s.ca_pem or "", 0o644),
        WantedFile(SERVICE, render_service(), 0o644),
        WantedFile(TIMER, render_timer(s.period_s), 0o644),
    ]


def operations(facts: MonitorFacts, s: MonitorSettings) -> list[str]:
    """Install or update the script, its configuration and the timer; [] when all is in place."""
    cmds = [f"mkdir -p {q(posixpath.dirname(SCRIPT))} {q(posixpath.dirname(CONFIG))} && install -d -m 700 {q(STATE_DIR)}"]
    file_cmds: list[str] = []
    units_changed = False
    for wanted in wanted_files(s):
        if wanted.path == CA_FILE and not s.ca_pem:
            if facts.files[CA_FILE].exists:
                file_cmds.append(f"rm -f {q(CA_FILE)}")
            continue
        ops = ensure_file(facts.files[wanted.path], wanted)
        file_cmds += ops
        units_changed |= bool(ops) and wanted.path in (SERVICE, TIMER)
    if units_changed:
        file_cmds.append("systemctl daemon-reload")
    if units_changed and facts.timer_active:
        file_cmds.append(f"systemctl restart {UNIT}.timer")
    if not facts.timer_enabled or not facts.timer_active:
        file_cmds.append(f"systemctl enable --now {UNIT}.timer")
    return cmds + file_cmds if file_cmds else []


def destinations_operations(facts: MonitorFacts, content: str) -> list[str]:
    """The command writing the destinations file (content on stdin) when it differs; [] otherwise."""
    return ensure_file_from_stdin(facts.destinations, WantedFile(DESTINATIONS, content, 0o600))


def test_command(test_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", test_id):
        raise MonitoringError(f"test id {test_id!r}: letters, digits, '.', '_' or '-' only")
    return f"{q(SCRIPT)} {q(CONFIG)} --test {q(test_id)}"


def parse_test_output(output: str) -> dict[str, str]:
    """name -> 'ok' or 'failed: ...' from ``monitor.sh --test``."""
    results = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if name and rest and (rest == "ok" or rest.startswith("failed")):
            results[name] = rest
    return results
