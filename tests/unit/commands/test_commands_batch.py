"""Fact commands batched into one round trip: each answer is exactly what running the command alone gives."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.commands.batch import BatchError, Read, batch_script, parse_batch


def _alone(read: Read) -> tuple[int, str, str]:
    done = subprocess.run(["bash", "-c", read.command], capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr


def _batched(reads: list[Read]) -> list[tuple[int, str, str]]:
    done = subprocess.run(["bash", "-c", batch_script(reads)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [(a.exit_code, a.stdout, a.stderr) for a in parse_batch(done.stdout, len(reads))]


READS = [
    Read("printf 'a\\nb'"),                                     # no trailing newline
    Read("echo '@@technicia-batch 9 0 1 1'; echo"),            # output that looks like a header
    Read("printf 'caf\\xc3\\xa9 \\xe2\\x9c\\x93\\n'"),         # multi-byte characters: lengths are bytes
    Read("echo partial; echo 'no such thing' >&2; exit 3"),     # a failure keeps its status and both streams
    Read("true"),                                                # empty output
]


def test_each_answer_is_what_the_command_alone_gives():
    assert _batched(READS) == [_alone(r) for r in READS]


def test_the_reads_run_side_by_side(tmp_path):
    # The first read waits (bounded) for a file only the second creates: run one after the other, it fails.
    flag = tmp_path / "made-by-the-second"
    reads = [Read(f"for i in $(seq 100); do [ -e {flag} ] && break; sleep 0.05; done; [ -e {flag} ] && echo saw it"),
             Read(f"touch {flag}; echo made it")]
    (first, second) = _batched(reads)
    assert first[:2] == (0, "saw it\n") and second[:2] == (0, "made it\n")


def test_sudo_reads_run_as_root_the_way_the_connection_wraps_them():
    script = batch_script([Read("id -u", sudo=True), Read("id -u")])
    assert "sudo -n bash -c 'id -u'" in script and "bash -c 'id -u'" in script


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError):
        batch_script([])


@pytest.mark.parametrize("output, problem", [
    ("", "no header for read 0"),
    ("@@technicia-batch 0 0 10 0\nshort", "truncated"),
    ("@@technicia-batch 1 0 0 0\n", "read 1 where 0 was expected"),
    ("@@technicia-batch 0 0 1 0\nxy", "unexpected bytes"),
])
def test_a_damaged_output_is_refused_naming_what_is_wrong(output, problem):
    with pytest.raises(BatchError, match=problem):
        parse_batch(output, 1)
