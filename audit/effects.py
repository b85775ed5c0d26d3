"""What the reference does besides computing its outputs, and what that allows a solution.

SOL-ExecBench's semantics: a solution may do what the reference does, no more. A reference may
update an input in place (a KV-cache write) and may return views of its inputs (the updated
cache, `bias.expand(...)`). The evaluator learns both from the reference on each round's own
inputs (the reference runs on clones of what it writes, so the solution gets pristine inputs):

- `updated`: input position -> Update (its final value, the elements whose bits the reference
  changed). The solution may write these inputs and no others (InputSnapshot skips them, every
  other input must keep its bits); their final values are judged against the reference's like
  outputs, and an element the reference left as it was must stay so within the workload's
  tolerance (`stray_writes`): a write outside the reference's slice is input-mutation.
- `aliases`: output position -> input positions it shares memory with. The solution's output
  may share memory with those inputs and no other (RuntimeGuard.check_call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

import torch

from kernelbench.core.correctness import to_float32
from kernelbench.core.problem import Tolerance

from .findings import Finding
from .tensors import changed_elements, overlaps


@dataclass(frozen=True)
class Update:
    final: torch.Tensor     # the input as the reference left it
    changed: torch.Tensor   # bool, the input's shape: the elements whose bits the reference changed


@dataclass(frozen=True)
class ReferenceEffects:
    updated: Mapping[int, Update] = field(default_factory=dict)
    aliases: Mapping[int, frozenset[int]] = field(default_factory=dict)

    def stray_writes(self, inputs_after: list[Any], tolerance: Tolerance) -> list[Finding]:
        """Updated inputs the solution changed where the reference did not, beyond the tolerance."""
        findings = []
        for position, update in self.updated.items():
            value = inputs_after[position]
            if not isinstance(value, torch.Tensor) or value.shape != update.final.shape or value.dtype != update.final.dtype:
                findings.append(Finding("input-mutation", f"input {position}, updated in place as the reference does, "
                                                          "changed its shape or dtype"))
                continue
            # only elements whose bits differ are converted: cheap when the solution wrote the same slice
            suspects = ~update.changed & changed_elements(update.final, value)
            if not bool(suspects.any()):
                continue
            mine, theirs = to_float32(value[suspects]), to_float32(update.final[suspects])
            far = ~((mine - theirs).abs() <= tolerance.max_atol + tolerance.max_rtol * theirs.abs())
            if bool(far.any()):
                findings.append(Finding("input-mutation", f"input {position}: {int(far.sum())} values the reference "
                                                          f"leaves as they are were changed (the reference updates "
                                                          f"{int(update.changed.sum())} of {update.changed.numel()})"))
        return findings


def observe_reference(pristine: list[Any], given: list[Any], written: Collection[int], outputs: list[Any]) -> ReferenceEffects:
    """The effects of one reference call. `pristine`: the round's inputs, untouched; `given`: what the
    reference was called with, after the call (clones, and the inputs themselves for those it does not
    write); `written`: the positions whose version counters moved. Clones are also compared bit for
    bit with the pristine inputs: writes through `.data` or a numpy view move no counter."""
    updated = {}
    for i, (before, after) in enumerate(zip(pristine, given)):
        if isinstance(after, torch.Tensor) and after is not before:
            changed = changed_elements(before, after)
            if i in written or bool(changed.any()):
                updated[i] = Update(after, changed)
    aliases = {}
    for k, out in enumerate(outputs):
        if isinstance(out, torch.Tensor):
            shared = frozenset(i for i, g in enumerate(given) if isinstance(g, torch.Tensor) and overlaps(out, g))
            if shared:
                aliases[k] = shared
    return ReferenceEffects(updated, aliases)
