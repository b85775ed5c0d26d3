"""Is work hidden on a side stream timed? (issue 3 / DESIGN: "work on side streams escaping the timer")

A "sneaky" solution launches its real work on a torch.cuda.Stream and returns at once,
without syncing or making the caller's stream wait. We time it three ways:
  - kernelbench's time_gpu (through time_callable): must match the same work done honestly
    on the current stream, within 10%;
  - a naive timer (events on the current stream only, waiting for the end event alone):
    reports far less, which is what the sneaky solution is after;
for the sneaky variant that first waits for the caller's stream (a correct program) and
the one that does not even wait.

    PYTHONPATH=. python3 benchmarks/side_stream_timing.py     # JSON to $OUT if set

Exit status 1 if a check fails (results are written first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import torch

from kernelbench.eval.gpu_state import environment_info
from kernelbench.eval.timing import TimingConfig, time_callable

AGREEMENT = 0.10  # sneaky vs honest under our timer
NAIVE_FRACTION = 0.5  # the naive timer must see less than this fraction of the honest time

_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def honest(work):
    def solution(*args):
        return work(*args)
    return solution


def sneaky(work, wait: bool):
    """``work`` on a side stream, returned before it has run."""
    def solution(*args):
        caller = torch.cuda.current_stream()
        side = _SIDE_STREAMS.get(caller.device.index)
        if side is None:
            side = _SIDE_STREAMS[caller.device.index] = torch.cuda.Stream(caller.device)
        if wait:
            side.wait_stream(caller)  # inputs were written on the caller's stream
        with torch.cuda.stream(side):
            return work(*args)  # no record_stream, no sync: the caller's stream never waits for this
    return solution


def naive_event_ms(fn, inputs, warmup: int = 5, iterations: int = 20) -> float:
    """What a timer that trusts the current stream would report (median ms)."""
    for _ in range(warmup):
        fn(*inputs)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iterations):
        start.record()
        out = fn(*inputs)
        end.record()
        end.synchronize()  # waits for the current stream only
        times.append(start.elapsed_time(end))
        del out
        torch.cuda.synchronize()  # let the escaped work finish before the next sample
    return statistics.median(times)


def workloads(device: torch.device, matmul_n: int, elements: int):
    x = torch.randn(matmul_n, matmul_n, device=device, dtype=torch.bfloat16)
    y = torch.randn(matmul_n, matmul_n, device=device, dtype=torch.bfloat16)
    yield f"matmul_bf16_{matmul_n}^3", torch.matmul, [x, y]
    del x, y
    a = torch.randn(elements, device=device, dtype=torch.bfloat16)
    b = torch.randn(elements, device=device, dtype=torch.bfloat16)
    yield f"add_bf16_{elements // 2**20}M", torch.add, [a, b]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("--elements", type=int, default=256 * 2**20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("side_stream_timing needs a CUDA GPU", file=sys.stderr)
        return 2

    device = torch.device("cuda", torch.cuda.current_device())
    env = environment_info(device)
    print(f"{env['hardware']}  driver {env['driver']}  torch {env['torch']}  triton {env['triton']}")
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "gpu": env["hardware"],
              "environment": env, "agreement": AGREEMENT, "naive_fraction": NAIVE_FRACTION, "rows": []}
    config = TimingConfig()

    for name, work, inputs in workloads(device, args.matmul_n, args.elements):
        reference = time_callable(honest(work), inputs, device, config)
        variants = {"current stream": honest(work), "side stream (waits)": sneaky(work, wait=True),
                    "side stream (no wait)": sneaky(work, wait=False)}
        for label, fn in variants.items():
            result = reference if label == "current stream" else time_callable(fn, inputs, device, config)
            naive = naive_event_ms(fn, inputs)
            ratio = result.median_ms / reference.median_ms
            row = {"workload": name, "variant": label, "ours_ms": result.median_ms, "naive_ms": naive,
                   "ratio_to_honest": ratio, "naive_over_honest": naive / reference.median_ms,
                   "stream_part_ms": result.details["stream_median_ms"],
                   "escaped_tail_ms": result.details["tail_median_ms"],
                   "tail_constant_ms": result.details["tail_constant_ms"], "gpu_state": result.gpu_state}
            row["ok"] = abs(ratio - 1) <= AGREEMENT and (
                label == "current stream" or naive < NAIVE_FRACTION * reference.median_ms)
            report["rows"].append(row)
        del inputs
        torch.cuda.empty_cache()
    report["passed"] = all(r["ok"] for r in report["rows"])

    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "side_stream_timing.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)

    print(f"\n{'workload':20} {'variant':22} {'ours ms':>9} {'/honest':>8} {'naive ms':>9} "
          f"{'in-stream':>9} {'tail':>8}  ok")
    for r in report["rows"]:
        print(f"{r['workload']:20} {r['variant']:22} {r['ours_ms']:9.4f} {r['ratio_to_honest']:8.3f} "
              f"{r['naive_ms']:9.4f} {r['stream_part_ms']:9.4f} {r['escaped_tail_ms']:8.4f}  "
              f"{'yes' if r['ok'] else 'NO'}")
    print(f"\nside-stream work counted (within {AGREEMENT:.0%}) and hidden from the naive timer: "
          f"{'PASS' if report['passed'] else 'FAIL'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
