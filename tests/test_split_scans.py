"""Scans of long rows in too few programs (kernelbench.generate.scans.chunk_width): each row split into chunks
over many programs, three launches (chunk totals, their scan, each chunk rescanned from the totals before it),
checked against the reference through the Triton interpreter for every op and dtype; cummax/cummin values and
indices exact. A chunk that ignores the totals before it must fail the check."""

from __future__ import annotations

import copy

import pytest
from test_family_fused import check, fused, make, render
from test_frontend_scans import lines, scanned

from kernelbench.core.statuses import PASSED
from kernelbench.generate import scans

# 3 rows of 40,000: one row block, so the rows are split (40 chunks of 1024, one pass each)
LONG = {"n": {"type": "var"}, "h": {"type": "const", "value": 40000}}
ROWS = [{"n": 3}]


def kernels(match) -> list[str]:
    return ["\n".join(k["body"]) for p in match.plan["programs"] for k in p["kernels"]]


def test_the_split_is_decided_from_rows_and_width():
    assert scans.chunk_width(3, 40000) == 1024 and scans.chunk_width(1, 1 << 20) == 1024
    assert scans.chunk_width(4096, 1 << 20) is None            # rows enough to fill the GPU: a sweep per row
    assert scans.chunk_width(1, scans.SPLIT_WIDTH) is None      # short rows: one sweep
    chunk = scans.chunk_width(64, 1 << 20)                      # more data, larger chunks: still ~SPLIT_PROGRAMS
    assert chunk > 1024 and 16 * ((1 << 20) // chunk) == scans.SPLIT_PROGRAMS


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sums_products_and_logcumsumexp_of_split_rows(tmp_path, dtype):
    # cumprod of values near 1 stays finite over 40,000 columns; the bool mask's count is int64, exact
    reference = ("import torch\n\ndef run(x):\n"
                 "    return (torch.cumsum(x, -1), torch.cumprod(1.0 + x * 1e-3, -1), torch.logcumsumexp(x, -1), "
                 "torch.cumsum(x > 0, -1), torch.cumsum(x.int(), dim=-1))\n")
    outputs = {"s": (["n", "h"], dtype), "p": (["n", "h"], dtype), "l": (["n", "h"], dtype),
               "c": (["n", "h"], "int64"), "i": (["n", "h"], "int64")}
    match = scanned(tmp_path, f"split_{dtype}", reference, {"x": (["n", "h"], dtype)}, outputs, axes=LONG,
                    workloads=ROWS)
    assert lines(match).count("_total = torch.empty((120,)") == 5   # each scan split in 40 chunks of 1024


def test_cummax_and_cummin_of_split_rows_are_exact_with_ties_across_chunks(tmp_path, monkeypatch):
    # 8 chunks of 8192 swept in 8 passes each; coarse values tie within and across chunks (the later index
    # wins); NaNs stick with the latest NaN's index; int32 values keep their type
    monkeypatch.setattr(scans, "SPLIT_PROGRAMS", 8)
    reference = ("import torch\n\ndef run(x):\n"
                 "    y = (x * 2).int().float()\n"
                 "    v, i = torch.cummax(y, dim=-1)\n"
                 "    w, j = torch.cummin(y.to(torch.int32), dim=1)\n"
                 "    k = torch.cummax(torch.where(x > 3.5, float('nan'), y), dim=-1)[1]\n"
                 "    return v, i, w, j, k\n")
    match = scanned(tmp_path, "split_cummax", reference, {"x": (["n", "h"], "float32")},
                    {"v": (["n", "h"], "float32"), "i": (["n", "h"], "int64"), "w": (["n", "h"], "int32"),
                     "j": (["n", "h"], "int64"), "k": (["n", "h"], "int64")}, axes=LONG, workloads=ROWS,
                    tolerance=0.0)
    assert any("for step in range(0, 8192, BLOCK_D)" in body for body in kernels(match))


def test_a_split_scan_over_a_leading_dimension(tmp_path):
    # columns of 20,000 read by stride 2: 2 rows, each split
    reference = "import torch\n\ndef run(x):\n    return torch.cumsum(x, 0), torch.cummin(x, 0)[1]\n"
    axes = {"n": {"type": "var"}, "h": {"type": "const", "value": 20000}}
    match = scanned(tmp_path, "split_columns", reference, {"x": (["h", "n"], "float32")},
                    {"s": (["h", "n"], "float32"), "i": (["h", "n"], "int64")}, axes=axes, workloads=[{"n": 2}],
                    tolerance=1e-3, expected=6)
    assert "_total = torch.empty((40,)" in lines(match)


def test_chunks_that_ignore_the_totals_before_them_fail(tmp_path):
    """The attack: the last phase started from nothing instead of the chunks before it (a missing prefix) must
    not pass; the plan as generated does."""
    reference = "import torch\n\ndef run(x):\n    return torch.cumsum(x, -1) / 100.0\n"
    problem = make(tmp_path, "split_seed", reference, {"x": (["n", "h"], "float32")},
                   {"y": (["n", "h"], "float32")}, ROWS, axes=LONG)
    match = fused(problem)
    assert check(problem, render(problem, match), problem.workloads[0]).status == PASSED
    broken = copy.deepcopy(match)
    seeded = [k for p in broken.plan["programs"] for k in p["kernels"] if any(line.startswith("earlier") for line in k["body"])]
    assert len(seeded) == 1
    seeded[0]["body"] = [line.replace("mask=earlier", "mask=earlier & (row < 0)") for line in seeded[0]["body"]]
    assert check(problem, render(problem, broken), problem.workloads[0]).status != PASSED
