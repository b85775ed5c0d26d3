"""What both children of a run do alike: set up the device, then isolate themselves (the audit
guard, then Landlock over the protected paths); and the names of the hand-over files."""

from __future__ import annotations

from pathlib import Path

import torch

from . import landlock
from .guard import TrainingGuard

WEIGHTS_FILE, CONFIG_FILE = "weights.pt", "config.json"


def set_up_device(device: torch.device, request: dict) -> None:
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.zeros(1, device=device)  # the CUDA context now, not on the candidate's clock
    elif request.get("cpu_threads"):
        torch.set_num_threads(request["cpu_threads"])


def isolate(guard: TrainingGuard, request: dict) -> str:
    """Install the audit guard, then (where the kernel has it) Landlock over the protected paths."""
    for directory in request.get("precreate", []):
        Path(directory).mkdir(parents=True, exist_ok=True)  # compilers' caches: Landlock covers what exists
    guard.install()
    if request.get("os_isolation", True) and landlock.deny_reads([Path(p) for p in request["protected"]]):
        return "landlock+audit-hook"
    return "audit-hook"
