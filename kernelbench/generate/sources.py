"""The registry of candidate sources: each proposes candidates for a task; `kb optimize` asks them all.

    @register_source("template")
    class TemplateSource(CandidateSource):
        def propose(self, task: TaskContext) -> list[Candidate]: ...

Sources register by decorator and are discovered by import (this package's __init__ imports every
source module), as tritonbench registers its backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from kernelbench.core.problem import Problem
from kernelbench.core.settings import Settings

from .candidate import Candidate
from .family import MATCH_TIME_LIMIT_S


@dataclass
class TaskContext:
    """What a source may know about the task it proposes for."""
    problem: Problem
    device: str
    settings: Settings
    gpu: str                                  # canonical hardware name (H100, H200, ...) or "cpu"
    seeds: list = field(default_factory=list)  # knowledge-base entries for this task's families (see knowledge.py)
    notes: list[str] = field(default_factory=list)  # what sources could not do, for the user
    time_limit_s: float = MATCH_TIME_LIMIT_S        # for anything a source runs of the problem's code
    shape_classes: dict[tuple[str, str], str] = field(default_factory=dict)  # (family, workload uuid) -> class
    first_choices: dict[str, str] = field(default_factory=dict)  # workload uuid -> the key of its first proposal


class CandidateSource(ABC):
    name: str = ""
    searched: bool = True      # False: evaluated as proposed, never screened (the baseline variants)

    @abstractmethod
    def propose(self, task: TaskContext) -> list[Candidate]:
        """Candidates for the task (empty when the source has nothing for it)."""


SOURCES: dict[str, CandidateSource] = {}


def register_source(name: str):
    def decorate(cls: type[CandidateSource]) -> type[CandidateSource]:
        if name in SOURCES:
            raise TypeError(f"two candidate sources named {name!r}")
        cls.name = name
        SOURCES[name] = cls()
        return cls
    return decorate
