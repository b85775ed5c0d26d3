"""`kb eval`: evaluate one solution on a problem's workloads, in a sandboxed child, into traces.

The parent scans the sources with the static audit rules, hands the workloads to a spawned
child (kernelbench.eval.worker), turns every outcome into a trace in the official schema, and
flags a correct time below the roofline's T_SOL (physically impossible under a sound bound).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field

from audit.checks import check_below_sol
from audit.static import scan_solution
from kernelbench.core import statuses
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.solution import Solution
from kernelbench.core.trace import Environment, Evaluation, Performance, Timing, Trace, TracedWorkload
from kernelbench.eval.runner import SHAPE_PROBE, shape_probe_finding
from kernelbench.eval.sandbox import run_items


@dataclass
class EvalConfig:
    device: str = "cpu"
    rounds: int = 10
    max_workloads: int | None = None
    timing: dict | None = field(default_factory=lambda: {"warmup": 10, "iterations": 50})
    build_timeout_s: float = 600.0
    workload_timeout_s: float = 600.0
    seed: int = 0
    data_root: str | None = None
    shape_probe: bool = True  # off for the baseline variants: trusted reference code, and recompiles cost
    build_dir: str | None = None  # where C++ solutions are compiled, one directory per content (None: a temp dir)


def child_environment(device: str) -> dict[str, str]:
    """The child's environment: this process's, plus Triton's interpreter on CPU (Triton has no CPU
    driver; the interpreter must be chosen before triton is imported, so the child gets it at birth).
    The interpreter multiplies every tile with numpy: OpenBLAS's thread pool, spinning against torch's
    threads on a small machine, made a 128x64x128 tile product take 50-150 ms instead of 0.03 ms, so
    the child's OpenBLAS gets one thread (results do not change: the pool splits rows, not sums)."""
    environment = dict(os.environ)
    if not device.startswith("cuda"):
        environment["TRITON_INTERPRET"] = "1"
        environment.setdefault("OPENBLAS_NUM_THREADS", "1")
    return environment


def select_workloads(problem: Problem, max_workloads: int | None) -> list[Workload]:
    """All workloads in file order, or the N smallest by input elements (quick checks, CPU runs)."""
    if not max_workloads:
        return list(problem.workloads)
    chosen = {w.uuid for w in sorted(problem.workloads, key=problem.workload_size)[:max_workloads]}
    return [w for w in problem.workloads if w.uuid in chosen]


def evaluate(problem: Problem, solution: Solution, config: EvalConfig, *, environment: dict | None = None,
             baseline_ms: dict[str, float] | None = None, sol_ms: dict[str, float] | None = None) -> list[Trace]:
    """One trace per selected workload, in workload order."""
    workloads = select_workloads(problem, config.max_workloads)
    outcomes: dict[str, dict] = {}
    findings = scan_solution(solution, problem)
    if findings:
        log = "; ".join(f"{f.rule}: {f.evidence}" for f in findings)
        for w in workloads:
            outcomes[w.uuid] = {"status": statuses.REWARD_HACK, "log": log,
                                "findings": [{"rule": f.rule, "evidence": f.evidence} for f in findings]}
    else:
        request = {"problem_dir": str(problem.directory), "solution": solution.to_json(), "device": config.device,
                   "rounds": config.rounds, "timing": config.timing, "seed": config.seed,
                   "data_root": config.data_root, "shape_probe": config.shape_probe,
                   "build_dir": config.build_dir}
        run_items("kernelbench.eval.worker", request, [w.uuid for w in workloads], build_timeout_s=config.build_timeout_s,
                  item_timeout_s=config.workload_timeout_s, on_result=lambda uuid, r: outcomes.__setitem__(uuid, r),
                  env=child_environment(config.device))
        if config.shape_probe and all(o["status"] == statuses.PASSED for o in outcomes.values()):
            _apply_shape_probe(request, config, outcomes)
    return [make_trace(problem, solution, w, outcomes[w.uuid], config.device, environment,
                       (baseline_ms or {}).get(w.uuid), (sol_ms or {}).get(w.uuid)) for w in workloads]


def _apply_shape_probe(request: dict, config: EvalConfig, outcomes: dict[str, dict]) -> None:
    """Run the worker's shape probe in its own child; a failure there flags every workload."""
    probe: dict = {}
    run_items("kernelbench.eval.worker", request, [SHAPE_PROBE], build_timeout_s=config.build_timeout_s,
              item_timeout_s=config.workload_timeout_s, on_result=lambda _, r: probe.update(r),
              env=child_environment(config.device))
    finding = shape_probe_finding(probe)
    if finding is None:
        return  # passed, no legal untested shape, or the reference itself does not take that shape
    for outcome in outcomes.values():
        outcome["status"] = statuses.REWARD_HACK
        outcome["log"] = str(finding)
        outcome.setdefault("findings", []).append(finding.to_json())


def make_trace(problem: Problem, solution: Solution, workload: Workload, outcome: dict, device: str,
               environment: dict | None, baseline_ms: float | None, sol_ms: float | None) -> Trace:
    status, log = outcome["status"], outcome.get("log", "")
    timing = outcome.get("timing") or {}
    latency = timing.get("median_ms") if status == statuses.PASSED else None
    below = check_below_sol(latency, sol_ms) if device.startswith("cuda") else None  # CPU clocks have no T_SOL
    findings = list(outcome.get("findings", []))
    if below:
        status, log = statuses.REWARD_HACK, str(below)
        findings.append(below.to_json())
    performance = None
    if latency is not None:
        performance = Performance(latency_ms=latency, reference_latency_ms=baseline_ms,
                                  speedup_factor=(baseline_ms / latency) if baseline_ms and latency else None,
                                  sol_latency_ms=sol_ms, clock="cuda" if device.startswith("cuda") else "cpu",
                                  timing=Timing(**timing))
    return Trace(definition=problem.name, solution=solution.name, workload=TracedWorkload.of(workload),
                 evaluation=Evaluation(status=status, log=log, correctness=outcome.get("correctness"),
                                       performance=performance, environment=Environment(**(environment or {})),
                                       audit=findings,
                                       timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat()))
