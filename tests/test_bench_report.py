"""benchmarks/report.py: every row is on disk the moment it is added (a benchmark killed by its time limit keeps
what it measured), the header names the run, the markdown comes at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from report import Report, arguments, bench_ms, keep_fastest, number, ours_cell  # noqa: E402


def saved(path: Path) -> dict:
    return json.loads(path.read_text())


def test_rows_are_saved_as_added(tmp_path, capsys):
    report = Report(tmp_path / "out", "family_x", "x family", dry_run=True, peer="none")
    path = tmp_path / "out" / "family_x.json"
    header = saved(path)["header"]
    assert saved(path)["rows"] == []   # written at the start: a run killed before its first row still says so
    assert header["title"] == "x family" and header["dry_run"] is True and header["peer"] == "none"
    assert header["device"].startswith("CPU dry run") and header["torch"] == torch.__version__
    report.add({"case": "a", "ms": 1.5})
    assert saved(path)["rows"] == [{"case": "a", "ms": 1.5}]
    report.add({"case": "b", "long": "y" * 1000})
    assert [r["case"] for r in saved(path)["rows"]] == ["a", "b"]
    assert not list(path.parent.glob("*.partial"))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == '{"case": "a", "ms": 1.5}' and len(printed[1]) == 400
    report.finish(report.heading + "\n\n| case |\n")
    assert (tmp_path / "out" / "family_x.md").read_text().startswith("# x family, ")
    assert len(saved(path)["rows"]) == 2


def test_number_and_dry_bench():
    assert number(None, ".2f") == "-" and number(0.0, ".2f") == "0.00" and number(0.123, ".1%") == "12.3%"
    calls = []
    assert bench_ms(lambda: calls.append(1), dry_run=True) is None and not calls   # nothing timed in a dry run


def test_the_ours_cell_says_the_time_else_why_none():
    assert ours_cell({"ours_ms": 0.12345, "errors": {"a": "max error 3"}}) == "0.1235"   # some configuration timed
    assert ours_cell({"ours_ms": None, "errors": {"a": "max error 3"}}) == "failed: max error 3"
    assert ours_cell({"errors": {}}) == "checked, not timed"
    assert ours_cell({"errors": {}}, untimed="compiled") == "compiled"


def test_the_shared_options():
    args = arguments("Title.\n\nMore.", configs=5, budget_s=40.0).parse_args(["out", "--dry-run"])
    assert (args.out, args.configs, args.budget_s, args.no_compile, args.dry_run) == (Path("out"), 5, 40.0, False, True)
    assert not hasattr(arguments("T", 1, 1.0, no_compile=False).parse_args(["o"]), "no_compile")



def test_the_fastest_timed_configuration_is_kept():
    row = {"ours": {"a": 0.5, "b": None, "c": 0.2}}
    assert keep_fastest(row) == 0.2 and row["best_config"] == "c" and row["ours_ms"] == 0.2
    untimed = {"ours": {"a": None}}                  # a dry run, or every configuration failed
    assert keep_fastest(untimed) is None and "ours_ms" not in untimed and "best_config" not in untimed
