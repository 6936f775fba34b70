"""Shell building blocks shared by the command modules: quoting, fact scripts, apt.

A fact script gathers many facts in one round trip: each section prints a
marker line, the output of its body and then the body's exit status, so a
parser can tell "absent" (non-zero status) from "empty".
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Iterable, Sequence

q = shlex.quote

SECTION_MARK = "@@technicia-fact"
# Outputs we parse (apt-cache policy, dates, openssl) are localised: force C.
FACT_PRELUDE = "export LC_ALL=C LANG=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# apt: never prompt, and wait (bounded) when unattended-upgrades holds the lock
# instead of failing at once, which is what a freshly installed VPS does.
APT_LOCK_TIMEOUT_S = 120
APT_GET = f"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S} -y -q"


class FactError(ValueError):
    """A fact script's output is not what its parser expects (names the section)."""


@dataclass(frozen=True)
class Section:
    text: str
    rc: int

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]


def fact_script(sections: Sequence[tuple[str, str]]) -> str:
    """One script printing each ``(name, body)`` section; stderr is dropped (parsers use the status)."""
    parts = [FACT_PRELUDE]
    for name, body in sections:
        if not re.fullmatch(r"[a-z0-9_.-]+", name):
            raise ValueError(f"bad section name {name!r}")
        parts.append(f"echo '{SECTION_MARK} {name}'")
        parts.append(f"{{\n{body}\n}} 2>/dev/null")
        parts.append(f'echo "{SECTION_MARK}-rc $?"')
    return "\n".join(parts)


def parse_sections(output: str, expected: Iterable[str] = ()) -> dict[str, Section]:
    """Split a fact script's output into its sections; a missing expected section is a FactError."""
    sections: dict[str, Section] = {}
    name: str | None = None
    body: list[str] = []
    for line in output.splitlines():
        glued = line.find(SECTION_MARK + "-rc ")
        if glued > 0 and name is not None:
            # The body's output did not end with a newline: the status line got glued to it.
            body.append(line[:glued])
            line = line[glued:]
        if line.startswith(SECTION_MARK + "-rc "):
            if name is None:
                raise FactError(f"fact output has a status line outside a section: {line!r}")
            try:
                rc = int(line.split()[1])
            except (IndexError, ValueError):
                raise FactError(f"section {name}: bad status line {line!r}") from None
            text = "\n".join(body)
            sections[name] = Section(text + "\n" if body else "", rc)
            name, body = None, []
        elif line.startswith(SECTION_MARK + " "):
            name, body = line[len(SECTION_MARK) + 1:].strip(), []
        elif name is not None:
            body.append(line)
    missing = [n for n in expected if n not in sections]
    if missing:
        raise FactError(f"fact output lacks section(s) {', '.join(missing)} (script cut short?)")
    return sections


def render_sections(values: dict[str, tuple[str, int]]) -> str:
    """The output a fact script would print for ``{name: (text, rc)}`` (tests and simulations)."""
    out = []
    for name, (text, rc) in values.items():
        out.append(f"{SECTION_MARK} {name}")
        if text:
            out.append(text.rstrip("\n"))
        out.append(f"{SECTION_MARK}-rc {rc}")
    return "\n".join(out) + "\n"


def apt_install(packages: Sequence[str], *, update: bool = True) -> str:
    """Install ``packages`` non-interactively (refreshing the lists first: a new VPS has stale ones)."""
    install = f"{APT_GET} install --no-install-recommends {' '.join(q(p) for p in packages)}"
    return f"{APT_GET} update && {install}" if update else install


def dpkg_installed_section(package: str) -> str:
    """Body printing the installed version of ``package``; non-zero status when it is not installed."""
    return (
        f"s=$(dpkg-query -W -f='${{db:Status-Status}} ${{Version}}' {q(package)}) && "
        '[ "${s%% *}" = installed ] && echo "${s#* }"'
    )


def parse_version(text: str) -> tuple[int, ...]:
    """``'5:24.0.7-1~ubuntu'`` / ``'20.10.24+dfsg1'`` / ``'v2.20.2'`` -> (24, 0, 7) etc.; () if none."""
    text = text.strip()
    text = re.sub(r"^\d+:", "", text)  # Debian epoch
    match = re.match(r"v?(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def version_at_least(version: str | tuple[int, ...], minimum: str) -> bool:
    have = parse_version(version) if isinstance(version, str) else version
    want = parse_version(minimum)
    if not have:
        return False
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))


_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def check_unix_name(name: str, what: str = "user name") -> str:
    """Refuse names that are not plain POSIX user/group names (they end up in sudoers and paths)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a valid Unix name")
    return name
