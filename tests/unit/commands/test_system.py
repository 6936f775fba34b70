import subprocess

from technicia_deploy.commands import system
from technicia_deploy.commands.shell import render_sections


def test_parse_a_vps_ssd_4():
    facts = system.parse_facts(render_sections({
        "nproc": ("4", 0),
        "memory": ("MemTotal:        8131472 kB", 0),
        "disk": ("  165140181504", 0),
        "os": ("Ubuntu 22.04.4 LTS", 0),
    }))
    assert facts == system.SystemFacts(vcores=4, ram_gb=8, disk_gb=165, os="Ubuntu 22.04.4 LTS")


def test_missing_sections_are_unknown_not_zero():
    facts = system.parse_facts(render_sections({n: ("", 1) for n in system.SECTIONS}))
    assert facts == system.SystemFacts(None, None, None, None)


def test_fact_script_runs_here_read_only():
    out = subprocess.run(["bash", "-c", system.fact_command()], capture_output=True, text=True, check=True).stdout
    facts = system.parse_facts(out)
    assert facts.vcores and facts.vcores >= 1 and facts.ram_gb and facts.os
