"""InputSnapshot: which inputs a call wrote to, by copy for small tensors and keyed digest for large."""

from __future__ import annotations

import pytest
import torch

from audit.tensors import EXACT_SNAPSHOT_BYTES, InputSnapshot


def _large(*values):
    """A snapshot that digests every tensor (no copies), as it does for multi-GB inputs."""
    return InputSnapshot(list(values), exact_bytes=0)


@pytest.mark.parametrize("exact_bytes", [EXACT_SNAPSHOT_BYTES, 0], ids=["copies", "digests"])
def test_untouched_inputs_are_unchanged(exact_bytes):
    x, w = torch.randn(64, 33), torch.randint(0, 7, (5,), dtype=torch.int8)
    assert InputSnapshot([x, 3, w], exact_bytes).changed([x, 3, w]) == []


def test_digest_sees_a_single_word_change_anywhere():
    x = torch.randn(3 * (1 << 22) + 17)          # spans several digest chunks
    before = _large(x)
    for position in (0, (1 << 22) + 5, x.numel() - 1):
        original = x[position].item()
        x[position] = original + 1e-3
        assert before.changed([x]) == [0], position
        x[position] = original
    assert before.changed([x]) == []


def test_digest_sees_swaps_and_sign_flips_that_keep_sums_and_norms():
    x = torch.randn(1 << 16)
    before = _large(x)
    x[[10, 20]] = x[[20, 10]]                        # same multiset of values
    assert before.changed([x]) == [0]
    x[[10, 20]] = x[[20, 10]]
    x[[1, 2]] = -x[[1, 2]]                           # same squared norm
    assert before.changed([x]) == [0]


def test_digest_sees_bytes_past_the_last_whole_word_and_reinterpretation():
    b = torch.arange(4099, dtype=torch.uint8)       # 4099 bytes: three past the last 32-bit word
    before = _large(b)
    b[-1] += 1
    assert before.changed([b]) == [0]
    y = torch.randn(8, 8)
    assert _large(y).changed([y.view(torch.int32)]) == [0]   # same bits, other dtype
    assert _large(y).changed([y.view(64)]) == [0]             # same bits, other shape


def test_every_dtype_and_odd_views_can_be_snapshotted():
    base = torch.randn(1000)
    values = [base.to(dt) for dt in (torch.bfloat16, torch.float16, torch.float64)]
    values += [base[1:], base[::2], torch.zeros(0), (base > 0), torch.zeros(3).view(torch.uint8)]
    if hasattr(torch, "float8_e4m3fn"):
        values.append(base.to(torch.float8_e4m3fn))
    before = _large(*values)
    assert before.changed(values) == []
    values[4][0] += 1.0                              # a strided view: kept as a copy, compared exactly
    assert before.changed(values) == [4]
