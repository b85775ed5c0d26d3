"""Exact tensor comparisons and memory overlap, used by the runtime guard and the probes."""

from __future__ import annotations

from typing import Any

import torch


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact equality of shape, dtype and contents, NaNs included (compared as raw bytes)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.detach().contiguous().reshape(-1).view(torch.uint8),
                       b.detach().contiguous().reshape(-1).view(torch.uint8))


def same_values(a: list[Any], b: list[Any]) -> bool:
    """Two output lists hold bit-identical tensors (and equal scalars) position by position."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if not same_bits(x, y):
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) or x != y:
            return False
    return True


def storage_span(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors' storages share any byte (views of one buffer included)."""
    if a.device != b.device:
        return False
    (a0, a1), (b0, b1) = storage_span(a), storage_span(b)
    return a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1
