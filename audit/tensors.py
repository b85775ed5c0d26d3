"""Exact tensor comparisons and memory overlap, used by the runtime guard and the probes."""

from __future__ import annotations

import secrets
from typing import Any, Collection

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


_SAME_SIZE_INTEGERS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def changed_elements(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """A bool tensor of `after`'s shape: the elements whose bits differ from `before`'s (NaNs
    compare by their bits; one element of a packed dtype is one storage element). All of them
    when the shape or dtype changed."""
    if before.shape != after.shape or before.dtype != after.dtype:
        return torch.ones(after.shape, dtype=torch.bool, device=after.device)
    a, b = before.detach().contiguous(), after.detach().contiguous()
    size = a.element_size()
    if size in _SAME_SIZE_INTEGERS:
        integer = _SAME_SIZE_INTEGERS[size]
        return a.view(integer) != b.view(integer)
    flat = (a.reshape(-1).view(torch.uint8) != b.reshape(-1).view(torch.uint8))
    return flat.reshape(a.numel(), size).any(dim=1).reshape(a.shape)


def storage_span(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors' storages share any byte (views of one buffer included)."""
    if a.device != b.device:
        return False
    (a0, a1), (b0, b1) = storage_span(a), storage_span(b)
    return a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1


# ------------------------------------------------------------------ input snapshots

EXACT_SNAPSHOT_BYTES = 256 << 20   # tensors up to this size are cloned; larger ones are digested
_DIGEST_CHUNK_WORDS = 1 << 22      # 32-bit words per digest step: ~32 MiB of int64 temporaries


class InputSnapshot:
    """What a call's inputs held before it, to tell afterwards which ones the call wrote to.

    Tensors up to `exact_bytes` are cloned and compared bit for bit. A larger one keeps a keyed
    digest instead of a second copy (a multi-GB weight would otherwise be held twice): the sum,
    wrapping mod 2**64, of its 32-bit words each multiplied by a random odd 64-bit key. An odd
    key is invertible mod 2**64, so changing any single word changes the sum; changes that cancel
    out (a swap of two words, say) would need the keys, which are drawn afresh for every snapshot.
    Positions in `skip` (inputs the reference itself updates in place) are not kept."""

    def __init__(self, values: list[Any], exact_bytes: int = EXACT_SNAPSHOT_BYTES, skip: Collection[int] = ()):
        self._keys: dict[torch.device, torch.Tensor] = {}
        self._chunk_factors: list[int] = []
        self._entries = [None if i in skip else self._take(v, exact_bytes) for i, v in enumerate(values)]

    def changed(self, values: list[Any]) -> list[int]:
        """Positions of the tensors whose shape, dtype or bits differ from the snapshot's."""
        return [i for i, (entry, value) in enumerate(zip(self._entries, values))
                if entry is not None and isinstance(value, torch.Tensor) and not self._same(entry, value)]

    def _take(self, value: Any, exact_bytes: int):
        if not isinstance(value, torch.Tensor):
            return None
        if value.numel() * value.element_size() > exact_bytes:
            try:
                return ("digest", value.shape, value.dtype, self._digest(value))
            except RuntimeError:      # no 32-bit view of it (not contiguous, odd offset): copy it
                pass
        return ("copy", value.detach().clone())

    def _same(self, entry, value: torch.Tensor) -> bool:
        if entry[0] == "copy":
            return same_bits(entry[1], value)
        _, shape, dtype, digest = entry
        try:
            return value.shape == shape and value.dtype == dtype and self._digest(value) == digest
        except RuntimeError:          # it was viewable before the call and is not now: it changed
            return False

    def _digest(self, tensor: torch.Tensor) -> tuple[int, bytes]:
        """(keyed sum of the 32-bit words, the bytes past the last whole word)."""
        raw = tensor.detach().view(-1).view(torch.uint8)
        whole = raw.numel() // 4 * 4
        words = raw[:whole].view(torch.int32)
        keys = self._keys_on(tensor.device)
        total = torch.zeros((), dtype=torch.int64, device=tensor.device)
        for chunk_index, start in enumerate(range(0, words.numel(), _DIGEST_CHUNK_WORDS)):
            chunk = words[start:start + _DIGEST_CHUNK_WORDS].to(torch.int64)
            # chunk c's keys: the key row times a random odd factor of its own (odd x odd is odd)
            total += (chunk * keys[:chunk.numel()]).sum() * self._chunk_factor(chunk_index)
        return int(total), raw[whole:].cpu().numpy().tobytes()

    def _keys_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._keys:
            generator = torch.Generator().manual_seed(secrets.randbits(63))
            keys = torch.randint(-2**62, 2**62, (_DIGEST_CHUNK_WORDS,), dtype=torch.int64, generator=generator)
            self._keys[device] = (keys | 1).to(device)
        return self._keys[device]

    def _chunk_factor(self, index: int) -> int:
        while len(self._chunk_factors) <= index:
            self._chunk_factors.append(secrets.randbits(62) * 2 + 1)
        return self._chunk_factors[index]
