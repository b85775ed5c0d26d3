"""Roofline DRAM bytes count storage a correct solution must move, not logical sizes (docs/ROOFLINE.md).

Each test is a small problem of its own whose bytes are derived by hand in the comments: embedding
bags, in-place cache updates returned as outputs, expanded-view outputs, outputs aliasing inputs,
gathers, scatters, index_add_/index_put and overwritten inputs.
"""

from __future__ import annotations

import pytest

from kernelbench.core.problem import load_problem
from roofline import sol_for_problem
from test_roofline import count, make_problem, random_inputs

F32, BF16, I64 = "float32", "bfloat16", "int64"


def custom(*names):
    return {n: {"type": "custom"} for n in names}


def spec(shape, dtype):
    return {"shape": list(shape), "dtype": dtype}


# ------------------------------------------------------------------------------ embedding bag

BAG = """import torch
import torch.nn.functional as F

def get_inputs(axes, device):
    n, b = axes["N"], axes["B"]
    ids = (torch.arange(n, device=device) % 8) * 3          # rows 0, 3, ..., 21; row 0 is the padding row
    offsets = torch.linspace(0, n, b + 1, device=device).long()
    return {"ids": ids, "offsets": offsets, "table": torch.randn(axes["V"], axes["D"], device=device)}

def run(ids, offsets, table):
    return F.embedding_bag(ids, table, offsets, mode="mean", include_last_offset=True, padding_idx=0)
"""


def test_embedding_bag_reads_only_the_indexed_rows(tmp_path):
    V, D, N, B = 100_000, 64, 512, 16
    p = make_problem(tmp_path, "bag", {"N": {"type": "var"}, "B": {"type": "var"}, "V": {"type": "const", "value": V},
                                       "D": {"type": "const", "value": D}, "B1": {"type": "expr", "expression": "B + 1"}},
                     {"ids": spec(["N"], I64), "offsets": spec(["B1"], I64), "table": spec(["V", "D"], F32)},
                     {"out": spec(["B", "D"], F32)}, BAG, [({"N": N, "B": B}, custom("ids", "offsets", "table"))],
                     entry="get_inputs")
    c = count(p)
    # 7 distinct non-padding rows of 64 fp32 (not the 100,000-row table), the ids and offsets whole
    assert c.read_by_input == {"ids": N * 8, "offsets": (B + 1) * 8, "table": 7 * D * 4}
    assert c.bytes_written == B * D * 4


def test_glove_embedding_bag_bound_grows_with_the_tokens_not_the_table():
    """tasks235 L1/066: T_SOL was 144 us (the whole 480 MB table) for every size; eager took 8-71 us."""
    from kernelbench.core.settings import REPOSITORY
    problem = load_problem(REPOSITORY / "tasks235" / "L1" / "066_glove_average_embedding_bag")
    sols = sol_for_problem(problem, "H100")
    table_row = 300 * 4
    for s in sols:
        tokens = s.axes["num_tokens"]
        assert 0 < s.read_by_input["embedding_weight"] <= tokens * table_row
        assert s.bytes_written == s.axes["num_bags"] * table_row
    assert sols[0].t_sol_s < 1e-6                          # 12 tokens: launch floor and a few rows
    assert [s.t_sol_s for s in sols] == sorted(s.t_sol_s for s in sols)


# ------------------------------------------------------------------------------ in-place cache update, returned

KV_AXES = {"B": {"type": "const", "value": 2}, "H": {"type": "const", "value": 8}, "G": {"type": "const", "value": 2},
           "T": {"type": "var"}, "S": {"type": "const", "value": 4096}, "D": {"type": "const", "value": 64}}
KV_INPUTS = {"q": spec("BHTD", BF16), "k": spec("BGTD", BF16), "v": spec("BGTD", BF16), "pos": spec("T", I64),
             "k_cache": spec("BGSD", BF16), "v_cache": spec("BGSD", BF16)}
KV_OUTPUTS = {"q_out": spec("BHTD", BF16), "k_cache_out": spec("BGSD", BF16), "v_cache_out": spec("BGSD", BF16)}
KV_MAKE = """import torch

def get_inputs(axes, device):
    b, h, g, t, s, d = (axes[a] for a in "BHGTSD")
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=torch.bfloat16)
    return {"q": randn(b, h, t, d), "k": randn(b, g, t, d), "v": randn(b, g, t, d),
            "pos": torch.arange(t, device=device) + 100, "k_cache": randn(b, g, s, d), "v_cache": randn(b, g, s, d)}

def run(q, k, v, pos, k_cache, v_cache):
    q = q * 2                                                # stand-ins for RoPE and QK-norm
    k = k * 2
"""
KV_UPDATES = {
    "index_copy_": "    k_cache.index_copy_(2, pos, k)\n    v_cache.index_copy_(2, pos, v)\n",
    "index_put_": "    k_cache[:, :, pos] = k\n    v_cache[:, :, pos] = v\n",
    "slice assignment": ("    start = int(pos[0])\n    k_cache[:, :, start:start + k.shape[2]] = k\n"
                         "    v_cache[:, :, start:start + v.shape[2]] = v\n"),
}


