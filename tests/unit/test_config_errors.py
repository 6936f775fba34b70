"""Bad configuration and bad invocations: one `error:` line naming the problem, exit status 2, no traceback.

Each case starts from the valid example (tests/unit/config_data.py, with its canary secrets) and breaks one
thing, then runs ``technicia_deploy.cli.main`` as a user would. Nothing here talks to a server: ``blocks check``
needs no Prefect server, and a command that does needs stops at "no Prefect server" (PREFECT_API_URL unset,
no sandbox in the working directory).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from technicia_deploy import config as cfg
from technicia_deploy.cli import main
from tests.unit.config_data import canary_values

Mutation = Callable[[dict], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting a dotted path (list indexes as numbers) of the document."""

    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(data: dict) -> None:
        for m in mutations:
            m(data)

    return mutate


def _drop_ssh_rule(env: str) -> Mutation:
    def mutate(data: dict) -> None:
        rules = data["environments"][env]["firewall"]["public"]
        rules[:] = [r for r in rules if r["port"] != 22]

    return mutate


def _duplicate_health(env: str) -> Mutation:
    def mutate(data: dict) -> None:
        data["environments"][env]["health"].append({"name": "API", "url": "/api/other"})

    return mutate


def _same_domain(data: dict) -> None:
    production = data["environments"]["production"]
    production["domain"] = "staging-technicia.exemple.fr"
    production["url"] = "https://staging-technicia.exemple.fr"


def _delete(path: str) -> Mutation:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


@dataclass
class Case:
    id: str
    expected: str  # a substring of stderr
    code: int = 2
    mutate: Mutation | None = None  # applied to the valid example, written to FILE
    raw: bytes | None = None  # or: FILE's exact content
    argv: list[str] = field(default_factory=lambda: ["blocks", "check", "{file}"])
    env: dict[str, str | None] = field(default_factory=dict)  # environment overrides (None: unset)


