"""Export a store's leaderboard as official files, import them into a fresh store, compare the leaderboards.

Run it on the store of a GPU batch (benchmarks/gpu_checks.sh batch leaves $OUT/kb_batch.db), so the
GPU path (T_SOL, roofline profile, CUDA clock) goes through `kb export` / `kb import` once:

    python3 benchmarks/exchange_round_trip.py --db kb_batch.db --out $OUT/exchange

Writes OUT/export/<hardware>/<subset>/<task>/{solution.json, traces.jsonl, summary.json} (official
files, ready to commit under benchmarks/results/ and to `kb import` anywhere) and OUT/round_trip.json:
rows exported, official-rule violations (0 expected) and whether both leaderboards are identical.
CPU only; seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kernelbench.core.store import Store
from kernelbench.jobs import leaderboard
from kernelbench.jobs.exchange import export_results, import_results, solution_violations, trace_violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path, help="The store to export.")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = Store(args.db, read_only=True)
    exported = export_results(source, args.out / "export")
    violations = []
    for directory in exported.written:
        violations += solution_violations(json.loads((directory / "solution.json").read_text()))
        for line in (directory / "traces.jsonl").read_text().splitlines():
            violations += trace_violations(json.loads(line))
    fresh = Store(args.out / "imported.db")
    imported = import_results(fresh, args.out / "export")
    before, after = leaderboard.task_table(source), leaderboard.task_table(fresh)
    shown = before["task"].isin(after["task"])   # rows that could not be exported are listed in not_exported
    report = {"rows": len(before), "exported": len(exported.written), "not_exported": exported.skipped,
              "official_rule_violations": violations, "imported": len(imported.imported),
              "import_warnings": imported.warnings, "not_imported": imported.skipped,
              "identical_leaderboard": before[shown].reset_index(drop=True).equals(after.reset_index(drop=True)),
              "tasks": after[["task", "hardware", "sol_score", "geomean_t_sol_ms", "roofline_profile"]].to_dict("records")}
    (args.out / "round_trip.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "tasks"}, indent=2, default=str))
    return 0 if report["identical_leaderboard"] and not violations else 1


if __name__ == "__main__":
    sys.exit(main())
