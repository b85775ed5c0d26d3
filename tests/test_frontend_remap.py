"""Index remapping in the front end (kernelbench.generate.remap): cat, slice, split, expand, permute, views and
arange inside an elementwise region, each value computed at the coordinates its reader needs. Every pattern
here is ONE generated kernel and one launch a call, and matches eager (Triton through the interpreter)."""

from __future__ import annotations

import pytest
from test_family_fused import assert_all_pass, fused, make

from kernelbench.generate import horizontal, remap

TWO_SHAPES = [{"n": 3}, {"n": 5}]
AXES = {"n": {"type": "var"}, "h": {"type": "const", "value": 8}, "half": {"type": "const", "value": 4},
        "r": {"type": "const", "value": 4}}


def one_kernel(tmp_path, name, reference, inputs, outputs, workloads=TWO_SHAPES, axes=AXES, tolerance=1e-2):
    problem = make(tmp_path, name, reference, inputs, outputs, workloads, axes=axes, tolerance=tolerance)
    match = fused(problem)
    for program in match.plan["programs"]:
        assert len(program["kernels"]) == 1 and program["launches"] == 1, program["lines"]
    solution = assert_all_pass(problem, match)
    assert "1 generated kernel(s), 1 launch(es) a call" in solution.description
    return match


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rotate_half_with_cos_and_sin_given(tmp_path, dtype):
    reference = ("import torch\n\ndef run(x, cos, sin):\n"
                 "    h = x.shape[-1] // 2\n"
                 "    rotated = torch.cat((-x[..., h:], x[..., :h]), dim=-1)\n"
                 "    return x * cos + rotated * sin\n")
    one_kernel(tmp_path, "rotate_half", reference,
               {"x": (["n", "h"], dtype), "cos": (["n", "h"], dtype), "sin": (["n", "h"], dtype)},
               {"y": (["n", "h"], dtype)}, tolerance=1e-5 if dtype == "float32" else 1e-2)


def test_partial_rotary_from_positions_and_arange(tmp_path):
    # the pattern of tasks235/L1/052: inv_freq from arange, cos/sin of [angle, angle] built from position ids,
    # the first r dims rotated and cast back, the rest passed through by a second concatenation
    reference = ("import torch\n\ndef run(x, pos):\n"
                 "    d, r = x.shape[-1], 4\n"
                 "    inv = (1.0 / (10000.0 ** (torch.arange(0, r, 2, dtype=torch.float64) / r))).to(torch.float32)\n"
                 "    angle = pos.to(torch.float32).unsqueeze(-1) * inv\n"
                 "    emb = torch.cat((angle, angle), dim=-1).unsqueeze(1)\n"
                 "    cos, sin = emb.cos(), emb.sin()\n"
                 "    x_rot = x[..., :r].to(torch.float32)\n"
                 "    half = r // 2\n"
                 "    out = x_rot * cos + torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1) * sin\n"
                 "    return torch.cat((out.to(x.dtype), x[..., r:]), dim=-1)\n")
    one_kernel(tmp_path, "partial_rotary", reference,
               {"x": (["n", "heads", "s", "h"], "float16"), "pos": (["n", "s"], "int64")},
               {"y": (["n", "heads", "s", "h"], "float16")},
               axes={"n": {"type": "var"}, "heads": {"type": "const", "value": 2}, "s": {"type": "const", "value": 3},
                     "h": {"type": "const", "value": 8}})


def test_costly_math_of_a_small_producer_is_stored_once_where_the_domain_is_large(tmp_path, monkeypatch):
    # the partial rotary above, with the threshold lowered so the test's shapes count as large: cos/sin (and the
    # float64 inv_freq) are computed once per position by their own kernels and read at every head, not
    # recomputed per element; the results do not change
    monkeypatch.setattr(remap, "RECOMPUTE_FREE_ELEMENTS", 64)
    reference = ("import torch\n\ndef run(x, pos):\n"
                 "    r = 4\n"
                 "    inv = (1.0 / (10000.0 ** (torch.arange(0, r, 2, dtype=torch.float64) / r))).to(torch.float32)\n"
                 "    angle = pos.to(torch.float32).unsqueeze(-1) * inv\n"
                 "    emb = torch.cat((angle, angle), dim=-1).unsqueeze(1)\n"
                 "    x_rot = x[..., :r].to(torch.float32)\n"
                 "    out = x_rot * emb.cos() + torch.cat((-x_rot[..., 2:], x_rot[..., :2]), dim=-1) * emb.sin()\n"
                 "    return torch.cat((out.to(x.dtype), x[..., r:]), dim=-1)\n")
    problem = make(tmp_path, "rotary_large", reference,
                   {"x": (["n", "heads", "s", "h"], "float16"), "pos": (["n", "s"], "int64")},
                   {"y": (["n", "heads", "s", "h"], "float16")}, [{"n": 1}, {"n": 2}],
                   axes={"n": {"type": "var"}, "heads": {"type": "const", "value": 4},
                         "s": {"type": "const", "value": 8}, "h": {"type": "const", "value": 8}})
    match = fused(problem)
    for program in match.plan["programs"]:      # 256 and 512 elements: above the lowered threshold
        assert 2 <= len(program["kernels"]) <= 3, program["lines"]
        main = program["kernels"][-1]["body"]
        assert not any("tl.float64" in line or "tl.cos" in line or "tl.sin" in line for line in main)
    assert_all_pass(problem, match)


