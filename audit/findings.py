"""A finding: one rule that fired and the evidence for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    rule: str      # a stable kebab-case name from audit.rules.RULES, e.g. "monkeypatch"
    evidence: str  # where and what: "kernel.py:12: assigns torch.matmul"

    def __str__(self) -> str:
        return f"{self.rule}: {self.evidence}"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "evidence": self.evidence}


def unique(findings) -> list[Finding]:
    """Findings in first-seen order without repeats."""
    return list(dict.fromkeys(findings))
