"""Why a launch-bound call times slower through the evaluator than in-process: one step at a time.

    python3 benchmarks/evaluator_overhead.py OUT_DIR --tasks tasks235/L1/002_qwen2_7b_swiglu_act ...

For the fused family's first configuration (plain launches) at the smallest workload, each row adds one
thing the evaluator's child does to the timed call, and says what it costs:

  plain            time_callable(solution, the same inputs copied every call), in this process
  fresh values     ... with new values generated every call (fresh_values), as the runner does
  guard armed      ... with the call inside guard.armed(), guard installed after the solution was imported
  runner           WorkloadRunner.time itself, guard installed before the solution is imported (the child's order)
  child: ROW       the four rows above in a fresh interpreter (python3 THIS --inner), started by this process
  evaluate()       the evaluator: its sandboxed child, as `kb` runs it

The child rows run twice, before and after this process holds a CUDA context of its own (a second context on
the same GPU is one of the suspects). Per row: the timer's median (us), the host's us per call back to back,
the host's us from the L2 flush being queued to the call's return in the timer's own loop (the part of it
beyond the flush's GPU time is what the timer sees), and the launches per call that left the lean fast path.
Writes OUT_DIR/evaluator_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from time import perf_counter

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import torch  # noqa: E402

ITERATIONS = 100
QUEUE_SAMPLES = 50
_SLOW_LAUNCHES = [0]


class _CountingKernel:
    """Stands in for a lean site's Triton kernel: counts the launches that went through Triton's own path."""

    def __init__(self, kernel, counter: list):
        self._kernel, self._counter = kernel, counter

    def __getitem__(self, grid):
        self._counter[0] += 1
        return self._kernel[grid]

    def __getattr__(self, name):
        return getattr(self._kernel, name)


def count_slow_launches(entry) -> list:
    """A one-element counter of the launches through the solution's lean sites that took Triton's own path
    (sites made so far: call the solution once first). One counter per process: counts only grow."""
    lean = entry.__globals__.get("_lean")
    sites = sys.modules[lean.__module__]._SITES if lean is not None else {}
    for site in sites.values():
        if not isinstance(site.kernel, _CountingKernel):
            site.kernel = _CountingKernel(site.kernel, _SLOW_LAUNCHES)
    return _SLOW_LAUNCHES


class _CountingCall:
    """A solution call that counts its calls."""

    def __init__(self, call):
        self.call, self.calls = call, 0

    def __call__(self, *args):
        self.calls += 1
        return self.call(*args)


def queue_to_return_us(call, make_args, samples: int = QUEUE_SAMPLES) -> float:
    """The timer's loop (kernelbench.eval.timing.time_gpu) with a host clock: median us from the L2 flush being
    queued to the call's return, the first call after an idle GPU."""
    from kernelbench.eval.timing import _l2_flush_buffer
    flush = _l2_flush_buffer(torch.cuda.current_device())
    start = torch.cuda.Event(enable_timing=True)
    spans = []
    for i in range(samples):
        args = make_args(i)
        torch.cuda.synchronize()
        flush.zero_()
        began = perf_counter()
        start.record()
        call(*args)
        spans.append((perf_counter() - began) * 1e6)
    torch.cuda.synchronize()
    return statistics.median(spans)


def flush_gpu_us() -> float:
    from kernelbench.eval.timing import _l2_flush_buffer
    flush = _l2_flush_buffer(torch.cuda.current_device())
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(20):
        begin.record()
        flush.zero_()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) * 1e3)
    return statistics.median(times)


def plain_solution(directory: Path):
    """(problem, its smallest workload, the fused family's first configuration rendered as plain launches), or
    (problem, None, why the family does not match)."""
    import kernelbench.generate.families  # noqa: F401 - registers the families
    from kernelbench.core.problem import load_problem
    from kernelbench.generate.family import FAMILIES

    problem = load_problem(directory)
    family = FAMILIES["fused"]
    match = family.match(problem)
    if match is None:
        return problem, None, family.last_rejection
    workload = min(problem.workloads, key=problem.workload_size)
    return problem, workload, family.render(match, {**family.space(match, problem.axes_for(workload))[0],
                                                    "graph": False})


