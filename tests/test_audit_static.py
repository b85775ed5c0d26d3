"""Static audit rules: each fires on a minimal attack, none fires on comments, strings or honest code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit.rules import DETECTED_BY, RULES, STATIC
from audit.static import scan_cuda_text, scan_python, scan_solution
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.solution import Solution, Source

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"


def solution(source: str, *, dps: bool = False, extra: dict[str, str] | None = None) -> Solution:
    sources = [Source("kernel.py", source)] + [Source(p, c) for p, c in (extra or {}).items()]
    return Solution("s", "d", "kernel.py::run", tuple(sources), destination_passing_style=dps)


def rules(source: str, problem=None, **kwargs) -> set[str]:
    return {f.rule for f in scan_solution(solution(source, **kwargs), problem)}


# One minimal attack per static rule (value-returning unless noted).
ATTACKS = {
    "cache-by-pointer": "import torch\n_c = {}\ndef run(x):\n    k = x.data_ptr()\n    if k not in _c:\n"
                        "        _c[k] = x * 2\n    return _c[k]\n",
    "cache-by-shape": "import torch\n_c = {}\ndef run(x):\n    if x.shape not in _c:\n        _c[x.shape] = x * 2\n"
                      "    return _c[x.shape]\n",
    "cache-by-call-count": "_n = 0\n_last = None\ndef run(x):\n    global _n, _last\n    _n += 1\n    if _n > 5:\n"
                           "        return _last\n    _last = x * 2\n    return _last\n",
    "cache-by-value": "_c = {}\ndef run(x):\n    key = float(x.sum().item())\n    if key in _c:\n        return _c[key]\n"
                      "    _c[key] = x * 2\n    return _c[key]\n",
    "skipped-work": "_done = False\ndef run(x, out):\n    global _done\n    if _done:\n        return\n"
                    "    out.copy_(x * 2)\n    _done = True\n",
    "lazy-output": "import torch\nclass Lazy(torch.Tensor):\n    pass\ndef run(x):\n    return x\n",
    "background-thread": "import threading\ndef run(x):\n    return x * 2\n",
    "unsynced-stream": "import torch\ndef run(x):\n    s = torch.cuda.Stream()\n    with torch.cuda.stream(s):\n"
                       "        y = x * 2\n    return y\n",
    "monkeypatch": "import time\ntime.perf_counter = lambda: 0.0\ndef run(x):\n    return x * 2\n",
    "introspection": "import sys\ndef run(x):\n    return sys._getframe(1).f_locals['expected']\n",
    "evaluator-import": "from kernelbench.core.correctness import compare\ndef run(x):\n    return x * 2\n",
    "file-access": "import torch\ndef run(x):\n    return torch.load('/tmp/answers.pt')\n",
    "dynamic-code": "def run(x):\n    return eval('x * 2')\n",
    "constant-output": "import torch\ndef run(x):\n    return torch.zeros_like(x)\n",
    "precision-downgrade": "import torch\ntorch.backends.cuda.matmul.allow_tf32 = True\ndef run(x):\n    return x @ x\n",
    "global-state": "import os\nos.environ['CUDA_LAUNCH_BLOCKING'] = '0'\ndef run(x):\n    return x * 2\n",
    "subprocess": "import os\ndef run(x):\n    os.system('true')\n    return x * 2\n",
    "network": "import urllib.request\ndef run(x):\n    urllib.request.urlopen('http://x')\n    return x\n",
    "persisting-l2": "def run(x, lib):\n    lib.cudaDeviceSetLimit(6, 1 << 20)\n    return x\n",
}


def test_every_static_rule_has_an_attack_here():
    static_rules = {r for r, by in DETECTED_BY.items() if STATIC in by} - {"shape-specialization"}
    assert static_rules == set(ATTACKS)


@pytest.mark.parametrize("rule", sorted(ATTACKS))
def test_rule_fires_on_its_attack(rule):
    dps = rule == "skipped-work"
    assert rule in rules(ATTACKS[rule], dps=dps)


@pytest.mark.parametrize("rule", sorted(ATTACKS))
def test_the_same_text_in_comments_and_strings_does_not_fire(rule):
    quoted = "\n".join("# " + line for line in ATTACKS[rule].splitlines())
    source = f"{quoted}\nTEXT = {ATTACKS[rule]!r}\n'''\n{ATTACKS[rule]}'''\n\ndef run(x):\n    return x * 2\n"
    assert rules(source) == set()


def test_names_are_resolved_through_aliases_getattr_and_setattr():
    assert "precision-downgrade" in rules("import torch as t\nt.backends.cuda.matmul.allow_tf32 = True\n"
                                          "def run(x):\n    return x\n")
    assert "precision-downgrade" in rules("from torch.backends.cuda import matmul as m\nm.allow_fp16_accumulation = True\n"
                                          "def run(x):\n    return x\n")
    assert "monkeypatch" in rules("import torch\nsetattr(torch, 'matmul', None)\ndef run(x):\n    return x\n")
    assert "monkeypatch" in rules("import torch\nE = torch.cuda.Event\nE.elapsed_time = lambda s, o: 0.0\n"
                                  "def run(x):\n    return x\n")
    assert "monkeypatch" in rules("t = __import__('time')\nt.perf_counter = None\ndef run(x):\n    return x\n")
    assert "subprocess" in rules("from subprocess import run as go\ndef run(x):\n    go(['ls'])\n    return x\n")
    assert "evaluator-import" in rules("import importlib\nm = importlib.import_module('kernelbench.eval.timing')\n"
                                       "def run(x):\n    return x\n")
    assert "dynamic-code" in rules("import importlib\ndef run(x, name='os'):\n    importlib.import_module(name)\n"
                                   "    return x\n")


def test_strict_settings_are_global_state_not_a_downgrade():
    found = rules("import torch\ntorch.backends.cuda.matmul.allow_tf32 = False\n"
                  "torch.set_float32_matmul_precision('highest')\ndef run(x):\n    return x\n")
    assert found == {"global-state"}  # assigning a backend flag at all changes process state


def test_a_parameter_named_like_a_builtin_is_not_the_builtin():
    assert rules("def run(input, out):\n    out.copy_(input * 2)\n    input.grad = None\n", dps=True) == set()


HONEST = {
    "triton kernel": '''
import torch
import triton
import triton.language as tl

@triton.jit
def _scale(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2, mask=mask)

def run(x):
    out = torch.empty_like(x)
    _scale[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    return out
''',
    "torch.compile with inductor config": '''
import torch
import torch._inductor.config as config
config.coordinate_descent_tuning = True
torch._dynamo.config.cache_size_limit = 64

@torch.compile(mode="max-autotune-no-cudagraphs")
def run(x):
    return torch.nn.functional.gelu(x) * 2
''',
    "streams joined back": '''
import torch

def run(a, b):
    main = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(main)
    with torch.cuda.stream(side):
        c = a @ b
    main.wait_stream(side)
    c.record_stream(main)
    return c
''',
    "caches of kernels, configs and workspaces": '''
import functools
import torch

_kernels = {}
_buffers = {}

@functools.lru_cache(maxsize=None)
def _block_for(n):
    return 128 if n < 4096 else 256

def _kernel(dtype, block):
    key = (dtype, block)
    if key not in _kernels:
        _kernels[key] = torch.compile(lambda t: t * 2)
    return _kernels[key]

def run(x):
    block = _block_for(x.shape[-1])
    buf = _buffers.get(x.shape)
    if buf is None:
        buf = _buffers[x.shape] = torch.empty_like(x)
    torch.mul(x, 2, out=buf)
    fn = _kernel(x.dtype, block)
    return fn(x) + buf.clone() * 0
''',
    "lazy init and early return on empty input": '''
import torch

_ready = False

def _init():
    global _ready
    if _ready:
        return
    _ready = True

def run(x, out):
    _init()
    if x.numel() == 0:
        return
    out.copy_(x * 2)
''',
    "printing an exception's traceback": '''
import traceback
import torch

def run(x):
    try:
        return x * 2
    except RuntimeError:
        traceback.print_exc()
        raise
''',
    "reading its own CUDA source next to the module": '''
import os
from pathlib import Path

SOURCE = (Path(__file__).parent / "kernel.cu").read_text()
with open(os.path.join(os.path.dirname(__file__), "kernel.cu")) as f:
    SOURCE2 = f.read()

def run(x):
    return x * 2
''',
    "a class memoizing its own state": '''
import torch

class Op:
    def __init__(self):
        self._weight_t = None
    def __call__(self, x, w):
        if self._weight_t is None or self._weight_t.shape != w.T.shape:
            self._weight_t = None
        return x @ w.T

_op = Op()

def run(x, w):
    return _op(x, w)
''',
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_code_gets_no_finding(name):
    dps = "out" in HONEST[name].split("def run(")[1].split(")")[0]
    assert scan_solution(solution(HONEST[name], dps=dps)) == []


def test_the_lean_launch_module_beside_a_kernel_is_honest():
    """templates/lean_launch.py keys compiled kernels by each pointer's 16-byte alignment class."""
    from templates import LEAN_LAUNCH_FILE, lean_launch_source
    kernel = HONEST["triton kernel"].replace("_scale[", "_lean(_scale)[").replace(
        "import torch\n", "import torch\nfrom lean_launch import lean as _lean\n", 1)
    assert scan_solution(solution(kernel, extra={LEAN_LAUNCH_FILE: lean_launch_source()})) == []


