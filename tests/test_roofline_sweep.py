"""The GPU sweep's CPU-checkable parts: its torch.compile is real compilation in one process with many
references (the old sweep's fell back to eager), parts split the tasks, and the report flags every
workload below T_SOL."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tasks235_sweep import entry_function, finish_row, markdown, merge, part_of  # noqa: E402

REFERENCES = 10          # more than Dynamo's recompile limit (8) of one shared frame


def _no_grad_references():
    refs = []
    for i in range(REFERENCES):
        module = types.ModuleType(f"sweep_test_ref_{i}")
        sys.modules[module.__name__] = module          # as compile_reference registers references
        exec(compile(f"import torch\n@torch.no_grad()\ndef run(x):\n    return torch.relu(x) * {i} + 1\n",  # noqa: S102
                     f"<sweep test reference {i}>", "exec"), module.__dict__)
        refs.append(module.run)
    return refs


def _compiled_frames(wrap) -> tuple[int, int]:
    torch._dynamo.reset()
    counters.clear()
    x = torch.randn(16)
    for i, run in enumerate(_no_grad_references()):
        compiled = torch.compile(wrap(run, i), backend="eager")
        assert torch.equal(compiled(x), torch.relu(x) * i + 1)
    return counters["frames"]["ok"], counters["frames"]["total"] - counters["frames"]["ok"]


def test_compiling_many_no_grad_references_in_one_process_falls_back_to_eager():
    """The attack on the old sweep's compile column: torch.compile(run) of @torch.no_grad() references
    shares one frame, and past the recompile limit Dynamo runs them eagerly."""
    ok, failed = _compiled_frames(lambda run, i: run)
    assert ok == 8 and failed >= 1          # references 9 and 10 ran eagerly


def test_the_sweep_compiles_every_reference():
    ok, failed = _compiled_frames(lambda run, i: entry_function(run, f"test {i}"))
    assert ok == REFERENCES and failed == 0


def test_parts_split_the_tasks():
    root = Path(__file__).resolve().parents[1] / "tasks235"
    tasks = [(f"L1/{d.name}", d) for d in sorted((root / "L1").iterdir()) if (d / "definition.json").is_file()][:9]
    parts = [part_of(tasks, i, 3) for i in (1, 2, 3)]
    assert sorted(t for p in parts for t in p) == sorted(tasks)
    assert [len(p) for p in parts] == [3, 3, 3]


def _result(rows, part="1/1"):
    for row in rows:
        finish_row(row)
    return {"part": part, "environment": {"hardware": "H100", "torch": "2.11", "cuda": "13.0", "triton": "3.6",
                                          "driver": "580"},
            "date": "2026-12-01", "workers": 15, "timing": {"warmup": 3, "iterations": 10},
            "seconds": {"total": 400.0, "warm": 200.0, "timed": 180.0},
            "profile": {"tensor": {"bf16": 8e14}, "sources": {"tensor.bf16": "measured 8e+14 (0.81x datasheet)"}},
            "raised_by_observations": [], "tasks": sorted({r["task"] for r in rows}), "untimed": [], "failures": {},
            "evidence": {r["task"]: {"compile": {"graphs": 2, "frames_failed": 0, "fx_compiles": 2, "fx_cache_hits": 0,
                                                 "graph_breaks": 0},
                                     "cudagraphs": {"graphs": 2, "frames_failed": 0, "fx_compiles": 0, "fx_cache_hits": 2,
                                                    "graph_breaks": 0, "cudagraph_skips": 0}} for r in rows},
            "baseline_check": None, "rows": rows}


def _row(task, index, eager, compiled, graphs, sol, sol_measured):
    return {"task": task, "index": index, "uuid": f"{task}-{index}", "axes": {"n": index}, "errors": {},
            "t_eager_ms": eager, "t_compile_ms": compiled, "t_cudagraphs_ms": graphs,
            "t_sol_datasheet_ms": sol, "t_sol_measured_ms": sol_measured, "binding": "dram"}


def test_the_report_flags_workloads_below_t_sol_on_either_profile(tmp_path):
    rows = [_row("L1/a", 0, 1.0, 0.5, 0.4, 0.1, 0.2), _row("L1/a", 1, 1.0, 0.5, 0.15, 0.1, 0.2),
            _row("L2/b", 0, 2.0, 1.0, 1.5, 0.5, 0.6)]
    result = _result(rows)
    assert rows[0]["below"] == {"datasheet": [], "measured": []} and rows[0]["best_variant"] == "cudagraphs"
    assert rows[1]["below"] == {"datasheet": [], "measured": ["cudagraphs"]}
    text = markdown(result)
    assert "| measured | 1 | 0 | 0 | 1 | 3 |" in text and "| datasheet | 0 | 0 | 0 | 0 | 3 |" in text
    assert "- L1/a #1" in text
    other = _result([_row("Attention/c", 0, 1.0, 0.9, 0.8, 0.1, 0.1)], "2/2")
    paths = [tmp_path / "p1.json", tmp_path / "p2.json"]
    for path, part in zip(paths, (result, other)):
        path.write_text(json.dumps(part))
    both = merge(paths)
    assert len(both["rows"]) == 4 and both["part"] == "1/1+2/2"
    assert "| Attention | 1 | 1 |" in markdown(both)
