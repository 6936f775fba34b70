"""Where a sandbox keeps its state: one directory, one JSON file.

The directory (default ``.sandbox`` in the current directory, or
``$TECHNICIA_SANDBOX_DIR``) holds the state file, keys, logs, the generated
environments.yaml and the daemons' pid files. Docker objects are named with a
prefix derived from the directory's absolute path, so two sandboxes on one
machine never collide.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "TECHNICIA_SANDBOX_DIR"


def default_dir() -> Path:
    return Path(os.environ.get(ENV_VAR, ".sandbox")).resolve()


@dataclass
class SandboxState:
    dir: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Docker object name prefix, unique per sandbox directory."""
        return "tsbx-" + hashlib.sha1(str(self.dir).encode()).hexdigest()[:6]

    @property
    def file(self) -> Path:
        return self.dir / "state.json"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @classmethod
    def load(cls, directory: Path | None = None) -> "SandboxState":
        directory = (directory or default_dir()).resolve()
        file = directory / "state.json"
        data = json.loads(file.read_text()) if file.exists() else {}
        return cls(directory, data)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.file)
