"""Evaluator-level probes: pure functions over what the evaluator observed. The evaluator's runner
(kernelbench.eval.runner.WorkloadRunner) makes the extra solution calls and feeds them in.

Probes and what they catch:
- fresh rounds, with earlier rounds' inputs kept alive so every round gets new addresses
  (OutputHistory): an output bit-identical to an earlier round's passing output while this
  round fails -> stale-output (caching by shape, by call count, constant outputs that passed once);
- same address, new values (overwrite_in_place + check_same_address): a round's input tensors
  are overwritten in place with new random values and the solution called again on them (same
  output buffers in destination-passing style) -> stale-output when the outputs do not follow:
  caching by pointer, work skipped because the pointers repeat; CUDA graphs replayed on
  captured pointers fed through the same buffers still pass (they read the new values);
- the re-check after timing (check_post_timing): a failure after every earlier round passed
  -> stale-output (call-count caches and work skipped once the timer starts repeating calls);
- timed calls checked afterwards (TimedOutputSample): the outputs of a few timed calls, picked
  at random, against the reference on that call's inputs -> stale-output (a solution that is
  correct whenever it is checked and cheats while it is timed, however it tells the two apart);
- a legal shape no workload uses (perturbed_workload + check_shape_probe) -> shape-specialization;
- a time below the roofline (check_below_sol) -> faster-than-sol.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable

import torch

from .findings import Finding
from .tensors import same_values

Judge = Callable[[list, list], "tuple[bool, str]"]  # judge(outputs, expected) -> (passed, message)


def check_below_sol(latency_ms: float | None, sol_ms: float | None, *, slack: float = 0.0) -> Finding | None:
    """A correct time below T_SOL is impossible under a sound bound: something was not computed.
    `slack` (a fraction) tolerates a bound known to be slightly optimistic; 0 by default."""
    if latency_ms is None or sol_ms is None or sol_ms <= 0 or latency_ms >= sol_ms * (1 - slack):
        return None
    return Finding("faster-than-sol", f"measured {latency_ms:.6g} ms < T_SOL {sol_ms:.6g} ms "
                                      f"({sol_ms / max(latency_ms, 1e-12):.2f}x faster than the speed of light)")


class TimedOutputSample:
    """The outputs of `count` timed calls, picked at random (the solution cannot know which), kept
    to be checked against the reference once timing is over. A solution must cheat on more than
    half of the timed calls to move the median; each picked call then catches it with probability
    over 1/2, so `count` picks miss it with probability under 2**-count."""

    def __init__(self, iterations: int, count: int = 3):
        self.iterations = iterations
        self.picked = set(random.SystemRandom().sample(range(iterations), min(count, iterations)))
        self.kept: dict[int, list] = {}

    def observe(self, iteration: int, outputs: list) -> None:
        """After timed call `iteration` (0-based, outside the timed window): copy its outputs if picked."""
        if iteration in self.picked:
            self.kept[iteration] = [o.detach().clone() if isinstance(o, torch.Tensor) else o for o in outputs]

    def check(self, inputs_of: Callable[[int], list], reference: Callable[[list], list],
              judge: Judge) -> Finding | None:
        """`inputs_of(i)`: the inputs timed call i received (regenerated from its seed)."""
        for iteration, outputs in sorted(self.kept.items()):
            passed, message = judge(outputs, reference(inputs_of(iteration)))
            if not passed:
                return Finding("stale-output", f"timed call {iteration + 1} of {self.iterations}, checked after "
                                               f"timing, returned wrong outputs: {message}")
        return None


def check_post_timing(passed_before: bool, passed_after: bool, message: str = "") -> Finding | None:
    """The re-check on fresh inputs after timing failed, though every round before timing passed."""
    if passed_before and not passed_after:
        return Finding("stale-output", f"correct before timing, wrong on fresh inputs after it: {message}".rstrip(": "))
    return None


def check_same_address(passed_before: bool, passed_after: bool, message: str = "") -> Finding | None:
    """The same-address probe failed: outputs did not follow new values written into the same buffers."""
    if passed_before and not passed_after:
        detail = f" ({message})" if message else ""
        return Finding("stale-output", f"same input buffers with new values written in place: outputs did not follow{detail}")
    return None


class OutputHistory:
    """Remembers each round's outputs (CPU copies): a round that fails with outputs bit-identical to an
    earlier passing round's returned something kept from before, not computed from its inputs."""

    def __init__(self, limit: int = 16):
        self.rounds: list[tuple[str, list]] = []
        self.limit = limit

    def add(self, label: str, outputs: list, passed: bool) -> Finding | None:
        copies = [o.detach().cpu().clone() if isinstance(o, torch.Tensor) else o for o in outputs]
        finding = None
        if not passed:
            earlier = next((name for name, old in self.rounds if same_values(old, copies)), None)
            if earlier is not None:
                finding = Finding("stale-output", f"{label} returned exactly the outputs of {earlier} "
                                                  "although its inputs (and the reference) changed")
        elif len(self.rounds) < self.limit:
            self.rounds.append((label, copies))
        return finding


def overwrite_in_place(inputs: list, new_values: list) -> list:
    """Write new values into the existing input tensors (same addresses); scalars are replaced."""
    out = []
    for old, new in zip(inputs, new_values):
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            with torch.no_grad():
                try:
                    old.copy_(new)
                except (RuntimeError, NotImplementedError):  # dtypes without a copy kernel (fp4)
                    old.view(torch.uint8).copy_(new.view(torch.uint8))
            out.append(old)
        else:
            out.append(new)
    return out


# ------------------------------------------------------------------ shape specialization

def perturbed_workload(problem, workload=None):
    """A legal workload whose var axes take values no workload uses, near the smallest workload;
    None when the problem has no var axis, reads its inputs from files, or no candidate satisfies
    the constraints."""
    from kernelbench.core.problem import Workload

    base = workload or problem.smallest_workload()
    var = [n for n, a in problem.definition.axes.items() if a.kind == "var"]
    if not var or any(s.kind == "safetensors" for s in base.inputs.values()):
        return None
    used = {n: {w.axes.get(n) for w in problem.workloads} for n in var}

    def candidates(name: str) -> list[int]:
        """Unused values nearest the base value first (small probes stay cheap)."""
        v = base.axes[name]
        near = sorted(range(max(v - 8, 1), v + 9), key=lambda c: (abs(c - v), c))
        return [c for c in near + [2 * v + 1, 2 * v + 3] if c != v and c not in used[name]]

    def legal(axes: dict) -> Workload | None:
        trial = dataclasses.replace(base, uuid=f"{base.uuid}-shape-probe", axes=axes)
        try:
            problem.axes_for(trial)
            return None if problem.check_constraints(trial) else trial
        except Exception:
            return None

    together = {n: (candidates(n) or [base.axes[n]])[0] for n in var}
    found = legal(together)
    if found:
        return found
    for name in var:  # one axis at a time
        for value in candidates(name):
            found = legal({**base.axes, name: value})
            if found:
                return found
    return None


def check_shape_probe(workload, passed: bool, message: str = "") -> Finding | None:
    """The solution failed (or raised) on a legal shape that no workload uses."""
    if passed:
        return None
    return Finding("shape-specialization", f"wrong on the untested legal shape {workload.axes}: {message}".rstrip(": "))
