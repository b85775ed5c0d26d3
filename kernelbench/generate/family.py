"""A template family: recognise a problem, name its tuning space, render a solution for a configuration.

Each family lives in `kernelbench/generate/families/<name>.py` (one class, registered with
`@register_family`), renders `templates/<name>.py.j2`, and is tested in `tests/test_family_<name>.py`
and measured in `benchmarks/family_<name>.py`: one name across all four.

The search (kernelbench.generate.search) only talks to this interface:
    match = family.match(problem, time_limit_s)   # None: the family does not implement this problem
    configs = family.space(match, axes)            # configurations for one workload shape, best guess first
    key = family.shape_class(match, axes)          # workloads with the same key share a best configuration
    solution = family.render(match, config)        # a complete, general solution (any legal shape)
    traffic = family.traffic(match, axes)          # the bytes and FLOPs it moves (checked against the roofline)
A rendered solution must be correct for every legal shape: configurations change speed, never
results, so a shape-keyed dispatch over several configurations always has a correct fallback.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution, Source
from templates import LEAN_LAUNCH_FILE, lean_launch_source

MATCH_TIME_LIMIT_S = 120.0   # a reference that hangs while being matched is abandoned after this

Config = dict[str, Any]   # template parameters (JSON-serializable: they are stored as provenance)


@dataclass(frozen=True)
class Match:
    """What a family recognised in a problem: the family's own description of the computation
    (`plan`, free-form but JSON-serializable) and a short human summary for logs."""
    family: str
    summary: str
    plan: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Traffic:
    bytes_read: int
    bytes_written: int
    flops: float = 0.0

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


class Family(ABC):
    name: str = ""
    version: str = "1"          # bump when the template changes what a configuration means (knowledge base key)
    last_rejection: str = ""    # why the latest match returned None, for the user

    @abstractmethod
    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        """How this family implements the whole problem, or None. Matching may run the reference
        (tracing, verifying): it must give up within `time_limit_s` seconds."""

    @abstractmethod
    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        """Configurations worth trying for one workload shape, the most promising first (never empty)."""

    @abstractmethod
    def render(self, match: Match, config: Config) -> Solution:
        """A complete solution (entry point `run`) for `config`, correct on every legal shape."""

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        """Workloads in one class share a best configuration (default: each shape its own class)."""
        return ",".join(f"{k}={v}" for k, v in sorted(axes.items()))

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Bytes and FLOPs one call moves for these axes (None: not declared)."""
        return None

    def kernel_solution(self, problem: str, summary: str, config: Config, source: str) -> Solution:
        """A destination-passing solution of one rendered kernel.py (entry point `run`) and the lean launcher
        it imports, named by the family and the source's digest."""
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return Solution(name=f"{problem}__{self.name}_{digest}", definition=problem, entry_point="kernel.py::run",
                        sources=(Source("kernel.py", source), Source(LEAN_LAUNCH_FILE, lean_launch_source())),
                        languages=("triton",), author="kernelbench-generator",
                        description=f"{self.name} {json.dumps(config, sort_keys=True)}: {summary}",
                        destination_passing_style=True)


FAMILIES: dict[str, Family] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: one instance per family, found by name (discovery: importing kernelbench.generate.families)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in FAMILIES:
        raise TypeError(f"two families named {cls.name!r}")
    FAMILIES[cls.name] = cls()
    return cls
