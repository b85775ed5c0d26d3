"""Roofline: hand-computed FLOPs and bytes for small references, counted on the meta device."""

from __future__ import annotations

import json
import math

import pytest

from kernelbench.core.problem import load_problem
from roofline import DATASHEETS, Count, bound, count_workload, load_profile, sol_for_problem
from roofline.calibrate import raise_to_observed, trusted_profile
from roofline.hardware import measured_from, save_profile
from roofline.touch import touched_count

import numpy as np

H100 = DATASHEETS["H100"]


def make_problem(tmp_path, name, axes, inputs, outputs, reference, workloads, entry=None):
    directory = tmp_path / name
    directory.mkdir()
    definition = {"name": name, "axes": axes, "inputs": inputs, "outputs": outputs, "reference": reference}
    if entry:
        definition["custom_inputs_entrypoint"] = entry
    (directory / "definition.json").write_text(json.dumps(definition))
    lines = [json.dumps({"uuid": f"w{i}", "axes": ax, "inputs": src}) for i, (ax, src) in enumerate(workloads)]
    (directory / "workload.jsonl").write_text("\n".join(lines) + "\n")
    return load_problem(directory)


def count(problem, index=0):
    return count_workload(problem, problem.workloads[index])


def random_inputs(*names):
    return {n: {"type": "random"} for n in names}


# ------------------------------------------------------------------------------ GEMM

GEMM = "import torch\ndef run(A, B):\n    return A @ B.T\n"


def test_gemm_flops_bytes_and_time(tmp_path):
    M, N, K = 128, 256, 512
    p = make_problem(tmp_path, "gemm", {"M": {"type": "var"}, "N": {"type": "const", "value": N},
                                        "K": {"type": "const", "value": K}},
                     {"A": {"shape": ["M", "K"], "dtype": "bfloat16"}, "B": {"shape": ["N", "K"], "dtype": "bfloat16"}},
                     {"C": {"shape": ["M", "N"], "dtype": "bfloat16"}}, GEMM, [({"M": M}, random_inputs("A", "B"))])
    c = count(p)
    assert c.counted_on == "meta"
    assert c.tensor_flops == {"bf16": 2 * M * N * K}
    assert c.cuda_flops == {} and c.sfu == 0
    assert c.bytes_read == (M * K + N * K) * 2 and c.bytes_written == M * N * 2
    t_sol, binding, times = bound(c, H100)
    expected = max(2 * M * N * K / (1979e12 / 2), (M * K + N * K + M * N) * 2 / 3.35e12)
    assert binding == "dram"
    assert t_sol == pytest.approx(expected + H100.launch_floor_s)


def test_fp32_gemm_counts_as_tf32_and_upcast_bf16_stays_bf16(tmp_path):
    M = 64
    axes = {"M": {"type": "var"}}
    f32 = make_problem(tmp_path, "f32", axes, {"A": {"shape": ["M", "M"], "dtype": "float32"},
                                               "B": {"shape": ["M", "M"], "dtype": "float32"}},
                       {"C": {"shape": ["M", "M"], "dtype": "float32"}}, GEMM, [({"M": M}, random_inputs("A", "B"))])
    assert count(f32).tensor_flops == {"tf32": 2 * M ** 3}
    up = make_problem(tmp_path, "up", axes, {"A": {"shape": ["M", "M"], "dtype": "bfloat16"},
                                             "B": {"shape": ["M", "M"], "dtype": "bfloat16"}},
                      {"C": {"shape": ["M", "M"], "dtype": "float32"}},
                      "import torch\ndef run(A, B):\n    return A.float() @ B.float().T\n",
                      [({"M": M}, random_inputs("A", "B"))])
    # bf16 values upcast to fp32 are bf16-exact: a bf16 tensor-core product with fp32 accumulation is legal
    assert count(up).tensor_flops == {"bf16": 2 * M ** 3}


def test_dead_code_is_free(tmp_path):
    ref = "import torch\ndef run(A, B):\n    unused = A @ B\n    return A + 1\n"
    p = make_problem(tmp_path, "dead", {"M": {"type": "var"}},
                     {"A": {"shape": ["M", "M"], "dtype": "float32"}, "B": {"shape": ["M", "M"], "dtype": "float32"}},
                     {"C": {"shape": ["M", "M"], "dtype": "float32"}}, ref, [({"M": 32}, random_inputs("A", "B"))])
    c = count(p)
    assert c.tensor_flops == {}
    assert c.read_by_input == {"A": 32 * 32 * 4, "B": 0}


