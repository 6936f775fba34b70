"""Many read-only fact commands in one round trip, run side by side on the server.

pyinfra's lesson: gather facts first, then decide. The deploy flow knows, before a phase starts, which
fact commands its steps will read (each step declares them: ``tasks.*.READS``); :func:`batch_script`
runs them all in one SSH command, each in the background (as root when it asks for sudo), and prints
each one's exit status, stdout and stderr with their byte lengths, so :func:`parse_batch` gives back
exactly what running them one by one would have given. The connection keeps those answers as reads
(``HostConnection.prefetch``): the steps then read their facts without a round trip, and any command
that may change the server forgets them, as for any other read.

Output format, per command, in order::

    @@technicia-batch <index> <exit status> <stdout bytes> <stderr bytes>\\n<stdout><stderr>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from .shell import q

BATCH_MARK = "@@technicia-batch"


@dataclass(frozen=True)
class Read:
    """One fact command a step reads: the command line, and whether it runs as root."""

    command: str
    sudo: bool = False


@dataclass(frozen=True)
class BatchAnswer:
    exit_code: int
    stdout: str
    stderr: str


class BatchError(ValueError):
    """The batch's output is not what :func:`batch_script` prints (a truncated or foreign output)."""


def _as_run(read: Read) -> str:
    # The same wrapping HostConnection gives a sudo command (sudo -n: never prompt; bash -c: all of it as root).
    return f"sudo -n bash -c {q(read.command)}" if read.sudo else f"bash -c {q(read.command)}"


def batch_script(reads: Sequence[Read]) -> str:
    """One shell script running every read at once and printing their answers in order."""
    if not reads:
        raise ValueError("batch_script needs at least one read")
    lines = ['d=$(mktemp -d) || exit 1', "trap 'rm -rf \"$d\"' EXIT"]
    for i, read in enumerate(reads):
        lines.append(f'{{ {_as_run(read)} >"$d/{i}.out" 2>"$d/{i}.err" </dev/null; echo $? >"$d/{i}.rc"; }} &')
    lines.append("wait")
    lines.append(f"for i in $(seq 0 {len(reads) - 1}); do")
    lines.append(f'  printf \'{BATCH_MARK} %s %s %s %s\\n\' "$i" "$(cat "$d/$i.rc")" '
                 '"$(wc -c <"$d/$i.out")" "$(wc -c <"$d/$i.err")"')
    lines.append('  cat "$d/$i.out" "$d/$i.err"')
    lines.append("done")
    return "\n".join(lines)


_HEADER = re.compile(rf"{BATCH_MARK} (\d+) (\d+) (\d+) (\d+)\n".encode())


def parse_batch(output: str, count: int) -> list[BatchAnswer]:
    """The answers of a :func:`batch_script` of ``count`` reads, in order."""
    data = output.encode()  # lengths are in bytes
    answers: list[BatchAnswer] = []
    at = 0
    for expected in range(count):
        match = _HEADER.match(data, at)
        if match is None:
            raise BatchError(f"batch output: no header for read {expected} at byte {at}")
        index, code, out_len, err_len = (int(g) for g in match.groups())
        if index != expected:
            raise BatchError(f"batch output: read {index} where {expected} was expected")
        start = match.end()
        end = start + out_len + err_len
        if end > len(data):
            raise BatchError(f"batch output: read {expected} is truncated")
        answers.append(BatchAnswer(code, data[start:start + out_len].decode(errors="replace"),
                                   data[start + out_len:end].decode(errors="replace")))
        at = end
    if at != len(data):
        raise BatchError(f"batch output: {len(data) - at} unexpected bytes after read {count - 1}")
    return answers
