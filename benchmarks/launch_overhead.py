"""Issue #12's launch floor: where a generated solution's host time per call goes, on the GPU.

    python3 benchmarks/launch_overhead.py OUT_DIR [--tasks tasks235/L1/003_mistral_7b_rope ...]

Part 1, primitives: host microseconds per call of back-to-back calls (no sync between them; the CPU clock) for
the statements a generated program is made of: a Triton launch through `kernel[grid]` and through
templates/lean_launch.py (small and many-argument kernels), a grid's ceiling division, torch.empty, an aten view through torch.ops and
as a method, stride() and is_contiguous(), one aten kernel, one CUDA-graph replay; and the GPU time of the
small kernel (kernelbench.eval.timing: fresh inputs, L2 flushed), the floor a launch-bound call pays anyway.
Part 2, per task: the fused family's first configuration at the smallest workload, as plain launches and as
a CUDA-graph replay: through the evaluator (its child, runtime guard armed, fresh inputs), then in this
process with Triton's launch path and with the lean one: host us per call, the evaluator's timer, and the
ten functions with the most own time under cProfile. Writes OUT_DIR/launch_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "templates")]

from lean_launch import cdiv, lean  # noqa: E402  (templates/, as a solution imports it)

from kernelbench.eval.timing import host_ms_per_call  # noqa: E402

CALLS = 2000


@triton.jit
def _copy(x, y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y + offs, tl.load(x + offs, mask=offs < n), mask=offs < n)


@triton.jit
def _many(x, y, z, w, o, s0, s1, s2, s3, t0, t1, t2, t3, u0, u1, u2, u3, n, C_X: tl.constexpr, C_Y: tl.constexpr,
          BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    v = tl.load(x + offs * s3, mask=mask) + tl.load(y + offs * t3, mask=mask) + tl.load(z + offs * u3, mask=mask)
    tl.store(o + offs, v + tl.load(w + offs, mask=mask), mask=mask)


def host_us(fn, calls: int = CALLS) -> float:
    return host_ms_per_call(fn, (), calls, warmup=20) * 1e3


def primitives() -> dict[str, float]:
    x = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    ys = [torch.empty_like(x) for _ in range(4)]
    strides = [1] * 12
    graph_out = torch.empty_like(x)
    _copy[(1,)](x, graph_out, 128, BLOCK=128)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _copy[(1,)](x, graph_out, 128, BLOCK=128)
    return {
        "python call of an empty function": host_us(lambda: None),
        "triton.cdiv(4096, 256)": host_us(lambda: triton.cdiv(4096, 256)),
        "lean_launch.cdiv(4096, 256)": host_us(lambda: cdiv(4096, 256)),
        "torch.empty((1, 1, 1, 128), bf16)": host_us(lambda: torch.empty((1, 1, 1, 128), dtype=torch.bfloat16,
                                                                            device=x.device)),
        "torch.ops.aten.unsqueeze.default(x, 0)": host_us(lambda: torch.ops.aten.unsqueeze.default(x, 0)),
        "x.unsqueeze(0)": host_us(lambda: x.unsqueeze(0)),
        "x.stride()": host_us(lambda: x.stride()),
        "x.is_contiguous()": host_us(lambda: x.is_contiguous()),
        "torch.add(x, x, out=y)": host_us(lambda: torch.add(x, x, out=ys[0])),
        "CUDA graph replay (one kernel)": host_us(graph.replay),
        "triton kernel[grid], 4 arguments": host_us(lambda: _copy[(1,)](x, ys[0], 128, BLOCK=128)),
        "lean(kernel)[grid], 4 arguments": host_us(lambda: lean(_copy)[(1,)](x, ys[0], 128, BLOCK=128)),
        "triton kernel[grid], 21 arguments": host_us(lambda: _many[(1,)](x, *ys, *strides, 128, C_X=True, C_Y=True,
                                                                         BLOCK=128)),
        "lean(kernel)[grid], 21 arguments": host_us(lambda: lean(_many)[(1,)](x, *ys, *strides, 128, C_X=True,
                                                                              C_Y=True, BLOCK=128)),
    }


def small_kernel_gpu_us() -> float:
    from kernelbench.eval.timing import TimingConfig, time_callable
    x = torch.randn(128, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)
    return time_callable(lambda a: _copy[(1,)](a, y, 128, BLOCK=128), [x], "cuda",
                         TimingConfig(warmup=10, iterations=100)).median_ms * 1e3


def profile_task(directory: Path, calls: int) -> dict:
    import kernelbench.generate.families  # noqa: F401 - registers the families
    from kernelbench.core.inputs import generate_inputs
    from kernelbench.core.problem import load_problem
    from kernelbench.core.reference import compile_reference
    from kernelbench.core.solution import load_entry_point, materialize
    from kernelbench.eval.buffers import allocate_outputs
    from kernelbench.eval.evaluator import EvalConfig, evaluate
    from kernelbench.eval.timing import TimingConfig, time_callable
    from kernelbench.generate.family import FAMILIES

    problem = load_problem(directory)
    family = FAMILIES["fused"]
    match = family.match(problem)
    if match is None:
        return {"task": directory.name, "skipped": family.last_rejection}
    workload = min(problem.workloads, key=problem.workload_size)
    axes = problem.axes_for(workload)
    inputs = generate_inputs(problem, workload, seed=1, device="cuda",
                             reference_module=compile_reference(problem.definition))
    outputs = allocate_outputs(problem, workload, torch.device("cuda"))
    row = {"task": directory.name, "axes": axes, "configs": {}}
    first = family.space(match, axes)[0]
    # the first configuration as plain launches and as one CUDA-graph replay (inputs copied in, results out)
    for config in [{**first, "graph": False}, {**first, "graph": True}]:
        solution = family.render(match, config)
        # the same solution through the evaluator (a child with the runtime guard armed, fresh inputs every call)
        trace = evaluate(problem, solution, EvalConfig(device="cuda", rounds=1, max_workloads=1, shape_probe=False,
                                                       timing={"warmup": 10, "iterations": 100}))[0]
        performance = trace.evaluation.performance
        row["configs"][f"{json.dumps(config, sort_keys=True)} evaluator"] = {
            "status": str(trace.evaluation.status), "timer_us": performance.latency_ms * 1e3 if performance else None,
            "host_us": performance.timing.details.get("host_ms_per_call", 0) * 1e3 if performance else None}
        run = load_entry_point(solution, materialize(solution))
        module = sys.modules[run.__module__]
        for path in ("triton", "lean"):
            if hasattr(module, "_lean"):
                module._lean = lean if path == "lean" else (lambda kernel: kernel)
            elif path == "lean":
                continue   # a render from before lean launches
            call = (lambda: run(*inputs, *outputs))
            entry = {"host_us": host_us(call, 300),
                     "timer_us": time_callable(lambda *a: run(*a, *outputs), inputs, "cuda",
                                               TimingConfig(warmup=10, iterations=100)).median_ms * 1e3}
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                call()
            profiler.disable()
            torch.cuda.synchronize()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(10)
            entry["profile"] = text.getvalue()[-4000:]
            row["configs"][f"{json.dumps(config, sort_keys=True)} {path}"] = entry
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tasks", nargs="*", type=Path, default=[])
    parser.add_argument("--profile-calls", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "primitives_us": primitives(), "small_kernel_gpu_us": small_kernel_gpu_us(), "tasks": []}
    print(json.dumps(result, indent=1), flush=True)
    for directory in args.tasks:
        try:
            result["tasks"].append(profile_task(directory, args.profile_calls))
        except Exception as exc:  # noqa: BLE001 - one task's failure must not cost the others
            result["tasks"].append({"task": directory.name, "error": f"{type(exc).__name__}: {exc}"[:1000]})
        print(json.dumps(result["tasks"][-1], indent=1)[:6000], flush=True)
        (args.out / "launch_overhead.json").write_text(json.dumps(result, indent=1))
    (args.out / "launch_overhead.json").write_text(json.dumps(result, indent=1))
    (args.out / "launch_overhead.md").write_text(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [f"# Host time per call, {result['date']}, {result['gpu']}, torch {result['torch']}, "
             f"triton {result['triton']}", "", "| statement | host us/call |", "|---|---|"]
    lines += [f"| {name} | {us:.2f} |" for name, us in result["primitives_us"].items()]
    lines += ["", f"GPU time of the small kernel (the evaluator's timer): {result['small_kernel_gpu_us']:.2f} us", "",
              "| task | configuration, launch path | host us/call | timer us |", "|---|---|---|---|"]
    for row in result["tasks"]:
        for name, entry in row.get("configs", {}).items():
            lines.append(f"| {row['task']} | {name} | {entry['host_us'] or 0:.1f} | {entry['timer_us'] or 0:.1f} |")
        if "configs" not in row:
            lines.append(f"| {row['task']} | {row.get('skipped') or row.get('error')} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
