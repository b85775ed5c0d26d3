"""The evaluator's runner: build one solution under the audit's guard, then check and time it workload by workload.

Per workload: `rounds` correctness rounds on freshly seeded inputs; a probe that rewrites the
same input buffers with new values (a cache keyed by pointer or shape returns stale outputs);
timing on fresh addresses with new values every call (a cache keyed by values never hits),
three timed calls' outputs, picked at random, checked against the reference afterwards; and one
more correctness round after timing (work skipped on repeated calls shows there). The runtime
audit guard watches every solution call. The shape probe runs one round on a legal shape no
workload uses (code specialized to the tested shapes fails it).

The reference runs first on every round's inputs, on clones of what it writes, and what it does
besides returning outputs is learned there (audit.effects): the solution may update in place
exactly the inputs the reference updates (their final values are judged too) and return views
of exactly the inputs the reference's outputs view.

One class, two ways in:
- kernelbench.eval.worker, the evaluator's child process (`kb eval`, `kb audit`, every job):
  `built(...)`, then `WorkloadRunner.run` / `shape_probe` per item, results over a pipe;
- `run_in_process(...)`, the same sequence in the calling process, for the tests and the GPU
  audit benchmark (fast, no child; `restore` undoes the solution's patches afterwards).
"""

from __future__ import annotations

import contextlib
import shutil
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterator

import torch

from audit.checks import (
    OutputHistory,
    TimedOutputSample,
    check_post_timing,
    check_same_address,
    check_shape_probe,
    overwrite_in_place,
    perturbed_workload,
)
from audit.effects import ReferenceEffects, observe_reference
from audit.findings import Finding, unique
from audit.runtime import RuntimeGuard
from audit.tensors import InputSnapshot
from kernelbench.core import statuses
from kernelbench.core.cpp_build import build_if_native
from kernelbench.core.correctness import (
    Comparison,
    as_output_list,
    compare,
    compare_values,
    to_float32,
)
from kernelbench.core.emulation import reference_context
from kernelbench.core.errors import KernelBenchError, SolutionError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, load_entry_point, materialize
from kernelbench.eval.buffers import allocate_outputs, is_cuda_fault, poison
from kernelbench.eval.timing import TimingConfig, time_callable

POST_TIMING_SEED_OFFSET = 1_000_003
SAME_ADDRESS_SEED_OFFSET = 2_000_003
SHAPE_PROBE_SEED_OFFSET = 3_000_003
TIMING_SEED_OFFSET = 4_000_003
SHAPE_PROBE = "__shape_probe__"  # the item that asks for the shape probe instead of a workload
PROBE_SKIPPED = "SKIPPED"
REFERENCE_CLONE_BYTES = 1 << 30   # inputs up to this size reach the reference as clones


@dataclass(frozen=True)
class RunPlan:
    """How each workload is exercised; the evaluator's request carries it as plain data."""
    seed: int = 0
    rounds: int = 10
    timing: dict | None = None        # TimingConfig's fields; None: no timing
    data_root: str | None = None
    reference_clone_bytes: int = REFERENCE_CLONE_BYTES

    @classmethod
    def from_request(cls, request: dict) -> "RunPlan":
        return cls(seed=request["seed"], rounds=request["rounds"], timing=request.get("timing"),
                   data_root=request.get("data_root"),
                   reference_clone_bytes=request.get("reference_clone_bytes", REFERENCE_CLONE_BYTES))


class CallFailed(Exception):
    def __init__(self, status: str, log: str, fatal_to_process: bool = False, correctness: dict | None = None):
        super().__init__(log)
        self.status, self.log, self.fatal_to_process = status, log, fatal_to_process
        self.correctness = correctness   # the failing comparison's figures (None: no comparison was made)


class BuildFailed(Exception):
    """The solution could not be written out or imported (COMPILE_ERROR); `log` says why."""

    def __init__(self, log: str):
        super().__init__(log)
        self.log = log


class ReferenceWroteInputs(Exception):
    """The reference changed inputs it was given without clones (see WorkloadRunner.reference)."""


@dataclass
class ReferenceRun:
    outputs: list[Any]
    effects: ReferenceEffects


