"""Server hardening: the deploy user, its key, sudo, sshd settings and the root password.

Facts (one round trip): the user's passwd entry and groups, the sudoers.d
file, ~/.ssh and authorized_keys (mode, owner, keys), the sshd drop-in, the
*effective* sshd settings (``sshd -T``) and ``passwd -S root``.

The sshd drop-in is a modern profile that ssh-audit passes: key-only logins,
no root login, no X11/TCP/agent forwarding (the pipeline uses none), and only
curve25519/sntrup761 key exchange, AEAD or CTR ciphers, encrypt-then-MAC MACs
and ed25519/rsa-sha2 host keys, each of which paramiko (the pipeline's SSH
client) speaks. Changing it can never lock the pipeline out: the previous
drop-in is saved first (:data:`BACKUP_DROPIN`), the new one must pass
``sshd -t`` in place before the reload (existing connections survive a
reload), and the caller then opens a *fresh* connection while the old one is
still open: it keeps the change (:data:`COMMIT_DROPIN`) only if that login
works, and otherwise restores the previous file over the old connection
(:data:`ROLLBACK_DROPIN`).

Why ``sshd -T`` too: sshd keeps the first value it reads, and Ubuntu cloud
images ship /etc/ssh/sshd_config.d/50-cloud-init.conf with
``PasswordAuthentication yes``. Our drop-in is therefore named 10-... so it is
read first, and the operation refuses to call the server hardened when the
effective values still differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from .files import FileFact, WantedFile, ensure_file, file_fact_body, parse_file_section
from .shell import FactError, Section, check_unix_name, fact_script, parse_sections, q

SUDOERS_PATH = "/etc/sudoers.d/90-technicia-deploy"  # no dot in the name: sudo skips such files
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-technicia.conf"  # sorts before 50-cloud-init.conf
SSH_SERVICE = "ssh"  # the unit's name on both Debian 12 and Ubuntu 22.04

SSHD_DROPIN_SAVED = "/etc/ssh/technicia-sshd-dropin.previous"  # outside sshd_config.d: never read by sshd
SSHD_DROPIN_WAS_ABSENT = SSHD_DROPIN_SAVED + ".absent"

SECTIONS = ("user", "groups", "sudoers", "ssh_dir", "authorized_keys", "sshd_dropin", "sshd_effective", "root_password")
EFFECTIVE_KEYS = ("passwordauthentication", "permitrootlogin", "kbdinteractiveauthentication", "x11forwarding",
                  "allowtcpforwarding", "allowagentforwarding", "kexalgorithms", "ciphers", "macs", "hostkeyalgorithms")

# ssh-audit's "failed" and "warn" lists, avoided: no NIST curves or SHA-1, no CBC, no MAC-then-encrypt. paramiko
# speaks curve25519-sha256@libssh.org, aes*-gcm/aes*-ctr with the *-etm MACs, and ssh-ed25519/rsa-sha2-*.
KEX_ALGORITHMS = ("sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
           "aes256-ctr", "aes192-ctr", "aes128-ctr")
MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com")
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "rsa-sha2-512", "rsa-sha2-256",
                       "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com")

# Around a drop-in change: save the current file (or that there was none), then keep or restore it.
BACKUP_DROPIN = (f"rm -f {SSHD_DROPIN_SAVED} {SSHD_DROPIN_WAS_ABSENT} && "
                 f"if [ -f {SSHD_DROPIN} ]; then cp -p {SSHD_DROPIN} {SSHD_DROPIN_SAVED}; "
                 f"else touch {SSHD_DROPIN_WAS_ABSENT}; fi")
COMMIT_DROPIN = f"rm -f {SSHD_DROPIN_SAVED} {SSHD_DROPIN_WAS_ABSENT}"
ROLLBACK_DROPIN = (f"if [ -f {SSHD_DROPIN_SAVED} ]; then mv -f {SSHD_DROPIN_SAVED} {SSHD_DROPIN}; "
                   f"elif [ -f {SSHD_DROPIN_WAS_ABSENT} ]; then rm -f {SSHD_DROPIN}; fi && "
                   f"rm -f {SSHD_DROPIN_WAS_ABSENT} && sshd -t && systemctl reload {SSH_SERVICE}")


class HardeningError(RuntimeError):
    """The server cannot be hardened by these commands alone (a human must look)."""


_KEY_LINE = re.compile(r"(?:(?P<options>\S+)\s+)?(?P<type>(?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+(?P<blob>[A-Za-z0-9+/]+={0,3})(?:\s|$)")


def key_identity(line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of an authorized_keys / .pub line, ignoring options and comment."""
    match = _KEY_LINE.search(line.strip())
    return (match.group("type"), match.group("blob")) if match else None


