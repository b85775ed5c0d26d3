"""Scans in the front end (kernelbench.generate.scans): cumsum, cumprod, logcumsumexp, cummax and cummin lowered
to generated kernels, checked against the reference through the Triton interpreter: rows swept in passes carrying
the running value, torch's dtype rules (bool -> int64, fp16 accumulated in fp32), ties and NaN in cummax/cummin,
+-inf in logcumsumexp, scans over a leading dimension."""

from __future__ import annotations

from test_family_fused import assert_all_pass, fused, make

from kernelbench.generate import scans

LONG = {"n": {"type": "var"}, "h": {"type": "const", "value": 300}}    # 5 passes of 64 (TILE patched)
FEW_ROWS = [{"n": 1}, {"n": 3}]
SCAN_OPS = ("cumsum", "cumprod", "logcumsumexp", "cummax", "cummin")


def lines(match) -> str:
    return "\n".join(line for p in match.plan["programs"] for line in p["lines"])


def row_kernels(match) -> list[str]:
    return ["\n".join(k["body"]) for p in match.plan["programs"][:1] for k in p["kernels"]]


def scanned(tmp_path, name, reference, inputs, outputs, axes=LONG, workloads=FEW_ROWS, tolerance=1e-2,
            expected=None):
    """The problem's match with no scan left to the library (`expected` launches a call); every workload passes."""
    problem = make(tmp_path, name, reference, inputs, outputs, workloads, axes=axes, tolerance=tolerance)
    match = fused(problem)
    text = lines(match)
    assert not any(f"aten.{op}" in text for op in SCAN_OPS), text
    if expected is not None:
        assert [p["launches"] for p in match.plan["programs"]] == [expected] * len(workloads), text
    assert_all_pass(problem, match)
    return match


