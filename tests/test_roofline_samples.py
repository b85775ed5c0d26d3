"""Roofline on the SOL-ExecBench sample problems (skipped where ../shared/sol_execbench_sample is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.reference import compile_reference
from roofline import load_profile, sol_for_workload

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample problems not present")


def _dirs():
    return find_problem_dirs(SAMPLES) if SAMPLES.is_dir() else []


@pytest.mark.parametrize("directory", _dirs(), ids=lambda d: d.name)
def test_sample_counts_and_is_sound(directory):
    """Smallest, middle and largest workload count without error; T_SOL >= every unit's time and the memory time."""
    problem = load_problem(directory)
    module = compile_reference(problem.definition)
    by_size = sorted(problem.workloads, key=lambda w: sum(problem.axes_for(w).values()))
    profile = load_profile("B200")
    for workload in {id(w): w for w in (by_size[0], by_size[len(by_size) // 2], by_size[-1])}.values():
        sol = sol_for_workload(problem, workload, profile, module=module)
        assert sol.counted_on in ("meta", "cpu")
        assert sol.bytes_written > 0 and sol.bytes_read > 0
        assert sol.t_sol_s >= sol.bytes / profile.dram_bandwidth + profile.launch_floor_s * 0.999
        assert sol.t_sol_s >= max(sol.times_s.values())
        if problem.name == "020_nvfp4_linear_layer":
            assert set(sol.tensor_flops) == {"fp4"}
        if problem.name == "001_fp8_attention_output_projection":
            assert set(sol.tensor_flops) == {"fp8"}
        if problem.name == "004_fused_residual_rms_mlp":
            assert set(sol.tensor_flops) == {"bf16"}
        if problem.name == "085_geglu_activation":     # fp32 in and out at 4 bytes
            axes = sol.axes
            assert sol.bytes == 4 * axes["batch_size"] * axes["seq_len"] * (axes["input_dim"] + axes["inner_dim"])


def test_published_values_are_read():
    problem = load_problem(SAMPLES / "L1" / "069_rms_norm")
    sol = sol_for_workload(problem, problem.workloads[0], "B200")
    assert sol.published_t_sol_s == pytest.approx(52.9e-6)
    assert 0.9 < sol.ratio_to_published < 1.1


def test_gqa_decode_with_missing_blobs_counts_from_axes():
    problem = load_problem(SAMPLES / "FlashInfer-Bench" / "012_gqa_paged_decode_h32_kv4_d128_ps1")
    workload = problem.workloads[1]                       # batch 1, 362 of 412 pages used
    sol = sol_for_workload(problem, workload, "B200")
    assert any("synthesized" in n for n in sol.notes)
    kv = 2 * 362 * 4 * 128 * 2                           # K and V rows of the listed pages, bf16
    assert sol.bytes_read == 32 * 128 * 2 + kv + 2 * 4 + 362 * 4


def every_workload_bound_or_reason(root: Path, cache: Path) -> tuple[int, int]:
    """Run `kb roofline ROOT --json`; every workload of every problem must come back with a T_SOL or a
    reason. Returns (workloads with T_SOL, workloads with a reason)."""
    result = CliRunner().invoke(main, ["--cache-dir", str(cache), "roofline", str(root), "--hardware", "H100",
                                       "--json", "--jobs", "2"])
    assert result.exit_code == 0, result.output[-3000:]
    lines = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    dirs = find_problem_dirs(root)
    assert len(lines) == len(dirs)
    workloads = [w for line in lines for w in line["workloads"]]
    assert len(workloads) == sum(len(load_problem(d).workloads) for d in dirs)
    for w in workloads:
        assert (w["t_sol_s"] is not None and w["t_sol_s"] > 0) != bool(w["reason"]), w
    counted = sum(w["t_sol_s"] is not None for w in workloads)
    return counted, len(workloads) - counted


def test_kb_roofline_bounds_every_sample_workload(tmp_path):
    counted, reasons = every_workload_bound_or_reason(SAMPLES, tmp_path)
    assert (counted, reasons) == (199, 0)
