"""Hardening: deploy user, key, sudo, sshd drop-in, root password. Facts in -> commands out -> post-state -> []."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.commands import hardening as h
from technicia_deploy.commands.shell import render_sections

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2VrZXlmb3J0ZXN0aW5nb25seTAxMjM0NTY3 technicia-deploy@ci"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVya2V5Zm9ydGVzdGluZ29ubHkwMTIzNDU2 admin@laptop"
WANTED = h.HardeningWanted(public_key=KEY)


def file_section(wanted_file=None, mode=None, owner="root"):
    if wanted_file is None:
        return ("absent\n", 0)
    return (f"{(mode or wanted_file.mode):o} {owner} root\n{wanted_file.sha256}\n", 0)


# sshd -T prints each setting lower-cased on one line.
EFFECTIVE_HARDENED = (
    "passwordauthentication no\npermitrootlogin no\nkbdinteractiveauthentication no\nx11forwarding no\n"
    "allowtcpforwarding no\nallowagentforwarding no\n"
    "kexalgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org\n"
    "ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr\n"
    "macs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com\n"
    "hostkeyalgorithms ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-256,"
    "rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com\n"
)
# Debian 12's defaults, as ssh-audit finds them on a fresh sandbox VPS.
EFFECTIVE_DEBIAN = (
    "passwordauthentication yes\npermitrootlogin without-password\nkbdinteractiveauthentication no\n"
    "x11forwarding yes\nallowtcpforwarding yes\nallowagentforwarding yes\n"
    "kexalgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
    "ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,"
    "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256\n"
    "ciphers chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com\n"
    "macs umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,"
    "hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1\n"
)
DROPIN = (
    "# Managed by technicia-deploy: key-only logins, no forwarding, modern algorithms only.\n"
    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
    "X11Forwarding no\nAllowTcpForwarding no\nAllowAgentForwarding no\n"
    "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org\n"
    "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr\n"
    "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com\n"
    "HostKeyAlgorithms ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-256,"
    "rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com\n"
)
BACKUP = (
    "rm -f /etc/ssh/technicia-sshd-dropin.previous /etc/ssh/technicia-sshd-dropin.previous.absent && "
    "if [ -f /etc/ssh/sshd_config.d/10-technicia.conf ]; then "
    "cp -p /etc/ssh/sshd_config.d/10-technicia.conf /etc/ssh/technicia-sshd-dropin.previous; "
    "else touch /etc/ssh/technicia-sshd-dropin.previous.absent; fi"
)


FRESH = {
    "user": ("", 2),
    "groups": ("", 1),
    "sudoers": ("absent\n", 0),
    "ssh_dir": ("", 1),
    "authorized_keys": ("", 1),
    "sshd_dropin": ("absent\n", 0),
    "sshd_effective": (EFFECTIVE_DEBIAN, 0),
    "root_password": ("root P 11/20/2024 0 99999 7 -1\n", 0),
}


def hardened(**overrides):
    values = {
        "user": ("deploy:x:1001:1001::/home/deploy:/bin/bash\n", 0),
        "groups": ("deploy\n", 0),
        "sudoers": file_section(h.sudoers_file("deploy")),
        "ssh_dir": ("700 deploy\n", 0),
        "authorized_keys": (f"600 deploy\n{OTHER_KEY}\n{KEY}\n", 0),
        "sshd_dropin": file_section(h.sshd_dropin_file("no")),
        "sshd_effective": (EFFECTIVE_HARDENED, 0),
        "root_password": ("root L 11/20/2024 0 99999 7 -1\n", 0),
    }
    values.update(overrides)
    return h.parse_facts("deploy", render_sections(values))


def test_fresh_server_gets_every_command_in_order(payload, bash_syntax):
    commands = h.operations(h.parse_facts("deploy", render_sections(FRESH)), WANTED)
    assert commands[0] == "useradd --create-home --shell /bin/bash deploy"

    sudoers = commands[1]
    assert payload(sudoers) == "# Managed by technicia-deploy.\ndeploy ALL=(ALL:ALL) NOPASSWD: ALL\n"
    assert "f=/etc/sudoers.d/90-technicia-deploy" in sudoers and 'visudo -cf "$t"' in sudoers
    assert sudoers.index("visudo") < sudoers.index('mv -f "$t" "$f"')  # validated before it is installed
    assert "chmod 440" in sudoers

    assert commands[2] == (
        'h=$(getent passwd deploy | cut -d: -f6) && [ -n "$h" ] && mkdir -p "$h/.ssh" && '
        'chown deploy:"$(id -gn deploy)" "$h/.ssh" && chmod 700 "$h/.ssh"'
    )
    assert commands[3] == (
        'h=$(getent passwd deploy | cut -d: -f6) && [ -n "$h" ] && f="$h/.ssh/authorized_keys" && '
        'if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >> "$f"; fi && '
        f"printf '%s\\n' '{KEY}' >> \"$f\" && "
        'chown deploy:"$(id -gn deploy)" "$h/.ssh/authorized_keys" && chmod 600 "$h/.ssh/authorized_keys"'
    )

    assert commands[4] == BACKUP == h.BACKUP_DROPIN  # the previous drop-in (here: none) can be put back
    sshd = commands[5]
    assert payload(sshd) == DROPIN
    assert "f=/etc/ssh/sshd_config.d/10-technicia.conf" in sshd
    assert sshd.index("if ! sshd -t;") < sshd.index("systemctl reload ssh")
    assert commands[6:] == ["passwd -l root"]
    assert h.changes_sshd(commands)
    for command in commands:
        bash_syntax(command)


def test_post_state_is_unchanged():
    assert h.operations(hardened(), WANTED) == []


def test_key_already_present_with_wrong_mode_is_only_chmodded():
    facts = hardened(authorized_keys=(f"644 deploy\n{KEY}\n", 0))
    assert h.operations(facts, WANTED) == [
        'h=$(getent passwd deploy | cut -d: -f6) && [ -n "$h" ] && '
        'chown deploy:"$(id -gn deploy)" "$h/.ssh/authorized_keys" && chmod 600 "$h/.ssh/authorized_keys"'
    ]


def test_key_with_other_comment_or_options_counts_as_present():
    blob = KEY.split()[1]
    facts = hardened(authorized_keys=(f'600 deploy\nfrom="10.0.0.1" ssh-ed25519 {blob} another comment\n', 0))
    assert h.operations(facts, WANTED) == []


def test_other_keys_are_kept_and_ours_appended(payload):
    facts = hardened(authorized_keys=(f"600 deploy\n{OTHER_KEY}\n", 0))
    [command] = h.operations(facts, WANTED)
    assert ">> \"$f\"" in command and KEY in command  # appended, never truncated


def test_root_login_by_key_is_kept_only_when_asked():
    # The pipeline's first login is root's (admin_user: root): prohibit-password until the deploy user exists.
    wanted = h.HardeningWanted(public_key=KEY, permit_root_login="prohibit-password")
    backup, command = h.operations(hardened(), wanted)
    assert backup == BACKUP and "f=/etc/ssh/sshd_config.d/10-technicia.conf" in command
    assert "PermitRootLogin prohibit-password\n" in h.sshd_dropin_file("prohibit-password").data.decode()
    # sshd -T prints prohibit-password under its old name.
    effective = EFFECTIVE_HARDENED.replace("permitrootlogin no", "permitrootlogin without-password")
    facts = hardened(sshd_dropin=file_section(h.sshd_dropin_file("prohibit-password")), sshd_effective=(effective, 0))
    assert h.operations(facts, wanted) == []
    # Then, as the deploy user, the default: no root login at all.
    assert h.changes_sshd(h.operations(facts, WANTED))


@pytest.mark.parametrize("key,debian_value", [
    ("x11forwarding", "yes"), ("allowtcpforwarding", "yes"), ("allowagentforwarding", "yes"),
    ("kexalgorithms", "curve25519-sha256,ecdh-sha2-nistp256"), ("ciphers", "aes128-cbc,aes128-ctr"),
    ("macs", "hmac-sha2-256,hmac-sha1"), ("hostkeyalgorithms", "ecdsa-sha2-nistp256,ssh-rsa"),
])
def test_each_effective_setting_that_differs_is_named(key, debian_value):
    lines = [line if not line.startswith(key + " ") else f"{key} {debian_value}" for line in EFFECTIVE_HARDENED.splitlines()]
    with pytest.raises(h.HardeningError, match=f"{key} is '{debian_value}'"):
        h.operations(hardened(sshd_effective=("\n".join(lines) + "\n", 0)), WANTED)


def test_a_pinned_ecdsa_host_key_stays_offered():
    wanted = h.HardeningWanted(public_key=KEY, pinned_host_key_type="ecdsa-sha2-nistp256")
    assert wanted.host_key_algorithms == h.HOST_KEY_ALGORITHMS + ("ecdsa-sha2-nistp256",)
    text = h.sshd_dropin_file("no", wanted.host_key_algorithms).data.decode()
    assert text.endswith(",rsa-sha2-256-cert-v01@openssh.com,ecdsa-sha2-nistp256\n")


def test_drop_in_rollback_and_commit_commands(bash_syntax, tmp_path):
    """The three commands around a change, run for real on files in a scratch directory."""
    def local(command: str) -> str:
        return (command.replace("/etc/ssh/", f"{tmp_path}/").replace("sshd -t && systemctl reload ssh", "true"))

    for command in (h.BACKUP_DROPIN, h.COMMIT_DROPIN, h.ROLLBACK_DROPIN):
        bash_syntax(command)
    (tmp_path / "sshd_config.d").mkdir()
    dropin = tmp_path / "sshd_config.d" / "10-technicia.conf"
    # No drop-in before: a rollback removes ours.
    subprocess.run(["bash", "-c", local(h.BACKUP_DROPIN)], check=True)
    dropin.write_text("new\n")
    subprocess.run(["bash", "-c", local(h.ROLLBACK_DROPIN)], check=True)
    assert not dropin.exists() and list(tmp_path.iterdir()) == [tmp_path / "sshd_config.d"]
    # An older drop-in: a rollback puts it back; a commit keeps the new one and leaves nothing behind.
    dropin.write_text("old\n")
    subprocess.run(["bash", "-c", local(h.BACKUP_DROPIN)], check=True)
    dropin.write_text("new\n")
    subprocess.run(["bash", "-c", local(h.ROLLBACK_DROPIN)], check=True)
    assert dropin.read_text() == "old\n"
    subprocess.run(["bash", "-c", local(h.BACKUP_DROPIN)], check=True)
    dropin.write_text("new\n")
    subprocess.run(["bash", "-c", local(h.COMMIT_DROPIN)], check=True)
    assert dropin.read_text() == "new\n" and list(tmp_path.iterdir()) == [tmp_path / "sshd_config.d"]


def test_an_earlier_file_overriding_our_dropin_is_reported_not_looped():
    # Drop-in in place, but sshd still allows passwords (a file read before ours sets it).
    facts = hardened(sshd_effective=(EFFECTIVE_HARDENED.replace("passwordauthentication no", "passwordauthentication yes"), 0))
    with pytest.raises(h.HardeningError, match="passwordauthentication is 'yes'"):
        h.operations(facts, WANTED)


def test_unreadable_effective_config_is_an_error_once_the_dropin_is_there():
    with pytest.raises(h.HardeningError, match="sshd -T"):
        h.operations(hardened(sshd_effective=("", 255)), WANTED)


def test_root_without_password_needs_no_lock():
    assert h.operations(hardened(root_password=("root NP 11/20/2024 0 99999 7 -1\n", 0)), WANTED) == []


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="public key"):
        h.HardeningWanted(public_key="not a key")
    with pytest.raises(ValueError, match="Unix name"):
        h.HardeningWanted(public_key=KEY, user="deploy; rm -rf /")


def test_fact_script_is_valid_and_runs_read_only_here(bash_syntax):
    script = h.fact_command("technicia-no-such-user")
    bash_syntax(script)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    facts = h.parse_facts("technicia-no-such-user", result.stdout)
    assert not facts.user_exists and facts.authorized_keys is None and facts.home is None
