"""The child process of an evaluation: build one solution, then check and time it workload by workload.

Runs as a fresh interpreter (see sandbox.py), so nothing of the parent (CUDA context, imported
solution modules, patched functions) leaks in or out. Results stream back one workload at a
time over a pipe, so a crash loses only the workload it happened in.

Per workload: `rounds` correctness rounds on freshly seeded inputs; a probe that rewrites the
same input buffers with new values (a cache keyed by pointer or shape returns stale outputs);
timing on fresh addresses with new values every call (a cache keyed by values never hits),
three timed calls' outputs, picked at random, checked against the reference afterwards; and one
more correctness round after timing (work skipped on repeated calls shows there). The runtime
audit guard watches every solution call. The item
SHAPE_PROBE runs one round on a legal shape no workload uses (code specialized to the tested
shapes fails it).
"""

from __future__ import annotations

import faulthandler
import shutil
import traceback
from typing import Any

import torch

from kernelbench.core import statuses
from audit.checks import (OutputHistory, TimedOutputSample, check_post_timing, check_same_address, overwrite_in_place,
                          perturbed_workload)
from audit.tensors import InputSnapshot, overlaps

from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.emulation import emulate_scaled_mm_for_this_process, reference_context
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem, load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.eval.sandbox import serve
from kernelbench.core.solution import load_entry_point, materialize, parse_solution

POST_TIMING_SEED_OFFSET = 1_000_003
SAME_ADDRESS_SEED_OFFSET = 2_000_003
SHAPE_PROBE_SEED_OFFSET = 3_000_003
TIMING_SEED_OFFSET = 4_000_003
SHAPE_PROBE = "__shape_probe__"  # the item that asks for the shape probe instead of a workload
PROBE_SKIPPED = "SKIPPED"
REFERENCE_CLONE_BYTES = 1 << 30   # inputs up to this size reach the reference as clones


class CallFailed(Exception):
    def __init__(self, status: str, log: str, fatal_to_process: bool = False):
        super().__init__(log)
        self.status, self.log, self.fatal_to_process = status, log, fatal_to_process


def handle(request: dict, send) -> None:
    """Evaluate the request's solution on its workloads; `request` is plain data (see evaluator.evaluate)."""
    device = torch.device(request["device"])
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if device.type == "cpu":
        # The CPU has no FP4 matrix units: fp4 torch._scaled_mm is emulated for the whole process,
        # before the audit guard snapshots torch, so reference and solution see the same function.
        emulate_scaled_mm_for_this_process()
    problem = load_problem(request["problem_dir"])
    module = compile_reference(problem.definition)
    solution = parse_solution(request["solution"])
    guard = _make_guard(request, device)
    directory = materialize(solution)
    guard.allow_path(directory)
    try:
        with guard.armed():
            entry = load_entry_point(solution, directory)
    except Exception as exc:
        shutil.rmtree(directory, ignore_errors=True)
        send({"kind": "fatal", "status": statuses.COMPILE_ERROR, "log": _format(exc)})
        return
    send({"kind": "built"})
    runner = WorkloadRunner(problem, module, solution, entry, device, request, guard)
    workloads = {w.uuid: w for w in problem.workloads}
    try:
        for uuid in request["workloads"]:
            result = runner.shape_probe() if uuid == SHAPE_PROBE else runner.run(workloads[uuid])
            fatal = result.pop("fatal_to_process", False)
            send({"kind": "result", "uuid": uuid, "restart": fatal, **result})
            if fatal:
                return  # a CUDA fault poisons the context: the parent starts a fresh process
    finally:
        shutil.rmtree(directory, ignore_errors=True)



def _make_guard(request: dict, device: torch.device):
    from audit.runtime import RuntimeGuard

    guard = RuntimeGuard(str(device))
    guard.install()
    return guard


