"""Problems: opened by a failed step, counted while it keeps failing, resolved by its next success."""

from __future__ import annotations

import pytest

from technicia_deploy.tracking.history import ProblemNote
from technicia_deploy.tracking.messages import parse_step_message, step_message
from technicia_deploy.tracking.problems import error_text, normalise_id, problem_id
from technicia_deploy.tracking.render import problems, render
from tests.unit.tracking.builders import HistoryBuilder


def test_failures_then_success_make_one_resolved_problem_with_the_resolving_release():
    b = HistoryBuilder()
    b.deploy("staging", "v1", fail_at="https.dns", error="DnsError: zone refused")
    b.deploy("staging", "v1", fail_at="https.dns", error="DnsError: again")
    b.deploy("staging", "v2")
    [problem] = problems(b.build())
    assert problem.environment == "staging" and problem.step_id == "https.dns"
    assert problem.error == "DnsError: zone refused" and problem.failures == 2
    assert problem.resolved and problem.resolved_by_release == "v2"
    first_failure = next(t for t in b.tasks if t.state_type == "FAILED")
    assert problem.id == problem_id(first_failure.id) and problem.identified_at == first_failure.end


def test_a_new_failure_after_resolution_is_a_new_problem():
    b = HistoryBuilder()
    b.deploy("test", "v1", fail_at="server.docker")
    b.deploy("test", "v1")
    b.deploy("test", "v2", fail_at="server.docker")
    found = problems(b.build())
    assert [p.resolved for p in found] == [False, True]  # newest first
    assert len({p.id for p in found}) == 2


def test_problem_ids_do_not_change_as_history_grows():
    b = HistoryBuilder()
    b.deploy("production", "v1", fail_at="checks.security")
    before = problems(b.build())[0].id
    for _ in range(5):
        b.deploy("test", "v2", fail_at="server.os")
    b.deploy("production", "v2")
    assert before in {p.id for p in problems(b.build())}


def test_same_step_in_another_environment_does_not_resolve_it():
    b = HistoryBuilder()
    b.deploy("production", "v1", fail_at="https.certificate")
    b.deploy("staging", "v1")
    [problem] = problems(b.build())
    assert not problem.resolved


def test_notes_appear_in_the_solution_column():
    b = HistoryBuilder()
    b.deploy("test", "v1", fail_at="services.deploy")
    pid = problems(b.build())[0].id
    b.notes.append(ProblemNote(pid, "Disk was full; pruned images", b.clock, "carol"))
    document = render(b.build(), "fr")
    line = next(x for x in document.splitlines() if x.startswith(f"| {pid} |"))
    assert "| Ouvert |" in line and "Disk was full; pruned images (carol, " in line


def test_problem_id_format():
    assert problem_id("01a20be5-a529-71e0-af89-c6cd61bfd14f") == "P-61bfd14f"
    assert normalise_id("p-61BFD14F") == "P-61bfd14f"
    with pytest.raises(ValueError, match="not a problem ID"):
        normalise_id("61bfd14f")


def test_error_text_strips_prefect_boilerplate():
    assert error_text("Task run encountered an exception RuntimeError: boom") == "RuntimeError: boom"
    assert error_text("Crashed: killed") == "Crashed: killed"


def test_step_message_round_trip():
    assert step_message("changed", "rules\n applied") == "changed: rules applied"
    assert parse_step_message("unchanged: 5 rules in place") == ("unchanged", "5 rules in place")
    assert parse_step_message("free text") == (None, "free text")
    assert len(step_message("changed", "x" * 2000)) < 520
    with pytest.raises(ValueError):
        step_message("done", "x")


def test_problem_note_with_a_malformed_id_is_refused_before_any_server_call(capsys):
    from technicia_deploy.cli import main

    assert main(["problem", "note", "nonsense", "text"]) == 2
    assert "not a problem ID" in capsys.readouterr().err
