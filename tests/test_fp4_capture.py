"""FP4 scaled matmuls on the CPU (kernelbench.core.emulation): the aten op is emulated on real operands only,
so a reference that branches on data and multiplies packed fp4 traces along its example's branches
(kernelbench.generate.branch_guards runs the example while tracing) and its program keeps `_scaled_mm`
itself, the real op on a GPU."""

from __future__ import annotations

import pytest
import torch
from test_branch_guards import Solved
from test_family_fused import fused, make, render
from torch.fx.experimental.proxy_tensor import make_fx

from kernelbench.core.emulation import emulated_scaled_mm, emulated_scaled_mm_op, scaled_mm_fp4

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
