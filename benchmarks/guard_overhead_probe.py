"""Which audit events a generated solution's call raises, and its host time, with the runtime guard armed.

    python3 benchmarks/guard_overhead_probe.py TASK_DIR

The fused family's first configuration (plain launches) at the smallest workload: host us per call back to
back, unguarded then with a RuntimeGuard installed and armed around each call, and the audit events counted.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch

from audit.runtime import RuntimeGuard
from evaluator_overhead import plain_solution
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.eval.buffers import allocate_outputs
from launch_overhead import host_us

CALLS = 200


def main() -> int:
    problem, workload, solution = plain_solution(Path(sys.argv[1]))
    if workload is None:
        print(solution)
        return 1
    run = load_entry_point(solution, materialize(solution))
    inputs = generate_inputs(problem, workload, seed=1, device="cuda",
                             reference_module=compile_reference(problem.definition))
    outputs = allocate_outputs(problem, workload, torch.device("cuda"))
    print("unguarded host us/call:", round(host_us(lambda: run(*inputs, *outputs), CALLS), 1))
    guard = RuntimeGuard("cuda")
    guard.install()
    events = collections.Counter()
    sys.addaudithook(lambda event, args: events.update([event]) if guard._armed_depth else None)

    def armed():
        with guard.armed():
            run(*inputs, *outputs)
    print("guarded host us/call:", round(host_us(armed, CALLS), 1))
    print("audit events while armed, per call:", {e: n / (CALLS + 20) for e, n in events.most_common(12)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