@dataclass(frozen=True)
class HardeningWanted:
    public_key: str  # the deploy key, 'ssh-ed25519 AAAA... comment'
    user: str = "deploy"
    # "prohibit-password" only while the pipeline itself still logs in as root (admin_user root, no deploy user yet).
    permit_root_login: Literal["prohibit-password", "no"] = "no"
    lock_root_password: bool = True
    pinned_host_key_type: str = "ssh-ed25519"  # ssh.host_key's type: sshd must keep offering it

    def __post_init__(self) -> None:
        check_unix_name(self.user)
        if "\n" in self.public_key.strip() or key_identity(self.public_key) is None:
            raise ValueError("public_key must be one OpenSSH public key line ('ssh-ed25519 AAAA... comment')")

    @property
    def key_line(self) -> str:
        return " ".join(self.public_key.split())

    @property
    def host_key_algorithms(self) -> tuple[str, ...]:
        """The modern list, plus the pinned key's type if it is not in it (an ECDSA key pinned in environments.yaml:
        dropping it would refuse every connection; ssh-audit then warns about it, which is the right signal)."""
        if self.pinned_host_key_type in HOST_KEY_ALGORITHMS:
            return HOST_KEY_ALGORITHMS
        return HOST_KEY_ALGORITHMS + (self.pinned_host_key_type,)


@dataclass(frozen=True)
class AuthorizedKeys:
    mode: int
    owner: str
    keys: tuple[tuple[str, str], ...]  # identities of the keys present


@dataclass(frozen=True)
class HardeningFacts:
    user: str
    user_exists: bool
    home: str | None
    groups: tuple[str, ...]
    sudoers: FileFact
    ssh_dir: tuple[int, str] | None  # (mode, owner) of ~/.ssh
    authorized_keys: AuthorizedKeys | None
    sshd_dropin: FileFact
    sshd_effective: Mapping[str, str] | None = field(default=None)  # None: sshd -T failed
    root_password: str | None = None  # passwd -S status: L (locked), P (usable), NP (none)


def _home(user: str) -> str:
    return f'h=$(getent passwd {q(user)} | cut -d: -f6) && [ -n "$h" ]'


def fact_command(user: str = "deploy") -> str:
    u = q(check_unix_name(user))
    keys = '"$h/.ssh/authorized_keys"'
    return fact_script([
        ("user", f"getent passwd {u}"),
        ("groups", f"id -nG {u}"),
        ("sudoers", file_fact_body(SUDOERS_PATH)),
        ("ssh_dir", f"{_home(user)} && stat -c '%a %U' \"$h/.ssh\""),
        ("authorized_keys", f"{_home(user)} && [ -f {keys} ] && stat -L -c '%a %U' {keys} && cat {keys}"),
        ("sshd_dropin", file_fact_body(SSHD_DROPIN)),
        ("sshd_effective", "t=$(sshd -T) && printf '%s\\n' \"$t\" | grep -iE '^(" + "|".join(EFFECTIVE_KEYS) + ") '"),
        ("root_password", "passwd -S root"),
    ])


def _mode_owner(line: str, what: str) -> tuple[int, str]:
    parts = line.split()
    if len(parts) != 2 or not re.fullmatch(r"[0-7]{1,4}", parts[0]):
        raise FactError(f"{what}: expected 'MODE OWNER', got {line!r}")
    return int(parts[0], 8), parts[1]


def parse_facts(user: str, output: str) -> HardeningFacts:
    s: dict[str, Section] = parse_sections(output, SECTIONS)
    passwd = s["user"].lines
    exists = s["user"].ok and bool(passwd)
    home = passwd[0].split(":")[5] if exists and len(passwd[0].split(":")) >= 7 else None
    ssh_dir = _mode_owner(s["ssh_dir"].lines[0], "ssh_dir") if s["ssh_dir"].ok and s["ssh_dir"].lines else None
    authorized = None
    if s["authorized_keys"].ok and s["authorized_keys"].lines:
        mode, owner = _mode_owner(s["authorized_keys"].lines[0], "authorized_keys")
        found = (key_identity(line) for line in s["authorized_keys"].lines[1:] if not line.lstrip().startswith("#"))
        authorized = AuthorizedKeys(mode, owner, tuple(k for k in found if k))
    effective = None
    if s["sshd_effective"].ok:
        effective = {}
        for line in s["sshd_effective"].lines:
            key, _, value = line.strip().partition(" ")
            effective[key.lower()] = value.strip().lower()
    root = s["root_password"].lines[0].split() if s["root_password"].ok and s["root_password"].lines else []
    return HardeningFacts(
        user=user,
        user_exists=exists,
        home=home,
        groups=tuple(s["groups"].lines[0].split()) if exists and s["groups"].lines else (),
        sudoers=parse_file_section(SUDOERS_PATH, s["sudoers"]),
        ssh_dir=ssh_dir,
        authorized_keys=authorized,
        sshd_dropin=parse_file_section(SSHD_DROPIN, s["sshd_dropin"]),
        sshd_effective=effective,
        root_password=root[1] if len(root) >= 2 else None,
    )