def test_rows_of_an_input_taken_one_by_one_share_kernels(tmp_path, monkeypatch):
    # a loop over rows selects each row of an input: the selection stays a view read through its strides, so the
    # rows share kernel texts (a few compiles), not one kernel per row index (horizontal fusion off: it would
    # join neighbouring rows' kernels into new texts)
    monkeypatch.setattr(horizontal, "MAX_PARTS", 1)
    reference = ("import torch\n\ndef run(x):\n"
                 "    out = torch.empty_like(x)\n"
                 "    for i in range(x.shape[0]):\n"
                 "        out[i] = torch.sigmoid(x[i]) * 2\n"
                 "    return out\n")
    problem = make(tmp_path, "row_loop", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   [{"n": 6}])
    match = fused(problem)
    program = match.plan["programs"][0]
    assert len(program["kernels"]) <= 3 and program["launches"] >= 6, program["lines"]   # 6 rows, 3 texts
    assert_all_pass(problem, match)


@pytest.mark.parametrize("values", ["torch.arange(1, device=x.device)",
                                    "torch.arange(2, device=x.device).view(1, 2)[:, :1]"])
def test_an_arange_read_at_a_fixed_coordinate_is_a_literal(tmp_path, values):
    # a size-1 arange (or a one-element slice of one) is read at coordinate 0, not at a kernel index
    reference = f"import torch\n\ndef run(x):\n    return x * ({values}).float() + 1\n"
    one_kernel(tmp_path, "arange_literal", reference, {"x": (["n", 1], "float32")}, {"y": (["n", 1], "float32")},
               tolerance=1e-6)


@pytest.mark.parametrize("join", ["stack", "cat"])
def test_interleaved_rotary(tmp_path, join):
    pairs = ("torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)" if join == "stack" else
             "torch.cat(((x1 * cos - x2 * sin).unsqueeze(-1), (x2 * cos + x1 * sin).unsqueeze(-1)), dim=-1)"
             ".flatten(-2)")
    reference = ("import torch\n\ndef run(x, cos, sin):\n"
                 "    x1, x2 = x[..., ::2].float(), x[..., 1::2].float()\n"
                 f"    return {pairs}.to(x.dtype)\n")
    one_kernel(tmp_path, f"interleaved_{join}", reference,
               {"x": (["n", "h"], "bfloat16"), "cos": (["n", "half"], "float32"), "sin": (["n", "half"], "float32")},
               {"y": (["n", "h"], "bfloat16")})


@pytest.mark.parametrize("split", ["x[..., :n] * torch.nn.functional.silu(x[..., n:])",
                                   "torch.nn.functional.silu(x.chunk(2, dim=-1)[1]) * x.chunk(2, dim=-1)[0]"])
def test_glu_split_by_slicing_or_chunk(tmp_path, split):
    reference = f"import torch\n\ndef run(x):\n    n = x.shape[-1] // 2\n    return {split}\n"
    one_kernel(tmp_path, "glu", reference, {"x": (["n", "h"], "float16")}, {"y": (["n", "half"], "float16")})


def test_a_cat_of_two_computed_tensors_along_a_middle_dim(tmp_path):
    reference = ("import torch\n\ndef run(a, b):\n"
                 "    return torch.cat((torch.sigmoid(a) * 2.0, b.float() + 1.0), dim=1)\n")
    one_kernel(tmp_path, "cat_middle", reference,
               {"a": (["n", 3, "h"], "float32"), "b": (["n", 5, "h"], "bfloat16")},
               {"y": (["n", 8, "h"], "float32")}, tolerance=1e-5)


