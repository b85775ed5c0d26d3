"""`kb tasks check`: validate problem directories and, optionally, run each reference once on CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kernelbench.core.correctness import PASSED, as_output_list, check_structure, to_float32
from kernelbench.core.emulation import reference_context
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.inputs import generate_inputs, missing_blobs
from kernelbench.core.problem import Problem, load_problem
from kernelbench.core.reference import compile_reference


@dataclass
class CheckResult:
    path: Path
    name: str
    subset: str = ""
    workloads: int = 0
    ok: bool = True
    ran: bool = False
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    def fail(self, message: str) -> "CheckResult":
        self.ok = False
        self.messages.append(message)
        return self


def check_problem(directory: Path, *, run: bool = False, data_root=None) -> CheckResult:
    result = CheckResult(directory, directory.name, directory.parent.name)
    try:
        problem = load_problem(directory)
        result.name, result.workloads = problem.name, len(problem.workloads)
        result.messages += problem.warnings
        module = compile_reference(problem.definition, str(directory / "definition.json"))
    except KernelBenchError as exc:
        return result.fail(str(exc))
    missing = missing_blobs(problem, data_root)
    if missing:
        files = sorted({str(path) for _, _, path in missing})
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        return result.fail(f"{len(missing)} safetensors inputs in {len({l for l, _, _ in missing})} workloads "
                           f"have no blob under the data root: {shown}")
    if run:
        _run_smallest(problem, module, result, data_root)
    return result


def _run_smallest(problem: Problem, module, result: CheckResult, data_root) -> None:
    workload = problem.smallest_workload()
    start = time.perf_counter()
    try:
        inputs = generate_inputs(problem, workload, device="cpu", seed=0, reference_module=module, root=data_root)
        with reference_context("cpu"):
            outputs = as_output_list(module.run(*inputs), len(problem.definition.outputs))
    except KernelBenchError as exc:
        result.fail(str(exc))
        return
    except Exception as exc:  # the reference itself failed: report, do not crash the check
        result.fail(f"reference raised on workload line {workload.line}: {type(exc).__name__}: {exc}")
        return
    finally:
        result.seconds = time.perf_counter() - start
    result.ran = True
    structure = check_structure(problem, workload, outputs)
    if structure.status != PASSED:
        result.fail(f"reference output disagrees with the definition (line {workload.line}): {structure.message}")
    elif any(isinstance(o, torch.Tensor) and not torch.isfinite(to_float32(o)).all() for o in outputs):
        result.fail(f"reference output has NaN/Inf on workload line {workload.line}")
