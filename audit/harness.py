"""An in-process audit of one solution: the evaluator's call sequence with every audit check.

    report = audit_solution(problem, solution, device="cpu")
    report.findings        # static + runtime + probe findings
    report.outcomes        # workload uuid -> PASSED / INCORRECT_* / RUNTIME_ERROR: ...

The sequence mirrors kernelbench.eval.worker: install the guard, import the solution armed, then per
workload fresh correctness rounds (earlier inputs kept alive, outputs compared across rounds),
the same-address probe, timing through kernelbench.eval.timing (fresh addresses, new values every
call, the same output buffers), the re-check on fresh inputs after timing, the state check; finally the
shape probe on a legal shape no workload uses.

It runs the solution in *this* process. `kb audit` runs it in a throwaway child; the tests run
it in-process, and `restore=True` undoes the solution's patches, flags and environment after.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

import torch

# the evaluator's modules, loaded before the guard snapshots them (as in the evaluator's child)
import kernelbench.core.correctness  # noqa: F401
import kernelbench.core.inputs  # noqa: F401
import kernelbench.eval.timing  # noqa: F401
from kernelbench.eval.worker import POST_TIMING_SEED_OFFSET, SAME_ADDRESS_SEED_OFFSET, TIMING_SEED_OFFSET  # the evaluator's seeds

from .checks import (TimedOutputSample, check_post_timing, check_shape_probe, fresh_rounds, perturbed_workload,
                     same_address_probe)
from .findings import Finding, unique
from .rules import DETECTED_BY, RULES
from .runtime import RuntimeGuard
from .static import scan_solution
from .tensors import InputSnapshot

SHAPE_PROBE_SEED = 3_000_003


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def verdicts(self) -> list[dict]:
        """One row per rule, in catalogue order: flagged or clean, with its evidence (`kb audit`'s table)."""
        return [{"rule": rule, "verdict": "flagged" if any(f.rule == rule for f in self.findings) else "clean",
                 "evidence": [f.evidence for f in self.findings if f.rule == rule],
                 "detected_by": list(DETECTED_BY[rule]), "rationale": rationale}
                for rule, rationale in RULES.items()]


class SolutionFailed(Exception):
    """The solution raised or returned a wrong result; the outcome says which."""


class _Runner:
    def __init__(self, problem, module, solution, entry, device: torch.device, guard: RuntimeGuard):
        self.problem, self.module, self.solution, self.entry = problem, module, solution, entry
        self.device, self.guard = device, guard

    def inputs(self, workload, seed: int) -> list[Any]:
        from kernelbench.core.inputs import generate_inputs

        return generate_inputs(self.problem, workload, device=self.device, seed=seed, reference_module=self.module)

    def reference(self, inputs: list[Any]) -> list[Any]:
        from kernelbench.core.correctness import as_output_list
        from kernelbench.core.emulation import reference_context

        with reference_context(self.device), torch.no_grad():
            expected = self.module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs])
        return as_output_list(expected, len(self.problem.definition.outputs))

    def outputs_for(self, workload) -> list[torch.Tensor]:
        from kernelbench.core.dtypes import torch_dtype

        axes = self.problem.axes_for(workload)
        outputs = []
        for spec in self.problem.definition.outputs.values():
            tensor = torch.empty(self.problem.shape_of(spec, axes) or (), dtype=torch_dtype(spec.dtype), device=self.device)
            if tensor.dtype.is_floating_point and tensor.element_size() > 1:
                tensor.fill_(float("nan"))
            outputs.append(tensor)
        return outputs

    def call(self, workload, inputs: list[Any], outputs: list | None = None) -> list[Any]:
        from kernelbench.core.correctness import as_output_list

        before = InputSnapshot(inputs)
        if not self.solution.destination_passing_style:
            outputs = None
        elif outputs is None:
            outputs = self.outputs_for(workload)
        try:
            with self.guard.armed():
                returned = self.entry(*inputs, *outputs) if outputs is not None else self.entry(*inputs)
        except Exception as exc:
            raise SolutionFailed(f"RUNTIME_ERROR: {type(exc).__name__}: {exc}") from exc
        if outputs is None:
            outputs = as_output_list(returned, len(self.problem.definition.outputs))
        self.guard.check_call(before, inputs, outputs)  # before any synchronize: it snapshots CUDA outputs
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return outputs

    def judge(self, workload, outputs: list, expected: list) -> tuple[bool, str]:
        from kernelbench.core.correctness import PASSED, compare

        try:
            result = compare(self.problem, workload, outputs, expected)
        except Exception as exc:  # a proxy output may break the comparison itself
            return False, f"comparison failed: {type(exc).__name__}: {exc}"
        return result.status == PASSED, f"{result.status}: {result.message}" if result.status != PASSED else PASSED

    def time(self, workload, seed: int, iterations: int) -> Finding | None:
        """Time as the evaluator does (new values every call), then check a few timed calls' outputs."""
        from kernelbench.core.correctness import as_output_list
        from kernelbench.eval.timing import TimingConfig, time_callable

        dps = self.solution.destination_passing_style
        outputs = self.outputs_for(workload) if dps else []
        guard, entry, config = self.guard, self.entry, TimingConfig(warmup=2, iterations=iterations)
        sample = TimedOutputSample(iterations)

        def call(*args):
            with guard.armed():
                return entry(*args, *outputs)

        def fresh_values(i: int) -> list:
            return self.inputs(workload, seed + TIMING_SEED_OFFSET + i)

        def observe(iteration: int, returned) -> None:
            sample.observe(iteration, outputs if dps else as_output_list(returned, len(self.problem.definition.outputs)))

        try:
            time_callable(call, None, self.device, config, fresh_values, observe)
        except Exception as exc:
            raise SolutionFailed(f"RUNTIME_ERROR during timing: {type(exc).__name__}: {exc}") from exc
        return sample.check(lambda i: fresh_values(config.warmup + i), self.reference,
                            lambda outs, expected: self.judge(workload, outs, expected))

    def workload(self, workload, seed: int, rounds: int, iterations: int) -> tuple[str, list[Finding]]:
        """Fresh rounds, same-address probe, timing, post-timing re-check: (outcome, findings)."""
        def call(inputs, outputs=None):
            return self.call(workload, inputs, outputs)

        def judge(outputs, expected):
            return self.judge(workload, outputs, expected)

        result = fresh_rounds(call, self.reference, lambda s: self.inputs(workload, s), judge, seed=seed, rounds=rounds)
        if not result.passed:
            return result.message, result.findings
        findings = result.findings
        passed, message, probe = same_address_probe(call, self.reference, judge, result.inputs[-1],
                                                    self.inputs(workload, seed + SAME_ADDRESS_SEED_OFFSET))
        if not passed:
            return message, findings + ([probe] if probe else [])
        if iterations:
            timed = self.time(workload, seed, iterations)
            if timed:
                return timed.evidence, findings + [timed]
            inputs = self.inputs(workload, seed + POST_TIMING_SEED_OFFSET)
            expected = self.reference(inputs)
            passed, message = judge(call(inputs), expected)
            after = check_post_timing(True, passed, message)
            if after:
                return message, findings + [after]
        return "PASSED", findings

    def shape_probe(self, base) -> Finding | None:
        probe = perturbed_workload(self.problem, base)
        if probe is None:
            return None
        try:
            inputs = self.inputs(probe, SHAPE_PROBE_SEED)
            expected = self.reference(inputs)
        except Exception:
            return None  # the reference itself does not take this shape: not a legal probe
        try:
            passed, message = self.judge(probe, self.call(probe, inputs), expected)
        except SolutionFailed as failure:
            passed, message = False, str(failure)
        return check_shape_probe(probe, passed, message)


