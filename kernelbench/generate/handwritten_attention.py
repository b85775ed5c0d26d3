"""Hand-written attention in a captured graph, rewritten into one attention node (stub)."""

from __future__ import annotations

from kernelbench.generate.graph import Capture


def recognize_attention(capture: Capture) -> None:
    return None
