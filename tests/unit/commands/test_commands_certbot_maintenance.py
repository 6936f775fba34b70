"""The certificates maintenance's certbot commands: renewal now, and its rehearsal against the declared ACME server."""

from __future__ import annotations

from technicia_deploy.commands import certbot as c
from technicia_deploy.config import Tls

DOMAIN = "test-technicia.exemple.fr"
PEBBLE = "https://10.99.0.2:14000/dir"
PEBBLE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeforthetest\n-----END CERTIFICATE-----\n"
LE_WANTED = c.CertificateWanted(domain=DOMAIN, tls=Tls(email="ops@exemple.fr"))
PEBBLE_WANTED = c.CertificateWanted(domain=DOMAIN, tls=Tls(acme_server=PEBBLE, email="ops@exemple.fr", ca_bundle=PEBBLE_CA))


def test_dry_run_goes_to_the_declared_acme_server():
    assert c.renew_dry_run_command(LE_WANTED) == (
        "certbot renew --dry-run --cert-name test-technicia.exemple.fr "
        "--server https://acme-v02.api.letsencrypt.org/directory --no-random-sleep-on-renew --non-interactive")
    assert c.renew_dry_run_command(PEBBLE_WANTED) == (
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt certbot renew --dry-run "
        "--cert-name test-technicia.exemple.fr --server https://10.99.0.2:14000/dir --no-random-sleep-on-renew "
        "--non-interactive")


def test_renewal_is_the_first_issuance_forced():
    assert c.renew_command(PEBBLE_WANTED) == (
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt certbot certonly --webroot -w /var/www/letsencrypt "
        "--cert-name test-technicia.exemple.fr -d test-technicia.exemple.fr --server https://10.99.0.2:14000/dir "
        "--email ops@exemple.fr --agree-tos --non-interactive --no-eff-email --deploy-hook 'systemctl reload nginx' "
        "--force-renewal")


SUCCEEDED = """Saving debug log to /var/log/letsencrypt/letsencrypt.log

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Processing /etc/letsencrypt/renewal/test-technicia.exemple.fr.conf
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Account registered.
Simulating renewal of an existing certificate for test-technicia.exemple.fr

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Congratulations, all simulated renewals succeeded:
  /etc/letsencrypt/live/test-technicia.exemple.fr/fullchain.pem (success)
"""

CHALLENGE_FAILED = """Saving debug log to /var/log/letsencrypt/letsencrypt.log
Simulating renewal of an existing certificate for test-technicia.exemple.fr

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: test-technicia.exemple.fr
  Type:   unauthorized
  Detail: 10.99.0.11: Invalid response from http://test-technicia.exemple.fr/.well-known/acme-challenge/abc: 403

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.

Failed to renew certificate test-technicia.exemple.fr with error: Some challenges have failed.
All simulated renewals failed. The following certificates could not be renewed:
  /etc/letsencrypt/live/test-technicia.exemple.fr/fullchain.pem (failure)
1 renew failure(s), 0 parse failure(s)
"""


def test_dry_run_verdicts():
    assert c.parse_dry_run(0, SUCCEEDED) == c.DryRun(True, "Congratulations, all simulated renewals succeeded:")
    assert c.parse_dry_run(1, CHALLENGE_FAILED) == c.DryRun(False, (
        "Domain: test-technicia.exemple.fr; Type: unauthorized; Detail: 10.99.0.11: Invalid response from "
        "http://test-technicia.exemple.fr/.well-known/acme-challenge/abc: 403"))
    unreachable = ("Failed to renew certificate x with error: HTTPSConnectionPool(host='10.99.0.2', port=14000): "
                   "Max retries exceeded\nAll simulated renewals failed.\n")
    assert c.parse_dry_run(1, unreachable).detail.startswith("Failed to renew certificate x with error: HTTPSConnectionPool")
    # A zero exit status without certbot's success line is not a success.
    assert not c.parse_dry_run(0, "").ok
    assert c.parse_dry_run(2, "").detail == "certbot exited 2, no output"
