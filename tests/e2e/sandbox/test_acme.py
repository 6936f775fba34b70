"""The sandbox's ACME server: certbot on a VPS gets a certificate from pebble, as it would from Let's Encrypt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from technicia_deploy.sandbox import vps, world

pytestmark = pytest.mark.e2e


def vps_exec(container: str, script: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True, text=True, timeout=timeout)


def ovh_client(sandbox):
    """python-ovh against the sandbox's OVH emulator, with the sandbox's application credentials."""
    import ovh
    import ovh.client

    known = sandbox.data["ovh"]
    ovh.client.ENDPOINTS["technicia-sandbox-e2e"] = known["api_url"]
    read = lambda key: Path(known[key]).read_text().strip()  # noqa: E731
    return ovh.Client(endpoint="technicia-sandbox-e2e", application_key=read("application_key_file"),
                      application_secret=read("application_secret_file"), consumer_key=read("consumer_key_file"))


def free_vps(sandbox) -> tuple[str, dict]:
    """A VPS where port 80 is free (certbot's standalone server needs it; a deployed app may hold it)."""
    for env, server in sandbox.data["vps"].items():
        if not vps_exec(server["container"], "ss -Hltn 'sport = :80' | grep -q .").returncode == 0:
            return env, server
    pytest.skip("port 80 is taken on every sandbox VPS")


def test_certbot_on_a_vps_gets_a_certificate_from_pebble(sandbox):
    env, server = free_vps(sandbox)
    zone = sandbox.data["ovh"]["zone"]
    subdomain = world.SUBDOMAINS[env]
    domain = f"{subdomain}.{zone}"
    acme = sandbox.data["acme"]
    client = ovh_client(sandbox)
    record = client.post(f"/domain/zone/{zone}/record", fieldType="A", subDomain=subdomain, target=server["ip"], ttl=60)
    client.post(f"/domain/zone/{zone}/refresh")
    container = server["container"]
    ca = Path(acme["ca_bundle"]).read_text()
    try:
        # What the pipeline's https steps do on a real server: trust the ACME server's CA (sandbox only), install certbot.
        trust = vps_exec(container, f"cat > /usr/local/share/ca-certificates/technicia-sandbox.crt <<'PEM'\n{ca}PEM\n"
                                    "update-ca-certificates >/dev/null")
        assert trust.returncode == 0, trust.stderr
        install = vps_exec(container, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                                      "apt-get install -y -qq --no-install-recommends certbot >/dev/null")
        assert install.returncode == 0, install.stderr
        issue = vps_exec(container, f"certbot certonly --standalone --non-interactive --agree-tos -m ops@{zone} "
                                    f"--server {acme['directory']} -d {domain}")
        assert issue.returncode == 0, issue.stdout + issue.stderr
        pem = vps_exec(container, f"cat /etc/letsencrypt/live/{domain}/fullchain.pem").stdout
        chain = x509.load_pem_x509_certificates(pem.encode())
        names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert names == [domain]
        # Issued by pebble's current root, the one the sandbox published in issuer_roots.
        root = x509.load_pem_x509_certificate(Path(acme["issuer_roots"]).read_bytes())
        chain[-1].verify_directly_issued_by(root)
    finally:
        client.delete(f"/domain/zone/{zone}/record/{record['id']}")
        client.post(f"/domain/zone/{zone}/refresh")
        # Leave the VPS as fresh as it was (the pipeline installs certbot itself): reinstall it, as OVH would.
        vps.rebuild(sandbox, env, sandbox.data["keys"]["deploy_public_key"])
