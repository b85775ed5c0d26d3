"""The rowwise family: which problems it takes, what it renders, and that the renders pass the evaluator.

Golden files (tests/golden/rowwise_*.py) hold the rendered sources of three matches at fixed configurations.
After an intended change to the templates or the code generator, regenerate them and review the diff:

    KB_UPDATE_GOLDEN=1 PYTHONPATH=$PWD python3 -m pytest -q tests/test_family_rowwise.py -k golden
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.family import FAMILIES
from kernelbench.generate.families.rowwise import configurations, verify
from kernelbench.generate.rowcode import KernelConfig
from kernelbench.generate.rowprogram import Unsupported
from roofline import sol_for_workload

from conftest import SAMPLE_ROOT, write_problem

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
L1 = ROOT / "tasks235" / "L1"

# Every tasks235 problem of the family, the two official RMSNorm samples, and one the family was not written
# for (028: LayerNorm modulated by per-sequence shift and scale vectors, broadcast over the tokens).
FAST = ["001_llama3_8b_rmsnorm", "023_qwen3_8b_qk_norm", "036_llama3_8b_cross_entropy",
        "sample:FlashInfer-Bench/021_rmsnorm_h128"]
SLOW = ["004_llama3_8b_rmsnorm_backward", "021_gemma2_9b_rmsnorm", "022_llama3_1_70b_fused_add_rmsnorm",
        "024_whisper_large_v3_layernorm", "042_clip_vit_large_layernorm_backward",
        "025_command_r_layernorm_no_bias", "031_phi3_mini_causal_scaled_softmax",
        "032_gemma2_9b_softcap_sliding_softmax",
        "033_bge_large_padding_mask_softmax", "034_whisper_large_v3_vocab_log_softmax", "035_qwen2_5_7b_token_logprobs",
        "037_gemma2_9b_softcap_cross_entropy", "038_llama3_1_8b_temperature_softmax", "039_gpt_oss_20b_sink_softmax",
        "043_vit_base_attention_softmax_backward", "044_llama3_8b_cross_entropy_backward",
        "047_qwen2_5_7b_token_logprobs_backward", "049_qwen3_8b_qk_norm_backward", "sample:L1/069_rms_norm",
        "028_flux_dev_adaln_modulate"]


def problem_dir(task: str) -> Path:
    if task.startswith("sample:"):
        if not SAMPLE_ROOT.is_dir():
            pytest.skip(f"official sample problems not present at {SAMPLE_ROOT}")
        return SAMPLE_ROOT / task.split(":", 1)[1]
    return L1 / task


@lru_cache(maxsize=None)
def matched(task: str):
    """(problem, match) of a family task; matching traces and verifies, so it is done once per session."""
    problem = load_problem(problem_dir(task))
    match = FAMILIES["rowwise"].match(problem)
    assert match is not None, FAMILIES["rowwise"].last_rejection
    return problem, match


def smallest_axes(problem) -> dict[str, int]:
    return problem.axes_for(problem.smallest_workload())


# ---------------------------------------------------------------------------------------------- the evaluator

@pytest.mark.parametrize("task", FAST + [pytest.param(t, marks=pytest.mark.slow) for t in SLOW])
def test_first_configuration_passes_the_evaluator(task):
    problem, match = matched(task)
    family = FAMILIES["rowwise"]
    config = family.space(match, smallest_axes(problem))[0]
    traces = evaluate(problem, family.render(match, config),
                      EvalConfig(device="cpu", rounds=2, max_workloads=1, timing=None))
    assert [t.evaluation.status for t in traces] == [PASSED], traces[0].evaluation.log[-2000:]


# ---------------------------------------------------------------------------------------------- configurations

def run_in_process(problem, solution, workload, seed: int = 5):
    """The solution's outputs and the reference's on one round of a workload (Triton through the interpreter)."""
    module = compile_reference(problem.definition)
    inputs = generate_inputs(problem, workload, seed=seed, reference_module=module)
    expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                              len(problem.definition.outputs))
    axes = problem.axes_for(workload)
    outputs = [torch.full(problem.shape_of(s, axes), float("nan"), dtype=torch_dtype(s.dtype))
               for s in problem.definition.outputs.values()]
    load_entry_point(solution, materialize(solution))(*inputs, *outputs)
    return compare(problem, workload, outputs, expected)


def tiling(block_m, block_n, warps=4, per_sm=0, split=0):
    return {"block_m": block_m, "block_n": block_n, "num_warps": warps, "num_stages": 1, "programs_per_sm": per_sm,
            "split_target": split}


# Each task under tilings that take the other code paths: looped passes over short column tiles, several rows
# per tile, persistent programs, rows split over programs (the CPU "GPU" has 4 SMs).
PATHS = {
    "022_llama3_1_70b_fused_add_rmsnorm": [tiling(2, 512), tiling(4, 8192, per_sm=1)],
    "036_llama3_8b_cross_entropy": [tiling(1, 4096, split=4), tiling(2, 8192, per_sm=1)],
    "042_clip_vit_large_layernorm_backward": [tiling(8, 512, per_sm=1), tiling(8, 1024, per_sm=2)],
}
SLOW_PATHS = {
    "031_phi3_mini_causal_scaled_softmax": [tiling(2, 256), tiling(4, 1024, per_sm=2)],
    "035_qwen2_5_7b_token_logprobs": [tiling(1, 8192, split=8), tiling(1, 16384)],
    "038_llama3_1_8b_temperature_softmax": [tiling(1, 4096, split=4)],
    "039_gpt_oss_20b_sink_softmax": [tiling(2, 256), tiling(1, 1024, split=2)],
    "044_llama3_8b_cross_entropy_backward": [tiling(1, 4096, split=4)],
    "049_qwen3_8b_qk_norm_backward": [tiling(64, 128, per_sm=1)],
}


@pytest.mark.parametrize("task,config", [(t, c) for t, cs in PATHS.items() for c in cs] +
                         [pytest.param(t, c, marks=pytest.mark.slow) for t, cs in SLOW_PATHS.items() for c in cs])
def test_configurations_change_speed_not_results(task, config):
    problem, match = matched(task)
    comparison = run_in_process(problem, FAMILIES["rowwise"].render(match, config), problem.smallest_workload())
    assert comparison.status == PASSED, comparison.message


def test_space_is_a_ranked_list_of_distinct_renderable_tilings():
    problem, match = matched("036_llama3_8b_cross_entropy")
    family = FAMILIES["rowwise"]
    for axes in (smallest_axes(problem), problem.axes_for(problem.workloads[-1])):
        configs = family.space(match, axes)
        assert 8 <= len(configs) <= 64
        assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
        assert all(KernelConfig.from_dict(json.loads(json.dumps(c))) == KernelConfig(**c) for c in configs)
    family.render(match, configs[-1])
    for n_cols, n_rows in ((128, 40960), (4096, 1), (8192, 8192), (152064, 4), (262144, 16384)):
        for cross, columns in ((False, False), (True, False), (True, True)):
            configs = configurations(n_cols, n_rows, cross, columns)
            assert 8 <= len(configs) <= 64, (n_cols, n_rows, cross, columns)
            assert all(c["programs_per_sm"] >= 1 for c in configs) if cross else True
            assert not any(c["split_target"] for c in configs) if columns else True


def test_shape_class_groups_shapes_that_share_a_tiling():
    problem, match = matched("001_llama3_8b_rmsnorm")
    family = FAMILIES["rowwise"]
    key = lambda **axes: family.shape_class(match, {**smallest_axes(problem), **axes})  # noqa: E731
    assert key(batch_size=4, seq_len=512) == key(batch_size=2, seq_len=1024)
    assert key(batch_size=1, seq_len=1) != key(batch_size=4, seq_len=2048)


# ---------------------------------------------------------------------------------------------- traffic

@pytest.mark.parametrize("task", ["001_llama3_8b_rmsnorm", "023_qwen3_8b_qk_norm", "036_llama3_8b_cross_entropy",
                                  "042_clip_vit_large_layernorm_backward"])
def test_traffic_is_the_roofline_count(task):
    problem, match = matched(task)
    workload = problem.smallest_workload()
    traffic = FAMILIES["rowwise"].traffic(match, problem.axes_for(workload))
    sol = sol_for_workload(problem, workload, "H100")
    assert (traffic.bytes_read, traffic.bytes_written) == (sol.bytes_read, sol.bytes_written)


# ---------------------------------------------------------------------------------------------- what it refuses

@pytest.mark.parametrize("sample", ["FlashInfer-Bench/004_gemm_n128_k2048",
                                    "L1/001_attention_softmax_dropout_value_matmul_backward",
                                    "FlashInfer-Bench/012_gqa_paged_decode_h32_kv4_d128_ps1"])
def test_gemm_and_attention_are_not_matched(sample_root, sample):
    family = FAMILIES["rowwise"]
    assert family.match(load_problem(sample_root / sample)) is None
    assert family.last_rejection


def test_a_convolution_is_not_matched():
    family = FAMILIES["rowwise"]
    assert family.match(load_problem(L1 / "079_sdxl_unet_resnet_conv3x3")) is None


NEAR_MISSES = {
    # the reduction runs over the rows, not along them
    "softmax_over_rows": "return torch.softmax(x.float(), dim=0).to(x.dtype)",
    # a per-column sum and nothing along the row
    "sum_over_rows": "return (x.float().sum(0) * 2).to(x.dtype).expand(x.shape).contiguous()",
    # ops the family cannot express: a scan, an argmax
    "cumsum_along_rows": "return torch.cumsum(x.float(), dim=-1).to(x.dtype)",
    "argmax_along_rows": "return (x - x.float().max(-1, keepdim=True).indices.to(x.dtype))",
}


@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_near_misses_are_rejected_not_misrendered(tmp_path, tiny_definition, tiny_workloads, name):
    definition = copy.deepcopy(tiny_definition)
    definition["name"] = name
    definition["reference"] = f"import torch\n\ndef run(x, norm_weight, eps):\n    {NEAR_MISSES[name]}\n"
    problem = load_problem(write_problem(tmp_path, definition, tiny_workloads))
    family = FAMILIES["rowwise"]
    assert family.match(problem) is None, f"{name} was matched"


def test_a_plan_that_differs_from_the_reference_is_refused():
    """The defence behind every match: the plan is evaluated against the reference. The attack: a plan with
    one op changed (rsqrt read as sqrt) must not pass."""
    problem, match = matched("001_llama3_8b_rmsnorm")
    plan = copy.deepcopy(match.plan["plan"])
    verify(problem, plan)
    for node in plan["nodes"]:
        if node["op"] == "rsqrt":
            node["op"] = "sqrt"
    with pytest.raises(Unsupported, match="differs from the reference"):
        verify(problem, plan)


# ---------------------------------------------------------------------------------------------- golden sources

GOLDEN_CASES = {
    "001_llama3_8b_rmsnorm": tiling(1, 4096, warps=8),
    "036_llama3_8b_cross_entropy": tiling(1, 4096, warps=8, per_sm=2, split=2),
    "042_clip_vit_large_layernorm_backward": tiling(2, 1024, per_sm=2),
}


@pytest.mark.parametrize("task", sorted(GOLDEN_CASES))
def test_golden_render(task):
    _, match = matched(task)
    source = FAMILIES["rowwise"].render(match, GOLDEN_CASES[task]).sources[0].content
    path = GOLDEN / f"rowwise_{task}.py"
    if os.environ.get("KB_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(source)
    assert path.is_file(), f"no golden file {path}; see this module's docstring"
    assert source == path.read_text(), f"render of {task} changed; see this module's docstring to regenerate"


# ---------------------------------------------------------------------------------------------- GPU compilation

COMPILE_SCRIPT = r'''
import importlib.util, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

path, signatures = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))   # the modules shipped beside kernel.py
spec = importlib.util.spec_from_file_location("kernel", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for name, types, constants, warps in signatures:
    triton.compile(ASTSource(fn=getattr(module, name), signature={**types, **{k: "constexpr" for k in constants}},
                             constexprs=constants), target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    print("compiled", name, constants)
'''

POINTER = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16", "int64": "*i64", "int32": "*i32", "bool": "*i1"}


def kernel_signatures(problem, match, config) -> list:
    """(kernel, argument types, constexprs, warps) of every kernel variant a render launches."""
    plan, definition = match.plan["plan"], problem.definition
    family = FAMILIES["rowwise"]
    solution = family.render(match, config)
    kernels = [line.split("(")[0][4:] for line in solution.sources[0].content.splitlines()
               if line.startswith("def _rows")]
    variants = []
    for name in kernels:
        source = solution.sources[0].content
        header = source[source.index(f"def {name}("):].split(")")[0]
        arguments = [a.strip().split(":")[0] for a in header.split("(", 1)[1].split(",") if a.strip()]
        types = {}
        for a in arguments:
            if a.startswith("in_"):
                types[a] = POINTER[definition.inputs[a[3:]].dtype]
            elif a.startswith("out_"):
                types[a] = POINTER[definition.outputs[a[4:]].dtype]
            elif a.startswith("p_"):
                types[a] = "fp32" if definition.inputs[a[2:]].dtype.startswith("float") else "i32"
            elif a in ("ws", "stats"):
                types[a] = "*fp32"
            elif a not in ("SINGLE", "PHASE", "BLOCK_M", "BLOCK_N", "BLOCK_F"):
                types[a] = "i32"
        blocks = {"BLOCK_M": config["block_m"], "BLOCK_N": config["block_n"]}
        if name.endswith("_final"):
            variants.append([name, types, {"BLOCK_F": 256}, 4])
        elif name.endswith("_split"):
            phases = source[source.index(f"def {name}("):].split("\n\n\n")[0].count("if PHASE == ")
            variants += [[name, types, {"PHASE": p, **blocks}, config["num_warps"]] for p in range(phases)]
        else:
            variants += [[name, types, {"SINGLE": s, **blocks}, config["num_warps"]] for s in (True, False)]
    assert plan["groups"]
    return solution, variants


@pytest.mark.parametrize("task,config", [("036_llama3_8b_cross_entropy", tiling(1, 4096, warps=8, per_sm=2, split=2)),
                                         pytest.param("049_qwen3_8b_qk_norm_backward", tiling(16, 128, per_sm=2),
                                                      marks=pytest.mark.slow),
                                         pytest.param("039_gpt_oss_20b_sink_softmax", tiling(1, 2048, split=2),
                                                      marks=pytest.mark.slow)])
def test_renders_compile_for_the_gpu(tmp_path, task, config):
    """The interpreter accepts code the compiler rejects; every kernel variant compiles for sm_90 (no GPU
    needed), in a child without TRITON_INTERPRET."""
    pytest.importorskip("triton.backends.nvidia")
    problem, match = matched(task)
    solution, variants = kernel_signatures(problem, match, config)
    for source in solution.sources:   # kernel.py and the lean launch module beside it
        (tmp_path / source.path).write_text(source.content)
    path = tmp_path / "kernel.py"
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(path), json.dumps(variants)],
                            capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("compiled") == len(variants)


# ---------------------------------------------------------------------------------------------- the GPU benchmark

@pytest.mark.slow
def test_benchmark_dry_run(tmp_path):
    """benchmarks/family_rowwise.py's CPU side: every case matched, rendered and checked through the interpreter."""
    script = ROOT / "benchmarks" / "family_rowwise.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--dry-run"], capture_output=True, text=True,
                            timeout=1200,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((tmp_path / "family_rowwise.json").read_text())["rows"]
    assert len(rows) == 5 and all(r["results"]["ours"]["check"] == "ok" for r in rows)
    assert (tmp_path / "family_rowwise.md").read_text().count("\n| ") == 7
