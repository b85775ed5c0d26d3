"""The screening child: one long-lived process per task and device that checks and times many candidates.

Screening only ranks candidates for the search; it never produces a reported score (finalists go
through the full evaluator). So it is cheap where the evaluator is thorough: the reference runs
once per checked round for all candidates, inputs are generated once per timed workload, and a
candidate is checked on `rounds` rounds of the chosen workloads, then timed on each timed workload
with few iterations (L2 flushed, inputs copied to a rotating address, as the evaluator's timer does).

Items are candidate ids; a result per candidate: PASSED with times per workload, or the first
failure (COMPILE_ERROR, INCORRECT_*, RUNTIME_ERROR). A crash or hang is the parent's to report
(sandbox.run_items restarts a fresh child for the remaining candidates). With "warm" in the request
the child only calls each candidate once per timed workload (Triton compiles into its shared cache)
and reports nothing else: the parent runs several warm children in parallel before timing.
"""

from __future__ import annotations

import faulthandler
import shutil
import time
import traceback
from typing import Any

import torch

from kernelbench.core import statuses
from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.emulation import (
    emulate_half_convolution_for_this_process,
    emulate_scaled_mm_for_this_process,
    reference_context,
)
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.cpp_build import build_if_native
from kernelbench.core.solution import load_entry_point, materialize, parse_solution
from kernelbench.eval.buffers import allocate_outputs, clone_all, is_cuda_fault, poison
from kernelbench.eval.sandbox import serve
from kernelbench.eval.timing import TimingConfig, time_callable

SKIPPED = "SKIPPED"          # not screened: the budget ran out first (not a trace status: screening only)
KEPT_INPUT_BYTES = 4 << 30   # timed workloads' inputs kept across candidates up to this size, else regenerated


class Failed(Exception):
    def __init__(self, status: str, log: str):
        super().__init__(log)
        self.status, self.log = status, log


class Screen:
    def __init__(self, request: dict):
        self.request = request
        self.device = torch.device(request["device"])
        self.problem = load_problem(request["problem_dir"])
        self.module = compile_reference(self.problem.definition)
        self.workloads = {w.uuid: w for w in self.problem.workloads}
        self.timing = TimingConfig(**request["timing"])
        self.cases = [self.case(uuid, request["seed"] + r) for uuid in request["check"]
                      for r in range(request["rounds"])] if not request.get("warm") else []
        self.kept: dict[str, list] = {}

    def inputs(self, uuid: str, seed: int) -> list[Any]:
        return generate_inputs(self.problem, self.workloads[uuid], device=self.device, seed=seed,
                               reference_module=self.module, root=self.request.get("data_root"))

    def case(self, uuid: str, seed: int) -> tuple[str, list, list]:
        """(workload, inputs, the reference's outputs), computed once for every candidate."""
        inputs = self.inputs(uuid, seed)
        with reference_context(self.device):
            expected = self.module.run(*clone_all(inputs))
        expected = as_output_list(expected, len(self.problem.definition.outputs))
        return uuid, inputs, [e.clone() if isinstance(e, torch.Tensor) else e for e in expected]

    def timed_inputs(self, uuid: str) -> list[Any]:
        if uuid in self.kept:
            return self.kept[uuid]
        inputs = self.inputs(uuid, self.request["seed"] + 7)
        size = sum(v.numel() * v.element_size() for v in inputs if isinstance(v, torch.Tensor))
        if size + sum(self._bytes(v) for v in self.kept.values()) <= KEPT_INPUT_BYTES:
            self.kept[uuid] = inputs
        return inputs

    @staticmethod
    def _bytes(values: list) -> int:
        return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))

    def caller(self, solution, entry, uuid: str):
        """fn(*inputs) -> outputs: destination-passing entries get fresh poisoned buffers per call."""
        workload, count = self.workloads[uuid], len(self.problem.definition.outputs)
        if solution.destination_passing_style:
            outputs = allocate_outputs(self.problem, workload, self.device)

            def call(*inputs):
                entry(*inputs, *outputs)
                return outputs
            return call, outputs
        return (lambda *inputs: as_output_list(entry(*inputs), count)), None

    def screen(self, solution_json: dict) -> dict[str, Any]:
        started = time.perf_counter()
        solution = parse_solution(solution_json)
        directory = materialize(solution)
        try:
            try:
                entry = load_entry_point(solution, directory, build_if_native(solution, self.request.get("build_dir")))
            except Exception as exc:
                raise Failed(statuses.COMPILE_ERROR, _format(exc)) from None
            for uuid, inputs, expected in self.cases:
                call, outputs = self.caller(solution, entry, uuid)
                if outputs is not None:
                    for o in outputs:
                        poison(o)
                got = self.run(call, clone_all(inputs))
                comparison = compare(self.problem, self.workloads[uuid], got, expected)
                if comparison.status != statuses.PASSED:
                    raise Failed(comparison.status, f"workload {uuid[:8]}: {comparison.message}")
            times = {}
            for uuid in self.request["timed"]:
                call, _ = self.caller(solution, entry, uuid)
                if self.request.get("warm"):
                    self.run(call, clone_all(self.timed_inputs(uuid)))
                    continue
                try:
                    times[uuid] = time_callable(call, self.timed_inputs(uuid), self.device, self.timing).median_ms
                except Exception as exc:
                    raise _classify(exc) from None
            return {"status": statuses.PASSED, "log": "", "times_ms": times,
                    "seconds": time.perf_counter() - started}
        except Failed as failure:
            return {"status": failure.status, "log": failure.log, "seconds": time.perf_counter() - started,
                    "restart": failure.status == statuses.RUNTIME_ERROR and is_cuda_fault(failure.log)}
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def run(self, call, inputs: list) -> list:
        try:
            outputs = call(*inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return outputs
        except Exception as exc:
            raise _classify(exc) from None


def _classify(exc: BaseException) -> Failed:
    name = f"{type(exc).__module__}.{type(exc).__name__}"
    if "triton" in name and ("Compilation" in name or "compiler" in name):
        return Failed(statuses.COMPILE_ERROR, _format(exc))
    return Failed(statuses.RUNTIME_ERROR, _format(exc))


def _format(exc: BaseException, limit: int = 3000) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-limit:]


def handle(request: dict, send) -> None:
    device = torch.device(request["device"])
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if device.type == "cpu":
        emulate_scaled_mm_for_this_process()
        emulate_half_convolution_for_this_process()
    try:
        screen = Screen(request)
    except Exception as exc:  # the reference or the inputs: no candidate can be screened
        send({"kind": "fatal", "status": statuses.INVALID_REFERENCE, "log": _format(exc)})
        return
    send({"kind": "built"})
    deadline = time.monotonic() + request["budget_s"] if request.get("budget_s") is not None else None
    for candidate_id in request["workloads"]:
        if deadline is not None and time.monotonic() > deadline:
            send({"kind": "result", "uuid": candidate_id, "status": SKIPPED, "log": "screening budget spent"})
            continue
        result = screen.screen(request["candidates"][candidate_id])
        send({"kind": "result", "uuid": candidate_id, **result})
        if result.get("restart"):
            return  # a CUDA fault poisons the context: the parent starts a fresh child


if __name__ == "__main__":
    faulthandler.enable()
    serve(handle)
