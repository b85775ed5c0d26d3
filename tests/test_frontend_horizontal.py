"""Horizontal fusion (kernelbench.generate.horizontal): neighbouring flat kernels that do not read each other's
results share one launch; a kernel reading another's result keeps its own. Every program matches eager
(Triton through the interpreter)."""

from __future__ import annotations

from test_family_fused import assert_all_pass, fused, make

from kernelbench.generate import horizontal

AXES = {"n": {"type": "var"}, "a": {"type": "const", "value": 3}, "b": {"type": "const", "value": 5}}


def program_of(tmp_path, name, reference, inputs, outputs):
    problem = make(tmp_path, name, reference, inputs, outputs, [{"n": 2}, {"n": 7}], axes=AXES, tolerance=1e-5)
    match = fused(problem)
    assert_all_pass(problem, match)
    return match.plan["programs"]


def test_independent_outputs_of_different_sizes_share_one_launch(tmp_path):
    reference = ("import torch\n\ndef run(x, y, z):\n"
                 "    return torch.sigmoid(x) * 2, y.float().relu() - 1, z * z\n")
    programs = program_of(tmp_path, "three_outputs", reference,
                          {"x": (["n", "a"], "float32"), "y": (["n", "b"], "float16"), "z": (["n"], "float32")},
                          {"p": (["n", "a"], "float32"), "q": (["n", "b"], "float32"), "r": (["n"], "float32")})
    for program in programs:
        assert program["launches"] == 1 and len(program["kernels"]) == 1, program["lines"]
        body = program["kernels"][0]["body"]
        assert body[0] == "pid = tl.program_id(0)" and sum(line.startswith(("if ", "elif ", "else")) for line in body) == 3


def test_a_kernel_reading_anothers_result_keeps_its_own_launch(tmp_path):
    # s is stored (returned) by the first flat kernel and read, sliced, by the second: not independent
    reference = ("import torch\n\ndef run(x, y):\n"
                 "    s = torch.sigmoid(x)\n"
                 "    return s, y * torch.exp(s[:, :1])\n")
    programs = program_of(tmp_path, "dependent", reference,
                          {"x": (["n", "a"], "float32"), "y": (["n", "b"], "float32")},
                          {"s": (["n", "a"], "float32"), "t": (["n", "b"], "float32")})
    for program in programs:
        assert program["launches"] == 2 and not any("_h)[" in line for line in program["lines"]), program["lines"]


def test_merge_moves_assignments_between_the_launches_above_and_stops_at_writes():
    kernel = {"name": "k", "parameters": ["in0", "out0", "in0_s0", "C_in0: tl.constexpr", "BLOCK: tl.constexpr"],
              "body": ["offs = tl.program_id(0).to(tl.int32) * BLOCK + tl.arange(0, BLOCK)", "mask = offs < 8",
                       "x0 = tl.load(in0 + offs, mask=mask)", "tl.store(out0 + offs, x0, mask=mask)"],
              "unspecialized": [], "uses_tanh": False}

    def launch(kernel, source, out):
        return horizontal.FlatLaunch(kernel, "8", [source, out, f"*{source}.stride()"],
                                     [f"C_in0={source}.is_contiguous()"], [out])

    first, second, third = (dict(kernel, name=f"k{i}") for i in range(3))
    lines = ["LAUNCH0", "v7 = a1.unsqueeze(1)", "LAUNCH1", "v9 = torch.ops.aten.add_.Tensor(a0, 1)", "LAUNCH2"]
    launches = {0: launch(first, "a0", "o0"), 2: launch(second, "v7", "o1"), 4: launch(third, "a2", "o2")}
    kernels = [first, second, third]
    merged, saved = horizontal.merge(lines, launches, kernels)
    # the view moves above the merged launch; the in-place add may not move past the first kernel's read of a0
    assert saved == 1 and merged[0] == "v7 = a1.unsqueeze(1)" and merged[1].startswith("_lean(k0_h)[")
    assert merged[2:] == ["v9 = torch.ops.aten.add_.Tensor(a0, 1)", "LAUNCH2"]
    assert [k["name"] for k in kernels] == ["k2", "k0_h"]
    merged_kernel = kernels[1]
    # positional parameters of both parts in launch order, then their constexprs, the part boundary, BLOCK
    assert merged_kernel["parameters"] == ["h0_in0", "h0_out0", "h0_in0_s0", "h1_in0", "h1_out0", "h1_in0_s0",
                                           "h0_C_in0: tl.constexpr", "h1_C_in0: tl.constexpr", "H_START1",
                                           "BLOCK: tl.constexpr"]
    assert "    h1_offs = (pid - H_START1).to(tl.int32) * BLOCK + tl.arange(0, BLOCK)" in merged_kernel["body"]
    assert "    h1_x0 = tl.load(h1_in0 + h1_offs, mask=h1_mask)" in merged_kernel["body"]   # keyword names kept
    assert "h0_C_in0=a0.is_contiguous(), h1_C_in0=v7.is_contiguous(), H_START1=_cdiv(8, _BLOCK)" in merged[1]


def test_a_launch_writing_what_an_earlier_one_reads_is_not_merged():
    kernel = {"name": "k", "parameters": ["in0", "out0", "BLOCK: tl.constexpr"], "body": ["pass"],
              "unspecialized": [], "uses_tanh": False}
    first, second = dict(kernel, name="k0"), dict(kernel, name="k1")
    launches = {0: horizontal.FlatLaunch(first, "8", ["v3", "o0"], [], ["o0"]),
                1: horizontal.FlatLaunch(second, "8", ["a0", "v3"], [], ["v3"])}   # overwrites v3, which k0 reads
    lines, saved = horizontal.merge(["L0", "L1"], launches, [first, second])
    assert saved == 0 and lines == ["L0", "L1"]
