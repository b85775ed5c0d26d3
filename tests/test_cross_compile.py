"""Cross-compiling Triton kernels for sm_90 on a machine without a GPU (kernelbench.eval.cross_compile).

The interpreter (every other test) runs what the GPU compiler may reject; these compile for real. Each case
runs in a child process: TRITON_INTERPRET must be unset before triton is imported, and conftest sets it here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def nvidia_backend() -> bool:
    try:
        from triton.backends import backends
    except ImportError:
        return False
    return "nvidia" in backends


pytestmark = pytest.mark.skipif(not nvidia_backend(), reason="this Triton has no NVIDIA backend to compile with")

CHILD = textwrap.dedent('''
    import json, sys
    import torch, triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from kernelbench.eval.cross_compile import CrossCompile
    from templates.lean_launch import _hooked, lean

    @triton.jit
    def scale(x, y, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y + offsets, tl.load(x + offsets, mask=offsets < n) * 2, mask=offsets < n)

    @triton.jit
    def staged_dot(a, b, c, K, M: tl.constexpr, BK: tl.constexpr):
        # the interpreter runs any pipeline depth; on the GPU, num_stages copies of both operand tiles must
        # fit in shared memory: 4 x (128 x 128 + 128 x 128) fp16 = 256 KB, over sm_90's 227 KB
        rows, ks = tl.arange(0, M), tl.arange(0, BK)
        acc = tl.zeros((M, M), tl.float32)
        for k in range(0, K, BK):
            acc += tl.dot(tl.load(a + rows[:, None] * K + k + ks[None, :]),
                          tl.load(b + (k + ks[:, None]) * M + rows[None, :]))
        tl.store(c + rows[:, None] * M + rows[None, :], acc)

    x, y = torch.randn(1000), torch.empty(1000)
    stages = int(sys.argv[1])
    a, b, c = torch.randn(128, 512).half(), torch.randn(512, 128).half(), torch.empty(128, 128)
    with CrossCompile(GPUTarget("cuda", 90, 32)) as compiled:
        scale[(8,)](x, y, 1000, BLOCK=128, num_warps=4)
        lean(scale)[(8,)](x, y, 1000, BLOCK=128, num_warps=4)   # a generated launcher; the same signature: once
        staged_dot[(1,)](a, b, c, 512, M=128, BK=128, num_stages=stages)
    assert not _hooked()   # the block's launch hook is gone with it
    print(json.dumps([[r.kernel, r.signature, r.error] for r in compiled.results]))
''')


def cross_compile(stages: int, scratch: Path) -> list[list[str]]:
    script = scratch / "child.py"   # Triton reads a kernel's source from its file
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, str(script), str(stages)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90_once_per_signature_and_launch_nothing(tmp_path):
    results = cross_compile(2, tmp_path)
    assert [r[0] for r in results] == ["scale", "staged_dot"]
    assert results[0][1] == "x:*fp32, y:*fp32, n:i32, BLOCK=128"
    assert all(error == "" for _, _, error in results)


def test_a_kernel_the_gpu_compiler_rejects_is_reported(tmp_path):
    scale, deep = cross_compile(4, tmp_path)
    assert scale[2] == ""
    assert deep[0] == "staged_dot" and "out of resource: 262144 bytes" in deep[2]


def test_refuses_to_run_under_the_interpreter():
    from triton.backends.compiler import GPUTarget

    from kernelbench.eval.cross_compile import CrossCompile
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        with CrossCompile(GPUTarget("cuda", 90, 32)):
            pass