CONFIG_CASES = [
    # --- the new validators
    Case("empty repository", "application.repository: must not be empty", mutate=_set("application.repository", "")),
    Case("blank repository", "application.repository: must not be empty", mutate=_set("application.repository", "  ")),
    Case("firewall without ssh", "environments.test.firewall.public: does not open the SSH port 22/tcp",
         mutate=_drop_ssh_rule("test")),
    Case("ssh on another port than the firewall opens", "environments.staging.firewall.public: does not open the SSH port 2222/tcp",
         mutate=_set("environments.staging.ssh.port", 2222)),
    Case("ssh port open for udp only", "environments.production.firewall.public: does not open the SSH port 22/tcp",
         mutate=_set("environments.production.firewall.public.0", {"port": 22, "protocol": "udp", "service": "SSH"})),
    Case("two environments, one OVH service", "environments.staging.server.ovh_service_name: 'vps-test-xyz.vps.ovh.net' "
         "is already the server of environments.test",
         mutate=_set("environments.staging.server.ovh_service_name", "vps-test-xyz.vps.ovh.net")),
    Case("same service name in other case", "environments.production.server.ovh_service_name",
         mutate=_set("environments.production.server.ovh_service_name", "VPS-Test-XYZ.vps.ovh.net")),
    Case("two environments, one ssh host", "environments.production.server.host: '203.0.113.7' is already the server of "
         "environments.test", mutate=_all(_set("environments.test.server.host", "203.0.113.7"),
                                          _set("environments.production.server.host", "203.0.113.7"))),
    Case("two environments, one domain", "environments.production.domain: 'staging-technicia.exemple.fr' is already the "
         "domain of environments.staging", mutate=_same_domain),
    Case("duplicate health check", "environments.test.health[4].name: duplicate health check name 'API' (also health[1])",
         mutate=_duplicate_health("test")),
    Case("empty voyage model", "environments.test.api_keys.voyageai.model: must not be empty",
         mutate=_set("environments.test.api_keys.voyageai.model", "")),
    Case("blank anthropic model", "environments.staging.api_keys.anthropic.model: must not be empty",
         mutate=_set("environments.staging.api_keys.anthropic.model", "   ")),
    Case("email without domain", "environments.test.tls.email: 'ops' is not a valid e-mail address",
         mutate=_set("environments.test.tls.email", "ops")),
    Case("email with a one-label domain", "environments.staging.tls.email: 'ops@localhost' is not a valid e-mail address",
         mutate=_set("environments.staging.tls.email", "ops@localhost")),
    Case("email with two @", "environments.production.tls.email", mutate=_set("environments.production.tls.email", "ops@@exemple.fr")),
    Case("email with a space", "environments.test.tls.email", mutate=_set("environments.test.tls.email", "o ps@exemple.fr")),
    Case("mailto with an invalid recipient", "environments.test.alerts[0].url: mailto URL: to is not a valid e-mail address",
         env={"TECHNICIA_ALERT_MAIL_URL": "mailtos://bot:canary-pass-77@smtp.exemple.fr?to=not-an-address"}),
    Case("mailto with an invalid sender", "environments.staging.alerts[0].url: mailto URL: from is not a valid e-mail address",
         env={"TECHNICIA_ALERT_MAIL_URL": "mailto://smtp.exemple.fr?to=ops@exemple.fr&from=monitor@"}),
    Case("mailto with no recipient", "environments.production.alerts[0].url: mailto URL names no recipient",
         env={"TECHNICIA_ALERT_MAIL_URL": "mailto://smtp.exemple.fr:25"}),
    Case("mailto whose user@host is no address", "mailto URL: user@domain is not a valid e-mail address",
         env={"TECHNICIA_ALERT_MAIL_URL": "mailto://ops:secret@localhost"}),
    Case("csp with an nginx variable", "environments.test.http.content_security_policy: must not contain '$'",
         mutate=_set("environments.test.http", {"content_security_policy": "default-src $host"})),
    Case("csp that is no directive list", "environments.staging.http.content_security_policy: \"'self'\" is not a CSP "
         "directive", mutate=_set("environments.staging.http", {"content_security_policy": "'self'"})),
    Case("permissions policy on two lines", "environments.production.http.permissions_policy: must be printable ASCII "
         "on one line", mutate=_set("environments.production.http", {"permissions_policy": "camera=()\nusb=()"})),
    Case("permissions policy entry without allowlist", "environments.test.http.permissions_policy: 'camera' is not a "
         "Permissions-Policy entry", mutate=_set("environments.test.http", {"permissions_policy": "camera, usb=()"})),
    Case("unknown http header key", "environments.test.http.csp: unknown key",
         mutate=_set("environments.test.http", {"csp": "default-src 'self'"})),
    Case("caa issuer that is no domain", "environments.staging.tls.caa_issuer: 'Lets Encrypt' is not a CA's domain name",
         mutate=_set("environments.staging.tls.caa_issuer", "Lets Encrypt")),
    Case("ocsp stapling forced on", "environments.test.tls.ocsp_stapling: Input should be 'auto' or 'off'",
         mutate=_set("environments.test.tls.ocsp_stapling", "on")),
    # --- what was already refused, through the command line
    Case("unknown key", "environments.staging.server.ram: unknown key", mutate=_set("environments.staging.server.ram", 8)),
    Case("wrong type", "environments.production.server.vcores: Input should be a valid integer",
         mutate=_set("environments.production.server.vcores", "four")),
    Case("missing environment", "environments: missing environment(s): staging", mutate=_delete("environments.staging")),
    Case("literal secret", "ovh.application_secret", mutate=_set("ovh.application_secret", "s3cr3t-canary")),
    Case("port public and internal", "environments.test.firewall: port 443/tcp is both public and internal",
         mutate=_set("environments.test.firewall.internal.0", {"port": 443, "service": "oops"})),
    Case("url outside the domain", "environments.test: url 'https://elsewhere.exemple.fr' must be https://test-technicia.exemple.fr",
         mutate=_set("environments.test.url", "https://elsewhere.exemple.fr")),
    Case("unset secret variable", "environments.staging.api_keys.anthropic.api_key: environment variable ANTHROPIC_API_KEY_STAGING is not set",
         env={"ANTHROPIC_API_KEY_STAGING": None}),
    # --- the file itself
    Case("invalid yaml", "line 2, column 1: not valid YAML", raw=b"name: technicia\n\tenvironments: [\n"),
    Case("unclosed flow sequence", "not valid YAML", raw=b"name: technicia\nenvironments: [\n"),
    Case("a list at the top level", "(top level): expected a mapping at the top level", raw=b"- test\n- staging\n"),
    Case("an empty file", "expected a mapping at the top level", raw=b""),
    Case("not utf-8", "(top level): cannot be read (not UTF-8 text", raw=b"name: techn\xe9cia\n"),
    Case("missing file", "(top level): cannot be read (No such file or directory)", argv=["blocks", "check", "{dir}/nope.yaml"]),
    Case("a directory", "(top level): cannot be read (Is a directory)", argv=["blocks", "check", "{dir}"]),
]

