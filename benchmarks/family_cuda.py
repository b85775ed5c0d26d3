"""CUDA C++ on a GPU, for the official sample L1/069_rms_norm, through the full evaluator: the cuda_cpp example
solution (examples/, built with torch.utils.cpp_extension) and the `cuda` family's NVRTC kernel (each of its
configurations), beside the eager reference (T_b's eager variant), torch.compile and the rowwise family's Triton.

    PYTHONPATH=. python3 benchmarks/family_cuda.py OUT_DIR [--sample-root DIR] [--workloads N]
    PYTHONPATH=. python3 benchmarks/family_cuda.py OUT_DIR --dry-run     # CPU: spec, audit, nvcc sm_90 compile

On a GPU every solution goes through kernelbench.eval.evaluator.evaluate (fresh child, build, correctness
rounds, audit, cold-L2 timing): the cuda_cpp solution is compiled there with torch.utils.cpp_extension, once
per content hash, into OUT_DIR/cpp_extensions (its build time is reported from the first evaluation). Writes
OUT_DIR/family_cuda.json: per solution and workload, status, latency_ms and the log of any failure.
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


def dry_run(problem, out: Path) -> dict:
    solution = load_solution(EXAMPLE)
    report = {"dry_run": True, "findings": [f.rule for f in scan_solution(solution, problem)]}
    nvcc = shutil.which("nvcc")
    if nvcc:
        source_dir = materialize(solution, out / "src")
        started = time.perf_counter()
        done = subprocess.run([nvcc, "-arch=sm_90", "-O3", "--use_fast_math", "-c", str(source_dir / "kernel.cu"),
                               "-o", str(out / "kernel.o")], capture_output=True, text=True)
        report["nvcc_sm90"] = {"ok": done.returncode == 0, "seconds": round(time.perf_counter() - started, 1),
                               "log": done.stderr[-2000:]}
    report["solutions"] = sorted(candidates(problem))
    plan, why = plan_of(problem)   # the cuda family's CPU half; on a GPU it renders and runs
    report["cuda_family_plan"] = plan or why
    if plan:
        cuda_source = render_solution(problem.name, plan, {"threads": 1024}, "dry run").sources[0].content
        report["cuda_family_source_lines"] = cuda_source.count("\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sample-root", type=Path, default=ROOT.parent / "shared" / "sol_execbench_sample")
    parser.add_argument("--workloads", type=int, default=None, help="the N smallest workloads (default: all)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    problem = load_problem(args.sample_root / "L1" / "069_rms_norm")
    if args.dry_run:
        report = dry_run(problem, args.out)
    else:
        config = EvalConfig(device="cuda", max_workloads=args.workloads, build_dir=str(args.out / "cpp_extensions"))
        report = {"dry_run": False, "results": {}}
        for name, solution in candidates(problem).items():
            started = time.perf_counter()
            traces = evaluate(problem, solution, config)
            report["results"][name] = {
                "seconds": round(time.perf_counter() - started, 1),
                "workloads": {t.workload.uuid: {"axes": t.workload.axes, "status": str(t.evaluation.status),
                                                "latency_ms": t.evaluation.performance.latency_ms
                                                if t.evaluation.performance else None,
                                                "log": (t.evaluation.log or "")[-1500:]} for t in traces}}
            statuses = [w["status"] for w in report["results"][name]["workloads"].values()]
            print(f"{name}: {statuses.count('PASSED')}/{len(statuses)} passed in {report['results'][name]['seconds']} s",
                  flush=True)
        for uuid in next(iter(report["results"].values()))["workloads"]:
            row = {name: r["workloads"][uuid]["latency_ms"] for name, r in report["results"].items()}
            print(uuid[:8], {k: (round(v * 1000, 1) if v else None) for k, v in row.items()}, "us", flush=True)
    (args.out / "family_cuda.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out / 'family_cuda.json'}")


if __name__ == "__main__":
    main()