@contextlib.contextmanager
def built(solution: Solution, guard: RuntimeGuard, build_root: str | None = None) -> Iterator[Any]:
    """The solution's entry point, imported from a private directory with the guard armed (import-time
    tricks count); the directory is removed afterwards. A C++ solution is compiled first (once per
    content, under `build_root`), by the harness and so before the guard is armed. Raises BuildFailed."""
    directory = None
    try:
        try:
            directory = materialize(solution)
            library = build_if_native(solution, build_root)
            guard.allow_path(directory)
            if library is not None:
                guard.allow_path(library.parent)
            with guard.armed():
                entry = load_entry_point(solution, directory, library)
        except SolutionError as exc:  # the message is the whole story (a compiler's output, a missing symbol)
            raise BuildFailed(str(exc)) from None
        except Exception as exc:
            raise BuildFailed(_format(exc)) from None
        yield entry
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


class WorkloadRunner:
    def __init__(self, problem: Problem, module, solution: Solution, entry, device: torch.device, plan: RunPlan,
                 guard: RuntimeGuard):
        self.problem, self.module, self.solution, self.entry = problem, module, solution, entry
        self.device, self.plan, self.guard = device, plan, guard
        self.reference_writes: set[int] = set()  # large inputs the reference writes: it gets clones of them

    def run(self, workload: Workload) -> dict[str, Any]:
        result: dict[str, Any] = {"status": statuses.PASSED, "log": "", "correctness": None, "timing": None}
        history, kept = OutputHistory(), KeptInputs()  # earlier rounds' inputs stay alive: new addresses each round
        try:
            seed = self.plan.seed
            for round_index in range(self.plan.rounds):
                result["correctness"] = self.check_round(workload, seed + round_index, history, kept,
                                                         f"round {round_index}")
            result["correctness"] = self.check_same_address(workload, seed + SAME_ADDRESS_SEED_OFFSET, kept)
            if self.plan.timing is not None:
                kept.rounds.clear()  # the timer's input pool takes fresh addresses; big inputs must fit twice
                result["timing"] = self.time(workload, seed)
                result["correctness"] = self.check_round(workload, seed + POST_TIMING_SEED_OFFSET, history, kept,
                                                         "the round after timing", after_timing=True)
        except CallFailed as failure:   # the figures are the failing round's, never an earlier passing one's
            result.update(status=failure.status, log=failure.log, fatal_to_process=failure.fatal_to_process,
                          correctness=failure.correctness)
        if not result.get("fatal_to_process"):
            self.guard.check_state()  # also after a failure: a patch that broke correctness is still a patch
        return self.with_findings(result)

    def with_findings(self, result: dict[str, Any]) -> dict[str, Any]:
        findings = self.guard.findings()
        if findings:
            result["status"] = statuses.REWARD_HACK
            result["log"] = "; ".join(f"{f.rule}: {f.evidence}" for f in findings)
            result["findings"] = [{"rule": f.rule, "evidence": f.evidence} for f in findings]
        return result

    def shape_probe(self, base: Workload | None = None) -> dict[str, Any]:
        """One round on a legal shape no workload uses, near `base` (default: the smallest workload);
        asked for once every workload passed: code specialized to the tested shapes fails it."""
        probe = perturbed_workload(self.problem, base)
        if probe is None:
            return {"status": PROBE_SKIPPED, "log": "no legal untested shape"}
        result: dict[str, Any] = {"status": statuses.PASSED, "log": "", "axes": probe.axes}
        try:
            self.check_round(probe, self.plan.seed + SHAPE_PROBE_SEED_OFFSET, OutputHistory(), KeptInputs(),
                             "shape probe")
        except CallFailed as failure:
            result.update(status=failure.status, log=failure.log, fatal_to_process=failure.fatal_to_process)
        return self.with_findings(result)

    # -------------------------------------------------------------- rounds

    def inputs(self, workload: Workload, seed: int) -> list[Any]:
        try:
            return generate_inputs(self.problem, workload, device=self.device, seed=seed,
                                   reference_module=self.module, root=self.plan.data_root)
        except KernelBenchError as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"inputs: {exc}") from None
        except Exception as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"custom inputs failed: {_format(exc)}") from None

    def reference(self, inputs: list[Any]) -> ReferenceRun:
        """The reference's outputs for `inputs`, and its effects (audit.effects); `inputs` stay as they are.

        It runs on clones, except on inputs it does not write when all of them together exceed
        `plan.reference_clone_bytes` (a second copy of multi-GB weights is what runs a large
        workload out of memory): those it gets as they are, and their version counters tell
        whether it wrote to them. One it did write raises ReferenceWroteInputs and is cloned from
        then on; the caller redoes the round on regenerated inputs."""
        large = _nbytes(inputs) > self.plan.reference_clone_bytes
        given = [v.clone() if isinstance(v, torch.Tensor) and (not large or i in self.reference_writes
                                                                or _version(v) is None) else v
                 for i, v in enumerate(inputs)]
        versions = [_version(v) for v in given]
        try:
            with reference_context(self.device):
                returned = self.module.run(*given)
            _synchronize(self.device)
        except Exception as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"the reference failed on this device: {_format(exc)}",
                             fatal_to_process=is_cuda_fault(exc)) from None
        written = {i for i, (v, before) in enumerate(zip(given, versions))
                   if isinstance(v, torch.Tensor) and _version(v) != before}
        uncloned = {i for i in written if given[i] is inputs[i]}
        if uncloned:
            self.reference_writes |= uncloned
            raise ReferenceWroteInputs()
        outputs = as_output_list(returned, len(self.problem.definition.outputs))
        return ReferenceRun(outputs, observe_reference(inputs, given, written, outputs))

    def fresh_round(self, workload: Workload, seed: int) -> tuple[list[Any], ReferenceRun]:
        """(inputs, the reference's run) of a round on inputs freshly generated from `seed`."""
        inputs = self.inputs(workload, seed)
        try:
            return inputs, self.reference(inputs)
        except ReferenceWroteInputs:
            inputs = self.inputs(workload, seed)
            return inputs, self.reference(inputs)

    def call(self, workload: Workload, inputs: list[Any], effects: ReferenceEffects,
             outputs: list[Any] | None = None) -> list[Any]:
        """One solution call, watched by the guard, allowed the reference's `effects` and no more;
        destination-passing outputs poisoned first (fresh buffers, or the given ones re-poisoned)."""
        before = InputSnapshot(inputs, skip=effects.updated)
        if self.solution.destination_passing_style:
            outputs = [poison(o) for o in outputs] if outputs is not None else self.allocate_outputs(workload)
        else:
            outputs = None
        try:
            with self.guard.armed():
                returned = self.entry(*inputs, *outputs) if outputs is not None else self.entry(*inputs)
        except Exception as exc:
            raise _classify(exc) from None
        if outputs is None:
            outputs = as_output_list(returned, len(self.problem.definition.outputs))
        # before any sync: it looks for unjoined streams
        self.guard.check_call(before, inputs, outputs, aliases=effects.aliases)
        _synchronize(self.device)
        for finding in effects.stray_writes(inputs, workload.tolerance):
            self.guard.record(finding.rule, finding.evidence)
        return outputs

    def compare(self, workload: Workload, inputs: list[Any], outputs: list[Any], expected: ReferenceRun) -> Comparison:
        """The outputs against the reference's, then the inputs it updates in place against its final values."""
        try:
            comparison = compare(self.problem, workload, outputs, expected.outputs)
            names = list(self.problem.definition.inputs)
            for position, update in expected.effects.updated.items():
                if comparison.status != statuses.PASSED:
                    break
                one = compare_values(to_float32(inputs[position]).cpu(), to_float32(update.final).cpu(),
                                     workload.tolerance)
                comparison.max_absolute_error = max(comparison.max_absolute_error, one.max_absolute_error)
                comparison.max_relative_error = max(comparison.max_relative_error, one.max_relative_error)
                comparison.has_nan, comparison.has_inf = comparison.has_nan or one.has_nan, comparison.has_inf or one.has_inf
                if one.status != statuses.PASSED:
                    comparison.status = one.status
                    comparison.message = f"{names[position]} (updated in place, as the reference does): {one.message}"
        except Exception as exc:  # a proxy output may break the comparison itself
            raise CallFailed(statuses.RUNTIME_ERROR, f"the outputs could not be compared: {_format(exc)}") from None
        return comparison

    def check_round(self, workload: Workload, seed: int, history: OutputHistory, kept: "KeptInputs", label: str,
                    after_timing: bool = False) -> dict:
        inputs, expected = self.fresh_round(workload, seed)
        kept.append(inputs)
        outputs = self.call(workload, inputs, expected.effects)
        comparison = self.compare(workload, inputs, outputs, expected)
        passed = comparison.status == statuses.PASSED
        stale = history.add(label, outputs, passed)
        if not passed and after_timing:
            stale = stale or check_post_timing(True, False, comparison.message)
        if stale:
            self.guard.record(stale.rule, stale.evidence)
        return self.judge(comparison)

    def check_same_address(self, workload: Workload, seed: int, kept: "KeptInputs") -> dict:
        """Call on some buffers, then again after new values were written into the same buffers in place."""
        inputs, expected = self.fresh_round(workload, seed)
        kept.append(inputs)
        outputs = self.call(workload, inputs, expected.effects)
        self.judge(self.compare(workload, inputs, outputs, expected))
        overwrite_in_place(inputs, self.inputs(workload, seed + 1))
        expected = self.reference_on_kept_buffers(inputs)
        outputs = self.call(workload, inputs, expected.effects, outputs)
        comparison = self.compare(workload, inputs, outputs, expected)
        finding = check_same_address(True, comparison.status == statuses.PASSED, comparison.message)
        if finding:
            self.guard.record(finding.rule, finding.evidence)
        return self.judge(comparison, "same buffers, new values: ")

    def reference_on_kept_buffers(self, inputs: list[Any]) -> ReferenceRun:
        """The reference on inputs that cannot be regenerated from a seed (values written in place)."""
        try:
            return self.reference(inputs)
        except ReferenceWroteInputs:
            raise CallFailed(statuses.INVALID_REFERENCE, "the reference wrote to its inputs only on some "
                             "values; the round cannot be redone on the same buffers") from None

    @staticmethod
    def judge(comparison: Comparison, prefix: str = "") -> dict:
        if comparison.status != statuses.PASSED:
            raise CallFailed(comparison.status, prefix + comparison.message, correctness=comparison.to_json())
        return comparison.to_json()

    def allocate_outputs(self, workload: Workload) -> list[torch.Tensor]:
        return allocate_outputs(self.problem, workload, self.device)

    # -------------------------------------------------------------- timing

    def time(self, workload: Workload, seed: int) -> dict:
        config = TimingConfig(**self.plan.timing)
        dps = self.solution.destination_passing_style
        outputs = self.allocate_outputs(workload) if dps else []
        sample = TimedOutputSample(config.iterations)

        def fresh_values(call: int) -> list[Any]:
            """Every timed call sees new values: a cache keyed by values never hits."""
            return self.inputs(workload, seed + TIMING_SEED_OFFSET + call)

        def call(*args):
            with self.guard.armed():
                return self.entry(*args, *outputs)

        def observe(iteration: int, returned) -> None:
            sample.observe(iteration, outputs if dps else as_output_list(returned, len(self.problem.definition.outputs)))

        try:
            timing = time_callable(call, None, self.device, config, fresh_values, observe).to_json()
        except Exception as exc:
            raise _classify(exc) from None
        finding = sample.check(lambda i: fresh_values(config.warmup + i),
                               lambda inputs: self.reference_on_kept_buffers(inputs).outputs, self.judged(workload))
        if finding:
            self.guard.record(finding.rule, finding.evidence)
        return timing

    def judged(self, workload: Workload):
        """judge(outputs, expected outputs) -> (passed, message), as the audit's probes take it."""
        def judge(outputs, expected) -> tuple[bool, str]:
            try:
                comparison = compare(self.problem, workload, outputs, expected)
            except Exception as exc:
                return False, f"the outputs could not be compared: {type(exc).__name__}: {exc}"
            return comparison.status == statuses.PASSED, f"{comparison.status}: {comparison.message}"
        return judge