CLI_CASES = [
    Case("unknown environment", "argument environment: invalid choice: 'prod'", argv=["deploy", "prod", "--version", "v1.0.0"]),
    Case("unknown smoke environment", "invalid choice: 'everywhere'", argv=["smoke", "everywhere"]),
    Case("unknown rollback environment", "invalid choice: 'qa'", argv=["rollback", "qa"]),
    Case("deploy without a version", "the following arguments are required: --version", argv=["deploy", "test"]),
    Case("a bad lock wait", "argument --lock-wait: invalid float value: 'soon'",
         argv=["deploy", "test", "--version", "v1", "--lock-wait", "soon"]),
    Case("unknown command", "invalid choice: 'frobnicate'", argv=["frobnicate"]),
    Case("blocks without an action", "the following arguments are required: ACTION", argv=["blocks"]),
    Case("unknown report language", "argument --lang: invalid choice: 'de'", argv=["report", "--lang", "de"]),
    Case("deploy with no Prefect server", "error: no Prefect server: set PREFECT_API_URL", argv=["deploy", "test", "--version", "v1"]),
    Case("blocks apply with no Prefect server", "error: no Prefect server", argv=["blocks", "apply", "{file}"]),
]


@pytest.fixture
def isolated(tmp_path, monkeypatch, secret_home):
    """No Prefect server and no sandbox to find: the working directory is empty, PREFECT_API_URL unset."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("TECHNICIA_SANDBOX_DIR", raising=False)
    return work


def _run(case: Case, data: dict, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    file = tmp_path / "environments.yaml"
    if case.raw is not None:
        file.write_bytes(case.raw)
    else:
        document = copy.deepcopy(data)
        if case.mutate:
            case.mutate(document)
        file.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
    argv = [a.format(file=file, dir=tmp_path) for a in case.argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses the invocation
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CONFIG_CASES + CLI_CASES, ids=lambda c: c.id)
def test_user_error_is_one_clear_message(case, example_data, isolated, tmp_path, monkeypatch, capsys):
    code, err = _run(case, example_data, tmp_path, monkeypatch, capsys)
    assert code == case.code
    assert case.expected in err
    assert "Traceback" not in err
    assert "error: " in err  # ours ("error: ...") or argparse's ("technicia-deploy deploy: error: ...")
    for secret in [*canary_values(), "canary-pass-77", "s3cr3t-canary"]:
        assert secret not in err


def test_config_errors_name_the_file(example_data, isolated, tmp_path, monkeypatch, capsys):
    case = Case("x", "", mutate=_drop_ssh_rule("test"))
    code, err = _run(case, example_data, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert err == f"error: {tmp_path / 'environments.yaml'}: environments.test.firewall.public: does not open the SSH port " \
                  "22/tcp (ssh.port): the pipeline would lock itself out of the server\n"


def test_every_problem_is_reported_at_once(example_data, isolated, tmp_path, monkeypatch, capsys):
    mutate = _all(_drop_ssh_rule("test"), _duplicate_health("production"),
                  _set("environments.staging.server.ovh_service_name", "vps-test-xyz.vps.ovh.net"))
    code, err = _run(Case("x", "", mutate=mutate), example_data, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert [line.split(": ")[1] for line in err.replace("error: ", "").splitlines()] == [
        "environments.test.firewall.public",
        "environments.staging.server.ovh_service_name",
        "environments.production.health[4].name",
    ]


def test_consistency_is_checked_even_when_a_field_is_wrong(example_data, isolated, tmp_path, monkeypatch, capsys):
    mutate = _all(_set("environments.production.tls.email", "ops@"), _drop_ssh_rule("test"))
    code, err = _run(Case("x", "", mutate=mutate), example_data, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert [line.split(": ")[2] for line in err.splitlines()] == [
        "environments.production.tls.email",
        "environments.test.firewall.public",
    ]


def test_the_example_and_its_secrets_pass(example_data, isolated, tmp_path, monkeypatch, capsys):
    code, err = _run(Case("valid", "", code=0), example_data, tmp_path, monkeypatch, capsys)
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    "url",
    [
        "mailto://canary-alert-5e1a@exemple.fr",
        "mailto://127.0.0.1:2525?from=monitor@exemple.test&to=ops@exemple.test",
        "mailtos://bot:pa55word@mail.exemple.fr:465?to=ops@exemple.fr,dev@exemple.fr",
        "mailto://smtp.exemple.fr?to=Ops%20Team%20%3Cops@exemple.fr%3E",
        "json://127.0.0.1:8080/hooks/test/token",
    ],
)
def test_deliverable_alert_urls_pass(url):
    assert cfg.mailto_problem(url) is None


# --- main() turns user errors into one line, and leaves bugs alone ------------------------------------------


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        ("unknown version", "error: version 'v9.9.9' does not exist in https://git.exemple.fr/app.git (no such tag or branch)\n"),
        ("missing output", "error: /nowhere/report.md: No such file or directory\n"),
        ("config", "error: environments.yaml: environments.prod: unknown environment; known: test\n"),
    ],
)
def test_a_user_error_raised_by_any_command_is_one_line(raised, expected, isolated, monkeypatch, capsys):
    from technicia_deploy.cli import blocks
    from technicia_deploy.versions import UnknownVersion

    errors = {
        "unknown version": UnknownVersion("version 'v9.9.9' does not exist in https://git.exemple.fr/app.git (no such tag or branch)"),
        "missing output": FileNotFoundError(2, "No such file or directory", "/nowhere/report.md"),
        "config": cfg.ConfigError("environments.yaml", [("environments.prod", "unknown environment; known: test")]),
    }

    def command(args):
        raise errors[raised]

    monkeypatch.setattr(blocks, "_check", command)
    assert main(["blocks", "check", "environments.yaml"]) == 2
    assert capsys.readouterr().err == expected


@pytest.mark.parametrize("bug", [KeyError("settings"), TypeError("unsupported operand"), ValueError("bad state"),
                                 ConnectionResetError(104, "Connection reset by peer")])
def test_a_bug_keeps_its_traceback(bug, isolated, monkeypatch):
    from technicia_deploy.cli import blocks

    def command(args):
        raise bug

    monkeypatch.setattr(blocks, "_check", command)
    with pytest.raises(type(bug)):
        main(["blocks", "check", "environments.yaml"])


def test_an_unknown_environment_name_in_code_is_a_config_error(example_data, write_config):
    project = cfg.load(write_config(example_data))
    with pytest.raises(cfg.ConfigError, match="unknown environment"):
        project.environment("prod")