# ------------------------------------------------------------------------------ a norm

RMSNORM = """import torch
def run(x, w):
    xf = x.to(torch.float32)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * y.to(x.dtype)
"""


def test_rmsnorm_counts(tmp_path):
    B, H = 64, 1024
    p = make_problem(tmp_path, "rms", {"B": {"type": "var"}, "H": {"type": "const", "value": H}},
                     {"x": {"shape": ["B", "H"], "dtype": "bfloat16"}, "w": {"shape": ["H"], "dtype": "bfloat16"}},
                     {"y": {"shape": ["B", "H"], "dtype": "bfloat16"}}, RMSNORM, [({"B": B}, random_inputs("x", "w"))])
    c = count(p)
    # pow, mean, *rstd in fp32 per element, + eps per row; the weight product in bf16; one rsqrt per row
    assert c.cuda_flops == {"fp32": 3 * B * H + B, "fp16": B * H}
    assert c.sfu == B
    assert c.tensor_flops == {}
    assert c.bytes_read == (B * H + H) * 2 and c.bytes_written == B * H * 2


# ------------------------------------------------------------------------------ attention

def _attention_problem(tmp_path, name, reference, S=64, B=2, H=4, D=32):
    axes = {"B": {"type": "const", "value": B}, "H": {"type": "const", "value": H}, "S": {"type": "var"},
            "D": {"type": "const", "value": D}}
    spec = {"shape": ["B", "H", "S", "D"], "dtype": "bfloat16"}
    return make_problem(tmp_path, name, axes, {"q": spec, "k": spec, "v": spec}, {"o": spec}, reference,
                        [({"S": S}, random_inputs("q", "k", "v"))])


def test_causal_sdpa_counts_the_kept_half(tmp_path):
    B, H, S, D = 2, 4, 64, 32
    ref = ("import torch, torch.nn.functional as F\n"
           "def run(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v, is_causal=True)\n")
    c = count(_attention_problem(tmp_path, "sdpa", ref, S, B, H, D))
    kept = S * (S + 1) // 2
    assert c.tensor_flops["bf16"] == pytest.approx(2 * B * H * kept * (D + D))
    assert c.sfu == pytest.approx(B * H * kept)
    assert c.bytes_read == 3 * B * H * S * D * 2 and c.bytes_written == B * H * S * D * 2


def test_manual_causal_mask_scales_both_products(tmp_path):
    B, H, S, D = 2, 4, 64, 32
    ref = """import torch
def run(q, k, v):
    s = (q.float() @ k.float().transpose(-1, -2)) * 0.125
    mask = torch.triu(torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool, device=q.device), 1)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
    return (p @ v.float()).to(q.dtype)
"""
    c = count(_attention_problem(tmp_path, "manual", ref, S, B, H, D))
    kept = S * (S + 1) / 2
    assert c.tensor_flops["bf16"] == pytest.approx(2 * B * H * kept * (D + D))


# ------------------------------------------------------------------------------ gathers

def test_embedding_lookup_reads_only_touched_rows(tmp_path):
    V, D, N = 1000, 64, 256
    ref = """import torch
def get_inputs(axes, device):
    n, v, d = axes["N"], axes["V"], axes["D"]
    return {"ids": torch.arange(n, device=device) % 7, "table": torch.randn(v, d, device=device)}
def run(ids, table):
    return torch.nn.functional.embedding(ids, table)
"""
    p = make_problem(tmp_path, "emb", {"N": {"type": "var"}, "V": {"type": "const", "value": V},
                                       "D": {"type": "const", "value": D}},
                     {"ids": {"shape": ["N"], "dtype": "int64"}, "table": {"shape": ["V", "D"], "dtype": "float32"}},
                     {"out": {"shape": ["N", "D"], "dtype": "float32"}}, ref,
                     [({"N": N}, {"ids": {"type": "custom"}, "table": {"type": "custom"}})], entry="get_inputs")
    c = count(p)
    assert c.counted_on == "meta"
    assert c.read_by_input == {"ids": N * 8, "table": 7 * D * 4}     # 7 distinct rows of the table
    assert c.bytes_written == N * D * 4


