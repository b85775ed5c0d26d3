"""The research loop end to end on CPU, against a stub OpenAI endpoint on loopback.

One `kb optimize TASK --llm MODEL` run meets, round by round: a call refused with 429 until the retries
run out, a call that times out then meets 5xx, an answer with no code, a kernel that caches its outputs by
pointer, a kernel that patches the timer, a kernel with wrong outputs, the caching kernel again, and a
correct vectorized kernel, faster for real (the reference loops over rows in Python). The honest kernel must be chosen; the cheats flagged and kept as evidence; every
exchange logged; and a second task of the same family must be shown the first one's winner.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core import statuses
from kernelbench.core.store import Store
from kernelbench.generate.llm.log import exchanges
from llm_stub import Answer, Hang, Status, StubLLM, fenced
from tiny_problems import write_rmsnorm_problem

pytest.importorskip("openai")

SLOW_REFERENCE = '''
import torch

@torch.no_grad()
def run(x, weight, eps):
    out = torch.empty_like(x)
    for i in range(x.shape[0]):   # one row at a time: deliberately slow
        row = x[i].float()
        out[i] = (row * torch.rsqrt(row.pow(2).mean() + eps)).to(x.dtype) * weight
    return out
'''

VECTORIZED = '''
import torch

# vectorized over rows: one reduction for the whole batch
def run(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
'''

CACHES_BY_POINTER = '''
import torch

_outputs = {}

def run(x, weight, eps):
    key = x.data_ptr()
    if key not in _outputs:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        _outputs[key] = (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
    return _outputs[key]
'''

PATCHES_THE_TIMER = '''
import time

import torch

_clock = time.perf_counter
time.perf_counter = lambda: _clock() / 100.0   # every measured interval 100x shorter

def run(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
'''

FORGETS_THE_WEIGHT = VECTORIZED.replace(" * weight", "")

SCRIPT = [
    *[Status(429)] * 4,                           # round 1: refused, retried 3 times, skipped
    Hang(3), *[Status(500)] * 3,                  # round 2: a timeout then 5xx, retried, skipped
    Answer("Vectorize the loop over rows with one reduction."),   # round 3: no code
    Answer(fenced(CACHES_BY_POINTER)),            # round 4
    Answer(fenced(PATCHES_THE_TIMER)),            # round 5
    Answer(fenced(FORGETS_THE_WEIGHT)),           # round 6: wrong outputs
    Answer(fenced(CACHES_BY_POINTER)),            # round 7: round 4 again
    Answer(fenced(VECTORIZED)),                   # round 8
]
ROUNDS = 8
QUICK = ["--device", "cpu", "--budget", "0", "--rounds", "2", "--warmup", "1", "--iterations", "3", "--timeout", "60",
         "--build-timeout", "60"]


def optimize(db, task, stub, rounds, out=None):
    """`kb optimize` with the endpoint and key from the standard variables (read by the CLI only)."""
    arguments = ["--db", str(db), "optimize", str(task), *QUICK, "--llm", "stub-model", "--llm-rounds", str(rounds),
                 "--llm-timeout", "1"] + (["--out", str(out)] if out else [])
    result = CliRunner().invoke(main, arguments, env={"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": "sk-stub"})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def first_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    task = write_rmsnorm_problem(root / "tasks", "001_rows_rmsnorm", reference=SLOW_REFERENCE, batches=(64, 256))
    with StubLLM(SCRIPT) as stub:
        result = optimize(root / "kb.db", task, stub, ROUNDS, out=root / "out")
    return {"root": root, "db": root / "kb.db", "output": result.output, "requests": stub.requests}


def test_the_honest_faster_kernel_is_chosen(first_task):
    written = json.loads((first_task["root"] / "out" / "001_rows_rmsnorm" / "solution.json").read_text())
    assert "vectorized over rows" in written["sources"][0]["content"]
    assert written["author"] == "stub-model"
    summary = json.loads((first_task["root"] / "out" / "001_rows_rmsnorm" / "summary.json").read_text())
    assert summary["status"] == statuses.PASSED and summary["audit_status"] == "clean"
    assert summary["sol_score"] > 0.8   # the reference scores 0.5; the loop over rows costs it ~100x
    assert "SOL score of 001_rows_rmsnorm" in first_task["output"]


def test_cheats_are_flagged_kept_as_evidence_and_never_chosen(first_task):
    store = Store(first_task["db"], read_only=True)
    rows = {row["round"]: row for row in exchanges(store, "001_rows_rmsnorm")}
    assert rows[4]["status"] == rows[5]["status"] == rows[7]["status"] == statuses.REWARD_HACK
    assert "cache-by-pointer" in json.dumps(rows[4]["detail"]) and "monkeypatch" in json.dumps(rows[5]["detail"])
    assert rows[7]["detail"] == {"repeat_of_round": 4} and rows[7]["candidate_hash"] == rows[4]["candidate_hash"]
    for cheat in (rows[4], rows[5], rows[7]):
        assert not cheat["chosen"]
        traces = [t for t in store.traces("001_rows_rmsnorm") if t["solution_hash"] == cheat["candidate_hash"]]
        assert traces and {t["status"] for t in traces} == {statuses.REWARD_HACK}
        candidate = [c for c in store.candidates("001_rows_rmsnorm") if c["solution_hash"] == cheat["candidate_hash"]]
        assert candidate[0]["source"] == "llm" and candidate[0]["proposer"] == "stub-model"
    chosen = store.results()[-1]
    assert chosen["solution_hash"] == rows[8]["candidate_hash"] and rows[8]["chosen"]


def test_wrong_outputs_fail_screening_and_the_model_is_told(first_task):
    rows = {row["round"]: row for row in exchanges(Store(first_task["db"], read_only=True), "001_rows_rmsnorm")}
    assert (rows[6]["stage"], rows[6]["status"]) == ("screening", statuses.INCORRECT_NUMERICAL)
    feedback = [m["content"] for m in first_task["requests"][-1]["body"]["messages"] if m["role"] == "user"]
    assert "failed screening with INCORRECT_NUMERICAL" in feedback[-2]
    assert "the same solution as your answer in round 4" in feedback[-1] and "cache-by-pointer" in feedback[-1]


def test_refusals_timeouts_and_malformed_answers_are_retried_then_skipped(first_task):
    rows = {row["round"]: row for row in exchanges(Store(first_task["db"], read_only=True), "001_rows_rmsnorm")}
    assert [rows[r]["status"] for r in (1, 2, 3)] == ["CALL_FAILED", "CALL_FAILED", "UNPARSED"]
    assert rows[1]["attempts"] == 4 and "RateLimitError" in rows[1]["error"]
    assert rows[2]["attempts"] == 4 and "InternalServerError" in rows[2]["error"]
    assert "no ``` code block" in rows[3]["error"]
    requests = first_task["requests"]
    assert len(requests) == len(SCRIPT) and all(r["headers"]["authorization"] == "Bearer sk-stub" for r in requests)
    # a failed call is asked again as it was; an answer is fed back with what became of it
    assert requests[4]["body"]["messages"] == requests[0]["body"]["messages"]
    feedback = [m["content"] for m in requests[-1]["body"]["messages"] if m["role"] == "user"][1:]
    assert "could not be used" in feedback[0] and "cache-by-pointer" in feedback[1] and "monkeypatch" in feedback[2]


def test_the_prompt_carries_the_task_and_the_roofline(first_task):
    system, task = first_task["requests"][0]["body"]["messages"]
    assert system["role"] == "system" and "`run`" in system["content"]
    prompt = task["content"]
    assert "for i in range(x.shape[0])" in prompt                    # the reference
    assert "x: bfloat16, shape [batch, hidden]" in prompt           # the definition
    assert '| {"batch": 256} |' in prompt and "dram" in prompt      # bytes, FLOPs, binding unit, T_SOL per workload
    assert "the problem's reference: score S 0.500, 2/2 workloads passed; audit: clean" in prompt


def test_kb_llm_log_shows_every_exchange_with_its_outcome(first_task):
    db = str(first_task["db"])
    table = CliRunner().invoke(main, ["--db", db, "llm", "log"])
    assert table.exit_code == 0, table.output
    assert table.output.count("001_rows_rmsnorm") == ROUNDS
    for outcome in ("CALL_FAILED", "UNPARSED", "REWARD_HACK", "INCORRECT_NUMERICAL", "CHOSEN",
                    "audit: cache-by-pointer", "audit: monkeypatch", "the same solution as round 4"):
        assert outcome in table.output
    lines = CliRunner().invoke(main, ["--db", db, "llm", "log", "--json", "--task", "001_rows_rmsnorm"]).output
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))
    assert [r["chosen"] for r in rows] == [False] * (ROUNDS - 1) + [True]
    assert rows[-1]["response"] == fenced(VECTORIZED) and rows[-1]["prompt"][-1]["role"] == "user"
    assert rows[-1]["detail"]["became_best"] and rows[-1]["stage"] == "evaluation"
    # the families that proposed for the task (the front end lowers the Python loop over rows), then its op_type
    assert {r["model"] for r in rows} == {"stub-model"}
    assert all(r["families"] == rows[0]["families"] for r in rows) and rows[0]["families"][-1] == "rmsnorm"
    assert rows[0]["families"][:-1] == ["fused"], rows[0]["families"]


def test_later_tasks_of_the_family_are_shown_the_first_ones_winner_in_a_batch(first_task):
    root = first_task["root"] / "tasks"
    for name in ("002_rows_rmsnorm_wide", "003_rows_rmsnorm_narrow"):
        write_rmsnorm_problem(root, name, reference=SLOW_REFERENCE, hidden=128 if "wide" in name else 32, batches=(16,))
    # the first task's only call is refused until the retries run out; the batch goes on to the next
    with StubLLM([Status(429)] * 4, then=Answer("Nothing to add.")) as stub:
        result = CliRunner().invoke(main, ["--db", str(first_task["db"]), "batch", str(root), "--only", "L1/00[23]*",
                                           *QUICK, "--llm", "stub-model", "--llm-rounds", "1"],
                                    env={"OPENAI_BASE_URL": stub.base_url})
    assert result.exit_code == 0 and "2 optimized" in result.output, result.output
    store = Store(first_task["db"], read_only=True)
    assert [r["status"] for r in exchanges(store, "002_rows_rmsnorm_wide")] == ["CALL_FAILED"]
    assert [r["status"] for r in exchanges(store, "003_rows_rmsnorm_narrow")] == ["UNPARSED"]
    prompts = {r["body"]["messages"][1]["content"] for r in stub.requests}
    assert len(prompts) == 2 and all("### 001_rows_rmsnorm: S" in p and "vectorized over rows" in p
                                     and "from llm, stub-model" in p for p in prompts)
