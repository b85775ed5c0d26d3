"""CPU estimate of the torch.compile work in the GPU sweep (tasks235_sweep.py): graphs per task and
the time Dynamo + AOTAutograd take to make them (backend "aot_eager": no Inductor, no Triton).

Each task is compiled as the sweep compiles it (a fresh entry function per task, the reference
called inside) and called on its two smallest workloads in size order: the first call traces a
static graph, the second a dynamic one, as in `kb baseline`. Graph breaks and recompiles add
graphs. The GPU run adds Inductor lowering and Triton compilation per graph on top of these times.

    PYTHONPATH=. python3 benchmarks/tasks235_sweep_estimate.py tasks235 --out benchmarks/results/tasks235_sweep_estimate.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.reference import compile_reference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tasks235_sweep import entry_function, input_bytes  # noqa: E402


def estimate(directory: Path) -> dict:
    problem = load_problem(directory)
    module = compile_reference(problem.definition)
    workloads = sorted(problem.workloads, key=lambda w: input_bytes(problem, w))[:2]
    frames, graphs = counters["frames"]["ok"], counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    compiled = torch.compile(entry_function(module.run, f"{problem.subset}/{problem.name} estimate"),
                             backend="aot_eager")
    start = time.perf_counter()
    error = None
    try:
        for workload in workloads:
            inputs = generate_inputs(problem, workload, device="cpu", seed=0, reference_module=module)
            compiled(*inputs)
    except Exception as exc:  # a reference that does not compile on CPU still counts what it did
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return {"task": f"{problem.subset}/{problem.name}", "seconds": time.perf_counter() - start,
            "frames": counters["frames"]["ok"] - frames, "graphs": counters["stats"]["unique_graphs"] - graphs,
            "graph_breaks": sum(counters["graph_break"].values()) - breaks, "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for root in args.roots:
        for directory in find_problem_dirs(root):
            rows.append(estimate(directory))
            print(json.dumps(rows[-1]), flush=True)
    graphs = [r["graphs"] for r in rows]
    seconds = [r["seconds"] for r in rows]
    summary = {"tasks": len(rows), "graphs": sum(graphs), "graphs_median": statistics.median(graphs),
               "graph_breaks": sum(r["graph_breaks"] for r in rows), "errors": sum(bool(r["error"]) for r in rows),
               "aot_eager_seconds": sum(seconds), "seconds_per_graph": sum(seconds) / max(sum(graphs), 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "tasks": rows}, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