@pytest.mark.parametrize("key, rule", [("x.data_ptr() % 16", "cache-by-shape"),            # outputs by alignment
                                       ("(x.data_ptr() % 16, x.data_ptr())", "cache-by-pointer"),
                                       ("x.data_ptr() % 4096", "cache-by-pointer"),      # page offset: near an address
                                       ("x.data_ptr() % 24", "cache-by-pointer")])
def test_an_alignment_key_is_a_shape_key_and_still_caught_when_it_returns_outputs(key, rule):
    attack = f"import torch\n_c = {{}}\ndef run(x):\n    k = {key}\n    if k not in _c:\n        _c[k] = x * 2\n" \
             "    return _c[k]\n"
    assert rule in rules(attack)


def test_shape_rules_use_the_problem_var_axes():
    if not SAMPLE.is_dir():
        pytest.skip("sample problems absent")
    gemm = load_problem(SAMPLE / "FlashInfer-Bench" / "004_gemm_n128_k2048")
    body = "def run(A, B):\n    M, K = A.shape\n    if {cond}:\n        return A @ B.T\n    return A @ B.T\n"
    def found(cond):
        return {f.rule for f in scan_solution(solution(body.format(cond=cond)), gemm)}
    assert "shape-specialization" in found("M == 16294")
    assert "shape-specialization" in found("A.size(0) in (952, 172)")
    assert found("K == 2048") == set()        # a const axis: the definition fixes it
    assert found("M == 1") == set()           # tiny sizes are ordinary special cases
    assert found("M >= 16294") == set()       # thresholds pick configs
    assert found("A.dim() == 2") == set()
    assert {f.rule for f in scan_solution(solution(body.format(cond="M == 16294")))} == set()  # no problem given