def test_paged_table_reads_listed_pages_only(tmp_path):
    P, T, Hd = 512, 40, 16
    ref = """import torch
def get_inputs(axes, device):
    return {"cache": torch.randn(axes["P"], axes["Hd"], device=device),
            "pages": (torch.arange(axes["T"], device=device) * 3).to(torch.int32)}
def run(cache, pages):
    rows = cache[pages.long()]
    return rows.sum(0)
"""
    p = make_problem(tmp_path, "paged", {"P": {"type": "const", "value": P}, "T": {"type": "var"},
                                         "Hd": {"type": "const", "value": Hd}},
                     {"cache": {"shape": ["P", "Hd"], "dtype": "float32"}, "pages": {"shape": ["T"], "dtype": "int32"}},
                     {"out": {"shape": ["Hd"], "dtype": "float32"}}, ref,
                     [({"T": T}, {"cache": {"type": "custom"}, "pages": {"type": "custom"}})], entry="get_inputs")
    c = count(p)
    assert c.read_by_input == {"cache": T * Hd * 4, "pages": T * 4}


def test_slices_read_only_their_part(tmp_path):
    ref = "import torch\ndef run(x):\n    return x[:, 1:] * 2\n"
    p = make_problem(tmp_path, "slice", {"R": {"type": "var"}, "C": {"type": "const", "value": 8}},
                     {"x": {"shape": ["R", "C"], "dtype": "float32"}}, {"y": {"shape": ["R", "7"], "dtype": "float32"}},
                     ref, [({"R": 10}, random_inputs("x"))])
    assert count(p).read_by_input == {"x": 10 * 7 * 4}


def test_indices_from_float_data_get_lazy_values(tmp_path):
    ref = """import torch
def run(logits, table):
    ids = logits.argmax(-1)
    return table[ids]
"""
    N, V = 128, 64       # logits too large to carry values on meta: argmax's indices are unknown there
    p = make_problem(tmp_path, "cpu", {"N": {"type": "var"}, "V": {"type": "const", "value": V}},
                     {"logits": {"shape": ["N", "V"], "dtype": "float32"}, "table": {"shape": ["V", "V"], "dtype": "float32"}},
                     {"out": {"shape": ["N", "V"], "dtype": "float32"}}, ref, [({"N": N}, random_inputs("logits", "table"))])
    c = count(p)
    assert c.counted_on == "values" and "values computed on CPU" in c.notes[0]
    assert V * 4 < c.read_by_input["table"] <= V * V * 4      # the rows argmax picks: several, not all


ROUTED = """import torch
def get_inputs(axes_and_scalars, device):
    t = axes_and_scalars["T"]
    return {"x": torch.randn(t, 64, device=device), "w": torch.randn(2, 64, 64, device=device),
            "expert": (torch.arange(t, device=device) == t - 1).to(torch.int32)}     # 0, ..., 0, 1

def run(x, w, expert):
    out = torch.zeros_like(x)
    for e in range(2):
        rows = torch.nonzero(expert == e).flatten()    # same shapes for both experts, other values
        out[rows] = x[rows] @ w[e]
    return out
"""


def test_data_dependent_shapes_are_not_reused_between_calls_of_the_same_shape(tmp_path):
    T = 16              # expert 0 takes 15 rows, expert 1 one row: 16 rows multiplied in all
    p = make_problem(tmp_path, "routed", {"T": {"type": "var"}},
                     {"x": {"shape": ["T", 64], "dtype": "float32"}, "w": {"shape": [2, 64, 64], "dtype": "float32"},
                      "expert": {"shape": ["T"], "dtype": "int32"}},
                     {"out": {"shape": ["T", 64], "dtype": "float32"}}, ROUTED,
                     [({"T": T}, {n: {"type": "custom"} for n in ("x", "w", "expert")})], entry="get_inputs")
    c = count(p)
    assert c.counted_on == "meta"       # the index values are known there (shadows), no CPU re-count
    assert c.tensor_flops == {"tf32": 2 * T * 64 * 64}


# ------------------------------------------------------------------------------ quantization

FP8_QUANT = """import torch
def run(x):
    xf = x.to(torch.float32)
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 448.0
    return (xf / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), scale
"""


def test_fp8_quantization_writes_one_byte_per_value(tmp_path):
    M, K = 256, 1024
    p = make_problem(tmp_path, "quant", {"M": {"type": "var"}, "K": {"type": "const", "value": K}},
                     {"x": {"shape": ["M", "K"], "dtype": "bfloat16"}},
                     {"q": {"shape": ["M", "K"], "dtype": "float8_e4m3fn"}, "s": {"shape": ["M", "1"], "dtype": "float32"}},
                     FP8_QUANT, [({"M": M}, random_inputs("x"))])
    c = count(p)
    assert c.bytes_read == M * K * 2
    assert c.bytes_written == M * K * 1 + M * 4
    assert c.tensor_flops == {}


