"""Input generation: every dtype, seeding, the name rules, 0-d, scalars, custom and safetensors inputs."""

from __future__ import annotations

import math

import pytest
import torch

from kernelbench.core import inputs as inputs_module
from kernelbench.core.dtypes import DTYPE_NAMES, FLOAT4, FLOAT8, torch_dtype
from kernelbench.core.emulation import E2M1_VALUES, unpack_fp4
from kernelbench.core.errors import MissingDataError, ProblemError
from kernelbench.core.inputs import generate_inputs, missing_blobs, random_tensor
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference


def make_definition(inputs: dict, axes: dict, *, reference: str | None = None, **extra) -> dict:
    """A definition with the given inputs {name: (shape, dtype)} and axes, one 0-d output."""
    names = list(inputs)
    return {
        "name": "gen", "axes": axes,
        "inputs": {n: {"shape": shape, "dtype": dtype} for n, (shape, dtype) in inputs.items()},
        "outputs": {"out": {"shape": [], "dtype": "float32"}},
        "reference": reference or f"def run({', '.join(names)}):\n    return {names[0]}\n",
        **extra,
    }


def make_workload(inputs: dict, axes: dict, uuid: str = "w1") -> dict:
    sources = {n: (s if isinstance(s, dict) else {"type": "random"}) for n, s in inputs.items()}
    return {"uuid": uuid, "axes": axes, "inputs": sources}


def bits(t):
    """Something torch.equal can compare for every dtype (fp8/fp4 have no CPU comparison kernels)."""
    if isinstance(t, torch.Tensor) and (t.dtype in FLOAT8 or t.dtype in FLOAT4):
        return t.view(torch.uint8)
    return t