# ------------------------------------------------------------------ in process

@dataclass
class RunReport:
    outcomes: dict[str, dict] = field(default_factory=dict)  # workload uuid -> the worker's result for it
    findings: list[Finding] = field(default_factory=list)    # every finding, the shape probe's included

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    @property
    def statuses(self) -> dict[str, str]:
        return {uuid: outcome["status"] for uuid, outcome in self.outcomes.items()}


def run_in_process(problem: Problem, solution: Solution, plan: RunPlan, *, device: str = "cpu",
                   workloads: list[Workload] | None = None, shape_probe: bool = True, restore: bool = True) -> RunReport:
    """What the evaluator's child does with `solution`, in this process: guard installed, solution
    built armed, every workload (default: all) run by WorkloadRunner, then, if all passed, the shape
    probe next to the first. `restore` undoes the solution's patches, flags and environment after.
    Unlike the child, this process's torch is left as it is (no FP4 emulation for solutions on CPU)."""
    device = torch.device(device)
    module = compile_reference(problem.definition)
    workloads = workloads or list(problem.workloads)
    report = RunReport()
    guard = RuntimeGuard(str(device))
    guard.install()
    try:
        with built(solution, guard) as entry:
            runner = WorkloadRunner(problem, module, solution, entry, device, plan, guard)
            for workload in workloads:
                report.outcomes[workload.uuid] = runner.run(workload)
            if shape_probe and all(s == statuses.PASSED for s in report.statuses.values()):
                probe = shape_probe_finding(runner.shape_probe(workloads[0]))
                if probe:
                    report.findings.append(probe)
    except BuildFailed as failure:
        report.outcomes = {w.uuid: {"status": statuses.COMPILE_ERROR, "log": failure.log} for w in workloads}
    finally:
        report.findings = unique(guard.findings() + report.findings)
        if restore:
            guard.restore()
        guard.uninstall()
    return report