def audit_solution(problem, solution, *, device: str = "cpu", workloads=None, rounds: int = 3,
                   timing_iterations: int = 8, seed: int = 0, static: bool = True, shape_probe: bool = True,
                   restore: bool = True) -> AuditReport:
    """Every audit check on `solution` for `problem` (workloads: a list, or None for the smallest one)."""
    from kernelbench.core.reference import compile_reference
    from kernelbench.core.solution import load_entry_point, materialize

    report = AuditReport()
    if static:
        report.findings += scan_solution(solution, problem)
    device = torch.device(device)
    module = compile_reference(problem.definition)
    workloads = workloads or [problem.smallest_workload()]
    guard = RuntimeGuard(str(device))
    guard.install()
    directory = materialize(solution)
    guard.allow_path(directory)
    try:
        try:
            with guard.armed():
                entry = load_entry_point(solution, directory)
        except Exception as exc:
            report.outcomes["build"] = f"COMPILE_ERROR: {type(exc).__name__}: {exc}"
            return report
        finally:
            _keep_libraries_loaded(directory)
        guard.check_state()
        runner = _Runner(problem, module, solution, entry, device, guard)
        for i, workload in enumerate(workloads):
            try:
                outcome, found = runner.workload(workload, seed + 100 * i, rounds, timing_iterations)
            except SolutionFailed as failure:
                outcome, found = str(failure), []
            report.outcomes[workload.uuid] = outcome
            report.findings += found
            guard.check_state()
        if shape_probe and all(outcome == "PASSED" for outcome in report.outcomes.values()):
            finding = runner.shape_probe(workloads[0])  # only a solution right on the tested shapes can be "specialized"
            if finding:
                report.findings.append(finding)
        guard.check_state()
    finally:
        report.findings += guard.findings()
        if restore:
            guard.restore()
        guard.uninstall()
        shutil.rmtree(directory, ignore_errors=True)
    report.findings = unique(report.findings)
    return report


def _keep_libraries_loaded(directory) -> None:
    """load_entry_point forgets, at the next load, every module the previous solution's import
    added -- libraries it imported first (triton, torch._inductor) included, whose re-import in
    the same process fails (native extensions register twice). Keep only the solution's own."""
    import sys

    import kernelbench.core.solution as loader

    loaded = getattr(loader, "_LOADED", None)
    if isinstance(loaded, set):
        root = str(directory)
        for name in list(loaded):
            if not (getattr(sys.modules.get(name), "__file__", None) or "").startswith(root):
                loaded.discard(name)
