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