def shape_probe_finding(probe: dict) -> Finding | None:
    """The shape probe's result as a finding; none when it passed, found no legal untested shape,
    or the reference itself does not take that shape."""
    if probe["status"] in (statuses.PASSED, PROBE_SKIPPED, statuses.INVALID_REFERENCE):
        return None
    detail = probe.get("log", "").strip().splitlines()[-1:] or [probe["status"]]
    return check_shape_probe(SimpleNamespace(axes=probe.get("axes", {})), False, f"{probe['status']}: {detail[0][:300]}")


# ------------------------------------------------------------------ helpers

class KeptInputs:
    """Earlier rounds' inputs, kept alive so the allocator cannot hand their addresses to the next
    round (a cache keyed by pointer would otherwise look correct). Bounded: past `budget_bytes` the
    oldest go (a round larger than the budget is not kept at all), so workloads with multi-GB
    inputs do not run out of memory because of the probe."""

    def __init__(self, budget_bytes: int = 4 << 30):
        self.rounds: list[list[Any]] = []
        self.budget_bytes = budget_bytes

    def append(self, inputs: list[Any]) -> None:
        self.rounds.append(inputs)
        while self.rounds and sum(map(_nbytes, self.rounds)) > self.budget_bytes:
            self.rounds.pop(0)


def _version(value: Any) -> int | None:
    """A tensor's version counter (every in-place write, through any view, bumps it); None for
    inference tensors, which keep none."""
    try:
        return value._version if isinstance(value, torch.Tensor) else None
    except RuntimeError:
        return None


def _nbytes(values: list[Any]) -> int:
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _classify(exc: BaseException) -> CallFailed:
    if isinstance(exc, CallFailed):
        return exc
    name = f"{type(exc).__module__}.{type(exc).__name__}"
    if "triton" in name and ("Compilation" in name or "compiler" in name):
        return CallFailed(statuses.COMPILE_ERROR, _format(exc))
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return CallFailed(statuses.RUNTIME_ERROR, "out of memory: " + _format(exc))
    return CallFailed(statuses.RUNTIME_ERROR, _format(exc), fatal_to_process=is_cuda_fault(exc))


def _format(exc: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-limit:]
