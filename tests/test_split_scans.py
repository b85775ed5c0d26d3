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
from kernelbench.generate import rowfusion, scans

ROWS = [{"n": 3}]
# (width, constants patched into scans): 3 rows of 3,000 in 6 chunks of 512, each 4 passes of 128 (fast); 3 rows
# of 40,000 at the real constants: 40 chunks of 1024, one pass each (slow on the interpreter)
SIZES = [pytest.param(3000, {"TILE": 128, "SPLIT_WIDTH": 1024, "SPLIT_PROGRAMS": 8}, id="3000"),
         pytest.param(40000, {}, id="40000", marks=pytest.mark.slow)]


def long_rows(width: int) -> dict:
    return {"n": {"type": "var"}, "h": {"type": "const", "value": width}}


def split(monkeypatch, constants: dict) -> None:
    """Patch the constants; the row kernels leave rows past SPLIT_WIDTH (equal at the real ones) to the scans."""
    for name, value in constants.items():
        monkeypatch.setattr(scans, name, value)
    monkeypatch.setattr(rowfusion, "MAX_ROW_BLOCK", scans.SPLIT_WIDTH)


def kernels(match) -> list[str]:
    return ["\n".join(k["body"]) for p in match.plan["programs"] for k in p["kernels"]]


def test_the_split_is_decided_from_rows_and_width():
    assert scans.SPLIT_WIDTH == rowfusion.MAX_ROW_BLOCK   # rows the row kernels leave to the scans are split
    assert scans.chunk_width(3, 40000) == 1024 and scans.chunk_width(1, 1 << 20) == 1024
    assert scans.chunk_width(4096, 1 << 20) is None            # rows enough to fill the GPU: a sweep per row
    assert scans.chunk_width(1, scans.SPLIT_WIDTH) is None      # short rows: one sweep
    chunk = scans.chunk_width(64, 1 << 20)                      # more data, larger chunks: still ~SPLIT_PROGRAMS
    assert chunk > 1024 and 16 * ((1 << 20) // chunk) == scans.SPLIT_PROGRAMS


@pytest.mark.parametrize("width, constants", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sums_products_and_logcumsumexp_of_split_rows(tmp_path, monkeypatch, dtype, width, constants):
    # cumprod of values near 1 stays finite over the row; the bool mask's count and an int32 sum are int64, exact
    split(monkeypatch, constants)
    reference = ("import torch\n\ndef run(x):\n"
                 "    return (torch.cumsum(x, -1), torch.cumprod(1.0 + x * 1e-3, -1), torch.logcumsumexp(x, -1), "
                 "torch.cumsum(x > 0, -1), torch.cumsum(x.int(), dim=-1))\n")
    outputs = {"s": (["n", "h"], dtype), "p": (["n", "h"], dtype), "l": (["n", "h"], dtype),
               "c": (["n", "h"], "int64"), "i": (["n", "h"], "int64")}
    match = scanned(tmp_path, f"split_{dtype}", reference, {"x": (["n", "h"], dtype)}, outputs,
                    axes=long_rows(width), workloads=ROWS)
    chunks = scans.chunk_width(3, width)
    assert lines(match).count(f"_total = torch.empty(({3 * -(-width // chunks)},)") == 5   # every scan split


@pytest.mark.parametrize("width, constants", SIZES)
def test_cummax_and_cummin_of_split_rows_are_exact_with_ties_across_chunks(tmp_path, monkeypatch, width, constants):
    # coarse values tie within and across chunks (the later index wins); NaNs stick with the latest NaN's index;
    # int32 and bf16 values keep their type
    split(monkeypatch, constants)
    reference = ("import torch\n\ndef run(x):\n"
                 "    y = (x * 2).int().float()\n"
                 "    v, i = torch.cummax(y, dim=-1)\n"
                 "    w, j = torch.cummin(y.to(torch.int32), dim=1)\n"
                 "    k = torch.cummax(torch.where(x > 2.5, float('nan'), y), dim=-1)[1]\n"
                 "    b = torch.cummin(y.bfloat16(), dim=-1)[0]\n"
                 "    return v, i, w, j, k, b\n")
    match = scanned(tmp_path, "split_cummax", reference, {"x": (["n", "h"], "float32")},
                    {"v": (["n", "h"], "float32"), "i": (["n", "h"], "int64"), "w": (["n", "h"], "int32"),
                     "j": (["n", "h"], "int64"), "k": (["n", "h"], "int64"), "b": (["n", "h"], "bfloat16")},
                    axes=long_rows(width), workloads=ROWS,
                    tolerance=0.0)
    assert any(line.startswith("carry_j = tl.load(total_j") for body in kernels(match) for line in body.split("\n"))


def test_a_split_scan_over_a_leading_dimension(tmp_path, monkeypatch):
    # columns of 3,000 read by stride 2: 2 rows, each split in 6 chunks
    split(monkeypatch, SIZES[0].values[1])
    reference = "import torch\n\ndef run(x):\n    return torch.cumsum(x, 0), torch.cummin(x, 0)[1]\n"
    match = scanned(tmp_path, "split_columns", reference, {"x": (["h", "n"], "float32")},
                    {"s": (["h", "n"], "float32"), "i": (["h", "n"], "int64")}, axes=long_rows(3000),
                    workloads=[{"n": 2}], tolerance=1e-3, expected=6)
    assert "_total = torch.empty((12,)" in lines(match)


def test_chunks_that_ignore_the_totals_before_them_fail(tmp_path, monkeypatch):
    """The attack: the last phase started from nothing instead of the chunks before it (a missing prefix) must
    not pass; the plan as generated does."""
    split(monkeypatch, SIZES[0].values[1])
    reference = "import torch\n\ndef run(x):\n    return torch.cumsum(x, -1) / 100.0\n"
    problem = make(tmp_path, "split_seed", reference, {"x": (["n", "h"], "float32")},
                   {"y": (["n", "h"], "float32")}, ROWS, axes=long_rows(3000))
    match = fused(problem)
    assert check(problem, render(problem, match), problem.workloads[0]).status == PASSED
    broken = copy.deepcopy(match)
    seeded = [k for p in broken.plan["programs"] for k in p["kernels"]
              if any(line.startswith("earlier") for line in k["body"])]
    assert len(seeded) == 1
    seeded[0]["body"] = [line.replace("mask=earlier", "mask=earlier & (row < 0)") for line in seeded[0]["body"]]
    assert check(problem, render(problem, broken), problem.workloads[0]).status != PASSED
