"""Resolve a TASK argument: a problem directory, or a task name found under tasks235/."""

from __future__ import annotations

import os
from pathlib import Path

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.settings import DEFAULTS
from kernelbench.core.problem import DEFINITION_FILE, find_problem_dirs

def resolve_task(argument: str | os.PathLike, root: Path = DEFAULTS.tasks_root) -> Path:
    """A problem directory as given, or the one task under `root` with that name
    ("001_llama3_8b_rmsnorm", "llama3_8b_rmsnorm" or "L1/001_llama3_8b_rmsnorm")."""
    path = Path(argument)
    if (path / DEFINITION_FILE).is_file():
        return path
    if path.exists():
        raise KernelBenchError(f"{path} has no {DEFINITION_FILE}: not a problem directory")
    name = str(argument)
    matches = [d for d in find_problem_dirs(root) if d.name == name or d.name.split("_", 1)[-1] == name
               or f"{d.parent.name}/{d.name}" == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise KernelBenchError(f"no problem directory or task named {name!r} (looked under {root})")
    raise KernelBenchError(f"task name {name!r} is ambiguous: " + ", ".join(f"{d.parent.name}/{d.name}" for d in matches))
