"""Summarize a tasks235_sweep.py CSV: soundness and the T_SOL / T_b distribution per subset.

    python benchmarks/tasks235_summary.py benchmarks/results/tasks235_baseline.csv [--plot FILE.png]

Writes Markdown to stdout (or --out): per subset, how many workloads ran, failed, or were
timed below T_SOL (impossible under a sound bound), and the quantiles of T_SOL / T_b, the
fraction of the speed of light the PyTorch baseline reaches (1 = at the bound). T_SOL is the
measured profile's where the sweep had one, else the datasheet's. --plot draws one strip of
points per subset on a log axis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


def load(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["t_sol_used_ms"] = frame["t_sol_measured_ms"].fillna(frame["t_sol_ms"])
    frame["sol_fraction"] = frame["t_sol_used_ms"] / frame["t_b_ms"]
    return frame


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for subset, group in frame.groupby("subset", sort=True):
        timed = group.dropna(subset=["sol_fraction"])
        quantiles = timed["sol_fraction"].quantile(list(QUANTILES)) if len(timed) else pd.Series(dtype=float)
        rows.append({
            "subset": subset, "tasks": group["task"].nunique(), "workloads": len(group),
            "errors": int((group["status"] == "error").sum()),
            "below T_SOL": int((group["status"] == "BELOW_T_SOL").sum()),
            **{f"T_SOL/T_b q{int(q * 100)}": quantiles.get(q) for q in QUANTILES},
        })
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, source: Path) -> str:
    table = summary_table(frame)
    hardware = ", ".join(sorted(frame["hardware"].dropna().unique()))
    lines = [f"# tasks235 baseline sweep: {source.name}", "",
             f"hardware: {hardware}; {len(frame)} workloads of {frame['task'].nunique()} tasks", "",
             "T_SOL / T_b: the fraction of the speed of light that the best of PyTorch eager and "
             "torch.compile reaches (q0 = min, q50 = median). A workload timed below T_SOL would "
             "disprove the bound's soundness.", "",
             "| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    below = frame[frame["status"] == "BELOW_T_SOL"]
    if len(below):
        lines += ["", "Timed below T_SOL:", ""]
        lines += [f"- {r.subset}/{r.task} {r.axes}: T_b {r.t_b_ms:.4g} ms < T_SOL {r.t_sol_used_ms:.4g} ms"
                  for r in below.itertuples()]
    errors = frame[frame["status"] == "error"]
    if len(errors):
        lines += ["", "Errors:", ""]
        lines += [f"- {r.subset}/{r.task} {r.axes}: {r.error}" for r in errors.itertuples()]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.3g}"
    return str(value)


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets = sorted(frame["subset"].unique())
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, subset in enumerate(subsets):
        values = frame.loc[frame["subset"] == subset, "sol_fraction"].dropna()
        jitter = (pd.Series(range(len(values))) % 7 - 3) * 0.04
        ax.scatter(i + jitter, values, s=8, alpha=0.6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_ylabel("T_SOL / T_b (1 = baseline at the speed of light)")
    ax.set_title("tasks235: how far the PyTorch baseline is from SOL")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of T_SOL / T_b per subset")
    args = parser.parse_args()
    frame = load(args.csv)
    text = markdown(frame, args.csv)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    if args.plot:
        plot(frame, args.plot)
    return 1 if (frame["status"] == "BELOW_T_SOL").any() else 0


if __name__ == "__main__":
    raise SystemExit(main())