@pytest.mark.parametrize("view", ["x.permute(0, 2, 1)", "x.transpose(1, 2)"])
def test_a_permute_of_computed_values_then_elementwise(tmp_path, view):
    reference = ("import torch\n\ndef run(x, y):\n"
                 f"    x = torch.exp(x) * 0.5\n    return ({view} + y).relu()\n")
    one_kernel(tmp_path, "permuted", reference,
               {"x": (["n", "half", "h"], "float32"), "y": (["n", "h", "half"], "float32")},
               {"z": (["n", "h", "half"], "float32")}, tolerance=1e-5)


def test_an_expand_and_a_strided_slice(tmp_path):
    reference = ("import torch\n\ndef run(x, b):\n"
                 "    return x[:, 1::3] * b.unsqueeze(0).expand(x.shape[0], -1)\n")
    one_kernel(tmp_path, "expand_slice", reference, {"x": (["n", 12], "float32"), "b": ([4], "float32")},
               {"y": (["n", 4], "float32")}, tolerance=1e-6)


def test_a_cat_never_reads_an_outside_input_out_of_bounds(tmp_path):
    # the second input is read where the concatenation selects it only: its load carries the branch condition,
    # so the lanes of the first input's range (whose shifted index would run past the end of b) read nothing
    reference = "import torch\n\ndef run(a, b):\n    return torch.cat((a * 3.0, b), dim=-1)\n"
    match = one_kernel(tmp_path, "cat_mask", reference, {"a": (["n", "h"], "float32"), "b": (["n", 3], "float32")},
                       {"y": (["n", 11], "float32")}, tolerance=0.0)
    body = "\n".join(match.plan["programs"][0]["kernels"][0]["body"])
    branch = next(line.split(" = ", 1) for line in body.splitlines() if ">= 8)" in line)
    assert branch[1].startswith("mask & ") and f"mask={branch[0].strip()})" in body, body


def test_a_cheap_producer_read_by_outputs_of_different_sizes_is_recomputed_in_each(tmp_path):
    # q and k of different head counts rotated by one cos/sin (the Mistral rope): the float32 casts of cos and sin
    # are copied per reader, so no kernel stores them; q's and k's kernels then share one launch (horizontal.py)
    reference = ("import torch\n\ndef run(q, k, cos, sin):\n"
                 "    c, s = cos.unsqueeze(1).to(torch.float32), sin.unsqueeze(1).to(torch.float32)\n"
                 "    def rot(x):\n"
                 "        x = x.to(torch.float32)\n"
                 "        return (x * c + torch.cat((-x[..., 4:], x[..., :4]), dim=-1) * s).to(torch.bfloat16)\n"
                 "    return rot(q), rot(k)\n")
    problem = make(tmp_path, "rope_q_k", reference,
                   {"q": (["n", "hq", "s", "h"], "bfloat16"), "k": (["n", "hk", "s", "h"], "bfloat16"),
                    "cos": (["n", "s", "h"], "bfloat16"), "sin": (["n", "s", "h"], "bfloat16")},
                   {"q_out": (["n", "hq", "s", "h"], "bfloat16"), "k_out": (["n", "hk", "s", "h"], "bfloat16")},
                   TWO_SHAPES, axes={"n": {"type": "var"}, "hq": {"type": "const", "value": 4},
                                     "hk": {"type": "const", "value": 2}, "s": {"type": "const", "value": 3},
                                     "h": {"type": "const", "value": 8}})
    match = fused(problem)
    for program in match.plan["programs"]:
        assert len(program["kernels"]) == 1 and program["launches"] == 1, program["lines"]
        assert not any(line.startswith("v") and "torch.empty" in line for line in program["lines"]), program["lines"]
    assert_all_pass(problem, match)


def test_a_costly_shared_producer_is_not_copied(tmp_path):
    # exp(x) read by two outputs of different sizes: computed once and stored, not recomputed per reader
    reference = ("import torch\n\ndef run(x, y, z):\n"
                 "    e = torch.exp(x.unsqueeze(1))\n"
                 "    return y * e, z + e\n")
    problem = make(tmp_path, "shared_exp", reference,
                   {"x": (["n", "h"], "float32"), "y": (["n", "hq", "h"], "float32"),
                    "z": (["n", "hk", "h"], "float32")},
                   {"a": (["n", "hq", "h"], "float32"), "b": (["n", "hk", "h"], "float32")}, TWO_SHAPES,
                   axes={"n": {"type": "var"}, "hq": {"type": "const", "value": 4}, "hk": {"type": "const", "value": 2},
                         "h": {"type": "const", "value": 8}}, tolerance=1e-5)
    match = fused(problem)
    for program in match.plan["programs"]:
        assert sum("tl.exp(" in line for kernel in program["kernels"] for line in kernel["body"]) == 1, program
    assert_all_pass(problem, match)
