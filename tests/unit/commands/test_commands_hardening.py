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


FRESH = {
    "user": ("", 2),
    "groups": ("", 1),
    "sudoers": ("absent\n", 0),
    "ssh_dir": ("", 1),
    "authorized_keys": ("", 1),
    "sshd_dropin": ("absent\n", 0),
    "sshd_effective": (
        "passwordauthentication yes\npermitrootlogin yes\nkbdinteractiveauthentication no\n", 0
    ),
    "root_password": ("root P 11/20/2024 0 99999 7 -1\n", 0),
}


def hardened(**overrides):
    values = {
        "user": ("deploy:x:1001:1001::/home/deploy:/bin/bash\n", 0),
        "groups": ("deploy\n", 0),
        "sudoers": file_section(h.sudoers_file("deploy")),
        "ssh_dir": ("700 deploy\n", 0),
        "authorized_keys": (f"600 deploy\n{OTHER_KEY}\n{KEY}\n", 0),
        "sshd_dropin": file_section(h.sshd_dropin_file("prohibit-password")),
        # sshd -T prints prohibit-password under its old name.
        "sshd_effective": ("passwordauthentication no\npermitrootlogin without-password\nkbdinteractiveauthentication no\n", 0),
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

    sshd = commands[4]
    assert payload(sshd) == (
        "# Managed by technicia-deploy: key-only logins.\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
    )
    assert "f=/etc/ssh/sshd_config.d/10-technicia.conf" in sshd
    assert sshd.index("if ! sshd -t;") < sshd.index("systemctl reload ssh")
    assert commands[5:] == ["passwd -l root"]
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


def test_permit_root_login_no():
    wanted = h.HardeningWanted(public_key=KEY, permit_root_login="no")
    [command] = h.operations(hardened(), wanted)
    assert "PermitRootLogin no" in h.sshd_dropin_file("no").data.decode()
    assert "f=/etc/ssh/sshd_config.d/10-technicia.conf" in command


def test_an_earlier_file_overriding_our_dropin_is_reported_not_looped():
    # Drop-in in place, but sshd still allows passwords (a file read before ours sets it).
    facts = hardened(sshd_effective=("passwordauthentication yes\npermitrootlogin without-password\nkbdinteractiveauthentication no\n", 0))
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
