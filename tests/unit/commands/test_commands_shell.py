"""Fact scripts: one round trip, sections that survive odd output, and the apt command line."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.commands.shell import (
    FactError,
    apt_install,
    fact_script,
    parse_sections,
    parse_version,
    render_sections,
    version_at_least,
)


def run(script: str) -> str:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout


def test_fact_script_reports_output_and_status_of_each_section():
    script = fact_script([
        ("present", "echo one; echo two"),
        ("missing", "cat /nonexistent/technicia-file"),
        ("no-newline", "printf 'last line without newline'"),
        ("blank-lines", "printf 'a\\n\\nb\\n'"),
    ])
    sections = parse_sections(run(script), ["present", "missing", "no-newline", "blank-lines"])
    assert sections["present"].text == "one\ntwo\n" and sections["present"].ok
    assert sections["missing"].text == "" and sections["missing"].rc == 1  # stderr dropped, status kept
    assert sections["no-newline"].lines == ["last line without newline"]
    assert sections["blank-lines"].text == "a\n\nb\n"


def test_fact_script_runs_with_c_locale():
    sections = parse_sections(run(fact_script([("locale", "echo $LC_ALL")])))
    assert sections["locale"].lines == ["C"]


def test_missing_section_is_an_error_naming_it():
    output = render_sections({"a": ("x", 0)})
    with pytest.raises(FactError, match="lacks section.*b"):
        parse_sections(output, ["a", "b"])


def test_render_sections_round_trips():
    values = {"a": ("x\ny\n", 0), "b": ("", 3)}
    sections = parse_sections(render_sections(values), ["a", "b"])
    assert (sections["a"].text, sections["a"].rc) == ("x\ny\n", 0)
    assert (sections["b"].text, sections["b"].rc) == ("", 3)


def test_apt_install_never_prompts_and_waits_for_the_lock():
    assert apt_install(["docker.io", "docker-compose"]) == (
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q update && "
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q install "
        "--no-install-recommends docker.io docker-compose"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("20.10.24+dfsg1-1+deb12u1+b6", (20, 10, 24)),
        ("5:24.0.7-1~ubuntu.22.04~jammy", (24, 0, 7)),
        ("v2.20.2", (2, 20, 2)),
        ("(none)", ()),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_version_at_least():
    assert version_at_least("20.10.24+dfsg1", "20.10")
    assert version_at_least("24.0", "24.0.0")
    assert not version_at_least("20.10.24", "23.0")
    assert not version_at_least("garbage", "1.0")
