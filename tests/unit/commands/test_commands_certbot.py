"""certbot certonly --webroot: obtain only when needed, private ACME CA, renewal timer."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from technicia_deploy.commands import certbot as c
from technicia_deploy.commands.shell import APT_GET, render_sections
from technicia_deploy.config import Tls

DOMAIN = "test-technicia.exemple.fr"
LE = "https://acme-v02.api.letsencrypt.org/directory"
WANTED = c.CertificateWanted(domain=DOMAIN, tls=Tls(email="ops@exemple.fr"))
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
PEBBLE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeforthetest\n-----END CERTIFICATE-----\n"
OBTAIN = (
    "certbot certonly --webroot -w /var/www/letsencrypt --cert-name test-technicia.exemple.fr "
    "-d test-technicia.exemple.fr --server https://acme-v02.api.letsencrypt.org/directory "
    "--email ops@exemple.fr --agree-tos --non-interactive --no-eff-email --deploy-hook 'systemctl reload nginx'"
)


def openssl_output(not_after: datetime, names: list[str]) -> str:
    sans = ", ".join(f"DNS:{name}" for name in names)
    return f"notAfter={not_after.strftime('%b %e %H:%M:%S %Y')} GMT\nX509v3 Subject Alternative Name: \n    {sans}\n"


def facts(**overrides) -> c.CertFacts:
    values = {
        "certbot": ("", 1),
        "cert": ("", 1),
        "renewal": ("", 2),
        "extra_ca": ("absent\n", 0),
        "timer": ("enabled=\nactive=inactive\n", 0),
        "now": (f"{int(NOW.timestamp())}\n", 0),
    }
    values.update(overrides)
    return c.parse_facts(render_sections(values))


def issued(days_left: float = 89, names=(DOMAIN,), server=LE, authenticator="webroot", **overrides) -> c.CertFacts:
    values = {
        "certbot": ("2.1.0-4\n", 0),
        "cert": (openssl_output(NOW + timedelta(days=days_left), list(names)), 0),
        "renewal": (f"authenticator = {authenticator}\nserver = {server}\n", 0),
        "timer": ("enabled=enabled\nactive=active\n", 0),
    }
    values.update(overrides)
    return facts(**values)


def test_fresh_server(bash_syntax):
    commands = c.operations(facts(), WANTED)
    assert commands == [
        f"{APT_GET} update && {APT_GET} install --no-install-recommends certbot",
        OBTAIN,
        "systemctl enable --now certbot.timer",
    ]
    for command in commands:
        bash_syntax(command)


def test_post_state_is_unchanged():
    assert c.operations(issued(), WANTED) == []
    assert c.reasons_to_obtain(issued(), WANTED) == []


@pytest.mark.parametrize(
    "certificate, reason",
    [
        (dict(days_left=12.5), "expires in 12.5 days (< 30)"),
        (dict(names=(DOMAIN, "www." + DOMAIN)), "differ"),
        (dict(server="https://acme-staging-v02.api.letsencrypt.org/directory"), "issued by ACME server"),
        (dict(authenticator="nginx"), "authenticator nginx"),
    ],
)
def test_existing_certificate_is_replaced_only_for_a_reason(certificate, reason):
    current = issued(**certificate)
    assert any(reason in r for r in c.reasons_to_obtain(current, WANTED))
    assert c.operations(current, WANTED) == [OBTAIN + " --force-renewal"]


def test_expiry_is_judged_by_the_servers_clock_or_an_explicit_now():
    current = issued(days_left=40)
    assert c.operations(current, WANTED) == []
    assert c.operations(current, WANTED, now=NOW + timedelta(days=15)) == [OBTAIN + " --force-renewal"]


def test_private_acme_server_with_its_ca(payload, bash_syntax):
    tls = Tls(acme_server="https://10.99.0.2:14000/dir", email="ops@exemple.fr", min_days_left=1, ca_bundle=PEBBLE_CA)
    wanted = c.CertificateWanted(domain=DOMAIN, tls=tls)
    ca, obtain = c.operations(issued(server=LE, extra_ca=("absent\n", 0)), wanted)
    assert payload(ca) == PEBBLE_CA and "f=/usr/local/share/ca-certificates/technicia-acme.crt" in ca
    assert ca.endswith("\nupdate-ca-certificates")
    assert obtain.startswith("REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt certbot certonly ")
    assert "--server https://10.99.0.2:14000/dir" in obtain
    bash_syntax(ca)
    bash_syntax(obtain)
    digest = c.extra_ca_file(PEBBLE_CA).sha256
    after = issued(server=tls.acme_server, extra_ca=(f"644 root root\n{digest}\n", 0))
    assert c.operations(after, wanted) == []


def test_ca_bundle_must_be_pem():
    wanted = c.CertificateWanted(domain=DOMAIN, tls=Tls(email="a@b.fr", ca_bundle="not a pem"))
    with pytest.raises(c.CertbotError, match="PEM"):
        c.operations(facts(), wanted)


def test_several_names_and_quoting(bash_syntax):
    wanted = c.CertificateWanted(domain=DOMAIN, tls=Tls(email="o'brien@exemple.fr"), names=(DOMAIN, "www." + DOMAIN))
    command = c.obtain_command(wanted, replace_existing=False)
    assert f"-d {DOMAIN} -d www.{DOMAIN}" in command and "--email 'o'\"'\"'brien@exemple.fr'" in command
    bash_syntax(command)


def test_real_certificate_through_the_fact_command(tmp_path):
    """The fact command's openssl invocation on a real certificate, parsed."""
    live = tmp_path / "live" / DOMAIN
    live.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "20", "-subj", f"/CN={DOMAIN}",
         "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:WWW.{DOMAIN},IP:127.0.0.1",
         "-keyout", str(live / "privkey.pem"), "-out", str(live / "cert.pem")],
        check=True, capture_output=True,
    )
    renewal = tmp_path / "renewal"
    renewal.mkdir()
    (renewal / f"{DOMAIN}.conf").write_text(f"version = 2.1.0\n[renewalparams]\nauthenticator = webroot\nserver = {LE}\n")
    script = c.fact_command(DOMAIN, live_dir=str(tmp_path / "live"), renewal_dir=str(renewal))
    output = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    facts = c.parse_facts(output)
    assert facts.sans == (DOMAIN, f"www.{DOMAIN}")  # IP SAN ignored, names lower-cased
    assert facts.acme_server == LE and facts.authenticator == "webroot"
    assert facts.now is not None and timedelta(days=19) < facts.not_after - facts.now <= timedelta(days=20)
    # 20 days left < 30: renew; and the extra name makes the SANs differ too.
    reasons = c.reasons_to_obtain(facts, WANTED)
    assert any("expires in" in r for r in reasons) and any("differ" in r for r in reasons)
