"""GPU measurement of the training benchmarks' reference candidates on the shipped corpus.

    python benchmarks/train_reference.py --budget 60 --seeds 3 --speedrun-budget 60 --speedrun-seeds 2

1. fixed-budget: the reference trains for --budget seconds, --seeds times (fresh random seeds);
   val bits per byte: mean and sample std.
2. speedrun: one calibration run of the speedrun reference (target unreachable, a checkpoint every
   tenth of --speedrun-budget) picks the target as the validation loss it had at 60% of the budget;
   then --speedrun-seeds runs race to that target: time to target, mean and std. --target-loss
   skips the calibration.
3. the harness's own overhead per run: wall time not spent training (child start-up, evaluation
   and its probe process, checkpoint pauses), by phase.

Writes train_reference.json (every run in full) and train_reference.md (the table) under $OUT (or
--out), after every run, so a run cut short still leaves what it measured. Runs the harness
directly (no `kb`, no store): needs torch and numpy only. The shipped corpus is ~0.5M tokens, so
minutes of H100 training are many epochs; the numbers measure the benchmark machinery and the
reference on this corpus, not FineWeb (--data DIR for real shards).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.candidate import Candidate  # noqa: E402
from trainers.datasets import SHIPPED, open_dataset  # noqa: E402
from trainers.harness import FIXED_BUDGET, SPEEDRUN, RunConfig, run_training  # noqa: E402

REFERENCES = Path(__file__).resolve().parents[1] / "trainers" / "references"
CALIBRATION_POINT = 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0, help="fixed-budget seconds (autoresearch: 300)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--speedrun-budget", type=float, default=120.0, help="speedrun limit; calibration horizon")
    parser.add_argument("--speedrun-seeds", type=int, default=3)
    parser.add_argument("--target-loss", type=float, default=None, help="skip the calibration run")
    parser.add_argument("--skip-fixed-budget", action="store_true")
    parser.add_argument("--skip-speedrun", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=SHIPPED)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="torch.compile the fixed-budget reference's training step "
                        "(compile time is on the clock; not for the speedrun, whose pauses would count the compile "
                        "workers' CPU as work outside the clock)")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE for the references' ctx.params")
    parser.add_argument("--no-os-isolation", action="store_true", help="skip Landlock (if the kernel misbehaves)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = {k: json.loads(v) for k, _, v in (p.partition("=") for p in args.param)}
    if args.compile:
        params["compile"] = 1
    dataset = open_dataset(args.data, cache_dir=out / "cache")
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "environment": environment(args.device),
              "args": vars(args), "fixed_budget": [], "speedrun_calibration": None, "speedrun": []}
    base = dict(device=args.device, seq_len=args.seq_len, params=params, os_isolation=not args.no_os_isolation)

    if not args.skip_fixed_budget:
        candidate = Candidate.read(REFERENCES / "fixed_budget_gpt.py")
        for index in range(args.seeds):
            result = run_training(candidate, dataset, RunConfig(benchmark=FIXED_BUDGET, budget_s=args.budget,
                                                                seed=1000 + index, **base))
            report["fixed_budget"].append(result.to_json())
            log(f"fixed-budget seed {result.seed}: {result.summary()}; {overhead_text(result.overhead_s)}")
            write(out, report)

    if not args.skip_speedrun:
        candidate = Candidate.read(REFERENCES / "speedrun_gpt.py")
        speedrun = dict(benchmark=SPEEDRUN, budget_s=args.speedrun_budget, eval_every_s=args.speedrun_budget / 10,
                        **{**base, "params": {"horizon_s": args.speedrun_budget,
                                              **{k: v for k, v in params.items() if k != "compile"}}})
        target = args.target_loss
        if target is None:
            calibration = run_training(candidate, dataset, RunConfig(target_loss=-math.inf, seed=999, **speedrun))
            report["speedrun_calibration"] = calibration.to_json()
            target = calibrate(calibration.checkpoints, args.speedrun_budget)
            log(f"speedrun calibration: {len(calibration.checkpoints)} checkpoints, target loss {target}")
        report["target_loss"] = target
        for index in range(args.speedrun_seeds if target is not None else 0):
            result = run_training(candidate, dataset, RunConfig(target_loss=target, seed=2000 + index, **speedrun))
            report["speedrun"].append(result.to_json())
            log(f"speedrun seed {result.seed}: {result.summary()}; {overhead_text(result.overhead_s)}")
            write(out, report)
    write(out, report)


def calibrate(checkpoints: list[dict], budget: float) -> float | None:
    """The validation loss at the checkpoint nearest CALIBRATION_POINT of the budget, rounded up."""
    usable = [c for c in checkpoints if c.get("val_loss") is not None and c.get("train_s") is not None]
    if not usable:
        return None
    point = min(usable, key=lambda c: abs(c["train_s"] - CALIBRATION_POINT * budget))
    return math.ceil(point["val_loss"] * 100) / 100


def summary(values: list[float]) -> dict:
    n = len(values)
    if not n:
        return {"n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": mean, "std": std}


def overhead_text(overhead: dict) -> str:
    return "harness time " + ", ".join(f"{k} {v:.1f} s" for k, v in overhead.items())


def write(out: Path, report: dict) -> None:
    fixed = [r["val_bpb"] for r in report["fixed_budget"] if r["status"] == "PASSED" and r["val_bpb"] is not None]
    times = [r["time_to_target_s"] for r in report["speedrun"] if r["time_to_target_s"] is not None]
    runs = report["fixed_budget"] + report["speedrun"]
    report["summary"] = {
        "fixed_budget_val_bpb": summary(fixed),
        "speedrun_time_to_target_s": summary(times),
        "speedrun_reached": f"{len(times)} of {len(report['speedrun'])}",
        "overhead_s": {phase: summary([r["overhead_s"].get(phase, 0.0) for r in runs])
                       for phase in ("startup", "evaluation", "eval_pauses", "not_training", "total_wall")},
        "statuses": sorted({r["status"] for r in runs}),
        "findings": sorted({f["rule"] for r in runs for f in r["findings"]}),
    }
    (out / "train_reference.json").write_text(json.dumps(report, indent=1, default=str))
    s = report["summary"]
    lines = [f"# Training benchmarks: reference candidates ({report['environment']['device_name']}, {report['date'][:10]})", "",
             f"torch {report['environment']['torch']}, Python {report['environment']['python']}, "
             f"isolation {', '.join(sorted({r['isolation'] for r in runs})) or '-'}", "",
             "| measurement | n | mean | std |", "| --- | --- | --- | --- |"]
    for name, stats in (("fixed-budget val bpb", s["fixed_budget_val_bpb"]),
                        ("speedrun time to target (s)", s["speedrun_time_to_target_s"]),
                        *((f"harness overhead: {k} (s)", v) for k, v in s["overhead_s"].items())):
        if stats.get("n"):
            lines.append(f"| {name} | {stats['n']} | {stats['mean']:.4f} | {stats['std']:.4f} |")
    lines += ["", f"budget {report['args']['budget']} s; speedrun limit {report['args']['speedrun_budget']} s, "
                  f"target loss {report.get('target_loss')}, reached {s['speedrun_reached']}; "
                  f"statuses {s['statuses']}; findings {s['findings'] or 'none'}"]
    (out / "train_reference.md").write_text("\n".join(lines) + "\n")


def environment(device: str) -> dict:
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {"device": device, "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}


def log(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    main()