def test_fp4_packed_bytes_are_half_a_byte_per_value(tmp_path):
    ref = "import torch\ndef run(x):\n    return x.view(torch.uint8).float().sum()\n"
    p = make_problem(tmp_path, "fp4", {"N": {"type": "var"}}, {"x": {"shape": ["N"], "dtype": "float4_e2m1fn_x2"}},
                     {"s": {"shape": [], "dtype": "float32"}}, ref, [({"N": 64}, random_inputs("x"))])
    assert count(p).bytes_read == 64        # 128 fp4 values packed two per byte


# ------------------------------------------------------------------------------ profiles and unions

def test_profiles_and_fallback_classes():
    for name in ("H100", "H200", "B200", "A100"):
        prof = load_profile(name)
        assert prof.profile_id == f"{name}/datasheet"
        assert prof.tensor["bf16"] > prof.tensor["tf32"] > prof.cuda["fp32"]
    assert load_profile("H100").tensor_rate("fp4") == load_profile("H100").tensor["fp8"]   # no FP4 on Hopper
    assert load_profile("A100").tensor_rate("fp8") == load_profile("A100").tensor["bf16"]
    assert load_profile("B200").tensor_rate("fp4") == 9e15
    assert load_profile("H200").dram_bandwidth == 4.8e12


def test_measured_profile_round_trip(tmp_path):
    prof = measured_from("H200", {"dram_bandwidth": 4.3e12, "tensor.bf16": 7.9e14, "launch_floor_s": 2e-6})
    save_profile(prof, profile_dir=tmp_path)
    assert (tmp_path / "H200.json").is_file()
    loaded = load_profile("H200", "measured", tmp_path)
    assert loaded.profile_id.startswith("H200/measured@")
    assert loaded.dram_bandwidth == 4.3e12 and loaded.tensor["bf16"] == 7.9e14
    assert loaded.tensor["fp8"] == DATASHEETS["H200"].tensor["fp8"]          # not measured: datasheet
    assert set(loaded.measured) == {"dram_bandwidth", "tensor.bf16", "launch_floor_s"}


def test_measured_fields_far_below_the_datasheet_are_not_trusted():
    sheet = DATASHEETS["H100"]
    values = {"tensor.bf16": 0.78 * sheet.tensor["bf16"], "tensor.int8": 0.47 * sheet.tensor["int8"],
              "dram_bandwidth": 3.03e12, "launch_floor_s": 3.1e-6}
    prof = trusted_profile("H100", values, {"tensor.bf16": "best of the battery at NT 12288x2048x4096"})
    assert prof.tensor["bf16"] == values["tensor.bf16"] and "battery" in prof.sources["tensor.bf16"]
    assert prof.tensor["int8"] == sheet.tensor["int8"]                      # 47% of the datasheet: not used
    assert "not trusted" in prof.sources["tensor.int8"]
    assert set(prof.measured) == {"tensor.bf16", "dram_bandwidth", "launch_floor_s"}


def test_a_kernel_that_beats_the_measured_profile_raises_it():
    c = Count(tensor_flops={"bf16": 2 * 16384 * 2048 * 4096}, cuda_flops={}, sfu=0, bytes_read=(16384 + 2048) * 4096 * 2,
              bytes_written=16384 * 2048 * 2, read_by_input={}, counted_on="meta")
    prof = measured_from("H100", {"tensor.bf16": 768e12, "launch_floor_s": 3e-6})
    seconds = c.tensor_flops["bf16"] / 850e12 + 3e-6                      # a GEMM at 850 TFLOP/s
    assert bound(c, prof)[0] > seconds                                   # the measured bound is beaten
    observed = {"label": "gemm", "seconds": seconds, "tensor_flops": c.tensor_flops, "bytes": c.bytes_read}
    raised, changes = raise_to_observed(prof, [observed])
    assert bound(c, raised)[0] <= seconds * (1 + 1e-9)
    assert raised.tensor["bf16"] == pytest.approx(850e12) and "gemm" in raised.sources["tensor.bf16"]
    assert len(changes) == 1 and raised.dram_bandwidth == prof.dram_bandwidth
    slower = {**observed, "seconds": 2 * seconds}
    assert raise_to_observed(prof, [slower]) == (prof, [])


