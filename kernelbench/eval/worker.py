"""The child process of an evaluation: build one solution, then hand each requested item to the runner.

Runs as a fresh interpreter (see sandbox.py), so nothing of the parent (CUDA context, imported
solution modules, patched functions) leaks in or out. Results stream back one item at a time
over a pipe, so a crash loses only the workload it happened in. What happens to a workload is
kernelbench.eval.runner's business (the same class runs in-process for the tests); the item
SHAPE_PROBE asks for the shape probe instead of a workload.
"""

from __future__ import annotations

import faulthandler

import torch

from audit.runtime import RuntimeGuard
from kernelbench.core import statuses
from kernelbench.core.emulation import emulate_half_convolution_for_this_process, emulate_scaled_mm_for_this_process
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import parse_solution
from kernelbench.eval.runner import (
    SHAPE_PROBE,
    BuildFailed,
    RunPlan,
    WorkloadRunner,
    built,
)
from kernelbench.eval.sandbox import serve


def handle(request: dict, send) -> None:
    """Evaluate the request's solution on its items; `request` is plain data (see evaluator.evaluate)."""
    device = torch.device(request["device"])
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if device.type == "cpu":
        # The CPU has no FP4 matrix units: fp4 torch._scaled_mm is emulated for the whole process,
        # before the audit guard snapshots torch, so reference and solution see the same function;
        # likewise float16 convolutions (kernelbench.core.emulation says why). Triton's interpreter already
        # rounds as a GPU does: importing kernelbench under TRITON_INTERPRET=1 did it (core.interpreter_casts).
        emulate_scaled_mm_for_this_process()
        emulate_half_convolution_for_this_process()
    problem = load_problem(request["problem_dir"])
    module = compile_reference(problem.definition)
    solution = parse_solution(request["solution"])
    guard = RuntimeGuard(str(device))
    guard.install()
    try:
        with built(solution, guard, request.get("build_dir")) as entry:
            send({"kind": "built"})
            runner = WorkloadRunner(problem, module, solution, entry, device, RunPlan.from_request(request), guard)
            workloads = {w.uuid: w for w in problem.workloads}
            for uuid in request["workloads"]:
                result = runner.shape_probe() if uuid == SHAPE_PROBE else runner.run(workloads[uuid])
                fatal = result.pop("fatal_to_process", False)
                send({"kind": "result", "uuid": uuid, "restart": fatal, **result})
                if fatal:
                    return  # a CUDA fault poisons the context: the parent starts a fresh process
    except BuildFailed as failure:
        send({"kind": "fatal", "status": statuses.COMPILE_ERROR, "log": failure.log})


if __name__ == "__main__":
    faulthandler.enable()  # a segfault prints the Python stack into the log before the parent sees the signal
    serve(handle)
