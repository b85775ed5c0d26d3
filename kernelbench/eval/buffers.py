"""Buffers every call path needs: poisoned output buffers, clones of inputs, CUDA-fault detection."""

from __future__ import annotations

from typing import Any

import torch

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.problem import Problem, Workload


def poison(tensor: torch.Tensor) -> torch.Tensor:
    """Fill an output buffer with values no correct kernel leaves behind (NaN / extreme integers)."""
    if tensor.dtype.is_floating_point and tensor.dtype.itemsize > 1:
        return tensor.fill_(float("nan"))
    if tensor.dtype == torch.bool:
        return tensor.fill_(True)
    if tensor.dtype.itemsize == 1:
        return tensor.view(torch.uint8).fill_(0xFF).view(tensor.dtype)
    return tensor.fill_(torch.iinfo(tensor.dtype).max)


def allocate_outputs(problem: Problem, workload: Workload, device: torch.device) -> list[torch.Tensor]:
    """The destination buffers of a workload's outputs, poisoned."""
    axes = problem.axes_for(workload)
    return [poison(torch.empty(problem.shape_of(spec, axes) or (), dtype=torch_dtype(spec.dtype), device=device))
            for spec in problem.definition.outputs.values()]


def clone_all(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def is_cuda_fault(error: BaseException | str) -> bool:
    """A CUDA error poisons the process's context: nothing after it on that device can be trusted."""
    text = str(error).lower()
    return "cuda error" in text or "illegal memory access" in text or "device-side assert" in text