def gen(name, dtype, shape, axes=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return random_tensor(name, dtype, tuple(shape), axes or {}, generator, torch.device("cpu"))


# ---------------------------------------------------------------- every dtype

@pytest.fixture
def dtype_problem(tmp_path, make_problem):
    def build(dtype_name):
        definition = make_definition({"x": (["rows", "cols"], dtype_name)},
                                     {"rows": {"type": "var"}, "cols": {"type": "const", "value": 64}})
        return load_problem(make_problem(tmp_path, definition=definition,
                                         workloads=[make_workload({"x": None}, {"rows": 32})]))
    return build


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
def test_every_dtype(dtype_problem, dtype_name):
    problem = dtype_problem(dtype_name)
    [x] = generate_inputs(problem, problem.workloads[0], device="cpu", seed=0)
    dtype = torch_dtype(dtype_name)
    assert isinstance(x, torch.Tensor)
    assert x.dtype == dtype and tuple(x.shape) == (32, 64) and x.device.type == "cpu"
    if dtype in FLOAT4:
        values = unpack_fp4(x)
        assert values.shape == (32, 128)  # two e2m1 values per byte
        assert torch.isfinite(values).all()
    elif dtype in FLOAT8:
        as_float = x.float()
        assert torch.isfinite(as_float).all()
        assert torch.equal(as_float.to(dtype).view(torch.uint8), x.view(torch.uint8))  # exactly representable
        assert 0.5 < as_float.std() < 1.5
    elif dtype.is_floating_point:
        assert torch.isfinite(x).all()
        assert 0.8 < x.float().std() < 1.2  # plain N(0,1)
    elif dtype == torch.bool:
        assert 0.3 < x.float().mean() < 0.7
    else:
        info = torch.iinfo(dtype)
        assert info.min <= int(x.min()) and int(x.max()) <= info.max


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
def test_seeded_determinism(dtype_problem, dtype_name):
    problem = dtype_problem(dtype_name)
    workload = problem.workloads[0]
    [a] = generate_inputs(problem, workload, seed=7)
    [b] = generate_inputs(problem, workload, seed=7)
    [c] = generate_inputs(problem, workload, seed=8)
    assert torch.equal(bits(a), bits(b))
    assert not torch.equal(bits(a), bits(c))


def test_dtype_aliases_resolve():
    assert torch_dtype("float4_e2m1") == torch.float4_e2m1fn_x2
    assert set(DTYPE_NAMES) >= {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
                                "float4_e2m1fn_x2", "int64", "int32", "int16", "int8", "bool"}


@pytest.mark.parametrize("dtype_name", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_values_exactly_representable(dtype_name):
    dtype = torch_dtype(dtype_name)
    x = gen("activation", dtype_name, (128, 256))
    as_float = x.float()
    assert torch.isfinite(as_float).all()
    # A round trip through fp32 changes nothing: the values are fp8 values, no saturation or NaN codes.
    assert torch.equal(as_float.to(dtype).view(torch.uint8), x.view(torch.uint8))
    assert as_float.abs().max() < 10
    assert len(torch.unique(as_float)) > 20


def test_fp4_packed_bytes_cover_all_codes():
    x = gen("weight_fp4", "float4_e2m1fn_x2", (64, 64))
    assert x.dtype == torch.float4_e2m1fn_x2 and x.shape == (64, 64)
    raw = x.view(torch.uint8)
    assert len(torch.unique(raw)) > 200  # uniform random bytes
    low, high = raw & 0xF, raw >> 4
    assert set(torch.unique(low).tolist()) == set(range(16))
    assert set(torch.unique(high).tolist()) == set(range(16))
    values = unpack_fp4(x)
    assert values.shape == (64, 128)
    assert set(torch.unique(values).tolist()) <= set(E2M1_VALUES.tolist())


# ---------------------------------------------------------------- name rules

@pytest.mark.parametrize("name", ["norm_weight", "rms_weight", "ln_weight", "gamma", "input_layernorm_weight",
                                  "post_attention_rmsnorm_weight"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_norm_weight_near_one(name, dtype):
    x = gen(name, dtype, (4096,)).float()
    assert abs(x.mean() - 1) < 0.02
    assert 0.08 < x.std() < 0.12
    assert (x > 0.4).all()


@pytest.mark.parametrize("name", ["bias", "o_proj_bias", "beta"])
def test_bias_small(name):
    x = gen(name, "float32", (8192,))
    assert abs(x.mean()) < 0.01
    assert 0.08 < x.std() < 0.12


@pytest.mark.parametrize("name", ["variance", "running_var", "weight_scale", "scales", "std", "sigma",
                                  "temperature"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_variances_and_scales_positive(name, dtype):
    x = gen(name, dtype, (64, 64)).float()
    assert (x > 0).all()
    assert x.min() >= 0.5 and x.max() <= 1.5


def test_fp8_scales_positive():
    x = gen("act_scale", "float8_e4m3fn", (1024,)).float()
    assert (x > 0).all()


def test_mask_boolean_mostly_true():
    mask = gen("attention_mask", "bool", (256, 256))
    assert mask.dtype == torch.bool
    assert 0.88 < mask.float().mean() < 0.92
    other = gen("flags", "bool", (256, 256))
    assert 0.45 < other.float().mean() < 0.55


def test_eps_is_1e_5():
    eps = gen("eps", "float32", ())
    assert eps.shape == () and float(eps) == pytest.approx(1e-5)
    layer_eps = gen("layer_norm_eps", "float32", (3,))
    assert torch.allclose(layer_eps, torch.full((3,), 1e-5))


@pytest.mark.parametrize("shape", [(64, 1000), (4, 8, 256)])
def test_probabilities_sum_to_one(shape):
    p = gen("probs", "float32", shape)
    assert (p > 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(shape[:-1]), atol=1e-5)
    half = gen("router_probs", "bfloat16", shape)
    assert torch.allclose(half.float().sum(-1), torch.ones(shape[:-1]), atol=2e-2)


@pytest.mark.parametrize("name, shape", [("gate_proj_weight", (512, 1024)), ("weight", (256, 400)),
                                         ("w1", (300, 256)), ("q_proj", (64, 2048))])
def test_projection_weight_scaled_by_fan_in(name, shape):
    w = gen(name, "float32", shape)
    expected = 1 / math.sqrt(shape[-1])
    assert w.std() == pytest.approx(expected, rel=0.05)


def test_other_floats_are_standard_normal():
    for name in ("hidden_states", "weighted_sum", "weight_vector"):  # a 1-d weight is not a projection
        x = gen(name, "float32", (16384,))
        assert 0.95 < x.std() < 1.05, name


AXES = {"batch": 4, "seq_len": 128, "num_experts": 16, "top_k": 2, "vocab_size": 1000, "hidden": 64}


@pytest.mark.parametrize("name, bound", [
    ("expert_ids", 16), ("experts", 16), ("topk_expert_idx", 16), ("input_ids", 1000), ("token_ids", 1000),
    ("tokens", 1000), ("labels", 1000), ("targets", 1000), ("positions", 128), ("pos", 128),
    pytest.param("position_ids", 128), ("topk_idx", 2), ("indices", 2),  # no axis named after it: the smallest positive axis
])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_index_tensors_within_their_axis(name, bound, dtype):
    x = gen(name, dtype, (8192,), AXES)
    assert x.dtype == torch_dtype(dtype)
    assert int(x.min()) >= 0 and int(x.max()) < bound
    assert int(x.max()) == bound - 1  # the whole axis is covered


def test_lengths_within_one_and_n():
    x = gen("seq_lens", "int32", (4096,), {"batch": 4, "max_seq_len": 128})
    assert int(x.min()) >= 1 and int(x.max()) <= 4


def test_other_integers():
    q = gen("q_data", "int8", (65536,))
    assert int(q.min()) == -128 and int(q.max()) == 127  # quantized data spans the type
    counts = gen("counts", "int32", (4096,))
    assert int(counts.min()) >= 0 and int(counts.max()) < 64


def test_index_rules_through_generate_inputs(tmp_path, make_problem):
    axes = {"tokens": {"type": "var"}, "num_experts": {"type": "const", "value": 8},
            "vocab_size": {"type": "const", "value": 50}, "top_k": {"type": "const", "value": 2}}
    definition = make_definition({"input_ids": (["tokens"], "int64"), "expert_ids": (["tokens", "top_k"], "int32"),
                                  "router_probs": (["tokens", "num_experts"], "float32")}, axes)
    problem = load_problem(make_problem(tmp_path, definition=definition, workloads=[
        make_workload({"input_ids": None, "expert_ids": None, "router_probs": None}, {"tokens": 2048})]))
    ids, experts, probs = generate_inputs(problem, problem.workloads[0], seed=1)
    assert ids.shape == (2048,) and 0 <= int(ids.min()) and int(ids.max()) == 49
    assert experts.shape == (2048, 2) and 0 <= int(experts.min()) and int(experts.max()) == 7
    assert torch.allclose(probs.sum(-1), torch.ones(2048), atol=1e-5)


def test_rules_documented_in_module_docstring():
    doc = inputs_module.__doc__
    for word in ("mask", "norm", "bias", "variance", "scale", "eps", "prob", "sqrt", "num_experts",
                 "vocab_size", "float8", "float4_e2m1fn_x2", "seed", "KB_DATA_ROOT", "custom_inputs_entrypoint"):
        assert word in doc, word


def test_expert_ids_use_num_experts_whatever_the_axis_order():
    axes = {"num_experts_per_tok": 8, "num_experts": 256, "tokens": 4096}
    x = gen("expert_ids", "int32", (4096,), axes)
    assert int(x.max()) > 8


# ---------------------------------------------------------------- 0-d tensors and scalars

def test_zero_d_tensors_and_scalars(tmp_path, make_problem):
    definition = make_definition(
        {"x": (["n"], "float32"), "scale": ([], "float32"), "count": ([], "int32"), "alpha": (None, "float32"),
         "causal": (None, "bool"), "k": (None, "int32")},
        {"n": {"type": "var"}})
    workload = make_workload({"x": None, "scale": None, "count": None,
                              "alpha": {"type": "scalar", "value": 0.25},
                              "causal": {"type": "scalar", "value": True},
                              "k": {"type": "scalar", "value": 3}}, {"n": 5})
    problem = load_problem(make_problem(tmp_path, definition=definition, workloads=[workload]))
    x, scale, count, alpha, causal, k = generate_inputs(problem, problem.workloads[0], seed=0)
    assert x.shape == (5,)
    assert isinstance(scale, torch.Tensor) and scale.shape == () and scale.dtype == torch.float32
    assert float(scale) > 0  # "scale" rule holds for 0-d tensors too
    assert isinstance(count, torch.Tensor) and count.shape == () and count.dtype == torch.int32
    assert alpha == 0.25 and type(alpha) is float
    assert causal is True
    assert k == 3 and type(k) is int


def test_inputs_come_in_definition_order(tmp_path, make_problem):
    problem = load_problem(make_problem(tmp_path))  # tiny rmsnorm: x, norm_weight, eps
    x, weight, eps = generate_inputs(problem, problem.workloads[1], seed=0)
    assert x.shape == (8, 64) and weight.shape == (64,) and eps == 1e-6
    assert abs(float(weight.mean()) - 1) < 0.1  # norm_weight rule


# ---------------------------------------------------------------- custom_inputs_entrypoint

CUSTOM_REFERENCE = '''import torch

SEEN = []

def make_inputs(axes_and_scalars, device):
    SEEN.append((dict(axes_and_scalars), str(device)))
    b, h = axes_and_scalars["batch"], axes_and_scalars["hidden"]
    {body}

def run(x, idx, eps):
    return x
'''
GOOD_BODY = ('return {"x": torch.arange(b * h, dtype=torch.float32, device=device).reshape(b, h), '
             '"idx": torch.randint(0, h, (b,), device=device)}')


def custom_problem(tmp_path, make_problem, body=GOOD_BODY):
    definition = make_definition(
        {"x": (["batch", "hidden"], "float32"), "idx": (["batch"], "int64"), "eps": (None, "float32")},
        {"batch": {"type": "var"}, "hidden": {"type": "const", "value": 16},
         "half": {"type": "expr", "expression": "hidden // 2"}},
        reference=CUSTOM_REFERENCE.replace("{body}", body), custom_inputs_entrypoint="make_inputs")
    workload = make_workload({"x": {"type": "custom"}, "idx": {"type": "custom"},
                              "eps": {"type": "scalar", "value": 1e-6}}, {"batch": 3})
    return load_problem(make_problem(tmp_path, definition=definition, workloads=[workload]))


def test_custom_inputs_entrypoint_values_used(tmp_path, make_problem):
    problem = custom_problem(tmp_path, make_problem)
    module = compile_reference(problem.definition)
    module.SEEN.clear()
    x, idx, eps = generate_inputs(problem, problem.workloads[0], seed=5, reference_module=module)
    assert torch.equal(x, torch.arange(48, dtype=torch.float32).reshape(3, 16))
    assert idx.shape == (3,) and idx.dtype == torch.int64 and (idx < 16).all()
    assert eps == 1e-6
    [(seen_axes, seen_device)] = module.SEEN
    assert seen_axes == {"batch": 3, "hidden": 16, "half": 8, "eps": 1e-6}  # axes (expr included) and scalars
    assert seen_device == "cpu"
    # the entry point runs after seeding: same seed same values, another seed other values
    _, again, _ = generate_inputs(problem, problem.workloads[0], seed=5, reference_module=module)
    assert torch.equal(idx, again)
    other = [generate_inputs(problem, problem.workloads[0], seed=s, reference_module=module)[1] for s in range(6, 12)]
    assert any(not torch.equal(idx, o) for o in other)


def test_custom_inputs_compiles_reference_when_not_given(tmp_path, make_problem):
    problem = custom_problem(tmp_path, make_problem)
    x, _, _ = generate_inputs(problem, problem.workloads[0], seed=0)
    assert x.shape == (3, 16)


@pytest.mark.parametrize("body, message", [
    ('return {"x": torch.zeros(b, h, dtype=torch.float64), "idx": torch.zeros(b, dtype=torch.int64)}',
     "custom_inputs_entrypoint gave (3, 16) torch.float64, the definition says (3, 16) float32"),
    ('return {"x": torch.zeros(b, h + 1), "idx": torch.zeros(b, dtype=torch.int64)}',
     "gave (3, 17) torch.float32, the definition says (3, 16) float32"),
    ('return {"x": torch.zeros(b, h)}', "custom_inputs_entrypoint returned no value for 'idx'"),
    ('return [torch.zeros(b, h)]', "make_inputs returned list, not a dict"),
], ids=["dtype-mismatch", "shape-mismatch", "missing-key", "not-a-dict"])
def test_custom_inputs_mismatch_is_a_clear_error(tmp_path, make_problem, body, message):
    problem = custom_problem(tmp_path, make_problem, body)
    with pytest.raises(ProblemError) as info:
        generate_inputs(problem, problem.workloads[0], seed=0)
    assert message in str(info.value)


def test_custom_inputs_mismatch_names_the_field(tmp_path, make_problem):
    problem = custom_problem(tmp_path, make_problem,
                             'return {"x": torch.zeros(b, h, dtype=torch.float16), "idx": torch.zeros(b)}')
    with pytest.raises(ProblemError) as info:
        generate_inputs(problem, problem.workloads[0], seed=0)
    assert info.value.field == "inputs.x"


# ---------------------------------------------------------------- safetensors inputs

@pytest.fixture
def blob_problem(tmp_path, make_problem):
    from safetensors.torch import save_file

    data = tmp_path / "data"
    (data / "blobs").mkdir(parents=True)
    save_file({"idx": torch.arange(6, dtype=torch.int32), "other": torch.ones(2)},
              str(data / "blobs" / "w1.safetensors"))

    def build(path="blobs/w1.safetensors", key="idx"):
        definition = make_definition({"x": (["n", "h"], "float32"), "kv_indices": (["n"], "int32")},
                                     {"n": {"type": "var"}, "h": {"type": "const", "value": 4}})
        workload = make_workload({"x": None, "kv_indices": {"type": "safetensors", "path": path,
                                                            "tensor_key": key}}, {"n": 6})
        return load_problem(make_problem(tmp_path / "problems", definition=definition, workloads=[workload]))
    return data, build


def test_safetensors_loaded_via_root_argument(blob_problem, monkeypatch):
    data, build = blob_problem
    problem = build()
    assert missing_blobs(problem, data) == []
    x, idx = generate_inputs(problem, problem.workloads[0], seed=0, root=data)
    assert x.shape == (6, 4)
    assert torch.equal(idx, torch.arange(6, dtype=torch.int32))


def test_library_never_reads_the_data_root_variable(blob_problem, monkeypatch):
    """Only the CLI edge reads KB_DATA_ROOT (Settings.from_environment); the library takes `root`."""
    data, build = blob_problem
    monkeypatch.setenv("KB_DATA_ROOT", str(data))
    problem = build()
    assert [name for _, name, _ in missing_blobs(problem)] == ["kv_indices"]
    with pytest.raises(MissingDataError):
        generate_inputs(problem, problem.workloads[0], seed=0)


def test_safetensors_absolute_path(blob_problem, monkeypatch):
    data, build = blob_problem
    problem = build(path=str(data / "blobs" / "w1.safetensors"))
    _, idx = generate_inputs(problem, problem.workloads[0], seed=0)
    assert idx.shape == (6,)


def test_missing_blob_is_a_clear_error(blob_problem, monkeypatch):
    data, build = blob_problem
    problem = build(path="blobs/gqa_missing_0123abcd.safetensors")
    [(line, name, path)] = missing_blobs(problem, data)
    assert (line, name, path) == (1, "kv_indices", data / "blobs" / "gqa_missing_0123abcd.safetensors")
    with pytest.raises(MissingDataError) as info:
        generate_inputs(problem, problem.workloads[0], seed=0, root=data)
    exc = info.value
    assert isinstance(exc, ProblemError)
    assert "gqa_missing_0123abcd.safetensors" in str(exc)
    assert str(data / "blobs" / "gqa_missing_0123abcd.safetensors") in str(exc)
    assert "KB_DATA_ROOT" in str(exc) and "--data-root" in str(exc)
    assert exc.path == problem.directory / "workload.jsonl" and exc.line == 1
    assert exc.field == "inputs.kv_indices.path"


def test_missing_tensor_key_is_a_clear_error(blob_problem):
    data, build = blob_problem
    problem = build(key="nope")
    with pytest.raises(ProblemError) as info:
        generate_inputs(problem, problem.workloads[0], seed=0, root=data)
    assert "'nope'" in str(info.value) and "idx" in str(info.value)
    assert info.value.field == "inputs.kv_indices.tensor_key"
