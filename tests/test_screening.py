"""Screening: one child checks and times many candidates; a broken one never stops the others."""

from __future__ import annotations

import time

from kernelbench.core import statuses
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import Solution, Source
from kernelbench.eval.screening import ScreenConfig, screen
from tiny_problems import RMSNORM_REFERENCE, write_rmsnorm_problem

TRITON_RMSNORM = '''
import torch
import triton
import triton.language as tl


@triton.jit
def _rms(x, w, out, eps, n, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n
    v = tl.load(x + row * n + cols, mask=mask, other=0.0).to(tl.float32)
    # rounded to bf16 as the reference does, multiplied in fp32 (Triton's CPU interpreter gets bf16 * bf16 wrong)
    normed = (v * tl.rsqrt(tl.sum(v * v, 0) / n + eps)).to(tl.bfloat16).to(tl.float32)
    tl.store(out + row * n + cols, normed * tl.load(w + cols, mask=mask).to(tl.float32), mask=mask)


def run(x, weight, eps, out):
    n = x.shape[-1]
    _rms[(x.numel() // n,)](x, weight, out, eps, n, BLOCK=triton.next_power_of_2(n))
'''


def solution(source: str, dps: bool = False, name: str = "c") -> Solution:
    return Solution(name=name, definition="001_tiny_rmsnorm", entry_point="main.py::run",
                    sources=(Source("main.py", source),), languages=("triton" if "triton" in source else "pytorch",),
                    destination_passing_style=dps)


def test_screen_ranks_survivors_and_reports_each_failure(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path))
    uuids = [w.uuid for w in problem.workloads]
    candidates = {
        "reference": solution(RMSNORM_REFERENCE),
        "triton": solution(TRITON_RMSNORM, dps=True),
        "wrong": solution(RMSNORM_REFERENCE.replace("+ eps", "+ eps + 1.0")),
        "raises": solution("def run(x, weight, eps):\n    raise ValueError('boom')\n"),
        "broken": solution("def run(x, weight, eps) return x\n"),
        "hangs": solution("def run(x, weight, eps):\n    while True:\n        pass\n"),
        "crashes": solution("import faulthandler\n\ndef run(x, weight, eps):\n    faulthandler._sigsegv()\n"),
        "after": solution(RMSNORM_REFERENCE + "\n# a later candidate still runs\n"),
    }
    seen = []
    started = time.monotonic()
    results = screen(problem, candidates, ScreenConfig(device="cpu", check=uuids, timed=uuids, candidate_timeout_s=20,
                                                       timing={"warmup": 1, "iterations": 3}),
                     on_result=lambda cid, _: seen.append(cid))
    assert time.monotonic() - started < 120
    assert sorted(seen) == sorted(candidates)
    for ok in ("reference", "triton", "after"):
        assert results[ok].status == statuses.PASSED, results[ok].log
        assert set(results[ok].times_ms) == set(uuids) and all(t > 0 for t in results[ok].times_ms.values())
    assert results["wrong"].status == statuses.INCORRECT_NUMERICAL
    assert results["raises"].status == statuses.RUNTIME_ERROR and "boom" in results["raises"].log
    assert results["broken"].status == statuses.COMPILE_ERROR and "SyntaxError" in results["broken"].log
    assert results["hangs"].status == statuses.TIMEOUT
    assert results["crashes"].status == statuses.RUNTIME_ERROR and "SIGSEGV" in results["crashes"].log