class WorkloadRunner:
    def __init__(self, problem: Problem, module, solution, entry, device, request, guard):
        self.problem, self.module, self.solution, self.entry = problem, module, solution, entry
        self.device, self.request, self.guard = device, request, guard
        self.reference_writes_inputs = False

    def run(self, workload) -> dict[str, Any]:
        result: dict[str, Any] = {"status": statuses.PASSED, "log": "", "correctness": None, "timing": None}
        history, kept = OutputHistory(), KeptInputs()  # earlier rounds' inputs stay alive: new addresses each round
        try:
            seed = self.request["seed"]
            for round_index in range(self.request["rounds"]):
                result["correctness"] = self.check_round(workload, seed + round_index, history, kept,
                                                         f"round {round_index}")
            result["correctness"] = self.check_same_address(workload, seed + SAME_ADDRESS_SEED_OFFSET, kept)
            if self.request.get("timing") is not None:
                kept.rounds.clear()  # the timer's input pool takes fresh addresses; big inputs must fit twice
                result["timing"] = self.time(workload, seed)
                result["correctness"] = self.check_round(workload, seed + POST_TIMING_SEED_OFFSET, history, kept,
                                                         "the round after timing", after_timing=True)
            self.guard.check_state()
        except CallFailed as failure:
            result.update(status=failure.status, log=failure.log, fatal_to_process=failure.fatal_to_process)
        return self.with_findings(result)

    def with_findings(self, result: dict[str, Any]) -> dict[str, Any]:
        findings = self.guard.findings()
        if findings:
            result["status"] = statuses.REWARD_HACK
            result["log"] = "; ".join(f"{f.rule}: {f.evidence}" for f in findings)
            result["findings"] = [{"rule": f.rule, "evidence": f.evidence} for f in findings]
        return result

    def shape_probe(self) -> dict[str, Any]:
        """One round on a legal shape no workload uses (the item SHAPE_PROBE, asked for by the parent
        once every workload passed): code specialized to the tested shapes fails it."""
        probe = perturbed_workload(self.problem)
        if probe is None:
            return {"status": PROBE_SKIPPED, "log": "no legal untested shape"}
        result: dict[str, Any] = {"status": statuses.PASSED, "log": "", "axes": probe.axes}
        try:
            self.check_round(probe, self.request["seed"] + SHAPE_PROBE_SEED_OFFSET, OutputHistory(), KeptInputs(), "shape probe")
        except CallFailed as failure:
            result.update(status=failure.status, log=failure.log, fatal_to_process=failure.fatal_to_process)
        return self.with_findings(result)

    # -------------------------------------------------------------- rounds

    def inputs(self, workload, seed: int) -> list[Any]:
        try:
            return generate_inputs(self.problem, workload, device=self.device, seed=seed,
                                   reference_module=self.module, root=self.request.get("data_root"))
        except KernelBenchError as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"inputs: {exc}") from None
        except Exception as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"custom inputs failed: {_format(exc)}") from None

    def reference(self, inputs: list[Any]) -> list[Any]:
        """The reference's outputs for `inputs`, which it must leave as they are for the solution.

        It runs on clones, except on inputs over REFERENCE_CLONE_BYTES (a second copy of multi-GB
        weights is what runs a large workload out of memory): those it gets as they are, and their
        version counters tell whether it wrote to them. One that did raises ReferenceWroteInputs
        and gets clones from then on; the caller redoes the round on regenerated inputs."""
        watched = not self.reference_writes_inputs and _nbytes(inputs) > REFERENCE_CLONE_BYTES
        versions = _versions(inputs) if watched else None   # None too when a tensor keeps no counter
        clone = versions is None
        try:
            with reference_context(self.device):
                expected = self.module.run(*(_clone_all(inputs) if clone else inputs))
            _synchronize(self.device)
        except Exception as exc:
            raise CallFailed(statuses.INVALID_REFERENCE, f"the reference failed on this device: {_format(exc)}",
                             fatal_to_process=_is_cuda_fault(exc)) from None
        if versions is not None and _versions(inputs) != versions:
            self.reference_writes_inputs = True
            raise ReferenceWroteInputs()
        expected = as_output_list(expected, len(self.problem.definition.outputs))
        # an output that is (a view of) an input must not change when the solution runs next
        return [e.clone() if isinstance(e, torch.Tensor) and any(
            isinstance(v, torch.Tensor) and overlaps(e, v) for v in inputs) else e for e in expected]

    def fresh_round(self, workload, seed: int) -> tuple[list[Any], list[Any]]:
        """(inputs, the reference's outputs) of a round on inputs freshly generated from `seed`."""
        inputs = self.inputs(workload, seed)
        try:
            return inputs, self.reference(inputs)
        except ReferenceWroteInputs:
            inputs = self.inputs(workload, seed)
            return inputs, self.reference(inputs)

    def call(self, workload, inputs: list[Any], outputs: list[Any] | None = None) -> list[Any]:
        """One solution call, watched by the guard; destination-passing outputs poisoned first
        (fresh buffers, or the given ones re-poisoned)."""
        before = InputSnapshot(inputs)
        if self.solution.destination_passing_style:
            outputs = [_poison(o) for o in outputs] if outputs is not None else self.allocate_outputs(workload)
        else:
            outputs = None
        try:
            with self.guard.armed():
                returned = self.entry(*inputs, *outputs) if outputs is not None else self.entry(*inputs)
        except Exception as exc:
            raise _classify(exc) from None
        if outputs is None:
            outputs = as_output_list(returned, len(self.problem.definition.outputs))
        self.guard.check_call(before, inputs, outputs)  # before any sync: it looks for unjoined streams
        _synchronize(self.device)
        return outputs

    def check_round(self, workload, seed: int, history: OutputHistory, kept: "KeptInputs", label: str,
                    after_timing: bool = False) -> dict:
        inputs, expected = self.fresh_round(workload, seed)
        kept.append(inputs)
        outputs = self.call(workload, inputs)
        comparison = compare(self.problem, workload, outputs, expected)
        passed = comparison.status == statuses.PASSED
        stale = history.add(label, outputs, passed)
        if not passed and after_timing:
            stale = stale or check_post_timing(True, False, comparison.message)
        if stale:
            self.guard.record(stale.rule, stale.evidence)
        return self.judge(comparison)

    def check_same_address(self, workload, seed: int, kept: "KeptInputs") -> dict:
        """Call on some buffers, then again after new values were written into the same buffers in place."""
        inputs, expected = self.fresh_round(workload, seed)
        kept.append(inputs)
        outputs = self.call(workload, inputs)
        self.judge(compare(self.problem, workload, outputs, expected))
        overwrite_in_place(inputs, self.inputs(workload, seed + 1))
        expected = self.reference_on_kept_buffers(inputs)
        comparison = compare(self.problem, workload, self.call(workload, inputs, outputs), expected)
        finding = check_same_address(True, comparison.status == statuses.PASSED, comparison.message)
        if finding:
            self.guard.record(finding.rule, finding.evidence)
        return self.judge(comparison, "same buffers, new values: ")

    def reference_on_kept_buffers(self, inputs: list[Any]) -> list[Any]:
        """The reference on inputs that cannot be regenerated from a seed (values written in place)."""
        try:
            return self.reference(inputs)
        except ReferenceWroteInputs:
            raise CallFailed(statuses.INVALID_REFERENCE, "the reference wrote to its inputs only on some "
                             "values; the round cannot be redone on the same buffers") from None

    @staticmethod
    def judge(comparison, prefix: str = "") -> dict:
        if comparison.status != statuses.PASSED:
            raise CallFailed(comparison.status, prefix + comparison.message)
        return comparison.to_json()

    def allocate_outputs(self, workload) -> list[torch.Tensor]:
        axes = self.problem.axes_for(workload)
        outputs = []
        for spec in self.problem.definition.outputs.values():
            tensor = torch.empty(self.problem.shape_of(spec, axes) or (), dtype=torch_dtype(spec.dtype), device=self.device)
            outputs.append(_poison(tensor))
        return outputs

    # -------------------------------------------------------------- timing

    def time(self, workload, seed: int) -> dict:
        from kernelbench.eval.timing import TimingConfig, time_callable

        config = TimingConfig(**self.request["timing"])
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
        finding = sample.check(lambda i: fresh_values(config.warmup + i), self.reference, self.judged(workload))
        if finding:
            self.guard.record(finding.rule, finding.evidence)
        return timing

    def judged(self, workload):
        """judge(outputs, expected) -> (passed, message), as the audit's probes take it."""
        def judge(outputs, expected) -> tuple[bool, str]:
            comparison = compare(self.problem, workload, outputs, expected)
            return comparison.status == statuses.PASSED, f"{comparison.status}: {comparison.message}"
        return judge


