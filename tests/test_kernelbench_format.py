"""kb tasks import-kernelbench: KernelBench problems become problems every command runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core import statuses
from kernelbench.core.errors import ProblemError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.kernelbench_format import convert, import_kernelbench, problem_name
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import reference_solution, save_solution

PROBLEMS = Path(__file__).parent / "kernelbench_problems"
CONV = PROBLEMS / "1_Conv2d_BatchNorm_ReLU_BiasAdd.py"
REDUCTION = PROBLEMS / "2_Scaled_Exp_Sum_Reduction.py"


def test_parameters_and_buffers_become_inputs_sized_by_the_constants(tmp_path):
    definition, workloads = convert(CONV.read_text(), "conv", workloads=[{"batch_size": 1}])
    assert definition["axes"] == {"batch_size": {"type": "var"}, "in_channels": {"type": "const", "value": 3},
                                  "out_channels": {"type": "const", "value": 8}, "height": {"type": "const", "value": 10},
                                  "kernel_size": {"type": "const", "value": 3}}
    inputs = definition["inputs"]
    assert list(inputs) == ["x", "bias", "conv_weight", "conv_bias", "bn_weight", "bn_bias", "bn_running_mean",
                            "bn_running_var", "bn_num_batches_tracked"]
    assert inputs["x"]["shape"] == ["batch_size", "in_channels", "height", "height"]   # height = width = 10
    assert inputs["conv_weight"]["shape"] == ["out_channels", "in_channels", "kernel_size", "kernel_size"]
    assert inputs["bias"]["shape"] == ["out_channels", "1", "1"] and inputs["bn_num_batches_tracked"]["shape"] == []
    assert definition["outputs"] == {"output": {"shape": ["batch_size", "out_channels", "8", "8"], "dtype": "float32"}}
    assert definition["custom_inputs_entrypoint"] == "make_inputs"
    assert [w["axes"] for w in workloads] == [{"batch_size": 4}, {"batch_size": 1}]
    assert all(v == {"type": "custom"} for w in workloads for v in w["inputs"].values())


def test_the_reference_is_the_kernelbench_model_as_a_pure_function(tmp_path):
    [directory], _ = import_kernelbench(CONV, tmp_path)
    problem = load_problem(directory)
    module = compile_reference(problem.definition)
    small = [w for w in problem.workloads if w.axes == {"batch_size": 4}][0]
    inputs = generate_inputs(problem, small, seed=3, reference_module=module)
    assert inputs[0].shape == (4, 3, 10, 10)
    again = generate_inputs(problem, small, seed=3, reference_module=module)
    assert all(torch.equal(a, b) for a, b in zip(inputs, again))   # deterministic per seed
    other = generate_inputs(problem, small, seed=4, reference_module=module)
    assert not torch.equal(inputs[2], other[2])                     # new weights every round
    before = [t.clone() for t in inputs]
    first, second = module.run(*inputs), module.run(*inputs)
    assert torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(before, inputs))   # running statistics updated on copies only
    # the KernelBench Model itself, in training mode with dropout off, loaded with the same state
    namespace: dict = {}
    exec(CONV.read_text(), namespace)
    model = namespace["Model"](3, 8, 3, (8, 1, 1))
    names = list(problem.definition.inputs)
    model.load_state_dict({path: inputs[names.index(name)] for name, path in module._STATE.items()})
    model.dropout.eval()
    with torch.no_grad():
        assert torch.allclose(model(inputs[0]), first)


def test_a_python_scalar_forward_input_and_a_reduction(tmp_path):
    definition, _ = convert(REDUCTION.read_text(), "reduction")
    assert definition["inputs"] == {"x": {"shape": ["batch_size", "dim1", "dim2"], "dtype": "float32"},
                                    "scale": {"shape": None, "dtype": "float32"}}
    assert definition["outputs"]["output"]["shape"] == ["batch_size", "dim2"]
    assert "reduce_dim" not in definition["axes"]   # a constant that sizes no dimension is no axis


def test_import_check_and_eval_of_the_reference_on_cpu(tmp_path):
    out = tmp_path / "tasks"
    runner = CliRunner()
    result = runner.invoke(main, ["tasks", "import-kernelbench", str(PROBLEMS), "--out", str(out),
                                  "--workload", "batch_size=1"])
    assert result.exit_code == 0 and "2 converted, 0 failed" in result.output, result.output
    directories = sorted((out / "kernelbench_problems").iterdir())
    assert [d.name for d in directories] == ["001_conv2d_batchnorm_relu_biasadd", "002_scaled_exp_sum_reduction"]
    result = runner.invoke(main, ["tasks", "check", str(out), "--run"])
    assert result.exit_code == 0 and "2 passed, 0 failed" in result.output, result.output
    for directory in directories:
        problem = load_problem(directory)
        solution = save_solution(reference_solution(problem.name, problem.definition.reference), tmp_path / "ref.json")
        result = runner.invoke(main, ["--db", str(tmp_path / "kb.db"), "eval", str(directory), "--solution", str(solution),
                                      "--device", "cpu", "--rounds", "2", "--warmup", "1", "--iterations", "3", "--json"])
        assert result.exit_code == 0, result.output
        traces = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
        assert [t["evaluation"]["status"] for t in traces] == [statuses.PASSED] * 2, traces


def test_files_that_cannot_be_converted_are_reported(tmp_path):
    (tmp_path / "1_no_model.py").write_text("import torch\n\ndef get_inputs():\n    return []\n")
    (tmp_path / "2_doubled_batch.py").write_text(REDUCTION.read_text().replace(
        "torch.randn(batch_size, dim1, dim2)", "torch.randn(batch_size * 2, dim1, dim2)"))
    written, failed = import_kernelbench(tmp_path, tmp_path / "out")
    assert not written
    assert "defines no Model" in failed[str(tmp_path / "1_no_model.py")]
    assert "changes with the var axis 'batch_size' but is not equal to it" in failed[str(tmp_path / "2_doubled_batch.py")]
    with pytest.raises(ProblemError, match="not var axes"):
        convert(REDUCTION.read_text(), "reduction", workloads=[{"dim1": 3}])
    _, lines = convert(REDUCTION.read_text(), "reduction", workloads=[{"seq_len": 3}])   # not this file's: ignored
    assert [line["axes"] for line in lines] == [{"batch_size": 4}]


def test_problem_names():
    assert problem_name(Path("1_Square_matrix_multiplication_.py")) == "001_square_matrix_multiplication"
    assert problem_name(Path("level3/43_MinGPTCausalAttention.py")) == "043_mingptcausalattention"
