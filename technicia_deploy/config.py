"""The model of ``environments.yaml`` and its validation.

The file describes the project the way the seed tracking document's tables do:
the application, and for each of test / staging / production its URL, server,
firewall, health endpoints, thresholds and alert destinations. Secrets never
live in the file: a secret field holds a reference (``{env: VAR}`` or
``{file: PATH}``) that is resolved when blocks are applied.

Every error is a :class:`ConfigError` naming the file, the dotted path of the
field and the reason, raised before anything is saved or touched.
"""

from __future__ import annotations

import os
import re
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENVIRONMENTS = ("test", "staging", "production")
EnvironmentName = Literal["test", "staging", "production"]

# An e-mail address as mail servers take it: dot-atom local part, a domain of at least two labels.
_EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


_ISSUER_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")


def is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value))


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ConfigError(Exception):
    """An invalid configuration: which file, which field, why."""

    def __init__(self, file: str | os.PathLike, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: {path or '(top level)'}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class _Model(BaseModel):
    # Unknown keys are errors: a typo must not silently drop a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret comes from. Exactly one of ``env`` or ``file``."""

    env: str | None = Field(default=None, description="name of an environment variable holding the secret")
    file: str | None = Field(default=None, description="path of a file holding the secret (~ expanded)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' or 'file'")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            raise ValueError(f"{self.env!r} is not a valid environment variable name")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self, environ: dict[str, str] | os._Environ, base_dir: Path) -> str:
        """The secret's value, or ValueError saying where it was looked for (never the value)."""
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set")
            return value
        path = Path(os.path.expanduser(self.file))
        if not path.is_absolute():
            path = base_dir / path
        try:
            value = path.read_text()
        except OSError as exc:
            raise ValueError(f"file {path} cannot be read ({exc.strerror})") from None
        if not value.strip():
            raise ValueError(f"file {path} is empty")
        # A one-line secret (API key, token) loses the newline editors add; a
        # multi-line one (private key, JSON) is kept as written.
        stripped = value.rstrip("\r\n")
        return stripped if "\n" not in stripped else value


class Application(_Model):
    repository: str = Field(description="git URL of the TechnicIA application repository")
    deploy_command: str = Field(default="./deploy.sh", description="run in the checkout on the server")
    directory: str = Field(default="/opt/technicia", description="where the application lives on the server")
    env_file: str = Field(default=".env", description="the API-key file, relative to the checkout")
    compose_file: str = Field(default="docker-compose.yml")
    frontend_port: int = Field(default=8080, ge=1, le=65535, description="front end, published on the server's 127.0.0.1; nginx proxies / to it")
    api_port: int = Field(default=8000, ge=1, le=65535, description="API, published on the server's 127.0.0.1; nginx proxies /api/ to it")

    @field_validator("repository")
    @classmethod
    def _repository_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: the git URL of the application repository")
        return value


class OvhSettings(_Model):
    endpoint: str = Field(default="ovh-eu", description="a python-ovh endpoint name (ovh-eu, ovh-ca, ...)")
    api_url: str | None = Field(default=None, description="override of the endpoint's API URL (the sandbox's OVH emulator)")
    application_key: SecretRef
    application_secret: SecretRef
    consumer_key: SecretRef


class ServerSpec(_Model):
    """The seed's 'Informations du Serveur' table: what the VPS must be."""

    ovh_service_name: str = Field(description="OVH service name of the VPS (e.g. vps-1234abcd.vps.ovh.net)")
    label: str = Field(description="the name the team uses (e.g. VPS-PROD-XYZ)")
    model: str = Field(description="OVH offer, e.g. VPS-SSD-4")
    vcores: int = Field(gt=0)
    ram_gb: int = Field(gt=0)
    disk_gb: int = Field(gt=0)
    os: str = Field(description="e.g. 'Ubuntu Server 22.04 LTS'")
    zone: str = Field(description="OVH datacentre, e.g. GRA11")
    host: str | None = Field(default=None, description="address to SSH to; default: the VPS IPv4 from the OVH API")


