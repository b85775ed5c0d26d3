"""Reward-hacking defences: static source rules, a runtime guard, and evaluator-level probes.

- audit.static.scan_solution(solution, problem=None) -> [Finding]   (parent process, before running)
- audit.runtime.RuntimeGuard                                         (the evaluator's child process)
- audit.checks                                                       (probes over extra solution calls)
- audit.rules.RULES                                                  (rule name -> one-line rationale)
- audit.harness.audit_solution                                       (all of it, in-process: kb audit, tests)

docs/AUDIT.md describes every rule: the attack, the detection and its known limits.
"""

from .findings import Finding
from .rules import RULES

__all__ = ["Finding", "RULES"]
