"""Problem model: loading, validation errors (file, JSONL line, field), axes, tolerance, samples."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import SAMPLE_PROBLEMS, TINY_REFERENCE, write_problem
from kernelbench.core.errors import KernelBenchError, ProblemError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import (Tolerance, find_problem_dirs, load_problem, parse_definition)
from kernelbench.core.reference import compile_reference
from kernelbench.core.validation import check_problem


# ---------------------------------------------------------------- valid problems

def test_tiny_problem_loads(tmp_path, make_problem):
    problem = load_problem(make_problem(tmp_path))
    d = problem.definition
    assert problem.name == d.name == "tiny_rmsnorm"
    assert d.op_type == "rmsnorm" and d.hf_id == "test/tiny"
    assert list(d.inputs) == ["x", "norm_weight", "eps"]  # order kept
    assert list(d.outputs) == ["y"]
    assert [w.uuid for w in problem.workloads] == ["w-small", "w-large", "w-one"]
    assert [w.line for w in problem.workloads] == [1, 2, 3]
    assert problem.workloads[0].axes == {"batch": 2}
    assert problem.subset == tmp_path.name
    assert problem.warnings == []


def test_axes_resolution_const_var_and_nested_expr(tmp_path, make_problem, tiny_definition):
    # Declare the nested expr before the expr it depends on: order must come from dependencies.
    axes = tiny_definition["axes"]
    tiny_definition["axes"] = {"quarter": axes["quarter"], "batch": axes["batch"],
                               "half": axes["half"], "hidden": axes["hidden"],
                               "rows": {"type": "expr", "expression": "batch * quarter + 1"}}
    problem = load_problem(make_problem(tmp_path, definition=tiny_definition))
    values = problem.axes_for(problem.workloads[1])
    assert values == {"batch": 8, "hidden": 64, "half": 32, "quarter": 16, "rows": 8 * 16 + 1}
    assert problem.shape_of(problem.definition.inputs["x"], values) == (8, 64)


def test_smallest_workload_is_the_one_with_fewest_elements(tmp_path, make_problem):
    problem = load_problem(make_problem(tmp_path))
    assert problem.smallest_workload().uuid == "w-one"


def test_zero_d_tensor_and_python_scalar(tmp_path, make_problem, tiny_definition, tiny_workloads):
    tiny_definition["inputs"]["scale"] = {"shape": [], "dtype": "float32"}
    tiny_definition["reference"] = TINY_REFERENCE.replace("def run(x, norm_weight, eps)",
                                                          "def run(x, norm_weight, eps, scale)")
    for w in tiny_workloads:
        w["inputs"]["scale"] = {"type": "random"}
    problem = load_problem(make_problem(tmp_path, definition=tiny_definition, workloads=tiny_workloads))
    scale, eps = problem.definition.inputs["scale"], problem.definition.inputs["eps"]
    assert scale.shape == () and not scale.is_scalar
    assert eps.shape is None and eps.is_scalar
    axes = problem.axes_for(problem.workloads[0])
    assert problem.shape_of(scale, axes) == ()
    assert problem.shape_of(eps, axes) is None
    assert problem.scalar_values(problem.workloads[0]) == {"eps": 1e-5}


def test_integer_literal_shape_entries(tmp_path, make_problem, tiny_definition):
    tiny_definition["inputs"]["x"]["shape"] = ["batch", "1", "hidden"]
    tiny_definition["outputs"]["y"]["shape"] = ["batch", "1", "hidden"]
    problem = load_problem(make_problem(tmp_path, definition=tiny_definition))
    axes = problem.axes_for(problem.workloads[0])
    assert problem.shape_of(problem.definition.inputs["x"], axes) == (2, 1, 64)
    assert problem.shape_of(problem.definition.outputs["y"], axes) == (2, 1, 64)


def test_dtype_alias_float4_e2m1(tmp_path, make_problem, tiny_definition):
    tiny_definition["outputs"]["y"]["dtype"] = "float4_e2m1"
    problem = load_problem(make_problem(tmp_path, definition=tiny_definition))
    assert problem.definition.outputs["y"].dtype == "float4_e2m1fn_x2"


def test_constraints_hold(tmp_path, make_problem, tiny_definition):
    tiny_definition["constraints"] = ["hidden % 16 == 0", "batch >= 1 and quarter == 16", "eps < 1e-3"]
    problem = load_problem(make_problem(tmp_path, definition=tiny_definition))
    assert all(problem.check_constraints(w) == [] for w in problem.workloads)


def test_blank_lines_do_not_shift_line_numbers(tmp_path, make_problem, tiny_workloads):
    lines = [tiny_workloads[0], "", tiny_workloads[1]]
    problem = load_problem(make_problem(tmp_path, workloads=lines))
    assert [w.line for w in problem.workloads] == [1, 3]


def test_find_problem_dirs(tmp_path, make_problem, tiny_definition):
    make_problem(tmp_path / "L1", name="b")
    make_problem(tmp_path / "L2", name="a")
    assert find_problem_dirs(tmp_path) == [tmp_path / "L1" / "b", tmp_path / "L2" / "a"]
    assert find_problem_dirs(tmp_path / "L2" / "a") == [tmp_path / "L2" / "a"]


# ---------------------------------------------------------------- tolerance

def test_tolerance_defaults(tmp_path, make_problem):
    problem = load_problem(make_problem(tmp_path))
    tol = problem.workloads[0].tolerance
    assert (tol.max_atol, tol.max_rtol, tol.required_matched_ratio) == (1e-2, 1e-2, 0.99)
    assert tol.max_error_cap is None and tol.allow_negative_inf is False
    assert tol == Tolerance()
    given = problem.workloads[1].tolerance
    assert (given.max_atol, given.max_rtol, given.required_matched_ratio) == (1e-3, 2e-3, 0.95)


def test_partial_tolerance_keeps_other_defaults(tmp_path, make_problem, tiny_workloads):
    tiny_workloads[0]["tolerance"] = {"max_atol": 0.5, "allow_negative_inf": True, "max_error_cap": 2}
    tol = load_problem(make_problem(tmp_path, workloads=tiny_workloads)).workloads[0].tolerance
    assert tol == Tolerance(max_atol=0.5, max_rtol=1e-2, required_matched_ratio=0.99,
                            max_error_cap=2, allow_negative_inf=True)


def test_tolerance_alias_required_match_ratio(tmp_path, make_problem, tiny_workloads):
    tiny_workloads[0]["tolerance"] = {"required_match_ratio": 0.9}
    problem = load_problem(make_problem(tmp_path, workloads=tiny_workloads))
    assert problem.workloads[0].tolerance.required_matched_ratio == 0.9
    assert problem.warnings == []


def test_unknown_tolerance_field_is_a_warning(tmp_path, make_problem, tiny_workloads):
    tiny_workloads[0]["tolerance"] = {"max_atol": 0.1, "fancy": 3}
    problem = load_problem(make_problem(tmp_path, workloads=tiny_workloads))
    assert problem.workloads[0].tolerance.max_atol == 0.1
    assert any("fancy" in w for w in problem.warnings)


def test_sample_l2_spells_required_match_ratio(sample_root):
    directory = sample_root / "L2" / "004_fused_residual_rms_mlp"
    raw = [json.loads(line) for line in (directory / "workload.jsonl").read_text().splitlines() if line.strip()]
    assert any("required_match_ratio" in (w.get("tolerance") or {}) for w in raw)  # the data's spelling
    problem = load_problem(directory)
    for data, workload in zip(raw, problem.workloads):
        expected = data["tolerance"]
        assert workload.tolerance.required_matched_ratio == expected["required_match_ratio"] == 0.98
        assert workload.tolerance.max_atol == expected["max_atol"]
        assert workload.tolerance.max_rtol == expected["max_rtol"]


# ---------------------------------------------------------------- samples

@pytest.mark.parametrize("relative", SAMPLE_PROBLEMS)
def test_sample_problem_loads(sample_root, relative):
    problem = load_problem(sample_root / relative)
    assert problem.name == relative.split("/")[1]
    assert problem.subset == relative.split("/")[0]
    assert problem.workloads
    for workload in problem.workloads:
        axes = problem.axes_for(workload)
        for spec in problem.definition.inputs.values():
            shape = problem.shape_of(spec, axes)
            assert shape is None or all(isinstance(n, int) and n >= 0 for n in shape)


def test_all_ten_samples_found(sample_root):
    found = [f"{d.parent.name}/{d.name}" for d in find_problem_dirs(sample_root)]
    assert found == sorted(SAMPLE_PROBLEMS)


def test_sample_expr_axes(sample_root):
    problem = load_problem(sample_root / "L1" / "058_moe_expert_token_radix_sort_with_prefix_sum")
    workload = problem.workloads[0]
    axes = problem.axes_for(workload)
    assert axes["num_tokens"] == axes["batch_size"] * axes["seq_len"] * 8
    assert axes["num_experts_plus_one"] == 257


# ---------------------------------------------------------------- malformed definitions

def _drop(key):
    def mutate(d):
        del d[key]
    return mutate


def _set(path, value):
    def mutate(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _del_path(path):
    def mutate(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


BAD_DEFINITIONS = [
    # id, mutation, field, message substring
    ("missing-name", _drop("name"), "name", "required field is missing"),
    ("missing-axes", _drop("axes"), "axes", "required field is missing"),
    ("missing-inputs", _drop("inputs"), "inputs", "required field is missing"),
    ("missing-outputs", _drop("outputs"), "outputs", "required field is missing"),
    ("missing-reference", _drop("reference"), "reference", "required field is missing"),
    ("empty-name", _set(["name"], ""), "name", "non-empty string"),
    ("bad-axis-type", _set(["axes", "batch"], {"type": "dynamic"}), "axes.batch", "type must be one of const, var, expr"),
    ("axis-not-object", _set(["axes", "batch"], 3), "axes.batch", "type must be one of"),
    ("const-without-value", _set(["axes", "hidden"], {"type": "const"}), "axes.hidden.value",
     "const axis needs a non-negative integer value"),
    ("const-negative", _set(["axes", "hidden"], {"type": "const", "value": -4}), "axes.hidden.value",
     "non-negative integer"),
    ("const-float", _set(["axes", "hidden"], {"type": "const", "value": 6.5}), "axes.hidden.value",
     "non-negative integer"),
    ("expr-unknown-name", _set(["axes", "half"], {"type": "expr", "expression": "hiden // 2"}),
     "axes.half.expression", "unknown axes ['hiden']"),
    ("expr-syntax", _set(["axes", "half"], {"type": "expr", "expression": "hidden //"}),
     "axes.half.expression", "cannot parse"),
    ("expr-missing", _set(["axes", "half"], {"type": "expr"}), "axes.half.expression", "non-empty string"),
    ("expr-cycle", _set(["axes", "half"], {"type": "expr", "expression": "quarter * 2"}), "axes", "cycle"),
    ("expr-self-cycle", _set(["axes", "half"], {"type": "expr", "expression": "half + 1"}), "axes", "cycle"),
    ("unknown-dtype", _set(["inputs", "x", "dtype"], "float17"), "inputs.x.dtype", "unknown dtype 'float17'"),
    ("unknown-output-dtype", _set(["outputs", "y", "dtype"], "complex64"), "outputs.y.dtype", "unknown dtype"),
    ("shape-unknown-axis", _set(["inputs", "x", "shape"], ["batch", "hiddn"]), "inputs.x.shape",
     "unknown axis 'hiddn'"),
    ("shape-not-list", _set(["inputs", "x", "shape"], "batch"), "inputs.x.shape", "list of axis names"),
    ("shape-bad-entry", _set(["inputs", "x", "shape"], ["batch", 1.5]), "inputs.x.shape",
     "neither an axis name nor an integer"),
    ("input-without-dtype", _del_path(["inputs", "x", "dtype"]), "inputs.x", "needs both shape and dtype"),
    ("input-without-shape", _del_path(["inputs", "x", "shape"]), "inputs.x", "needs both shape and dtype"),
    ("no-outputs", _set(["outputs"], {}), "outputs", "at least one output"),
    ("input-is-output", _set(["outputs", "x"], {"shape": ["batch"], "dtype": "float32"}), "outputs",
     "both input and output"),
    ("run-missing", _set(["reference"], "import torch\n\ndef forward(x, norm_weight, eps):\n    return x\n"),
     "reference", "defines run"),
    ("reference-not-string", _set(["reference"], ["def run(x): pass"]), "reference", "defines run"),
    ("custom-entrypoint-not-defined", _set(["custom_inputs_entrypoint"], "make_inputs"),
     "custom_inputs_entrypoint", "'make_inputs' is not a function defined in reference"),
    ("constraint-syntax", _set(["constraints"], ["batch >= 1", "hidden %% 2 == 0"]), "constraints[1]",
     "cannot parse"),
    ("constraints-not-list", _set(["constraints"], "batch > 0"), "constraints", "list of expression strings"),
]


@pytest.mark.parametrize("mutate, field, message", [c[1:] for c in BAD_DEFINITIONS],
                         ids=[c[0] for c in BAD_DEFINITIONS])
def test_malformed_definition(tmp_path, make_problem, tiny_definition, mutate, field, message):
    mutate(tiny_definition)
    directory = make_problem(tmp_path, definition=tiny_definition, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    exc = info.value
    path = directory / "definition.json"
    assert exc.path == path
    assert exc.line is None
    assert exc.field == field
    assert message in exc.reason
    text = str(exc)
    assert text.startswith(f"{path}: {field}: ") and message in text


def test_definition_invalid_json(tmp_path, make_problem):
    directory = make_problem(tmp_path, definition='{"name": "x",\n  "axes": }', name="bad")
    with pytest.raises(ProblemError, match="invalid JSON") as info:
        load_problem(directory)
    assert info.value.path == directory / "definition.json"
    assert "line 2" in str(info.value)


def test_definition_not_an_object(tmp_path, make_problem):
    directory = make_problem(tmp_path, definition="[1, 2]", name="bad")
    with pytest.raises(ProblemError, match="top level must be a JSON object"):
        load_problem(directory)


def test_missing_files(tmp_path, make_problem):
    with pytest.raises(ProblemError, match="not a problem directory"):
        load_problem(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProblemError, match="missing definition.json"):
        load_problem(tmp_path / "empty")
    directory = make_problem(tmp_path)
    (directory / "workload.jsonl").unlink()
    with pytest.raises(ProblemError, match="missing workload.jsonl"):
        load_problem(directory)
    (directory / "workload.jsonl").write_text("\n\n")
    with pytest.raises(ProblemError, match="no workloads"):
        load_problem(directory)


def test_problem_error_is_a_kernelbench_error():
    assert issubclass(ProblemError, KernelBenchError)


# ---------------------------------------------------------------- the reference checked against the inputs

def _load_definition(tmp_path, make_problem, definition):
    return load_problem(make_problem(tmp_path, definition=definition)).definition


def test_reference_compiles_and_runs(tmp_path, make_problem):
    definition = load_problem(make_problem(tmp_path)).definition
    module = compile_reference(definition)
    out = module.run(torch.ones(2, 64), torch.ones(64), 1e-5)
    assert out.shape == (2, 64)


@pytest.mark.parametrize("reference, field, message", [
    ("def run(x, norm_weight, eps):\n    return (\n", "reference", "does not import"),
    ("def run_helper():\n    pass\n\nrun = 3\n", "reference", "no callable run"),
    ("def run(x, eps, norm_weight):\n    return x\n", "reference", "does not take the inputs in order"),
    ("def run(x, norm_weight):\n    return x\n", "reference", "does not take the inputs in order"),
    ("def run(x, norm_weight, eps, *, out):\n    return x\n", "reference", "required keyword-only parameters"),
], ids=["syntax-error", "run-not-callable", "inputs-out-of-order", "input-missing", "required-keyword-only"])
def test_reference_checked_against_inputs(tmp_path, make_problem, tiny_definition, reference, field, message):
    tiny_definition["reference"] = reference
    definition = parse_definition(tiny_definition, tmp_path / "definition.json")
    with pytest.raises(ProblemError) as info:
        compile_reference(definition, str(tmp_path / "definition.json"))
    assert info.value.field == field and message in info.value.reason
    assert str(tmp_path / "definition.json") in str(info.value)


def test_bad_reference_refused_every_time(tiny_definition):
    tiny_definition["reference"] = "def run(x, eps, norm_weight):  # refused twice\n    return x\n"
    definition = parse_definition(tiny_definition)
    for _ in range(2):
        with pytest.raises(ProblemError, match="does not take the inputs in order"):
            compile_reference(definition)


def test_same_reference_other_inputs_is_checked(tiny_definition):
    tiny_definition["reference"] = "def run(x, norm_weight, eps):  # shared source\n    return x\n"
    compile_reference(parse_definition(tiny_definition))
    tiny_definition["inputs"] = {"a": {"shape": ["batch"], "dtype": "float32"}}
    with pytest.raises(ProblemError, match="does not take the inputs in order"):
        compile_reference(parse_definition(tiny_definition))


def test_reference_run_with_defaults_or_varargs_is_accepted(tiny_definition):
    for reference in ("def run(x, norm_weight, eps, out=None, **kw):\n    return x\n",
                      "def run(*args):\n    return args[0]\n"):
        tiny_definition["reference"] = reference
        compile_reference(parse_definition(tiny_definition))


def test_custom_entrypoint_prefix_is_not_a_function(tiny_definition):
    # "def get" is a substring of "def get_inputs": load passes, compiling the reference must catch it.
    tiny_definition["reference"] = TINY_REFERENCE + "\ndef get_inputs(axes, device):\n    return {}\n"
    tiny_definition["custom_inputs_entrypoint"] = "get"
    definition = parse_definition(tiny_definition)
    with pytest.raises(ProblemError) as info:
        compile_reference(definition)
    assert info.value.field == "custom_inputs_entrypoint"


# ---------------------------------------------------------------- malformed workloads

def _w(index, mutate):
    """Mutation of workload `index` (0-based; the error then names line index + 1)."""
    def apply(workloads):
        mutate(workloads[index])
    return apply


BAD_WORKLOADS = [
    # id, mutation of the workload list, line, field, message substring
    ("missing-uuid", _w(0, lambda w: w.pop("uuid")), 1, "uuid", "non-empty string"),
    ("missing-var-axis", _w(1, lambda w: w["axes"].pop("batch")), 2, "axes.batch", "var axis has no value"),
    ("non-integer-axis", _w(1, lambda w: w["axes"].update(batch="8")), 2, "axes.batch",
     "must be a non-negative integer, got '8'"),
    ("float-axis", _w(2, lambda w: w["axes"].update(batch=2.0)), 3, "axes.batch", "non-negative integer"),
    ("bool-axis", _w(0, lambda w: w["axes"].update(batch=True)), 1, "axes.batch", "non-negative integer"),
    ("negative-axis", _w(0, lambda w: w["axes"].update(batch=-1)), 1, "axes.batch", "non-negative integer"),
    ("const-axis-mismatch", _w(1, lambda w: w["axes"].update(hidden=128)), 2, "axes.hidden",
     "const axis is 64 in the definition, 128 here"),
    ("axes-not-object", _w(0, lambda w: w.update(axes=[2])), 1, "axes", "must be an object"),
    ("missing-scalar-input", _w(1, lambda w: w["inputs"].pop("eps")), 2, "inputs.eps", "input has no source"),
    ("inputs-not-object", _w(0, lambda w: w.update(inputs=None)), 1, "inputs", "must be an object"),
    ("bad-input-type", _w(1, lambda w: w["inputs"].update(x={"type": "zeros"})), 2, "inputs.x.type",
     "type must be one of random, scalar, custom, safetensors"),
    ("input-source-not-object", _w(0, lambda w: w["inputs"].update(x="random")), 1, "inputs.x.type",
     "type must be one of"),
    ("scalar-without-value", _w(2, lambda w: w["inputs"].update(eps={"type": "scalar"})), 3, "inputs.eps.value",
     "a scalar input needs a numeric value"),
    ("scalar-string-value", _w(0, lambda w: w["inputs"].update(eps={"type": "scalar", "value": "1e-5"})), 1,
     "inputs.eps.value", "numeric value"),
    ("custom-without-entrypoint", _w(1, lambda w: w["inputs"].update(x={"type": "custom"})), 2, "inputs.x",
     "custom input but the definition has no custom_inputs_entrypoint"),
    ("safetensors-without-path", _w(1, lambda w: w["inputs"].update(x={"type": "safetensors", "tensor_key": "x"})),
     2, "inputs.x.path", "a safetensors input needs path and tensor_key"),
    ("safetensors-without-key", _w(0, lambda w: w["inputs"].update(x={"type": "safetensors", "path": "a.st"})),
     1, "inputs.x.tensor_key", "needs path and tensor_key"),
    ("random-for-python-scalar", _w(1, lambda w: w["inputs"].update(eps={"type": "random"})), 2, "inputs.eps",
     "cannot be random"),
    ("negative-tolerance", _w(1, lambda w: w["tolerance"].update(max_atol=-0.1)), 2, "tolerance.max_atol",
     "must be a non-negative number, got -0.1"),
    ("string-tolerance", _w(0, lambda w: w.update(tolerance={"max_rtol": "0.1"})), 1, "tolerance.max_rtol",
     "non-negative number"),
    ("ratio-above-one", _w(1, lambda w: w["tolerance"].update(required_matched_ratio=1.5)), 2,
     "tolerance.required_matched_ratio", "a ratio cannot exceed 1"),
    ("alias-ratio-above-one", _w(0, lambda w: w.update(tolerance={"required_match_ratio": 2})), 1,
     "tolerance.required_matched_ratio", "cannot exceed 1"),
    ("allow-negative-inf-not-bool", _w(0, lambda w: w.update(tolerance={"allow_negative_inf": 1})), 1,
     "tolerance.allow_negative_inf", "true or false"),
    ("tolerance-not-object", _w(2, lambda w: w.update(tolerance=0.1)), 3, "tolerance", "must be an object"),
    ("duplicate-uuid", _w(2, lambda w: w.update(uuid="w-small")), 3, "uuid", "uuid repeats line 1"),
]


@pytest.mark.parametrize("mutate, line, field, message", [c[1:] for c in BAD_WORKLOADS],
                         ids=[c[0] for c in BAD_WORKLOADS])
def test_malformed_workload(tmp_path, make_problem, tiny_workloads, mutate, line, field, message):
    mutate(tiny_workloads)
    directory = make_problem(tmp_path, workloads=tiny_workloads, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    exc = info.value
    path = directory / "workload.jsonl"
    assert exc.path == path
    assert exc.line == line
    assert exc.field == field
    assert message in exc.reason
    assert str(exc).startswith(f"{path}:{line}: {field}: ") and message in str(exc)


def test_workload_bad_json_on_line_2(tmp_path, make_problem, tiny_workloads):
    lines = [tiny_workloads[0], '{"uuid": "w2", "axes": {"batch": 2},', tiny_workloads[2]]
    directory = make_problem(tmp_path, workloads=lines, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    exc = info.value
    assert exc.path == directory / "workload.jsonl" and exc.line == 2 and exc.field is None
    assert "invalid JSON" in exc.reason
    assert str(exc).startswith(f"{directory / 'workload.jsonl'}:2: invalid JSON")


def test_workload_line_not_an_object(tmp_path, make_problem, tiny_workloads):
    directory = make_problem(tmp_path, workloads=[tiny_workloads[0], "[1, 2]"], name="bad")
    with pytest.raises(ProblemError, match="each line must be a JSON object") as info:
        load_problem(directory)
    assert info.value.line == 2


def test_workload_constraint_violated(tmp_path, make_problem, tiny_definition, tiny_workloads):
    tiny_definition["constraints"] = ["batch % 2 == 0"]
    directory = make_problem(tmp_path, definition=tiny_definition, workloads=tiny_workloads, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    exc = info.value  # w-one (batch 1) is on line 3
    assert exc.path == directory / "workload.jsonl" and exc.line == 3 and exc.field == "axes"
    assert "constraint 'batch % 2 == 0' is false" in exc.reason


def test_workload_constraint_on_unknown_name(tmp_path, make_problem, tiny_definition):
    tiny_definition["constraints"] = ["heads > 0"]
    directory = make_problem(tmp_path, definition=tiny_definition, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    assert info.value.line == 1 and info.value.field == "axes"
    assert "cannot be evaluated" in info.value.reason and "heads" in info.value.reason


def test_workload_constraint_uses_scalar_inputs(tmp_path, make_problem, tiny_definition, tiny_workloads):
    tiny_definition["constraints"] = ["eps <= 1e-5"]
    tiny_workloads[1]["inputs"]["eps"]["value"] = 0.1
    with pytest.raises(ProblemError, match="eps <= 1e-5") as info:
        load_problem(make_problem(tmp_path, definition=tiny_definition, workloads=tiny_workloads, name="bad"))
    assert info.value.line == 2


# ---------------------------------------------------------------- bugs found

def test_expr_axis_evaluation_error_names_file_line_field(tmp_path, make_problem, tiny_definition):
    tiny_definition["axes"]["zero"] = {"type": "const", "value": 0}
    tiny_definition["axes"]["half"] = {"type": "expr", "expression": "hidden // zero"}
    directory = make_problem(tmp_path, definition=tiny_definition, name="bad")
    with pytest.raises(ProblemError) as info:
        load_problem(directory)
    assert info.value.path == directory / "workload.jsonl" and info.value.line == 1
    assert info.value.field == "axes.half.expression"


def test_expr_axis_negative_value_is_refused(tmp_path, make_problem, tiny_definition):
    tiny_definition["axes"]["half"] = {"type": "expr", "expression": "hidden - 100"}
    tiny_definition["inputs"]["x"]["shape"] = ["batch", "half"]
    with pytest.raises(ProblemError):
        load_problem(make_problem(tmp_path, definition=tiny_definition, name="bad"))


def test_negative_integer_shape_entry_is_refused(tmp_path, make_problem, tiny_definition):
    tiny_definition["inputs"]["x"]["shape"] = ["batch", -1]
    with pytest.raises(ProblemError) as info:
        load_problem(make_problem(tmp_path, definition=tiny_definition, name="bad"))
    assert info.value.field == "inputs.x.shape"


# ---------------------------------------------------------------- keys the definition does not declare (official data)

def _extras_problem(root, reference, *, inputs=None, workload_inputs=None, axes=None, custom=None, name="extras"):
    """x [batch, hidden=4] and weight [hidden] (float32) in; y out; `run` from `reference`; one workload."""
    definition = {
        "name": name, "axes": {"batch": {"type": "var"}, "hidden": {"type": "const", "value": 4}},
        "inputs": inputs or {"x": {"shape": ["batch", "hidden"], "dtype": "float32"},
                             "weight": {"shape": ["hidden"], "dtype": "float32"}},
        "outputs": {"y": {"shape": ["batch", "hidden"], "dtype": "float32"}},
        "reference": reference, "custom_inputs_entrypoint": custom,
    }
    workload = {"uuid": "w1", "axes": {"batch": 2, **(axes or {})},
                "inputs": workload_inputs or {"x": {"type": "random"}, "weight": {"type": "random"}}}
    return load_problem(write_problem(root, definition, [workload], name=name))


def _call_reference(problem, root=None):
    """(argument names, argument values, run's output) for the first workload, as the evaluator calls run."""
    module = compile_reference(problem.definition)
    workload = problem.workloads[0]
    values = generate_inputs(problem, workload, seed=0, reference_module=module, root=root)
    names = [a.name for a in problem.arguments(workload)]
    assert len(values) == len(names)
    with torch.no_grad():
        return names, values, module.run(*values)


def _warned(problem, field, words):
    hits = [w for w in problem.warnings if f"workload.jsonl:1: {field}: " in w and words in w]
    return len(hits) == 1 and hits[0].startswith(str(problem.directory / "workload.jsonl"))


def test_axis_that_is_really_a_scalar_parameter_of_run(tmp_path):
    reference = "def run(x, weight, groups):\n    return x * weight + groups\n"
    problem = _extras_problem(tmp_path, reference, axes={"groups": 3})
    assert _warned(problem, "axes.groups", "passed to run as the scalar 'groups'")
    workload = problem.workloads[0]
    assert workload.axes == {"batch": 2} and workload.inputs["groups"].value == 3
    names, (x, weight, groups), y = _call_reference(problem)
    assert names == ["x", "weight", "groups"] and groups == 3
    assert torch.equal(y, x * weight + 3)


def test_axis_that_gives_a_scalar_input_its_value(tmp_path):
    reference = "def run(x, weight, groups):\n    return x * weight + groups\n"
    inputs = {"x": {"shape": ["batch", "hidden"], "dtype": "float32"}, "weight": {"shape": ["hidden"], "dtype": "float32"},
              "groups": {"shape": None, "dtype": "int32"}}
    problem = _extras_problem(tmp_path, reference, inputs=inputs, axes={"groups": 5})
    assert _warned(problem, "axes.groups", "passed to run as the scalar 'groups'")
    names, values, _ = _call_reference(problem)
    assert names == ["x", "weight", "groups"] and values[2] == 5
    assert problem.arguments(problem.workloads[0])[2].spec.is_scalar   # the definition's own spec


def test_axis_nobody_takes_is_offered_to_constraints_and_custom_inputs(tmp_path):
    reference = ("import torch\n\ndef run(x, weight):\n    return x * weight\n\n"
                 "def make(axes, device):\n    return {'x': torch.full((axes['batch'], 4), float(axes['heads'])),"
                 " 'weight': torch.ones(4)}\n")
    custom = {"x": {"type": "custom"}, "weight": {"type": "custom"}}
    problem = _extras_problem(tmp_path, reference, axes={"heads": 7}, workload_inputs=custom, custom="make")
    assert _warned(problem, "axes.heads", "offered by name to constraints and the custom-inputs entrypoint only")
    workload = problem.workloads[0]
    assert workload.extra_axes == {"heads": 7} and problem.scalar_values(workload) == {"heads": 7}
    names, (x, _), _ = _call_reference(problem)
    assert names == ["x", "weight"] and float(x[0, 0]) == 7.0


def test_bias_missing_from_the_definition_reaches_run(tmp_path):
    reference = ("import torch\n\ndef run(x, weight, bias):\n    return x * weight + bias\n\n"
                 "def make(axes, device):\n    return {'x': torch.ones(axes['batch'], 4), 'weight': torch.full((4,), 2.0),"
                 " 'bias': torch.arange(4.0)}\n")
    custom = {"x": {"type": "custom"}, "weight": {"type": "custom"}, "bias": {"type": "custom"}}
    problem = _extras_problem(tmp_path, reference, workload_inputs=custom, custom="make")
    assert _warned(problem, "inputs.bias", "passed to run as its parameter of that name")
    assert problem.arguments(problem.workloads[0])[2].spec is None   # declared nowhere
    names, values, y = _call_reference(problem)
    assert names == ["x", "weight", "bias"]
    assert torch.equal(y, torch.full((2, 4), 2.0) + torch.arange(4.0))


def test_bias_between_inputs_goes_to_its_parameter_position(tmp_path):
    save_file({"b": torch.tensor([10.0, 20.0, 30.0, 40.0])}, str(tmp_path / "bias.safetensors"))
    reference = "def run(x, bias, weight):\n    return x * weight + bias\n"
    sources = {"x": {"type": "random"}, "weight": {"type": "random"},
               "bias": {"type": "safetensors", "path": "bias.safetensors", "tensor_key": "b"}}
    problem = _extras_problem(tmp_path / "p", reference, workload_inputs=sources)
    names, (x, bias, weight), y = _call_reference(problem, root=tmp_path)
    assert names == ["x", "bias", "weight"] and bias.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert torch.equal(y, x * weight + bias)
    assert list(problem.workloads[0].inputs) == ["x", "bias", "weight"]   # the trace echoes call order


def test_random_extra_input_leaves_run_its_default(tmp_path):
    reference = "def run(x, weight, bias=None):\n    return x * weight if bias is None else x\n"
    sources = {"x": {"type": "random"}, "weight": {"type": "random"}, "bias": {"type": "random"}}
    problem = _extras_problem(tmp_path, reference, workload_inputs=sources)
    assert _warned(problem, "inputs.bias", "run gets its default")
    names, (x, weight), y = _call_reference(problem)
    assert names == ["x", "weight"] and (y == x * weight).all()


@pytest.mark.parametrize("reference, sources, field, message", [
    ("def run(x, weight, bias):\n    return x\n", {"bias": {"type": "random"}}, "inputs.bias", "no shape or dtype"),
    ("def run(x, weight, out):\n    return x\n", {}, "inputs.out", "run requires 'out'"),
    ("def run(x, weight, bias=None, scale=1.0):\n    return x\n", {"scale": {"type": "scalar", "value": 2.0}},
     "inputs.bias", "run takes 'bias' before 'scale'"),
], ids=["random-extra-without-default", "required-parameter-nobody-gives", "gap-before-an-extra"])
def test_extra_arguments_that_cannot_be_passed(tmp_path, reference, sources, field, message):
    with pytest.raises(ProblemError) as info:
        _extras_problem(tmp_path, reference,
                        workload_inputs={"x": {"type": "random"}, "weight": {"type": "random"}, **sources})
    assert info.value.line == 1 and info.value.field == field and message in info.value.reason
    assert str(info.value.path).endswith("workload.jsonl")


def test_keys_nobody_takes_are_ignored_with_a_warning(tmp_path, make_problem, tiny_workloads):
    tiny_workloads[1]["inputs"]["bias"] = {"type": "random"}
    tiny_workloads[1]["inputs"].pop("norm_weight")
    tiny_workloads[1]["axes"]["heads"] = 4
    tiny_workloads[1]["comment"] = "from the generator"
    problem = load_problem(make_problem(tmp_path, workloads=tiny_workloads))
    workload = problem.workloads[1]
    assert list(workload.inputs) == ["x", "norm_weight", "eps"] and workload.inputs["norm_weight"].kind == "random"
    assert workload.axes == {"batch": 8} and workload.extra_axes == {"heads": 4}
    path = problem.directory / "workload.jsonl"
    expected = {f"{path}:2: inputs.bias: not an input of the definition nor a parameter of run: ignored",
                f"{path}:2: inputs.norm_weight: input has no source: drawn at random, as the official harness does",
                f"{path}:2: axes.heads: not an axis of the definition: offered by name to constraints and the "
                f"custom-inputs entrypoint only",
                f"{path}:2: comment: not a workload field: ignored"}
    assert set(problem.warnings) == expected
    assert len(generate_inputs(problem, workload, seed=0)) == 3


def test_tasks_check_prints_the_warnings_and_passes(tmp_path, make_problem, tiny_workloads):
    tiny_workloads[0]["inputs"]["bias"] = {"type": "random"}
    result = check_problem(make_problem(tmp_path, workloads=tiny_workloads), run=True)
    assert result.ok and result.ran
    assert any("workload.jsonl:1: inputs.bias: " in m for m in result.messages)
