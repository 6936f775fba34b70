"""The application's contract: the variables its ``.env.example`` declares against those the pipeline writes.

The release's ``.env.example`` (committed with the application, never a secret) names every variable the
application reads from its ``.env``; the pipeline writes the ``.env`` from the environment's blocks
(:data:`technicia_deploy.envfile.ENV_VARIABLES`). A name on one side only is a deployment that would start
an application missing a key, or carrying one nobody reads: the ``services.api_keys`` step refuses it before
it writes the ``.env`` (and so before any container restarts).

Fact: one round trip gives both the ``.env``'s file fact (:func:`files.file_fact_body`: metadata and sha256,
never its content) and the text of ``.env.example``, or ``absent`` when the release has none (accepted: no
contract to check). Result: :class:`Contract`, whose :meth:`Contract.problem` is the error to raise (naming the
variables and the file) or ``None``, and whose :meth:`Contract.summary` goes into the step's message.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Sequence

from .files import FileFact, file_fact_body, parse_file_section
from .shell import FactError, fact_script, parse_sections, q

EXAMPLE_SUFFIX = ".example"
# Where the pipeline's side of the contract lives (named in the error, so the fix is one look away).
PIPELINE_VARIABLES = "technicia_deploy/envfile.py ENV_VARIABLES"

# NAME=value, NAME= or a bare NAME (docker compose's env_file syntax), optionally after `export `.
_DECLARATION = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)(?:=.*)?")


class ContractError(ValueError):
    """The release's .env.example cannot be read as a list of variables (names the file and the line)."""


def example_path(env_path: str) -> str:
    """``.env`` -> ``.env.example`` next to it (the convention the application follows)."""
    return env_path + EXAMPLE_SUFFIX


@dataclass(frozen=True)
class EnvFacts:
    env_file: FileFact
    example_path: str
    example: str | None  # the text of .env.example; None: the release has none


def env_facts_command(env_path: str, example: str) -> str:
    """One fact script: section ``file.0`` is the .env's file fact, section ``example`` the contract's text
    (first line ``present`` then the file, or ``absent``)."""
    p = q(example)
    return fact_script([
        ("file.0", file_fact_body(env_path)),
        ("example", f"if [ -e {p} ]; then echo present && cat {p}; else echo absent; fi"),
    ])


def parse_env_facts(env_path: str, example: str, output: str) -> EnvFacts:
    sections = parse_sections(output, ["file.0", "example"])
    env_file = parse_file_section(env_path, sections["file.0"])
    section = sections["example"]
    lines = section.text.splitlines()
    if section.ok and lines == ["absent"]:
        return EnvFacts(env_file, example, None)
    if not section.ok or not lines or lines[0] != "present":
        raise FactError(f"{example}: cannot be read (status {section.rc})")
    return EnvFacts(env_file, example, "".join(line + "\n" for line in lines[1:]))


def declared_names(text: str, path: str) -> tuple[str, ...]:
    """The variable names ``.env.example`` declares, in file order, each once (comments and blank lines skipped)."""
    names: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DECLARATION.fullmatch(line)
        if not match:
            # The line itself is not repeated: an example file may still hold a pasted value.
            raise ContractError(f"{path} line {number}: not a variable declaration (expected NAME=value or a # comment)")
        if match.group(1) not in names:
            names.append(match.group(1))
    return tuple(names)


@dataclass(frozen=True)
class Contract:
    path: str                         # the release's .env.example
    declared: tuple[str, ...] | None  # what the application expects; None: no .env.example in the release
    provided: tuple[str, ...]         # what the pipeline writes

    @property
    def found(self) -> bool:
        return self.declared is not None

    @property
    def not_provided(self) -> list[str]:
        """Expected by the application, not written by the pipeline."""
        return [name for name in self.declared or () if name not in self.provided]

    @property
    def not_declared(self) -> list[str]:
        """Written by the pipeline, not declared by the application."""
        return [name for name in self.provided if self.found and name not in self.declared]

    def problem(self) -> str | None:
        """The error naming the variables on one side only and the file; None when both sides agree."""
        if not self.not_provided and not self.not_declared:
            return None
        name = posixpath.basename(self.path)
        parts = []
        if self.not_provided:
            parts.append(f"the application expects {', '.join(self.not_provided)}, which the pipeline does not provide")
        if self.not_declared:
            parts.append(f"the pipeline provides {', '.join(self.not_declared)}, which {name} does not declare")
        return (f"{self.path} and the pipeline's .env disagree: {'; '.join(parts)}. "
                f"Rename the variable in the application's {name} or in the pipeline ({PIPELINE_VARIABLES}); "
                ".env not written, no container restarted")

    def summary(self) -> str:
        if not self.found:
            return f"no contract found (no {posixpath.basename(self.path)} in the release): variable names not checked"
        return f"{len(self.declared)} variables match {posixpath.basename(self.path)}"


def contract(facts: EnvFacts, provided: Sequence[str]) -> Contract:
    declared = declared_names(facts.example, facts.example_path) if facts.example is not None else None
    return Contract(facts.example_path, declared, tuple(provided))