@pytest.mark.parametrize("form", list(KV_UPDATES))
def test_kv_cache_updated_in_place_and_returned_costs_the_written_slice(tmp_path, form):
    B, H, G, T, D = 2, 8, 2, 16, 64
    ref = KV_MAKE + KV_UPDATES[form] + "    return q, k_cache, v_cache\n"
    p = make_problem(tmp_path, "kv", KV_AXES, KV_INPUTS, KV_OUTPUTS, ref, [({"T": T}, custom(*KV_INPUTS))],
                     entry="get_inputs")
    c = count(p)
    # read q, k, v and the positions; the caches are written, never read
    positions = 8 if form == "slice assignment" else T * 8     # the slice form reads only pos[0]
    assert c.read_by_input == {"q": B * H * T * D * 2, "k": B * G * T * D * 2, "v": B * G * T * D * 2,
                               "pos": positions, "k_cache": 0, "v_cache": 0}
    # q written whole; of each cache only the T new rows (not B*G*S*D)
    assert c.written_by_output == {"q_out": B * H * T * D * 2, "k_cache_out": B * G * T * D * 2,
                                   "v_cache_out": B * G * T * D * 2}


def test_overwritten_rows_of_an_input_are_not_read(tmp_path):
    S, T, D = 1024, 32, 16
    ref = """import torch
def get_inputs(axes, device):
    return {"cache": torch.randn(axes["S"], axes["D"], device=device), "new": torch.randn(axes["T"], axes["D"], device=device),
            "pos": torch.arange(axes["T"], device=device) * 4}
def run(cache, new, pos):
    cache.index_copy_(0, pos, new)
    return cache * 2
"""
    p = make_problem(tmp_path, "over", {"S": {"type": "const", "value": S}, "T": {"type": "var"},
                                        "D": {"type": "const", "value": D}},
                     {"cache": spec("SD", F32), "new": spec("TD", F32), "pos": spec("T", I64)},
                     {"out": spec("SD", F32)}, ref, [({"T": T}, custom("cache", "new", "pos"))], entry="get_inputs")
    c = count(p)
    # the T rows the product needs come from `new`, not from the cache
    assert c.read_by_input == {"cache": (S - T) * D * 4, "new": T * D * 4, "pos": T * 8}
    assert c.bytes_written == S * D * 4


# ------------------------------------------------------------------------------ expanded-view outputs

SSM_AXES = {"B": {"type": "const", "value": 2}, "L": {"type": "var"}, "H": {"type": "const", "value": 8},
            "N": {"type": "const", "value": 128}}
SSM_OUTPUTS = {"dt": spec("BLHNN", F32), "dA": spec("BLHNN", F32)}


def _ssm_reference(tail: str) -> str:
    return f"""import torch
def run(x, A):
    dt = torch.nn.functional.softplus(x)                     # [B, L, H]
    dA = dt[..., None] * A                                   # [B, L, H, N]
    b, l, h = x.shape
    n = A.shape[-1]
    return dt[..., None, None].expand(b, l, h, n, n){tail}, dA[..., None, :].expand(b, l, h, n, n){tail}
"""


def test_expanded_view_outputs_cost_their_compact_storage(tmp_path):
    B, L, H, N = 2, 64, 8, 128
    inputs = {"x": spec("BLH", F32), "A": spec("HN", F32)}
    views = make_problem(tmp_path, "views", SSM_AXES, inputs, SSM_OUTPUTS, _ssm_reference(""),
                         [({"L": L}, random_inputs("x", "A"))])
    c = count(views)
    assert c.read_by_input == {"x": B * L * H * 4, "A": H * N * 4}
    # dt: one value per (b, l, h); dA: one per (b, l, h, n), not B*L*H*N*N each
    assert c.written_by_output == {"dt": B * L * H * 4, "dA": B * L * H * N * 4}
    copies = make_problem(tmp_path, "copies", SSM_AXES, inputs, SSM_OUTPUTS, _ssm_reference(".contiguous()"),
                          [({"L": L}, random_inputs("x", "A"))])
    assert count(copies).bytes_written == 2 * B * L * H * N * N * 4   # materialized by the reference: full


def test_outputs_sharing_one_storage_are_written_once(tmp_path):
    ref = "import torch\ndef run(x):\n    y = x * 2\n    return y, y.t()\n"
    p = make_problem(tmp_path, "shared", {"R": {"type": "var"}}, {"x": spec(["R", "R"], F32)},
                     {"y": spec(["R", "R"], F32), "yt": spec(["R", "R"], F32)}, ref, [({"R": 64}, random_inputs("x"))])
    assert count(p).bytes_written == 64 * 64 * 4


# ------------------------------------------------------------------------------ outputs aliasing inputs

