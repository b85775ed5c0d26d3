"""FP4 scaled matmuls on the CPU (kernelbench.core.emulation): the aten op is emulated on real operands only,
so a reference that branches on data and multiplies packed fp4 traces along its example's branches
(kernelbench.generate.branch_guards runs the example while tracing) and its program keeps `_scaled_mm`
itself, the real op on a GPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import SAMPLE_ROOT
from test_branch_guards import Solved, traced_on
from test_family_fused import fused, make, render
from torch.fx.experimental.proxy_tensor import make_fx

from kernelbench.core.emulation import emulated_scaled_mm, emulated_scaled_mm_op, scaled_mm_fp4
from kernelbench.core.problem import load_problem, parse_workload
from kernelbench.generate.graph import CaptureError, capture_at

SCALED_MM = torch.ops.aten._scaled_mm.default
M, N, K = 128, 128, 64
SCALES = 128 * (K // 16)   # e4m3 per 16 values, rows padded to 128 in the blocked layout

# A data branch before the matmul (like NVFP4 quantization's `if global_encode_scale == 0.0`) makes the
# capture run its example along real values.
REFERENCE = ("import torch\n\ndef run(a, b, sa, sb, g):\n"
             "    scale = g.abs().max()\n"
             "    if scale == 0.0:\n"
             "        scale = torch.ones(())\n"
             "    out = torch._scaled_mm(a, b.t(), sa, sb, out_dtype=torch.bfloat16)\n"
             "    return out.float() * scale\n")


def operands(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    packed = lambda rows: torch.randint(0, 256, (rows, K // 2), dtype=torch.uint8, generator=gen).view(
        torch.float4_e2m1fn_x2)
    scales = lambda: torch.rand(SCALES, generator=gen).add(0.5).to(torch.float8_e4m3fn)
    return packed(M), packed(N), scales(), scales()


def test_the_aten_op_is_emulated_on_real_cpu_operands_only():
    a, b, sa, sb = operands()
    native, key = SCALED_MM._op, hash(SCALED_MM)
    with pytest.raises((RuntimeError, ValueError)):      # the CPU build has no fp4 kernel: what the context fixes
        SCALED_MM(a, b.t(), sa, sb, out_dtype=torch.bfloat16)
    with emulated_scaled_mm_op():
        assert hash(SCALED_MM) == key    # graphs and op tables keyed by the op still find it
        got = SCALED_MM(a, b.t(), sa, sb, out_dtype=torch.bfloat16)
        traced = make_fx(lambda *x: SCALED_MM(x[0], x[1].t(), x[2], x[3], out_dtype=torch.bfloat16),
                         tracing_mode="fake")(a, b, sa, sb)
    torch.testing.assert_close(got, scaled_mm_fp4(a, b.t(), sa, sb, out_dtype=torch.bfloat16))
    ops = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert SCALED_MM in ops and len(ops) == 2, ops     # the op itself (and the transpose), not the emulation
    assert SCALED_MM._op is native


def test_a_branchy_fp4_reference_traces_and_its_program_keeps_the_op(tmp_path):
    problem = make(tmp_path, "fp4_branch", REFERENCE,
                   {"a": (["m", "kh"], "float4_e2m1fn_x2"), "b": (["n", "kh"], "float4_e2m1fn_x2"),
                    "sa": (["s"], "float8_e4m3fn"), "sb": (["s"], "float8_e4m3fn"), "g": (["m"], "float32")},
                   {"y": (["m", "n"], "float32")}, [{"m": M}],
                   axes={"m": {"type": "var"}, "n": {"type": "const", "value": N},
                         "kh": {"type": "const", "value": K // 2}, "s": {"type": "const", "value": SCALES}})
    match = fused(problem)
    lines = "\n".join(match.plan["programs"][0]["lines"])
    assert "_scaled_mm" in lines and "_fallback" in lines
    a, b, sa, sb = operands(1)
    g = torch.randn(M)
    with emulated_scaled_mm():     # what the evaluator's CPU child sets for reference and solution alike
        solved = Solved(problem, render(problem, match))
        taken = solved.fell_back([a, b, sa, sb, g])
        assert not taken           # the example's branch (a nonzero scale): the program's own path
        assert solved.fell_back([a, b, sa, sb, torch.zeros(M)])    # the other branch: the reference


BF16 = 2 ** -6    # the output is rounded to bfloat16: one ulp at values near 2, summed in another order
GQA_PAGED = SAMPLE_ROOT / "FlashInfer-Bench" / "012_gqa_paged_decode_h32_kv4_d128_ps1"


def paged_decode(pages: int, indices: int):
    """The sample's problem with one hand-made workload: its kv_indptr/kv_indices blobs are not shipped, so
    they become random inputs that `examples` (traced_on) sets to a valid page table."""
    problem = load_problem(GQA_PAGED)
    line = {"uuid": "hand-made", "axes": {"batch_size": 1, "num_pages": pages, "len_indptr": 2,
                                          "num_kv_indices": indices},
            "inputs": {**{n: {"type": "random"} for n in ("q", "k_cache", "v_cache", "kv_indptr", "kv_indices")},
                       "sm_scale": {"type": "scalar", "value": 128 ** -0.5}}}
    workload = parse_workload(line, problem.definition)
    return dataclasses.replace(problem, workloads=[workload], directory=None)


@pytest.mark.slow     # ~25 s: 32 heads unrolled, traced and run through the interpreter
@pytest.mark.skipif(not GQA_PAGED.is_dir(), reason="the official sample is not here")
def test_paged_decode_without_its_blobs_says_so_and_traces_on_hand_made_page_tables(monkeypatch):
    with pytest.raises(CaptureError, match="needs the workload's data: .*kv_indptr.*not found"):
        capture_at(load_problem(GQA_PAGED), load_problem(GQA_PAGED).smallest_workload())
    problem = paged_decode(pages=8, indices=5)
    table = {"kv_indptr": torch.tensor([0, 5], dtype=torch.int32),
             "kv_indices": torch.tensor([6, 0, 3, 3, 1], dtype=torch.int32)}
    match = traced_on(problem, table, monkeypatch)
    solved = Solved(problem, render(problem, match))
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(shape, generator=gen).bfloat16() for shape in ((1, 32, 128), (8, 1, 4, 128), (8, 1, 4, 128)))
    assert not solved.fell_back([q, k, v, table["kv_indptr"], table["kv_indices"], 128 ** -0.5], BF16)
    other = torch.tensor([2, 7, 7, 0, 5], dtype=torch.int32)     # other pages, same length: the kernels again
    assert not solved.fell_back([q, k, v, table["kv_indptr"], other, 128 ** -0.5], BF16)
    shorter = torch.tensor([3, 5], dtype=torch.int32)       # two pages: right, whichever path runs it
    solved.fell_back([q, k, v, shorter, table["kv_indices"], 128 ** -0.5], BF16)
    assert solved.fell_back([q, k, v, torch.tensor([5, 5], dtype=torch.int32), table["kv_indices"], 128 ** -0.5],
                            BF16)                            # no pages: the other branch, the reference's
