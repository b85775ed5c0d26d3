"""Every workload gets a T_SOL or a reason: large data-dependent workloads counted without making
their inputs (lazy values), and a per-workload reason, never an exception, where no tier can count."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kernelbench.cli import main
from roofline import count_workload, sol_for_problem
from roofline.counter import CPU_INPUT_LIMIT
from test_roofline import make_problem, random_inputs

MOE = """import torch

def run(hidden, router, experts):
    logits = hidden.float() @ router.float()                 # [T, E]: decides which rows meet which expert
    top = logits.topk(2, dim=-1).indices
    out = torch.zeros(hidden.shape[0], experts.shape[-1], dtype=torch.float32, device=hidden.device)
    for e in range(experts.shape[0]):
        rows = (top == e).any(-1).nonzero().flatten()
        out[rows] += hidden[rows].float() @ experts[e].float()
    return out.to(hidden.dtype)
"""


def test_large_router_workload_is_counted_with_lazy_values_not_on_cpu(tmp_path):
    """4 GiB of expert weights (too large for the CPU tier): only the router's inputs get values."""
    T, D, F, E = 4096, 1024, 16384, 128
    p = make_problem(tmp_path, "moe", {"T": {"type": "var"}, "D": {"type": "const", "value": D},
                                       "F": {"type": "const", "value": F}, "E": {"type": "const", "value": E}},
                     {"hidden": {"shape": ["T", "D"], "dtype": "bfloat16"},
                      "router": {"shape": ["D", "E"], "dtype": "bfloat16"},
                      "experts": {"shape": ["E", "D", "F"], "dtype": "bfloat16"}},
                     {"out": {"shape": ["T", "F"], "dtype": "bfloat16"}}, MOE,
                     [({"T": T}, random_inputs("hidden", "router", "experts"))])
    assert E * D * F * 2 > CPU_INPUT_LIMIT
    c = count_workload(p, p.workloads[0])
    assert c.counted_on == "values" and "values computed on CPU" in c.notes[0]
    # the router GEMM, then every token through its 2 experts: 2*T*D*E + 2 * (2*T*D*F), all bf16-exact
    assert c.tensor_flops == {"bf16": 2 * T * D * E + 2 * 2 * T * D * F}
    assert c.read_by_input["experts"] == E * D * F * 2      # 4096 tokens reach all 128 experts
    assert c.bytes_written == T * F * 2


def _argmax_problem(tmp_path, name, n):
    ref = "import torch\ndef run(logits, table):\n    return table[logits.argmax(-1)]\n"
    return make_problem(tmp_path, name, {"N": {"type": "var"}, "V": {"type": "const", "value": 32768}},
                        {"logits": {"shape": ["N", "V"], "dtype": "float32"},
                         "table": {"shape": ["V", 8], "dtype": "float32"}},
                        {"out": {"shape": ["N", 8], "dtype": "float32"}}, ref,
                        [({"N": n}, random_inputs("logits", "table")) for n in (n, 16)])


def test_a_workload_no_tier_can_count_gets_a_reason(tmp_path):
    """Indices from 2^30 float logits: too many values to compute lazily, 4 GiB of inputs for the CPU."""
    p = _argmax_problem(tmp_path, "argmax", 32768)
    big, small = sol_for_problem(p, "H100")
    assert big.t_sol_s is None and big.intensity is None
    assert "too large to run the reference on CPU" in big.reason and "1,073,741,824-element" in big.reason
    assert small.t_sol_s is not None and small.reason is None    # the other workload still has its T_SOL


def test_a_reference_that_fails_everywhere_gets_a_reason(tmp_path):
    ref = "import torch\ndef run(x):\n    raise RuntimeError('needs a GPU')\n"
    p = make_problem(tmp_path, "broken", {"N": {"type": "var"}}, {"x": {"shape": ["N"], "dtype": "float32"}},
                     {"y": {"shape": ["N"], "dtype": "float32"}}, ref, [({"N": 8}, random_inputs("x"))])
    (sol,) = sol_for_problem(p, "H100")
    assert sol.t_sol_s is None and "needs a GPU" in sol.reason


def test_kb_roofline_prints_and_emits_reasons(tmp_path):
    p = _argmax_problem(tmp_path, "argmax", 32768)
    runner = CliRunner()
    result = runner.invoke(main, ["--cache-dir", "off", "roofline", str(p.directory), "--hardware", "H100",
                                  "--json", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    big, small = line["workloads"]
    assert big["t_sol_s"] is None and "too large" in big["reason"]
    assert small["t_sol_s"] > 0 and small["reason"] is None
    table = runner.invoke(main, ["--cache-dir", "off", "roofline", str(p.directory), "--hardware", "H100", "--jobs", "1"])
    assert table.exit_code == 0, table.output
    assert "no T_SOL" in table.output and "2 workloads: 1 with a T_SOL, 1 without" in table.output
