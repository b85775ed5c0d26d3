"""What keeps a CPU evaluation (Triton's interpreter, torch's CPU kernels) practical without changing what it
checks: the child's environment and the float16 convolution emulation (kernelbench.core.emulation)."""

from __future__ import annotations

import json
import subprocess
import sys

from kernelbench.eval.evaluator import child_environment


def test_a_cpu_child_gets_one_openblas_thread_a_gpu_child_is_left_alone(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    cpu = child_environment("cpu")
    assert cpu["TRITON_INTERPRET"] == "1" and cpu["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)   # as in a GPU run's parent
    gpu = child_environment("cuda:0")
    assert "TRITON_INTERPRET" not in gpu and "OPENBLAS_NUM_THREADS" not in gpu
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")      # the user's own setting wins
    assert child_environment("cpu")["OPENBLAS_NUM_THREADS"] == "2"


# In a child: the registration is for the whole process, and this one must keep torch's own kernels.
HALF_CONVOLUTION = """
import json, torch, torch.nn.functional as F
from kernelbench.core.emulation import emulate_half_convolution_for_this_process
g = torch.Generator().manual_seed(0)
x = torch.randn(2, 32, 50, generator=g)
w = torch.randn(48, 32, 3, generator=g) / 10
b = torch.randn(48, generator=g) / 10
fp32_before = F.conv1d(x, w, b, stride=2, padding=1)
native = F.conv1d(x.half(), w.half(), b.half(), padding=1)
emulate_half_convolution_for_this_process()
emulate_half_convolution_for_this_process()                       # twice: one registration
half = F.conv1d(x.half(), w.half(), b.half(), padding=1)
exact = F.conv1d(x.half().double(), w.half().double(), b.half().double(), padding=1)
rounded = exact.half()                                               # the exact result rounded once
xs = x.half().requires_grad_()
F.conv2d(xs[:, :, None, :], w.half()[:, :, None, :], padding=(0, 1)).sum().backward()
print(json.dumps({
    "dtype": str(half.dtype),
    "exactly_fp32_rounded": bool(torch.equal(half, F.conv1d(x.half().float(), w.half().float(), b.half().float(),
                                                             padding=1).half())),
    "ulps_from_exact": ((half.double() - rounded.double()).abs() / rounded.double().abs().clamp_min(1e-3)).max().item(),
    "native_differs": int((native != half).sum()),
    "fp32_unchanged": bool(torch.equal(fp32_before, F.conv1d(x, w, b, stride=2, padding=1))),
    "grad": str(xs.grad.dtype) if xs.grad is not None else None,
}))
"""


def test_half_convolution_is_computed_in_fp32_and_rounded_once_other_types_untouched():
    done = subprocess.run([sys.executable, "-c", HALF_CONVOLUTION], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dtype"] == "torch.float16" and result["exactly_fp32_rounded"]
    assert result["ulps_from_exact"] < 2 ** -10                       # within one fp16 ulp of the exact result
    assert result["native_differs"] < 0.01 * 2 * 48 * 50              # torch's scalar path: ties round apart
    assert result["fp32_unchanged"] and result["grad"] == "torch.float16"   # autograd still goes through it


# In a child: the patch is for the whole process. Values where truncation and rounding part: ties to even and
# odd, a carry into the exponent, the largest finite values (round to inf), subnormals, NaN, inf, -0.
BF16_ROUNDING = """
import os, json
os.environ["TRITON_INTERPRET"] = "1"
import torch, triton, triton.language as tl
from kernelbench.eval.interpreter_rounding import round_bf16_as_gpus_do_for_this_process

@triton.jit
def convert(x, rounded, stored, truncated, N: tl.constexpr):
    i = tl.arange(0, N)
    v = tl.load(x + i)
    tl.store(rounded + i, v.to(tl.bfloat16).to(tl.float32))
    tl.store(stored + i, v)                                   # the store converts
    tl.store(truncated + i, v.to(tl.bfloat16, fp_downcast_rounding="rtz").to(tl.float32))

bits = [0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3FFFFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x00018000, 0x80000001,
        0x7FC00000, 0xFFC00001, 0x7F800000, 0xFF800000, 0x80000000, 0x3F800001]
x = torch.cat([torch.tensor(bits, dtype=torch.int64).to(torch.int32).view(torch.float32),
               torch.randn(1024 - len(bits), generator=torch.Generator().manual_seed(0)) * 1e3])
def run():
    out = [torch.empty(1024), torch.empty(1024, dtype=torch.bfloat16), torch.empty(1024)]
    convert[(1,)](x, *out, N=1024)
    return out
before = run()
round_bf16_as_gpus_do_for_this_process()
round_bf16_as_gpus_do_for_this_process()                                      # twice: one patch
rounded, stored, truncated = run()
eager = x.to(torch.bfloat16)
def same(a, b):   # bit for bit, a NaN for a NaN (its sign and payload aside)
    nan = b.isnan()
    integer = torch.int16 if b.dtype == torch.bfloat16 else torch.int32
    return bool(torch.equal(a.isnan(), nan) and torch.equal(a.view(integer)[~nan], b.view(integer)[~nan]))
towards_zero = (x.view(torch.int32) & -65536).view(torch.float32)
print(json.dumps({
    "truncated_before": int((before[0].to(torch.bfloat16) != eager).sum()),
    "rounded": same(rounded.to(torch.bfloat16), eager), "stored": same(stored, eager),
    "rtz": same(truncated, towards_zero),
}))
"""


def test_the_interpreter_rounds_float32_to_bf16_to_nearest_even_as_gpus_and_eager_do():
    done = subprocess.run([sys.executable, "-c", BF16_ROUNDING], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["truncated_before"] > 100                     # Triton 3.9's interpreter truncates
    assert result["rounded"] and result["stored"]               # bit for bit as torch, NaN and inf included
    assert result["rtz"]                                        # an explicit round-toward-zero still truncates
