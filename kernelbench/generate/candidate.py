"""A candidate: a solution plus where it came from (stored with it, never in the official fields)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kernelbench.core.solution import Solution


@dataclass(frozen=True)
class Provenance:
    source: str                         # the registered source that proposed it: baseline | template | llm | user
    family: str | None = None           # template family, or None
    parameters: dict = field(default_factory=dict)   # the configuration (template parameters, variant, model...)
    parent: str | None = None           # content hash of the candidate this one was derived from
    proposer: str | None = None         # model name, family version, "knowledge base: <task>", user
    shape_class: str | None = None      # the shape class the configuration was proposed for
    workloads: tuple[str, ...] = ()     # the workloads of that class (uuids)

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        what = self.family or self.source
        params = json.dumps(self.parameters, sort_keys=True, separators=(",", ":")) if self.parameters else ""
        return f"{what} {params}".strip()


@dataclass(frozen=True)
class Candidate:
    solution: Solution
    provenance: Provenance

    @property
    def key(self) -> str:
        """Candidates with the same sources behave the same: the content hash identifies them."""
        return self.solution.content_hash
