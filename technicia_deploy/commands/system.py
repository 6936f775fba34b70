"""What the server says about itself: CPUs, memory, root disk, OS (read-only, one round trip)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .shell import fact_script, parse_sections

SECTIONS = ("nproc", "memory", "disk", "os")


@dataclass(frozen=True)
class SystemFacts:
    vcores: int | None
    ram_gb: int | None  # rounded to whole GB, as the offer is sold
    disk_gb: int | None
    os: str | None


def fact_command() -> str:
    return fact_script([
        ("nproc", "nproc"),
        ("memory", "grep -m1 '^MemTotal:' /proc/meminfo"),
        ("disk", "df -B1 --output=size / | tail -n 1"),
        ("os", ". /etc/os-release && echo \"$PRETTY_NAME\""),
    ])


def _gb(value: int, unit_bytes: int) -> int:
    return round(value * unit_bytes / 1e9)


def parse_facts(output: str) -> SystemFacts:
    s = parse_sections(output, SECTIONS)

    def number(name: str, pattern: str) -> int | None:
        match = re.search(pattern, s[name].text) if s[name].ok else None
        return int(match.group(1)) if match else None

    kib = number("memory", r"MemTotal:\s+(\d+)\s*kB")
    size = number("disk", r"(\d+)")
    os_name = s["os"].text.strip() if s["os"].ok else ""
    return SystemFacts(
        vcores=number("nproc", r"(\d+)"),
        ram_gb=round(kib * 1024 / 2**30) if kib else None,
        disk_gb=_gb(size, 1) if size else None,
        os=os_name or None,
    )