@pytest.mark.parametrize("body,read,written", [
    ("return x", 0, 0),                                      # the input itself: nothing to move
    ("return x[:, :4]", 0, 0),                               # a view of it
    ("return x.clone()", 64 * 8 * 4, 64 * 8 * 4),            # a copy: read and written
])
def test_outputs_aliasing_inputs_cost_nothing(tmp_path, body, read, written):
    shape = [64, 4] if ":4" in body else [64, 8]
    p = make_problem(tmp_path, "alias", {"R": {"type": "var"}}, {"x": spec(["R", 8], F32)},
                     {"y": spec(shape, F32)}, f"import torch\ndef run(x):\n    {body}\n", [({"R": 64}, random_inputs("x"))])
    c = count(p)
    assert (c.bytes_read, c.bytes_written) == (read, written)


# ------------------------------------------------------------------------------ gather, scatter, index_add, index_put

ROWS_AXES = {"R": {"type": "var"}, "C": {"type": "const", "value": 64}, "K": {"type": "const", "value": 8}}


def _rows_problem(tmp_path, name, reference, inputs, outputs, R=32):
    make = """import torch
def get_inputs(axes, device):
    r, c, k = axes["R"], axes["C"], axes["K"]
    return {"x": torch.randn(r, c, device=device), "src": torch.randn(r, k, device=device),
            "idx": ((torch.arange(r * k, device=device) % k) * 2).reshape(r, k)}   # columns 0, 2, ..., 14
"""
    return make_problem(tmp_path, name, ROWS_AXES, inputs, outputs, make + reference, [({"R": R}, custom(*inputs))],
                        entry="get_inputs")


def test_gather_reads_exactly_the_gathered_elements(tmp_path):
    R, K = 32, 8
    p = _rows_problem(tmp_path, "gather", "def run(x, idx):\n    return torch.gather(x, 1, idx)\n",
                      {"x": spec("RC", F32), "idx": spec("RK", I64)}, {"y": spec("RK", F32)})
    c = count(p)
    assert c.read_by_input == {"x": R * K * 4, "idx": R * K * 8}          # 8 of 64 columns per row


def test_scatter_into_an_input_returned_writes_the_scattered_elements(tmp_path):
    R, K = 32, 8
    p = _rows_problem(tmp_path, "scatter", "def run(x, idx, src):\n    x.scatter_(1, idx, src)\n    return x\n",
                      {"x": spec("RC", F32), "idx": spec("RK", I64), "src": spec("RK", F32)}, {"y": spec("RC", F32)})
    c = count(p)
    assert c.read_by_input == {"x": 0, "idx": R * K * 8, "src": R * K * 4}   # overwritten: x not read
    assert c.bytes_written == R * K * 4


def test_index_add_into_an_input_returned_reads_and_writes_the_indexed_rows(tmp_path):
    S, T, D = 1024, 16, 32
    ref = """import torch
def get_inputs(axes, device):
    return {"acc": torch.randn(axes["S"], axes["D"], device=device), "src": torch.randn(axes["T"], axes["D"], device=device),
            "idx": torch.arange(axes["T"], device=device) * 7}
def run(acc, src, idx):
    acc.index_add_(0, idx, src)
    return acc
"""
    p = make_problem(tmp_path, "index_add", {"S": {"type": "const", "value": S}, "T": {"type": "var"},
                                             "D": {"type": "const", "value": D}},
                     {"acc": spec("SD", F32), "src": spec("TD", F32), "idx": spec("T", I64)},
                     {"out": spec("SD", F32)}, ref, [({"T": T}, custom("acc", "src", "idx"))], entry="get_inputs")
    c = count(p)
    assert c.read_by_input == {"acc": T * D * 4, "src": T * D * 4, "idx": T * 8}   # accumulates: reads its rows
    assert c.bytes_written == T * D * 4


@pytest.mark.parametrize("call", ["x.index_put((idx,), v)", "torch.slice_scatter(x, v, 0, 0, v.shape[0])"])
def test_positions_an_out_of_place_update_replaces_are_not_read(tmp_path, call):
    S, T, D = 1024, 16, 32
    ref = f"""import torch
def get_inputs(axes, device):
    return {{"x": torch.randn(axes["S"], axes["D"], device=device), "v": torch.randn(axes["T"], axes["D"], device=device),
            "idx": torch.arange(axes["T"], device=device)}}
def run(x, v, idx):
    return {call}
"""
    p = make_problem(tmp_path, "replace", {"S": {"type": "const", "value": S}, "T": {"type": "var"},
                                           "D": {"type": "const", "value": D}},
                     {"x": spec("SD", F32), "v": spec("TD", F32), "idx": spec("T", I64)},
                     {"out": spec("SD", F32)}, ref, [({"T": T}, custom("x", "v", "idx"))], entry="get_inputs")
    c = count(p)
    assert c.read_by_input["x"] == (S - T) * D * 4 and c.read_by_input["v"] == T * D * 4
    assert c.bytes_written == S * D * 4
