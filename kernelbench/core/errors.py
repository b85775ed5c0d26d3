"""Errors that name where bad input came from: file, JSONL line and field."""

from __future__ import annotations

from pathlib import Path


class KernelBenchError(Exception):
    """Base class: a command could not do its job for a reason the user can fix."""


class ProblemError(KernelBenchError):
    """A problem directory, definition or workload is malformed."""

    def __init__(self, message: str, *, path: Path | str | None = None,
                 line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = str(path) if path is not None else "<definition>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {message}")


class MissingDataError(ProblemError):
    """An input refers to a safetensors blob that is not under the data root."""


class SolutionError(KernelBenchError):
    """A solution.json is malformed or its sources are unsafe."""