def test_a_graph_of_one_cumsum_is_a_generated_kernel_swept_in_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(scans, "TILE", 64)
    match = scanned(tmp_path, "cumsum_long", "import torch\n\ndef run(x):\n    return torch.cumsum(x, dim=-1)\n",
                    {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")}, expected=1)
    assert "for start in range(0, 300, BLOCK_D)" in "\n".join(match.plan["programs"][0]["kernels"][0]["body"])


def test_cumsum_of_a_mask_is_int64_and_fp16_accumulates_in_fp32(tmp_path):
    # 3000 ones: an fp16 running sum stops at 2048; torch (and the kernel) accumulate in fp32
    reference = ("import torch\n\ndef run(x):\n"
                 "    ones = (x * 0 + 1).half()\n"
                 "    return torch.cumsum(x > 0, dim=-1), torch.cumsum(ones, dim=-1), x.cumsum(-1, dtype=torch.float64)\n")
    axes = {"n": {"type": "var"}, "h": {"type": "const", "value": 3000}}
    match = scanned(tmp_path, "cumsum_types", reference, {"x": (["n", "h"], "float32")},
                    {"c": (["n", "h"], "int64"), "s": (["n", "h"], "float16"), "d": (["n", "h"], "float64")},
                    axes=axes, tolerance=1e-3, expected=1)
    # the interpreter's numpy sums fp16 tiles precisely whatever the kernel asks: check the types it asks for
    body = row_kernels(match)[0]
    assert "0).to(tl.float32)" in body and "0).to(tl.float16)" not in body and "0).to(tl.int64)" in body


def test_cummax_and_cummin_take_the_later_tie_and_keep_nan(tmp_path, monkeypatch):
    monkeypatch.setattr(scans, "TILE", 64)
    # truncation makes ties (the later index wins); NaNs beat every number and stick, the latest NaN's index (a
    # NaN value fails any check: NaN shows in the indices only)
    reference = ("import torch\n\ndef run(x):\n"
                 "    y = (x * 2).int().float()\n"
                 "    i = torch.cummax(torch.where(x > 2.8, float('nan'), y), dim=-1)[1]\n"
                 "    v = torch.cummax(y, dim=-1)[0]\n"
                 "    w, j = torch.cummin(y.to(torch.int32), dim=1)\n"
                 "    return v, i, w, j\n")
    scanned(tmp_path, "cummax", reference, {"x": (["n", "h"], "float32")},
            {"v": (["n", "h"], "float32"), "i": (["n", "h"], "int64"), "w": (["n", "h"], "int32"),
             "j": (["n", "h"], "int64")}, tolerance=0.0)


def test_logcumsumexp_with_infinities_cumprod_and_fp16_over_a_leading_dimension_in_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(scans, "TILE", 64)
    # prefixes of -inf (and past a +inf) must stay infinite, never NaN (an infinite value fails any check: they
    # are zeroed after the scan); columns of 300 read by stride, 5 passes; an fp16 running sum held in fp32
    reference = ("import torch\n\ndef run(x):\n"
                 "    z = torch.where(x < -0.5, float('-inf'), torch.where(x > 2.5, float('inf'), x))\n"
                 "    l = torch.logcumsumexp(z, dim=0)\n"
                 "    return torch.where(torch.isinf(l), 0.0, l), torch.cumprod(1.0 + x * 0.01, dim=0), "
                 "torch.cumsum(x.half(), 0)\n")
    axes = {"n": {"type": "var"}, "h": {"type": "const", "value": 300}}
    match = scanned(tmp_path, "logcumsumexp", reference, {"x": (["h", "n"], "float32")},
                    {"l": (["h", "n"], "float32"), "p": (["h", "n"], "float32"), "s": (["h", "n"], "float16")},
                    axes=axes)
    half = [b for b in row_kernels(match) if "y.to(tl.float16)" in b]
    assert half and "x = x.to(tl.float32)" in half[0] and "carry = tl.full([BLOCK_R, 1], 0, tl.float32)" in half[0]


def test_scans_over_leading_dimensions_read_by_strides(tmp_path):
    reference = ("import torch\n\ndef run(x):\n"
                 "    return torch.cumsum(x, dim=0), torch.cummax(x, dim=1)[1], (x > 0).cumsum(0).cumsum(1)\n")
    axes = {"n": {"type": "var"}, "h": {"type": "const", "value": 5}, "w": {"type": "const", "value": 7}}
    scanned(tmp_path, "leading", reference, {"x": (["n", "h", "w"], "float32")},
            {"a": (["n", "h", "w"], "float32"), "i": (["n", "h", "w"], "int64"), "c": (["n", "h", "w"], "int64")},
            axes=axes, workloads=[{"n": 4}, {"n": 9}])


def test_a_cummax_of_bool_stays_a_library_call(tmp_path):
    reference = "import torch\n\ndef run(x):\n    return torch.cummax(x > 0, -1)[1], torch.cumsum(x, -1)\n"
    problem = make(tmp_path, "unsupported", reference, {"x": (["n", "h"], "float32")},
                   {"i": (["n", "h"], "int64"), "y": (["n", "h"], "float32")}, FEW_ROWS)
    text = lines(fused(problem))
    assert "aten.cummax" in text and "aten.cumsum" not in text


def test_a_scan_fuses_with_its_prologue_and_epilogue_in_one_row_kernel(tmp_path):
    # exp -> cumsum -> log (a log-cumsum-exp written out), a mask's running count compared, and the reverse
    # cumsum of a chunked backward (row sum - cumsum + g): each one launch with the elementwise work around it
    reference = ("import torch\n\ndef run(x):\n"
                 "    a = torch.log(torch.cumsum(torch.exp(x), dim=-1))\n"
                 "    b = torch.cumsum(x > 0.5, dim=-1) <= 3\n"
                 "    g = x * 2.0\n"
                 "    c = g.sum(-1, keepdim=True) - torch.cumsum(g, dim=-1) + g\n"
                 "    return a, b, c\n")
    match = scanned(tmp_path, "fused_rows", reference, {"x": (["n", "h"], "float32")},
                    {"a": (["n", "h"], "float32"), "b": (["n", "h"], "bool"), "c": (["n", "h"], "float32")},
                    expected=1)
    assert any("tl.cumsum(" in body and "tl.exp(" in body and "tl.log(" in body for body in row_kernels(match))


def test_a_long_row_scan_carries_its_running_value_across_the_passes(tmp_path, monkeypatch):
    from kernelbench.generate import rowfusion
    monkeypatch.setattr(rowfusion, "MAX_ROW_BLOCK", 64)
    monkeypatch.setattr(rowfusion, "LOOP_BLOCK", 64)
    monkeypatch.setattr(rowfusion, "MIN_LOOPED_ROWS", 1)
    # a top-p filter's shape: softmax (a pass for its max and sum), then the running mass of it, compared (one
    # kernel); logcumsumexp of an fp16 row with its prologue (another; the interpreter rounds fp32 to bf16 wrongly)
    reference = ("import torch\n\ndef run(x):\n"
                 "    p = torch.softmax(x, dim=-1)\n"
                 "    keep = (torch.cumsum(p, dim=-1) - p) < 0.5\n"
                 "    return torch.where(keep, p, 0.0), torch.logcumsumexp(x.half() * 3, dim=-1)\n")
    match = scanned(tmp_path, "looped_rows", reference, {"x": (["n", "h"], "float32")},
                    {"y": (["n", "h"], "float32"), "l": (["n", "h"], "float16")}, expected=2)
    softmax, logcumsumexp = row_kernels(match)
    assert softmax.count("for start in range(0, 300, BLOCK_D)") == 2 and "tl.cumsum(" in softmax
    assert "_scan_logaddexp(carry" in logcumsumexp and "* 3.0" in logcumsumexp