class SshSettings(_Model):
    user: str = Field(default="deploy", description="the deploy user the pipeline creates and then uses")
    admin_user: str | None = Field(default=None, description="the sudo user a fresh VPS is delivered with (OVH: 'ubuntu' "
                                   "or 'debian'); used only until the deploy user exists")
    port: int = Field(default=22, ge=1, le=65535)
    host_key: str = Field(description="the server's public host key, 'ssh-ed25519 AAAA...' (pinned, never learnt)")
    private_key: SecretRef

    @field_validator("host_key")
    @classmethod
    def _host_key_shape(cls, value: str) -> str:
        parts = value.split()
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
            raise ValueError("expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'")
        return " ".join(parts[:2])


class PortRule(_Model):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    service: str
    comment: str = ""


class Firewall(_Model):
    public: list[PortRule] = Field(description="open to the internet")
    internal: list[PortRule] = Field(default_factory=list, description="reachable only from the server itself")
    ovh_network_firewall: bool = Field(default=False, description="also mirror the rules in OVH's network firewall")

    @model_validator(mode="after")
    def _no_overlap(self) -> "Firewall":
        public = {(r.port, r.protocol) for r in self.public}
        both = sorted(p for p in ((r.port, r.protocol) for r in self.internal) if p in public)
        if both:
            names = ", ".join(f"{port}/{proto}" for port, proto in both)
            raise ValueError(f"port {names} is both public and internal")
        return self


class HealthCheck(_Model):
    name: str
    url: str = Field(description="path on the public URL ('/api/health') or a URL on the server ('http://127.0.0.1:6333/healthz')")
    expect_status: int = 200
    from_server: bool = Field(default=False, description="checked from inside the VPS (internal-only services)")


class Performance(_Model):
    concurrency: int = Field(default=4, ge=1)
    duration_s: float = Field(default=5.0, gt=0)
    path: str = "/"
    min_rps: float = Field(default=20.0, ge=0)
    max_p95_ms: float = Field(default=500.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)


class AlertDestination(_Model):
    name: str
    url: SecretRef = Field(description="an apprise URL (mailto://, json://, slack://...): a secret, it carries tokens")


class GoogleSettings(_Model):
    project_id: str
    service_account_json: SecretRef
    documentai_location: str = "eu"
    documentai_processor_id: str
    documentai_endpoint: str | None = Field(default=None, description="override; default '{location}-documentai.googleapis.com'")
    vision_endpoint: str | None = Field(default=None, description="override; default 'vision.googleapis.com'")


class VoyageSettings(_Model):
    api_key: SecretRef
    model: str = "voyage-3.5-lite"
    base_url: str | None = None

    @field_validator("model")
    @classmethod
    def _not_local(cls, value: str) -> str:
        _not_empty(value)
        if value == "voyage-4-nano":
            raise ValueError("voyage-4-nano runs locally in the SDK and proves nothing about the key")
        return value


class AnthropicSettings(_Model):
    api_key: SecretRef
    model: str = "claude-sonnet-4-6"
    base_url: str | None = None

    @field_validator("model")
    @classmethod
    def _model_given(cls, value: str) -> str:
        return _not_empty(value)


class ApiKeys(_Model):
    google: GoogleSettings
    voyageai: VoyageSettings
    anthropic: AnthropicSettings
    smoke_max_age_minutes: float = Field(
        default=60, ge=0, description="a deployment re-uses the last passing smoke calls of the same keys and "
        "settings younger than this instead of calling the services again; 0: call on every deployment (the "
        "scheduled key audit always calls)")


class Docker(_Model):
    source: Literal["distro", "docker-apt"] = Field(default="distro", description="Debian/Ubuntu packages or Docker's own apt repository")
    min_version: str = Field(default="20.10")