class ReferenceWroteInputs(Exception):
    """The reference changed inputs it was given without clones (see WorkloadRunner.reference)."""


def _versions(values: list[Any]) -> list[int] | None:
    """The inputs' version counters (every in-place write, through any view, bumps them);
    None when some tensor has none (inference tensors)."""
    try:
        return [v._version for v in values if isinstance(v, torch.Tensor)]
    except RuntimeError:
        return None


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


def _nbytes(values: list[Any]) -> int:
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def _poison(tensor: torch.Tensor) -> torch.Tensor:
    """Fill an output buffer with values no correct kernel leaves behind (NaN / extreme integers)."""
    if tensor.dtype.is_floating_point and tensor.dtype.itemsize > 1:
        return tensor.fill_(float("nan"))
    if tensor.dtype == torch.bool or tensor.dtype.itemsize == 1:
        return tensor.view(torch.uint8).fill_(0xFF).view(tensor.dtype) if tensor.dtype != torch.bool else tensor.fill_(True)
    return tensor.fill_(torch.iinfo(tensor.dtype).max)


def _clone_all(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_cuda_fault(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "cuda error" in text or "illegal memory access" in text or "device-side assert" in text


def _classify(exc: BaseException) -> CallFailed:
    if isinstance(exc, CallFailed):
        return exc
    name = f"{type(exc).__module__}.{type(exc).__name__}"
    if "triton" in name and ("Compilation" in name or "compiler" in name):
        return CallFailed(statuses.COMPILE_ERROR, _format(exc))
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return CallFailed(statuses.RUNTIME_ERROR, "out of memory: " + _format(exc))
    return CallFailed(statuses.RUNTIME_ERROR, _format(exc), fatal_to_process=_is_cuda_fault(exc))


def _format(exc: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-limit:]


if __name__ == "__main__":
    faulthandler.enable()  # a segfault prints the Python stack into the log before the parent sees the signal
    serve(handle)
