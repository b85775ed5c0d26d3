"""What a benchmark run writes: a header (device, versions, date) and its rows, saved the moment each is measured.

    report = Report(args.out, "family_gemm", "gemm family", args.dry_run)
    report.add(row)               # printed (truncated); OUT/family_gemm.json rewritten with every row so far
    report.finish(markdown_text)  # OUT/family_gemm.md written and printed

OUT/<name>.json is {"header": {...}, "rows": [...]}, rewritten whole (through a temporary file and a rename) at
the start and after every row: a run cut off by its time limit (gpu_checks.sh runs each under `timeout`) keeps
everything it measured, and the file is never half-written. The header's "seconds" is the time since the start,
as of the last write. Scripts import this as `from report import ...`: `python3 benchmarks/x.py` puts
benchmarks/ first on sys.path. Import it after setting TRITON_INTERPRET, as it imports triton.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import triton
import triton.testing


def number(value, form: str) -> str:
    """A table cell: the value in `form`, or "-" when it was not measured."""
    return format(value, form) if value is not None else "-"


def times(ratio: float | None) -> str:
    """A speedup cell: "1.23x", or "-" when it was not measured."""
    return number(ratio, ".2f") + ("x" if ratio is not None else "")


def ours_cell(row: dict, untimed: str = "checked, not timed") -> str:
    """A table's "ours (ms)": the best configuration's time; else why there is none: the failing configurations'
    errors, or `untimed` (a dry run)."""
    if row.get("ours_ms"):
        return number(row["ours_ms"], ".4f")
    if row.get("errors"):
        return "failed: " + "; ".join(row["errors"].values())[:60]
    return untimed


def keep_fastest(row: dict) -> float | None:
    """The fastest of row["ours"] (configuration -> ms, None: not timed) kept as row's best_config and ours_ms;
    returns its ms, or None when no configuration was timed."""
    timed = {c: t for c, t in row["ours"].items() if t is not None}
    if not timed:
        return None
    best = min(timed, key=timed.get)
    row.update(best_config=best, ours_ms=timed[best])
    return timed[best]


def arguments(doc: str, configs: int, budget_s: float, no_compile: bool = True) -> argparse.ArgumentParser:
    """The options the product families' scripts share: OUT, --configs (of the space, per shape), --budget-s,
    --no-compile, --dry-run (CPU: every render checked through the interpreter, nothing timed)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--configs", type=int, default=configs)
    parser.add_argument("--budget-s", type=float, default=budget_s, help="no torch.compile starts after this long")
    if no_compile:
        parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    return parser


def shapes_main(doc: str, name: str, title: str, measure, markdown) -> int:
    """A shape benchmark's main: the shared options and --only (repeatable: shapes whose label contains it);
    measure(args, report) adds the rows, markdown(heading, rows) the table. Exit status 1 when a shape had no
    passing configuration."""
    parser = arguments(doc, configs=3, budget_s=200.0)
    parser.add_argument("--only", action="append", default=[], help="the shapes whose label contains this (repeatable)")
    args = parser.parse_args()
    report = Report(args.out, name, title, args.dry_run)
    measure(args, report)
    report.finish(markdown(report.heading, report.rows))
    return 1 if any(not r["ours"] for r in report.rows) else 0


def bench_ms(fn, dry_run: bool) -> float | None:
    """triton.testing.do_bench's time in ms; None in a dry run (the interpreter's time means nothing)."""
    return None if dry_run else triton.testing.do_bench(fn, warmup=25, rep=100)


class Report:
    def __init__(self, out_dir: Path, name: str, title: str, dry_run: bool, **extra):
        """`extra`: more header entries (e.g. a peer library's version)."""
        self.out_dir, self.name, self.rows = Path(out_dir), name, []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        on_gpu = not dry_run and torch.cuda.is_available()
        self.header = {"title": title,
                       "device": torch.cuda.get_device_name() if on_gpu else "CPU dry run: checked, not timed",
                       "torch": torch.__version__, "triton": triton.__version__, "date": time.strftime("%Y-%m-%d"),
                       "seconds": 0.0, "dry_run": dry_run, **extra}
        self._save()

    @property
    def heading(self) -> str:
        """The markdown's first line."""
        h = self.header
        return f"# {h['title']}, {h['date']}, {h['device']}, torch {h['torch']}, triton {h['triton']}"

    def add(self, row: dict) -> None:
        self.rows.append(row)
        print(json.dumps(row, default=str)[:400], flush=True)
        self._save()

    def finish(self, markdown: str) -> None:
        self._save()
        (self.out_dir / f"{self.name}.md").write_text(markdown)
        print(markdown, flush=True)

    def _save(self) -> None:
        self.header["seconds"] = round(time.monotonic() - self.started, 1)
        path = self.out_dir / f"{self.name}.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps({"header": self.header, "rows": self.rows}, indent=1, default=str) + "\n")
        os.replace(partial, path)   # atomic: a kill mid-write leaves the previous file
