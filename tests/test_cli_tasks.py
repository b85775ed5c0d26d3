"""`kb tasks list` / `kb tasks check` and TASK resolution by name under tasks235/."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import SAMPLE_PROBLEMS, TINY_REFERENCE
from kernelbench import cli
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.tasks import resolve_task

GQA = "012_gqa_paged_decode_h32_kv4_d128_ps1"


@pytest.fixture
def kb(monkeypatch):
    """Invoke `kb ...` in-process; its output is no terminal, so the console prints full cells."""
    monkeypatch.delenv("KB_DATA_ROOT", raising=False)

    def invoke(*args, env=None):
        return CliRunner().invoke(cli.main, [str(a) for a in args], env=env, catch_exceptions=False)
    return invoke


def row_of(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if f" {name} " in line]
    return line


# ---------------------------------------------------------------- tasks list

def test_tasks_list_sample(kb, sample_root):
    result = kb("tasks", "list", sample_root)
    assert result.exit_code == 0, result.output
    assert "10 problems under" in result.output
    for relative in SAMPLE_PROBLEMS:
        subset, name = relative.split("/")
        assert name in result.output
        assert subset in row_of(result.output, name)


def test_tasks_list_sample_json(kb, sample_root):
    result = kb("tasks", "list", sample_root, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 10
    assert sorted(f"{r['subset']}/{r['name']}" for r in rows) == sorted(SAMPLE_PROBLEMS)
    assert all(r["error"] is None and r["workloads"] > 0 for r in rows)


def test_tasks_list_marks_invalid_problems(kb, tmp_path, make_problem, tiny_definition):
    make_problem(tmp_path / "L1", name="good")
    tiny_definition["axes"]["hidden"] = {"type": "const"}
    make_problem(tmp_path / "L1", definition=tiny_definition, name="broken")
    result = kb("tasks", "list", tmp_path, "--json")
    rows = {r["name"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows["tiny_rmsnorm"]["error"] is None
    assert "axes.hidden.value" in rows["broken"]["error"]
    table = kb("tasks", "list", tmp_path)
    assert "broken (invalid)" in table.output


# ---------------------------------------------------------------- tasks check

def test_tasks_check_sample(kb, sample_root):
    result = kb("tasks", "check", sample_root)
    assert result.exit_code == 1, result.output
    gqa = row_of(result.output, GQA)
    assert "FAIL" in gqa
    assert "gqa_paged_decode_h32_kv4_d128_ps1_" in gqa and ".safetensors" in gqa
    assert "no blob under the data root" in gqa
    for relative in SAMPLE_PROBLEMS:
        name = relative.split("/")[1]
        if name != GQA:
            assert "│ ok" in row_of(result.output, name), name
    assert "9 passed, 1 failed" in result.output


def test_tasks_check_sample_with_data_root_still_reports_missing_blobs(kb, sample_root, tmp_path):
    result = kb("tasks", "check", sample_root / "FlashInfer-Bench" / GQA, "--data-root", tmp_path)
    assert result.exit_code == 1
    assert str(tmp_path) in result.output and ".safetensors" in result.output


def test_tasks_check_malformed_definition(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["inputs"]["x"]["dtype"] = "float17"
    directory = make_problem(tmp_path, definition=tiny_definition, name="bad")
    result = kb("tasks", "check", directory)
    assert result.exit_code == 1
    assert f"{directory / 'definition.json'}: inputs.x.dtype: unknown dtype 'float17'" in result.output
    assert "0 passed, 1 failed" in result.output


def test_tasks_check_malformed_workload(kb, tmp_path, make_problem, tiny_workloads):
    tiny_workloads[1]["axes"]["batch"] = "eight"
    directory = make_problem(tmp_path, workloads=tiny_workloads, name="bad")
    result = kb("tasks", "check", directory)
    assert result.exit_code == 1
    assert f"{directory / 'workload.jsonl'}:2: axes.batch: must be a non-negative integer" in result.output


def test_tasks_check_mixed_tree(kb, tmp_path, make_problem, tiny_definition):
    make_problem(tmp_path, name="good")
    # (a source no other test compiles: compile_reference caches by source text, see test_problem)
    tiny_definition["reference"] = "def run(x, eps, norm_weight):  # mixed tree\n    return x\n"
    make_problem(tmp_path, definition=tiny_definition, name="bad_order")
    result = kb("tasks", "check", tmp_path)
    assert result.exit_code == 1
    assert "does not take the inputs in order" in result.output
    assert "1 passed, 1 failed" in result.output


def test_tasks_check_ok(kb, tmp_path, make_problem):
    result = kb("tasks", "check", make_problem(tmp_path))
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output


def test_tasks_check_nothing_found(kb, tmp_path):
    result = kb("tasks", "check", tmp_path)
    assert result.exit_code == 2
    assert "error:" in result.output and "no problem directories" in result.output


# ---------------------------------------------------------------- --run

def test_tasks_check_run_sample_rmsnorm(kb, sample_root):
    result = kb("tasks", "check", "--run", sample_root / "FlashInfer-Bench" / "021_rmsnorm_h128")
    assert result.exit_code == 0, result.output
    assert "ran" in row_of(result.output, "021_rmsnorm_h128")
    assert "1 passed, 0 failed" in result.output


def test_tasks_check_run_tiny(kb, tmp_path, make_problem):
    result = kb("tasks", "check", "--run", make_problem(tmp_path))
    assert result.exit_code == 0, result.output
    assert "ok (ran" in result.output


def test_tasks_check_run_wrong_shape_fails(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["reference"] = TINY_REFERENCE.replace("return (", "return ((").replace(
        ".to(x.dtype)", ".to(x.dtype))[:, :32]")
    directory = make_problem(tmp_path, definition=tiny_definition, name="wrong_shape")
    assert kb("tasks", "check", directory).exit_code == 0  # only running the reference shows it
    result = kb("tasks", "check", "--run", directory)
    assert result.exit_code == 1
    row = row_of(result.output, "tiny_rmsnorm")
    assert "FAIL" in row and "reference output disagrees with the definition (line 3)" in row
    assert "y: expected shape (1, 64), got (1, 32)" in row


def test_tasks_check_run_wrong_dtype_and_count(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["reference"] = TINY_REFERENCE.replace(".to(x.dtype)", ".double()")
    result = kb("tasks", "check", "--run", make_problem(tmp_path, definition=tiny_definition, name="a"))
    assert result.exit_code == 1 and "y: expected float32, got torch.float64" in result.output
    tiny_definition["reference"] = TINY_REFERENCE.replace("return (", "return x, (")
    result = kb("tasks", "check", "--run", make_problem(tmp_path, definition=tiny_definition, name="b"))
    assert result.exit_code == 1 and "expected 1 outputs, got 2" in result.output


def test_tasks_check_run_reference_raises(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["reference"] = "def run(x, norm_weight, eps):\n    raise ValueError('kaboom')\n"
    result = kb("tasks", "check", "--run", make_problem(tmp_path, definition=tiny_definition))
    assert result.exit_code == 1
    assert "reference raised on workload line 3: ValueError: kaboom" in result.output


def test_tasks_check_run_nan_output_fails(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["reference"] = TINY_REFERENCE.replace("variance + eps", "variance * 0")
    result = kb("tasks", "check", "--run", make_problem(tmp_path, definition=tiny_definition))
    assert result.exit_code == 1 and "NaN/Inf" in result.output


def test_tasks_check_run_custom_inputs(kb, tmp_path, make_problem, tiny_definition, tiny_workloads):
    tiny_definition["custom_inputs_entrypoint"] = "make_inputs"
    tiny_definition["reference"] = TINY_REFERENCE + (
        "\n\ndef make_inputs(axes, device):\n"
        "    return {'x': torch.ones(axes['batch'], axes['hidden'], device=device)}\n")
    for w in tiny_workloads:
        w["inputs"]["x"] = {"type": "custom"}
    result = kb("tasks", "check", "--run", make_problem(tmp_path, definition=tiny_definition,
                                                        workloads=tiny_workloads))
    assert result.exit_code == 0, result.output


def test_tasks_check_run_safetensors_problem_with_data_root(kb, tmp_path, make_problem, tiny_definition,
                                                            tiny_workloads):
    import torch
    from safetensors.torch import save_file

    data = tmp_path / "data"
    data.mkdir()
    for w in tiny_workloads:
        save_file({"w": torch.ones(64)}, str(data / f"{w['uuid']}.safetensors"))
        w["inputs"]["norm_weight"] = {"type": "safetensors", "path": f"{w['uuid']}.safetensors", "tensor_key": "w"}
    directory = make_problem(tmp_path / "problems", workloads=tiny_workloads)
    missing = kb("tasks", "check", directory)
    assert missing.exit_code == 1 and "w-small.safetensors" in missing.output
    result = kb("tasks", "check", "--run", directory, "--data-root", data)
    assert result.exit_code == 0, result.output
    via_env = kb("tasks", "check", directory, env={"KB_DATA_ROOT": str(data)})
    assert via_env.exit_code == 0, via_env.output


def test_tasks_check_expr_evaluation_error_is_a_fail_row(kb, tmp_path, make_problem, tiny_definition):
    tiny_definition["axes"]["zero"] = {"type": "const", "value": 0}
    tiny_definition["axes"]["half"] = {"type": "expr", "expression": "hidden // zero"}
    result = kb("tasks", "check", make_problem(tmp_path, definition=tiny_definition))
    assert result.exit_code == 1 and "axes.half" in result.output


# ---------------------------------------------------------------- TASK resolution under tasks235/

@pytest.fixture
def tasks_tree(tmp_path, make_problem, monkeypatch):
    root = tmp_path / "tasks235"
    for subset, name in (("L1", "001_rms_norm"), ("L1", "002_softmax"), ("L2", "001_rms_norm"),
                         ("Quant", "003_fp8_gemm")):
        make_problem(root / subset, name=name)
    monkeypatch.setenv("KB_TASKS_ROOT", str(root))   # read by the CLI edge only
    return root


def test_resolve_task_by_name(tasks_tree):
    assert resolve_task("002_softmax", tasks_tree) == tasks_tree / "L1" / "002_softmax"
    assert resolve_task("softmax", tasks_tree) == tasks_tree / "L1" / "002_softmax"       # without the number
    assert resolve_task("fp8_gemm", tasks_tree) == tasks_tree / "Quant" / "003_fp8_gemm"
    assert resolve_task("L2/001_rms_norm", tasks_tree) == tasks_tree / "L2" / "001_rms_norm"  # subset/name


def test_resolve_task_by_directory(tasks_tree, tmp_path):
    directory = tasks_tree / "L1" / "002_softmax"
    assert resolve_task(directory, tasks_tree) == directory
    assert resolve_task(str(directory), tasks_tree) == directory


@pytest.mark.parametrize("name", ["rms_norm", "001_rms_norm"])
def test_resolve_task_ambiguous(tasks_tree, name):
    with pytest.raises(KernelBenchError, match=f"task name '{name}' is ambiguous") as info:
        resolve_task(name, tasks_tree)
    assert "L1/001_rms_norm" in str(info.value) and "L2/001_rms_norm" in str(info.value)


def test_resolve_task_unknown(tasks_tree):
    with pytest.raises(KernelBenchError) as info:
        resolve_task("layer_norm", tasks_tree)
    assert "no problem directory or task named 'layer_norm'" in str(info.value)
    assert str(tasks_tree) in str(info.value)


def test_resolve_task_directory_without_definition(tasks_tree, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KernelBenchError, match="has no definition.json"):
        resolve_task(tmp_path / "empty", tasks_tree)


def test_cli_task_names(kb, tasks_tree):
    ok = kb("tasks", "check", "softmax")
    assert ok.exit_code == 0, ok.output
    assert "1 passed, 0 failed" in ok.output
    ambiguous = kb("tasks", "check", "rms_norm")
    assert ambiguous.exit_code == 2
    assert "error:" in ambiguous.output and "ambiguous" in ambiguous.output
    unknown = kb("tasks", "check", "nope")
    assert unknown.exit_code == 2 and "no problem directory or task named 'nope'" in unknown.output


def test_cli_defaults_to_tasks_root(kb, tasks_tree):
    listed = kb("tasks", "list", "--json")
    assert len(listed.output.splitlines()) == 4
    checked = kb("tasks", "check")
    assert checked.exit_code == 0 and "4 passed, 0 failed" in checked.output
