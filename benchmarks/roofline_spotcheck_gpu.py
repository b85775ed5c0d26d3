"""Soundness spot-check on a GPU (quick, no store needed; the store-based report is roofline_soundness.py): no measured time of the PyTorch reference may beat our T_SOL.

    python benchmarks/roofline_spotcheck_gpu.py [--tasks N] [--workloads K] [--out FILE] [--calibrate]

With --calibrate it first measures this GPU (roofline.calibrate) and saves the profile beside
the report. Then, for the sample problems and the first N tasks of every tasks235 subset, it
times the reference (eager, the evaluator's timer: fresh inputs, L2 flushed, median of 10) on
up to K workloads and compares with T_SOL from the datasheet and the measured profile.
A measured time below T_SOL would make the bound unsound: the report lists every such case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kernelbench.core.emulation import reference_context  # noqa: E402
from kernelbench.core.inputs import generate_inputs, missing_blobs  # noqa: E402
from kernelbench.core.problem import find_problem_dirs, load_problem  # noqa: E402
from kernelbench.core.reference import compile_reference  # noqa: E402
from kernelbench.eval.timing import TimingConfig, time_callable  # noqa: E402
from roofline import load_profile, sol_for_workload  # noqa: E402
from roofline.hardware import canonical_name  # noqa: E402


def pick_problems(tasks_per_subset: int) -> list[Path]:
    samples = next((p for p in (ROOT.parent / "shared" / "sol_execbench_sample", ROOT / ".shared_sample")
                    if p.is_dir()), None)                 # .shared_sample: a copy carried to a lent GPU
    dirs = find_problem_dirs(samples) if samples else []
    by_subset: dict[str, list[Path]] = {}
    for d in find_problem_dirs(ROOT / "tasks235"):
        by_subset.setdefault(d.parent.name, []).append(d)
    for subset in sorted(by_subset):
        step = max(1, len(by_subset[subset]) // max(tasks_per_subset, 1))
        dirs += by_subset[subset][::step][:tasks_per_subset]
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=8, help="tasks235 problems per subset")
    parser.add_argument("--workloads", type=int, default=3, help="workloads per problem (smallest, middle, largest)")
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".md")))
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds of timing before stopping")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script's path (times mean nothing)")
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run; H200 datasheet)"
    name = canonical_name(gpu) if args.device == "cuda" else "H200"
    lines = [f"# Soundness spot-check on {gpu}", ""]
    measured = None
    if args.calibrate:
        from roofline.calibrate import calibrate
        measured, raw, path = calibrate(str(Path(args.out).with_name(f"roofline_calibration_{name}.json")))
        lines += [f"Calibrated profile `{measured.profile_id}` saved to `{Path(path).name}`:", "", "```",
                  json.dumps({k: v for k, v in raw.items()}, indent=1), "```", ""]
    datasheet = load_profile(name, "datasheet")
    rows, violations, started = [], [], time.time()
    for directory in pick_problems(args.tasks):
        if time.time() - started > args.budget:
            lines.append(f"(stopped at the {args.budget:.0f} s budget)")
            break
        try:
            problem = load_problem(directory)
            if missing_blobs(problem):
                continue
            module = compile_reference(problem.definition)
            ordered = sorted(problem.workloads, key=lambda w: sum(problem.axes_for(w).values()))
            picks = {id(w): w for w in (ordered[0], ordered[len(ordered) // 2], ordered[-1])[:args.workloads]}
            for workload in picks.values():
                index = problem.workloads.index(workload)
                inputs = generate_inputs(problem, workload, device=args.device, seed=1, reference_module=module)
                with reference_context(args.device), torch.no_grad():
                    result = time_callable(module.run, inputs, args.device, TimingConfig(warmup=3, iterations=10))
                t_ms = result.median_ms if hasattr(result, "median_ms") else sorted(result.samples_ms)[len(result.samples_ms) // 2]
                sheet = sol_for_workload(problem, workload, datasheet, index=index, module=module)
                meas = sol_for_workload(problem, workload, measured, index=index, module=module) if measured else None
                row = (f"{problem.subset}/{problem.name}", index, t_ms * 1e-3, sheet.t_sol_s,
                       meas.t_sol_s if meas else None, sheet.binding)
                rows.append(row)
                if sheet.t_sol_s is None:
                    continue
                if t_ms * 1e-3 < sheet.t_sol_s or (meas and meas.t_sol_s and t_ms * 1e-3 < meas.t_sol_s):
                    violations.append(row)
                del inputs
                if args.device == "cuda":
                    torch.cuda.empty_cache()
        except Exception as exc:  # an unsupported reference on this GPU (FP4 on Hopper, OOM) is skipped
            rows.append((f"{directory.parent.name}/{directory.name}", -1, None, None, None,
                         f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"))
            if args.device == "cuda":
                torch.cuda.empty_cache()
    timed = [r for r in rows if r[2] is not None]
    lines += [f"Profiles: `{datasheet.profile_id}`" + (f", `{measured.profile_id}`" if measured else ""),
              f"{len(timed)} workloads timed (eager PyTorch reference, kernelbench.eval.timing: L2 flushed, fresh inputs,",
              f"median of 10); {len(violations)} below a T_SOL.", "",
              "| problem | # | measured us | T_SOL datasheet us | T_SOL measured us | measured / T_SOL(meas.) | bound |",
              "|---|---|---|---|---|---|---|"]
    for problem, index, t, sheet, meas, binding in rows:
        if t is None:
            lines.append(f"| {problem} | | | | | | {binding} |")
            continue
        ratio = t / (meas or sheet)
        lines.append(f"| {problem} | {index} | {t * 1e6:.2f} | {sheet * 1e6:.2f} | "
                     f"{'-' if meas is None else f'{meas * 1e6:.2f}'} | {ratio:.2f} | {binding} |")
    if violations:
        lines += ["", "## Violations (measured below T_SOL)", ""] + [f"- {v}" for v in violations]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-12:]))
    print(f"wrote {args.out}; {len(violations)} violations; {time.time() - started:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        raise