def test_cuda_sources_are_scanned_as_code_without_comments_and_strings():
    code = '''
// accessPolicyWindow would keep B in L2 -- not used here
/* system("rm -rf /") */
const char* msg = "hitRatio";
__global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }
'''
    assert scan_cuda_text("k.cu", code) == []
    bad = code + '''
void pin(cudaStream_t s, void* p, size_t n) {
    cudaStreamAttrValue attr;
    attr.accessPolicyWindow.base_ptr = p;
    cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, n);
    std::system("nvidia-smi -lgc 1980");
}
'''
    found = scan_cuda_text("k.cu", bad)
    assert {f.rule for f in found} == {"persisting-l2", "subprocess", "global-state"}
    assert any(":9:" in f.evidence for f in found)  # line numbers survive the blanking


def test_cuda_code_inside_a_python_string_is_scanned():
    source = 'SRC = """\n#include <cuda_runtime.h>\n__global__ void k() {}\nvoid f() { cudaCtxResetPersistingL2Cache(); }\n"""\n' \
             "def run(x):\n    return x\n"
    assert "persisting-l2" in rules(source)
    assert rules('DOC = "we never call cudaCtxResetPersistingL2Cache"\ndef run(x):\n    return x\n') == set()


def test_a_source_that_does_not_parse_yields_no_finding():
    assert scan_solution(solution("def run(x:\n")) == []