def in_process_rows(directory: Path) -> dict:
    """The rows plain .. runner, measured in this process."""
    from audit.runtime import RuntimeGuard
    from kernelbench.core.inputs import generate_inputs
    from kernelbench.core.reference import compile_reference
    from kernelbench.core.solution import load_entry_point, materialize
    from kernelbench.eval.buffers import allocate_outputs
    from kernelbench.eval.runner import RunPlan, WorkloadRunner, built
    from kernelbench.eval.timing import FreshInputPool, TimingConfig, host_ms_per_call, time_callable

    problem, workload, solution = plain_solution(directory)
    if workload is None:
        return {"skipped": solution}
    module = compile_reference(problem.definition)
    device = torch.device("cuda")
    timing = TimingConfig(warmup=10, iterations=ITERATIONS)
    rows: dict[str, dict] = {}

    def measure(name: str, call, inputs=None, fresh_values=None, entry=None) -> None:
        pool = FreshInputPool(inputs, fresh_values=fresh_values)
        call(*pool(0))
        slow, counted = count_slow_launches(entry), _CountingCall(call)
        before = slow[0]
        timer = time_callable(counted, inputs, device, timing, fresh_values)
        rows[name] = {"timer_us": timer.median_ms * 1e3, "slow_launches_per_call": (slow[0] - before) / counted.calls,
                      "host_us": host_ms_per_call(call, pool(1), 200, warmup=20) * 1e3,
                      "queue_to_return_us": queue_to_return_us(call, pool)}

    inputs = generate_inputs(problem, workload, seed=1, device=device, reference_module=module)
    outputs = allocate_outputs(problem, workload, device)

    def fresh(i):
        return generate_inputs(problem, workload, seed=100 + i, device=device, reference_module=module)

    run = load_entry_point(solution, materialize(solution))
    measure("plain", lambda *a: run(*a, *outputs), inputs=inputs, entry=run)
    measure("fresh values", lambda *a: run(*a, *outputs), fresh_values=fresh, entry=run)
    late = RuntimeGuard("cuda")
    late.install()

    def armed(*a):
        with late.armed():
            return run(*a, *outputs)
    measure("guard armed", armed, fresh_values=fresh, entry=run)
    late.uninstall()

    guard = RuntimeGuard("cuda")
    guard.install()
    with built(solution, guard) as entry:
        runner = WorkloadRunner(problem, module, solution, entry, device, RunPlan(timing=vars(timing)), guard)
        runner.time(workload, 0)   # the first call compiles
        slow, runner.entry = count_slow_launches(entry), _CountingCall(entry)
        before = slow[0]
        result = runner.time(workload, 0)
        rows["runner"] = {"timer_us": result["median_ms"] * 1e3, "host_us": result["details"]["host_ms_per_call"] * 1e3,
                          "slow_launches_per_call": (slow[0] - before) / runner.entry.calls}
    guard.uninstall()
    return {"workload": problem.axes_for(workload), "rows": rows}


def child_rows(directory: Path) -> dict:
    """in_process_rows in a fresh interpreter."""
    done = subprocess.run([sys.executable, __file__, "--inner", str(directory)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def evaluator_row(directory: Path) -> dict:
    from kernelbench.eval.evaluator import EvalConfig, evaluate

    problem, workload, solution = plain_solution(directory)
    if workload is None:
        return {"skipped": solution}
    trace = evaluate(problem, solution, EvalConfig(device="cuda", rounds=1, max_workloads=1, shape_probe=False,
                                                   timing={"warmup": 10, "iterations": ITERATIONS}))[0]
    performance = trace.evaluation.performance
    if performance is None:
        return {"status": str(trace.evaluation.status), "log": trace.evaluation.log[-1000:]}
    return {"timer_us": performance.latency_ms * 1e3,
            "host_us": performance.timing.details["host_ms_per_call"] * 1e3}


def profile_task(directory: Path) -> dict:
    table: dict[str, dict] = {}
    for when in ("no CUDA context here", "CUDA context here"):
        if when == "CUDA context here":
            inner = in_process_rows(directory)
            if "skipped" in inner:
                return {"task": directory.name, **inner}
            table.update(inner["rows"])
        child = child_rows(directory)
        for name, row in child.get("rows", {}).items():
            table[f"child ({when}): {name}"] = row
        if "error" in child:
            table[f"child ({when})"] = child
        table[f"evaluate() ({when})"] = evaluator_row(directory)
    return {"task": directory.name, "rows": table}


def markdown(result: dict) -> str:
    lines = [f"# Evaluator overhead, {result['date']}, {result['gpu']} (host {result['host_cpu']}), "
             f"torch {result['torch']}", "", f"L2 flush on the GPU: {result['flush_gpu_us']:.1f} us", "",
             "| task | row | timer us | host us/call | flush queued -> call returned, us | slow launches/call |",
             "|---|---|---|---|---|---|"]
    for task in result["tasks"]:
        for name, row in task.get("rows", {}).items():
            cells = [row.get(k) for k in ("timer_us", "host_us", "queue_to_return_us", "slow_launches_per_call")]
            text = " | ".join("" if c is None else f"{c:.1f}" if isinstance(c, float) else str(c) for c in cells)
            lines.append(f"| {task['task']} | {name} | {text} |" if "error" not in row and "log" not in row
                         else f"| {task['task']} | {name} | {str(row)[:300]} | | | |")
        if "rows" not in task:
            lines.append(f"| {task['task']} | {task.get('skipped') or task.get('error')} | | | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--tasks", nargs="*", type=Path, default=[])
    parser.add_argument("--inner", type=Path, help="measure one task's in-process rows and print them as JSON")
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(in_process_rows(args.inner)))
        return 0
    from kernelbench.eval.gpu_state import cpu_model
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"gpu": None, "host_cpu": cpu_model(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tasks": []}
    for directory in args.tasks:
        try:
            result["tasks"].append(profile_task(directory))
        except Exception as exc:  # noqa: BLE001 - one task's failure must not cost the others
            result["tasks"].append({"task": directory.name, "error": f"{type(exc).__name__}: {exc}"[:1000]})
        print(json.dumps(result["tasks"][-1], indent=1), flush=True)
    result["gpu"], result["flush_gpu_us"] = torch.cuda.get_device_name(), flush_gpu_us()
    (args.out / "evaluator_overhead.json").write_text(json.dumps(result, indent=1))
    (args.out / "evaluator_overhead.md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
