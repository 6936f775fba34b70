"""Hand-written solution notes on problems, stored in Prefect Variables.

One variable per problem, ``technicia_problem_note_<id>``, holding a JSON list of
``{problem_id, text, at, by}``. The problem itself is never stored: its ID comes
from the run history (the task run that opened it), so a note cannot drift from
it; a note on a problem that is not in the history is refused.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from technicia_deploy.tracking.history import note_variable_name, read_history
from technicia_deploy.tracking.problems import normalise_id
from technicia_deploy.tracking.render import problems

MAX_NOTE = 1000
MAX_VARIABLE_CHARS = 5000  # Prefect's limit on a variable's value


def add_note(problem_text_id: str, text: str, *, by: str | None, client=None, now: datetime | None = None) -> str:
    """Append a note to a problem found in the run history; returns the problem ID."""
    from prefect import get_client
    from prefect.variables import Variable

    pid = normalise_id(problem_text_id)
    text = " ".join(text.split())
    if not text:
        raise ValueError("the note is empty")
    if len(text) > MAX_NOTE:
        raise ValueError(f"the note is {len(text)} characters long; at most {MAX_NOTE}")
    if client is None:
        with get_client(sync_client=True) as own:
            known = [p.id for p in problems(read_history(own))]
    else:
        known = [p.id for p in problems(read_history(client))]
    if pid not in known:
        listed = ", ".join(known[:10]) or "none"
        raise LookupError(f"no problem {pid} in the Prefect run history (known: {listed})")
    name = note_variable_name(pid)
    current = Variable.get(name, default=None)
    notes = list(current) if isinstance(current, list) else []
    notes.append({
        "problem_id": pid, "text": text, "by": by,
        "at": (now or datetime.now(timezone.utc)).isoformat(),
    })
    if len(json.dumps(notes)) > MAX_VARIABLE_CHARS:
        raise ValueError(f"problem {pid} has too many notes to store another one (Prefect variables hold {MAX_VARIABLE_CHARS} characters)")
    Variable.set(name, notes, overwrite=True, tags=["technicia", "problem-note"])
    return pid