def test_touched_union_is_exact():
    shape = (10, 4)
    a = (np.array([0, 1, 2]), None)
    b = (np.array([2, 3]), None)
    c = (np.array([5]), np.array([1]))
    assert touched_count(shape, [a, b, a]) == (4 * 4, True)
    assert touched_count(shape, [a, c]) == (3 * 4 + 1, True)
    assert touched_count(shape, []) == (0, True)


def test_sol_is_at_least_the_memory_time(tmp_path):
    p = make_problem(tmp_path, "rms2", {"B": {"type": "var"}, "H": {"type": "const", "value": 256}},
                     {"x": {"shape": ["B", "H"], "dtype": "bfloat16"}, "w": {"shape": ["H"], "dtype": "bfloat16"}},
                     {"y": {"shape": ["B", "H"], "dtype": "bfloat16"}}, RMSNORM,
                     [({"B": b}, random_inputs("x", "w")) for b in (1, 4096)])
    for hw in ("H100", "H200", "B200", "A100"):
        for s in sol_for_problem(p, hw):
            prof = load_profile(hw)
            assert s.t_sol_s >= s.bytes / prof.dram_bandwidth
            assert s.t_sol_s >= prof.launch_floor_s
            assert math.isfinite(s.intensity)


SCAN_AXES = {"B": {"type": "const", "value": 8}, "L": {"type": "var"}, "S": {"type": "const", "value": 256}}
SCAN_IO = ({"x": {"shape": ["B", "L"], "dtype": "float32"}, "w": {"shape": ["S"], "dtype": "float32"}},
           {"y": {"shape": ["B", "L"], "dtype": "float32"}})
# y[b, l] = sum_s sum_{l' <= l} x[b, l'] * w[s]: states expanded on chip, scanned along L
SEQUENTIAL_SCAN = """import torch
def run(x, w):
    h = x[:, :, None] * w[None, None, :]
    return h.cumsum(1).sum(-1)
"""
HILLIS_STEELE_SCAN = """import torch
def run(x, w):
    h = x[:, :, None] * w[None, None, :]
    shift = 1
    while shift < h.shape[1]:
        h = h + torch.nn.functional.pad(h[:, :-shift], (0, 0, shift, 0))
        shift *= 2
    return h.sum(-1)
"""


def test_cuda_core_work_as_written_does_not_move_the_bound(tmp_path):
    """A log-depth scan does log2(L) times the elementwise work of a sequential one; T_SOL, a bound
    on any kernel, must not depend on which the reference author chose (docs/ROOFLINE.md)."""
    sols = {}
    for name, reference in (("sequential", SEQUENTIAL_SCAN), ("hillis_steele", HILLIS_STEELE_SCAN)):
        p = make_problem(tmp_path, name, SCAN_AXES, *SCAN_IO, reference, [({"L": 16384}, random_inputs("x", "w"))])
        (sols[name],) = sol_for_problem(p, "H200")
    sequential, hillis_steele = sols["sequential"], sols["hillis_steele"]
    assert hillis_steele.cuda_flops["fp32"] > 3 * sequential.cuda_flops["fp32"]
    assert hillis_steele.times_s["cuda"] > hillis_steele.t_sol_s     # it would bind if counted
    assert hillis_steele.t_sol_s == pytest.approx(sequential.t_sol_s)
    assert any("CUDA-core work as written" in note for note in hillis_steele.notes)


def test_calibration_kernels_run_in_the_triton_interpreter():
    """The FMA / exp2 / empty kernels of `kb calibrate` compute what their counts assume (CPU interpreter)."""
    pytest.importorskip("triton")
    import subprocess
    import sys
    code = """
import torch
from roofline.calibrate import triton_kernels
fma, ex2, empty = triton_kernels()
out = torch.empty(256)
x = torch.arange(256, dtype=torch.float32) * 1e-9
fma[(2,)](out, 0.5, 1.0, 3, BLOCK=128)
assert torch.allclose(out, sum(((((x + c) * 0.5 + 1) * 0.5 + 1) * 0.5 + 1) for c in range(8)))
ex2[(2,)](out, 2, BLOCK=128)
assert torch.allclose(out, sum(torch.exp2(torch.exp2(x + c) - 1) - 1 for c in (0, .25, .5, .75)), atol=1e-5)
empty[(1,)](out)
"""
    env = {**__import__("os").environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