class Tls(_Model):
    acme_server: str = Field(default="https://acme-v02.api.letsencrypt.org/directory")
    email: str
    min_days_left: int = Field(default=30, ge=1)
    ca_bundle: str | None = Field(default=None, description="an extra CA the server must trust to reach a private ACME "
                                  "server (the sandbox's): in environments.yaml the path of a PEM file (relative to the "
                                  "file); `blocks apply` stores the PEM itself")
    issuer_ca: str | None = Field(default=None, description="the root CA that issues the site's certificate when it is "
                                  "not publicly trusted (the sandbox's pebble): the post-deployment checks and the "
                                  "monitoring verify the served chain against it; a PEM file path, stored as PEM like ca_bundle")

    caa_issuer: str | None = Field(default=None, description="the CA's domain in the CAA record written at the "
                                   "environment's domain (only that CA may issue for it); default: 'letsencrypt.org' "
                                   "when acme_server is Let's Encrypt's; otherwise no CAA record unless set")
    ocsp_stapling: Literal["auto", "off"] = Field(default="auto", description="'auto': nginx staples the CA's OCSP "
                                                  "answer when the certificate names an OCSP responder (many ACME CAs, "
                                                  "pebble and Let's Encrypt since 2025 among them, name none); 'off': never")

    @field_validator("caa_issuer")
    @classmethod
    def _caa_issuer_shape(cls, value: str | None) -> str | None:
        if value is not None and not _ISSUER_DOMAIN.fullmatch(value):
            raise ValueError(f"{value!r} is not a CA's domain name (e.g. letsencrypt.org)")
        return value

    def caa_issuer_domain(self) -> str | None:
        """The CAA 'issue' value for this ACME server: declared, or known for Let's Encrypt, else None."""
        if self.caa_issuer:
            return self.caa_issuer
        host = (urlsplit(self.acme_server).hostname or "").lower()
        return "letsencrypt.org" if host.endswith(".api.letsencrypt.org") else None

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        if not is_email(value):
            raise ValueError(f"{value!r} is not a valid e-mail address (the ACME account's contact, "
                             "e.g. ops@exemple.fr)")
        return value