def sudoers_file(user: str) -> WantedFile:
    return WantedFile(SUDOERS_PATH, f"# Managed by technicia-deploy.\n{user} ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440)


def sshd_dropin_file(permit_root_login: str, host_key_algorithms: tuple[str, ...] = HOST_KEY_ALGORITHMS) -> WantedFile:
    return WantedFile(
        SSHD_DROPIN,
        "# Managed by technicia-deploy: key-only logins, no forwarding, modern algorithms only.\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"PermitRootLogin {permit_root_login}\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding no\n"
        "AllowAgentForwarding no\n"
        f"KexAlgorithms {','.join(KEX_ALGORITHMS)}\n"
        f"Ciphers {','.join(CIPHERS)}\n"
        f"MACs {','.join(MACS)}\n"
        f"HostKeyAlgorithms {','.join(host_key_algorithms)}\n",
    )


def _effective_wanted(permit_root_login: str, host_key_algorithms: tuple[str, ...] = HOST_KEY_ALGORITHMS) -> dict[str, set[str]]:
    # sshd -T prints prohibit-password under its old name without-password.
    root = {"no"} if permit_root_login == "no" else {"prohibit-password", "without-password"}
    return {"passwordauthentication": {"no"}, "kbdinteractiveauthentication": {"no"}, "permitrootlogin": root,
            "x11forwarding": {"no"}, "allowtcpforwarding": {"no"}, "allowagentforwarding": {"no"},
            "kexalgorithms": {",".join(KEX_ALGORITHMS)}, "ciphers": {",".join(CIPHERS)}, "macs": {",".join(MACS)},
            "hostkeyalgorithms": {",".join(host_key_algorithms)}}


def changes_sshd(commands: list[str]) -> bool:
    """Whether these operations rewrite the sshd drop-in (the caller must then prove a fresh login works)."""
    return BACKUP_DROPIN in commands


def operations(facts: HardeningFacts, wanted: HardeningWanted) -> list[str]:
    user = wanted.user
    u = q(user)
    if facts.user != user:
        raise ValueError(f"facts are for user {facts.user!r}, wanted user is {user!r}")
    cmds: list[str] = []
    if not facts.user_exists:
        cmds.append(f"useradd --create-home --shell /bin/bash {u}")

    cmds += ensure_file(facts.sudoers, sudoers_file(user), check="visudo -cf {tmp}")

    # Home and primary group are read on the server: the user may be created by this very run.
    group = f'"$(id -gn {u})"'
    if facts.ssh_dir != (0o700, user):
        cmds.append(f'{_home(user)} && mkdir -p "$h/.ssh" && chown {u}:{group} "$h/.ssh" && chmod 700 "$h/.ssh"')
    keys = facts.authorized_keys
    key_file = '"$h/.ssh/authorized_keys"'
    fix_keys = f"chown {u}:{group} {key_file} && chmod 600 {key_file}"
    if keys is None or key_identity(wanted.key_line) not in keys.keys:
        # Append (other keys stay); add a newline first if the file lacks a final one.
        cmds.append(
            f"{_home(user)} && f={key_file} && "
            'if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >> "$f"; fi && '
            f'printf \'%s\\n\' {q(wanted.key_line)} >> "$f" && {fix_keys}'
        )
    elif (keys.mode, keys.owner) != (0o600, user):
        cmds.append(f"{_home(user)} && {fix_keys}")

    dropin = sshd_dropin_file(wanted.permit_root_login, wanted.host_key_algorithms)
    dropin_cmds = ensure_file(facts.sshd_dropin, dropin, check_installed="sshd -t", then=f"systemctl reload {SSH_SERVICE}")
    if dropin_cmds and facts.sshd_dropin.sha256 != dropin.sha256:
        cmds += [BACKUP_DROPIN] + dropin_cmds  # new content: sshd changes, the caller verifies a fresh login
    else:
        cmds += dropin_cmds  # at most a chmod: sshd reads the same settings
        _require_effective(facts, wanted)

    if wanted.lock_root_password and facts.root_password not in ("L", "NP"):
        cmds.append("passwd -l root")
    return cmds


def _require_effective(facts: HardeningFacts, wanted: HardeningWanted) -> None:
    """The drop-in is in place: the settings sshd actually uses must be ours."""
    if facts.sshd_effective is None:
        raise HardeningError("'sshd -T' failed on the server: the effective sshd settings cannot be verified")
    wrong = [
        f"{key} is {facts.sshd_effective.get(key, 'unset')!r}"
        for key, allowed in _effective_wanted(wanted.permit_root_login, wanted.host_key_algorithms).items()
        if facts.sshd_effective.get(key) not in allowed
    ]
    if wrong:
        raise HardeningError(
            f"{SSHD_DROPIN} is in place but sshd's effective settings differ ({'; '.join(wrong)}): "
            "another file read earlier (sshd_config before its Include, or a drop-in sorting before ours) sets them"
        )
