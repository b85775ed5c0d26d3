"""CUDA C++ on a GPU, for the official sample L1/069_rms_norm, through the full evaluator: the cuda_cpp example
solution (examples/, built with torch.utils.cpp_extension) and the `cuda` family's NVRTC kernel (each of its
configurations), beside the eager reference (T_b's eager variant), torch.compile and the rowwise family's Triton.

    PYTHONPATH=. python3 benchmarks/family_cuda.py OUT_DIR [--sample-root DIR] [--workloads N]
    PYTHONPATH=. python3 benchmarks/family_cuda.py OUT_DIR --dry-run     # CPU: spec, audit, nvcc sm_90 compile

On a GPU every solution goes through kernelbench.eval.evaluator.evaluate (fresh child, build, correctness
rounds, audit, cold-L2 timing): the cuda_cpp solution is compiled there with torch.utils.cpp_extension, once
per content hash, into OUT_DIR/cpp_extensions (its build time is reported from the first evaluation). Writes
OUT_DIR/family_cuda.json (one row per solution: per workload, status, latency_ms and the log of any failure; in a
dry run one row per check) and OUT_DIR/family_cuda.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

from audit.static import scan_solution
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import load_solution, materialize, reference_solution
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.families.cuda import plan_of, render_solution
from kernelbench.generate.family import FAMILIES
import kernelbench.generate.families  # noqa: F401  (registers the families)
from report import Report, number

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "069_rms_norm_cuda_cpp" / "solution.json"


def candidates(problem) -> dict:
    """name -> solution: ours (cuda_cpp; the cuda family's configurations for the largest workload), the rowwise
    family's Triton (its first configuration), the references."""
    found = {"cuda_cpp example": load_solution(EXAMPLE)}
    axes = problem.axes_for(max(problem.workloads, key=problem.workload_size))
    for name in ("cuda", "rowwise"):
        family = FAMILIES[name]
        match = family.match(problem)
        if match is None:
            print(f"{name} does not match: {family.last_rejection}", flush=True)
            continue
        configs = family.space(match, axes) if name == "cuda" else family.space(match, axes)[:1]
        for config in configs:
            found[f"{name} family {json.dumps(config, sort_keys=True)}"] = family.render(match, config)
    source = problem.definition.reference
    found["eager reference"] = reference_solution(problem.definition.name, source)
    found["torch.compile reference"] = reference_solution(problem.definition.name, source, compiled="default")
    return found


def dry_run(problem, out: Path, report: Report) -> None:
    """One row per check: the example's audit findings, its nvcc sm_90 compile, the solutions a GPU run would
    evaluate, the cuda family's plan."""
    solution = load_solution(EXAMPLE)
    report.add({"check": "audit findings", "findings": [f.rule for f in scan_solution(solution, problem)]})
    nvcc = shutil.which("nvcc")
    if nvcc:
        source_dir = materialize(solution, out / "src")
        started = time.perf_counter()
        done = subprocess.run([nvcc, "-arch=sm_90", "-O3", "--use_fast_math", "-c", str(source_dir / "kernel.cu"),
                               "-o", str(out / "kernel.o")], capture_output=True, text=True)
        report.add({"check": "nvcc sm_90", "ok": done.returncode == 0,
                    "seconds": round(time.perf_counter() - started, 1), "log": done.stderr[-2000:]})
    report.add({"check": "solutions", "names": sorted(candidates(problem))})
    plan, why = plan_of(problem)   # the cuda family's CPU half; on a GPU it renders and runs
    row = {"check": "cuda family plan", "plan": plan or why}
    if plan:
        cuda_source = render_solution(problem.name, plan, {"threads": 1024}, "dry run").sources[0].content
        row["source_lines"] = cuda_source.count("\n")
    report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    """A dry run's checks; else each solution's passed workloads, then the latency of each (µs) per workload."""
    lines = [header, ""]
    if rows and "check" in rows[0]:
        lines += ["| check | result |", "|---|---|"]
        lines += [f"| {r['check']} | {json.dumps({k: v for k, v in r.items() if k != 'check'})[:300]} |"
                  for r in rows]
        return "\n".join(lines) + "\n"
    lines += ["| solution | passed | seconds |", "|---|---|---|"]
    for r in rows:
        statuses = [w["status"] for w in r["workloads"].values()]
        lines.append(f"| {r['solution']} | {statuses.count('PASSED')}/{len(statuses)} | {r['seconds']} |")
    if rows:
        lines += ["", "| workload | " + " | ".join(r["solution"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
        for uuid in rows[0]["workloads"]:
            latencies = [r["workloads"].get(uuid, {}).get("latency_ms") for r in rows]
            lines.append(f"| {uuid[:8]} | " + " | ".join(number(t and t * 1e3, ".1f") for t in latencies) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sample-root", type=Path, default=ROOT.parent / "shared" / "sol_execbench_sample")
    parser.add_argument("--workloads", type=int, default=None, help="the N smallest workloads (default: all)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    report = Report(args.out, "family_cuda", "cuda family and the cuda_cpp example", args.dry_run)
    problem = load_problem(args.sample_root / "L1" / "069_rms_norm")
    if args.dry_run:
        dry_run(problem, args.out, report)
    else:
        config = EvalConfig(device="cuda", max_workloads=args.workloads, build_dir=str(args.out / "cpp_extensions"))
        for name, solution in candidates(problem).items():
            started = time.perf_counter()
            traces = evaluate(problem, solution, config)
            report.add({
                "solution": name, "seconds": round(time.perf_counter() - started, 1),
                "workloads": {t.workload.uuid: {"axes": t.workload.axes, "status": str(t.evaluation.status),
                                                "latency_ms": t.evaluation.performance.latency_ms
                                                if t.evaluation.performance else None,
                                                "log": (t.evaluation.log or "")[-1500:]} for t in traces}})
    report.finish(markdown(report.heading, report.rows))


if __name__ == "__main__":
    main()