# The front end and its API share one origin (nginx proxies /api/ to the API): 'self' covers both. Inline styles are
# allowed because front-end frameworks set style attributes; inline scripts are not.
DEFAULT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'; upgrade-insecure-requests"
)
# The application uses none of these browser features; uploads go through forms, not the camera.
DEFAULT_PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)
_CSP_DIRECTIVE = re.compile(r"[a-z][a-z0-9-]*(?: +[^ ;,]+)*")
_PERMISSIONS_ENTRY = re.compile(r'[a-z][a-z0-9-]*=(?:\*|self|\((?:(?:self|\*|"[^"]+")(?: (?:self|\*|"[^"]+"))*)?\))')


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be an HTTP header value in nginx's configuration (None if it can).

    '$' would be read by nginx as a variable; control characters end the header or the directive."""
    if not value.strip():
        return "must not be empty"
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        return "must be printable ASCII on one line"
    if "$" in value or "\\" in value:
        return "must not contain '$' or '\\' (nginx would read them as a variable or an escape)"
    return None


class HttpPolicy(_Model):
    """Response headers nginx adds to every HTTPS answer (front end and API)."""

    content_security_policy: str = Field(default=DEFAULT_CONTENT_SECURITY_POLICY, description="the "
                                         "Content-Security-Policy header: directives separated by ';'")
    permissions_policy: str = Field(default=DEFAULT_PERMISSIONS_POLICY, description="the Permissions-Policy header: "
                                    "'feature=(allowlist)' entries separated by ','; '()' disables a feature")

    @field_validator("content_security_policy")
    @classmethod
    def _csp_shape(cls, value: str) -> str:
        problem = header_value_problem(value)
        if problem:
            raise ValueError(problem)
        directives = [d.strip() for d in value.split(";") if d.strip()]
        bad = [d for d in directives if not _CSP_DIRECTIVE.fullmatch(d)]
        if bad or not directives:
            raise ValueError(f"{bad[0] if bad else value!r} is not a CSP directive ('name source ...', e.g. "
                             "\"default-src 'self'\")")
        return value

    @field_validator("permissions_policy")
    @classmethod
    def _permissions_shape(cls, value: str) -> str:
        problem = header_value_problem(value)
        if problem:
            raise ValueError(problem)
        bad = [e.strip() for e in value.split(",") if not _PERMISSIONS_ENTRY.fullmatch(e.strip())]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a Permissions-Policy entry ('feature=()', 'feature=(self)', "
                             "'feature=*')")
        return value


class Dns(_Model):
    zone: str = Field(description="the OVH DNS zone, e.g. exemple.fr")
    ttl: int = Field(default=300, ge=60)
    nameservers: list[str] = Field(default_factory=list, description="host[:port] of the zone's authoritative servers; default: the zone's NS records")


class Promotion(_Model):
    """What a promotion must prove before it deploys this environment (used for production, the last stage)."""

    dns_min_age_hours: float = Field(default=24, ge=0, description="the domain's DNS record must be at least this old "
                                     "(the seed: DNS set up 24 h before the production deployment, for propagation)")
    dns_age_policy: Literal["block", "warn"] = Field(default="block", description="a record younger than "
                                                     "dns_min_age_hours blocks the promotion, or only warns")
    min_quota_headroom_percent: float = Field(default=10, ge=0, le=100, description="each quota a service reports "
                                              "(remaining / limit) must be above this percentage")
    approval_timeout_hours: float = Field(default=72, gt=0, description="how long the promotion waits for a human "
                                          "approval before it ends, production untouched")


class Environment(_Model):
    url: str
    domain: str
    server: ServerSpec
    ssh: SshSettings
    dns: Dns
    firewall: Firewall
    tls: Tls
    http: HttpPolicy = HttpPolicy()
    docker: Docker = Docker()
    health: list[HealthCheck] = Field(default_factory=list)
    performance: Performance = Performance()
    alerts: list[AlertDestination] = Field(default_factory=list)
    api_keys: ApiKeys
    promotion: Promotion = Promotion()

    @model_validator(mode="after")
    def _url_matches_domain(self) -> "Environment":
        if not self.url.startswith(f"https://{self.domain}"):
            raise ValueError(f"url {self.url!r} must be https://{self.domain}")
        if not (self.domain == self.dns.zone or self.domain.endswith("." + self.dns.zone)):
            raise ValueError(f"domain {self.domain!r} is not inside DNS zone {self.dns.zone!r}")
        return self


class Project(_Model):
    name: str = Field(default="technicia", pattern=r"^[a-z][a-z0-9-]*$")
    application: Application
    ovh: OvhSettings
    environments: dict[EnvironmentName, Environment]

    @field_validator("environments")
    @classmethod
    def _all_environments(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        missing = [name for name in ENVIRONMENTS if name not in value]
        if missing:
            raise ValueError(f"missing environment(s): {', '.join(missing)}")
        return value

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            raise ConfigError("environments", [(f"environments.{name}", f"unknown environment; known: {', '.join(self.environments)}")])
        return self.environments[name]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _reason(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def consistency_problems(environments: dict[str, Environment]) -> list[tuple[str, str]]:
    """What each field alone cannot tell: settings that contradict each other, within or across environments.

    - the firewall's public rules must open the SSH port the pipeline connects to (else it locks itself out);
    - two environments never share a server (OVH service name, SSH host) or a domain;
    - health-check names are unique within an environment (they name the checks in reports and alerts).
    """
    problems: list[tuple[str, str]] = []
    owners: dict[tuple[str, str], str] = {}  # (what, normalised value) -> first environment with it
    for name in ENVIRONMENTS:
        env = environments.get(name)
        if env is None:
            continue
        at = f"environments.{name}"
        public = {(rule.port, rule.protocol) for rule in env.firewall.public}
        if (env.ssh.port, "tcp") not in public:
            problems.append((f"{at}.firewall.public", f"does not open the SSH port {env.ssh.port}/tcp (ssh.port): "
                                                      "the pipeline would lock itself out of the server"))
        shared = [
            ("server.ovh_service_name", "server", env.server.ovh_service_name.strip().lower()),
            ("server.host", "server", (env.server.host or "").strip().lower().rstrip(".")),
            ("domain", "domain", env.domain.strip().lower().rstrip(".")),
        ]
        for field, what, value in shared:
            if not value:
                continue
            first = owners.setdefault((field, value), name)
            if first != name:
                problems.append((f"{at}.{field}", f"{value!r} is already the {what} of environments.{first}: "
                                                  f"two environments cannot share a {what}"))
        seen: dict[str, int] = {}
        for index, check in enumerate(env.health):
            key = check.name.strip().lower()
            if key in seen:
                problems.append((f"{at}.health[{index}].name",
                                 f"duplicate health check name {check.name!r} (also health[{seen[key]}])"))
            else:
                seen[key] = index
    return problems


def _valid_environments(data: Any) -> dict[str, Environment]:
    raw = data.get("environments") if isinstance(data, dict) else None
    valid = {}
    for name in ENVIRONMENTS if isinstance(raw, dict) else ():
        try:
            valid[name] = Environment.model_validate(raw.get(name))
        except ValidationError:
            continue
    return valid


def parse(data: Any, file: str | os.PathLike = "environments.yaml") -> Project:
    try:
        project = Project.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = error["loc"]
            # Pydantic reports a failed literal key of the environments mapping with a '[key]' suffix.
            problems.append((_loc(tuple(p for p in loc if not (isinstance(p, str) and p.endswith("[key]")))), _reason(error)))
        # The environments that are valid on their own are still checked against each other: every problem at once.
        raise ConfigError(file, problems + consistency_problems(_valid_environments(data))) from None
    problems = consistency_problems(dict(project.environments))
    if problems:
        raise ConfigError(file, problems)
    return project


def load(path: str | os.PathLike) -> Project:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, [("", f"cannot be read ({exc.strerror})")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [("", f"cannot be read (not UTF-8 text: byte {exc.start})")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, [("", "expected a mapping at the top level")])
    return parse(data, path)


def embed_files(project: Project, file: str | os.PathLike) -> Project:
    """The project with file paths that must travel with the configuration (tls.ca_bundle, tls.issuer_ca) replaced by their content."""
    base_dir = Path(file).resolve().parent
    problems: list[tuple[str, str]] = []
    environments = {}
    for name, env in project.environments.items():
        for field in ("ca_bundle", "issuer_ca"):
            bundle = getattr(env.tls, field)
            if not bundle or bundle.lstrip().startswith("-----BEGIN"):
                continue
            path = Path(os.path.expanduser(bundle))
            path = path if path.is_absolute() else base_dir / path
            try:
                pem = path.read_text()
            except OSError as exc:
                problems.append((f"environments.{name}.tls.{field}", f"file {path} cannot be read ({exc.strerror})"))
                continue
            if "-----BEGIN CERTIFICATE-----" not in pem:
                problems.append((f"environments.{name}.tls.{field}", f"file {path} is not a PEM certificate"))
                continue
            env = env.model_copy(update={"tls": env.tls.model_copy(update={field: pem})})
        environments[name] = env
    if problems:
        raise ConfigError(file, problems)
    return project.model_copy(update={"environments": environments})


def secret_refs(model: BaseModel, prefix: str = "") -> list[tuple[str, SecretRef]]:
    """Every secret reference in ``model`` with its dotted path, in document order."""
    found: list[tuple[str, SecretRef]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, SecretRef):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(model, prefix)
    return found


_ALERT_URL = re.compile(r"environments\.\w+\.alerts\[\d+\]\.url")


def mailto_problem(url: str) -> str | None:
    """Why an apprise ``mailto://``/``mailtos://`` URL has no valid e-mail address (None if it has, or is no mailto).

    The addresses are ``to``/``cc``/``bcc``/``from`` (comma-separated, ``Name <addr>`` allowed), and ``user@host``
    when there is no ``to``. The reason never quotes the URL: it is a secret (it may carry a password).
    """
    split = urlsplit(url.strip())
    if split.scheme.lower() not in ("mailto", "mailtos"):
        return None
    try:
        params = {k.lower(): v for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        user, host = split.username, split.hostname
    except ValueError:
        return "mailto URL cannot be parsed"
    fields = {name: params[name] for name in ("to", "cc", "bcc", "from") if name in params}
    if "to" not in fields:
        if not user:
            return "mailto URL names no recipient (neither ?to= nor user@domain)"
        fields["user@domain"] = [f"{unquote(user)}@{host or ''}"]
    for name, values in fields.items():
        addresses = [addr for _, addr in getaddresses([v.replace(";", ",") for v in values])]
        if not addresses or not all(is_email(addr) for addr in addresses):
            return f"mailto URL: {name} is not a valid e-mail address"
    return None


def resolve_secrets(project: Project, file: str | os.PathLike, environ: dict[str, str] | os._Environ | None = None) -> dict[str, str]:
    """Resolve every secret reference; all failures are reported together, values never."""
    environ = os.environ if environ is None else environ
    base_dir = Path(file).resolve().parent
    values: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for path, ref in secret_refs(project):
        try:
            values[path] = ref.resolve(environ, base_dir)
        except ValueError as exc:
            problems.append((path, str(exc)))
            continue
        if _ALERT_URL.fullmatch(path):
            reason = mailto_problem(values[path])
            if reason:
                problems.append((path, reason))
    if problems:
        raise ConfigError(file, problems)
    return values