def test_findings_name_file_and_line():
    (finding,) = scan_python("k.py", "import os\n\n\ndef run(x):\n    os.system('true')\n")
    assert finding.rule == "subprocess" and finding.evidence.startswith("k.py:5:")


def test_every_rule_is_kebab_case_with_a_one_line_rationale_and_documented():
    doc = (ROOT / "docs" / "AUDIT.md").read_text()
    for rule, rationale in RULES.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule)
        assert rationale and "\n" not in rationale
        assert f"`{rule}`" in doc, f"docs/AUDIT.md does not describe {rule}"


def test_references_of_the_sample_and_tasks235_get_no_static_finding():
    roots = [p for p in (SAMPLE, ROOT / "tasks235") if p.is_dir()]
    if not roots:
        pytest.skip("no problems to scan")
    checked = 0
    for root in roots:
        for directory in find_problem_dirs(root):
            problem = load_problem(directory)
            ref = Solution("ref", problem.name, "reference.py::run", (Source("reference.py", problem.definition.reference),))
            assert scan_solution(ref, problem) == [], directory
            checked += 1
    assert checked >= 3


HONEST_CPP = r'''
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

// one block per row; cudaStreamCreate would escape the timer -- we launch on torch's stream
__global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}

void run(torch::Tensor x, torch::Tensor y) {
    const at::cuda::CUDAGuard guard(x.device());
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    int n = x.numel();
    scale<<<(n + 255) / 256, 256, 0, stream>>>(x.data_ptr<float>(), y.data_ptr<float>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (n == 0) { cudaStreamSynchronize(stream); }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run, "scale by two"); }
'''

CPP_ATTACKS = {
    "unsynced-stream": "cudaStream_t side; cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);",
    "file-access": 'FILE* f = fopen("/tmp/expected.bin", "rb");',
    "dynamic-code": 'auto ref = py::module_::import("kernelbench.core.reference");',
    "introspection": "PyFrameObject* frame = PyEval_GetFrame();",
    "monkeypatch": 'py::setattr(py::module_::import("time"), "perf_counter", fake);',
    "precision-downgrade": "at::globalContext().setAllowTF32CuBLAS(true);",
    "global-state": "cudaDeviceSetCacheConfig(cudaFuncCachePreferL1);",
}


def test_an_honest_cpp_solution_has_no_findings():
    assert scan_cuda_text("kernel.cu", HONEST_CPP) == []


@pytest.mark.parametrize("rule", sorted(CPP_ATTACKS))
def test_each_cpp_attack_is_flagged_by_its_rule(rule):
    attacked = HONEST_CPP.replace("    int n = x.numel();", "    int n = x.numel();\n    " + CPP_ATTACKS[rule])
    assert rule in {f.rule for f in scan_cuda_text("kernel.cu", attacked)}


def test_defining_a_cuda_timer_function_interposes_it_and_is_flagged():
    fake = 'extern "C" cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {\n  *ms = 0.001f; return cudaSuccess;\n}\n'
    assert {f.rule for f in scan_cuda_text("kernel.cu", HONEST_CPP + fake)} == {"monkeypatch"}
    calling = "void wait(cudaEvent_t e) {\n  cudaEventSynchronize(e);\n}\n"
    assert scan_cuda_text("kernel.cu", HONEST_CPP + calling) == []


def test_a_cpp_solutions_sources_are_scanned_by_scan_solution():
    from kernelbench.core.solution import parse_solution
    attacked = HONEST_CPP.replace("int n = x.numel();", "int n = x.numel(); " + CPP_ATTACKS["unsynced-stream"])
    solution = parse_solution({"name": "c", "definition": "d", "spec": {"languages": ["cuda_cpp"],
                               "entry_point": "main.cpp::run"},
                               "sources": [{"path": "main.cpp", "content": "#include \"k.cuh\"\n"},
                                           {"path": "k.cuh", "content": attacked}]})
    assert {f.rule for f in scan_solution(solution)} == {"unsynced-stream"}
