"""benchmarks/tasks235_summary.py on a small sweep CSV written here (the real one comes from a GPU)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from tasks235_sweep import COLUMNS  # noqa: E402


def write_sweep(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"hardware": "H200", "axes": "{}", "uuid": row["task"] + str(row.get("t_b_ms")), **row})
    return path


def run_summary(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tasks235_summary.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_quantiles_per_subset_and_a_plot(tmp_path):
    rows = [{"subset": "L1", "task": "a", "status": "ok", "t_b_ms": t_b, "t_sol_ms": 1.0} for t_b in (2.0, 4.0, 8.0)]
    rows += [{"subset": "L2", "task": "b", "status": "ok", "t_b_ms": 10.0, "t_sol_ms": 1.0, "t_sol_measured_ms": 5.0},
             {"subset": "L2", "task": "c", "status": "error", "error": "OutOfMemoryError: boom", "t_sol_ms": 1.0}]
    result = run_summary(write_sweep(tmp_path / "sweep.csv", rows), "--plot", tmp_path / "plot.png")
    assert result.returncode == 0, result.stderr
    lines = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| L")}
    # L1: T_SOL / T_b = 0.5, 0.25, 0.125 -> median 0.25; L2: the measured T_SOL (5 ms) is used -> 0.5
    assert "| 0.125 |" in lines["L1"] and "| 0.25 |" in lines["L1"] and "| 0.5 |" in lines["L1"]
    assert lines["L2"].split("|")[4].strip() == "1"          # one error
    assert "OutOfMemoryError: boom" in result.stdout
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_a_time_below_t_sol_fails_the_summary(tmp_path):
    rows = [{"subset": "Quant", "task": "q", "status": "BELOW_T_SOL", "t_b_ms": 0.5, "t_sol_ms": 1.0}]
    result = run_summary(write_sweep(tmp_path / "sweep.csv", rows))
    assert result.returncode == 1
    assert "Quant/q {}: T_b 0.5 ms < T_SOL 1 ms" in result.stdout
