"""Reward-hacking defences: static source rules, a runtime guard, and evaluator-level probes.

- audit.static.scan_solution(solution, problem=None) -> [Finding]   (parent process, before running)
- audit.runtime.RuntimeGuard                                         (the evaluator's child process)
- audit.checks                                                       (probes over extra solution calls)
- audit.effects                                                      (what the reference does to its inputs,
                                                                      hence what a solution may do)
- audit.rules.RULES, audit.rules.verdicts                            (rule name -> one-line rationale)

The evaluator's runner (kernelbench.eval.runner) drives all of it; audit imports kernelbench.core only.

docs/AUDIT.md describes every rule: the attack, the detection and its known limits.
"""

from .findings import Finding
from .rules import RULES

__all__ = ["Finding", "RULES"]
