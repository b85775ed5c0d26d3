"""The runtime guard and the probes, used directly: what counts as the solution's doing, and what not."""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
import threading
import uuid
import weakref
from pathlib import Path

import pytest
import torch

from audit.checks import (OutputHistory, check_below_sol, check_post_timing, check_shape_probe, overwrite_in_place,
                          perturbed_workload)
from audit.findings import Finding
from audit.runtime import RuntimeGuard
from audit.tensors import InputSnapshot
import kernelbench.core.score as score  # loaded before any guard is installed, as the evaluator's modules are
from kernelbench.core.problem import load_problem

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"


@pytest.fixture
def guard():
    g = RuntimeGuard("cpu")
    g.install()
    yield g
    g.restore()
    g.uninstall()


def solution_module(tmp_path: Path, source: str, armed: RuntimeGuard | None = None):
    """Code that counts as the solution's: a file outside the installation, loaded after install()
    (imported inside `armed.armed()` when given, as the evaluator imports solutions)."""
    directory = tmp_path / f"solution_{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    path = directory / f"sol_{directory.name[9:]}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # as load_entry_point does
    if armed is None:
        spec.loader.exec_module(module)
    else:
        with armed.armed():
            spec.loader.exec_module(module)
    return module


def rules(guard: RuntimeGuard) -> set[str]:
    return {f.rule for f in guard.findings()}


# ------------------------------------------------------------------ the guard


def test_patched_torch_function_is_found_and_restored(guard, tmp_path):
    original = torch.rsqrt
    solution_module(tmp_path, "import torch\ntorch.rsqrt = lambda t: t\n", armed=guard)
    guard.check_state()
    assert "monkeypatch" in rules(guard)
    assert any("torch.rsqrt" in f.evidence for f in guard.findings())
    guard.restore()
    assert torch.rsqrt is original


def test_patching_a_torch_class_method_is_found_and_restored(guard, tmp_path):
    original = torch.cuda.Event.elapsed_time
    solution_module(tmp_path, "import torch\ntorch.cuda.Event.elapsed_time = lambda self, other: 0.0\n",
                    armed=guard)
    guard.check_state()
    assert any(f.rule == "monkeypatch" and "torch.cuda.Event.elapsed_time" in f.evidence for f in guard.findings())
    guard.restore()
    assert torch.cuda.Event.elapsed_time is original


def test_replacing_a_function_code_object_is_found(guard, tmp_path):
    target = next(v for v in vars(score).values() if callable(v) and getattr(v, "__module__", None) == score.__name__
                  and hasattr(v, "__code__") and not v.__code__.co_freevars)
    code = target.__code__
    module = solution_module(tmp_path, "def swap(f):\n    f.__code__ = (lambda *a, **k: 1.0).__code__\n")
    try:
        with guard.armed():
            module.swap(target)
        guard.check_state()
    finally:
        target.__code__ = code
    evidence = [f.evidence for f in guard.findings() if f.rule == "monkeypatch"]
    assert any("sets" in e and "__code__" in e for e in evidence)           # the audit event, as it happened
    assert any(".__code__ was replaced" in e for e in evidence)             # and the snapshot


def test_events_count_only_while_armed_and_only_from_solution_code(guard, tmp_path):
    module = solution_module(tmp_path, "import os, sys\ndef spawn():\n    os.system('true')\n"
                                       "def frame():\n    return sys._getframe(1)\n")
    module.spawn()                 # not armed: the evaluator's own time
    assert guard.findings() == []
    with guard.armed():
        module.spawn()
        module.frame()
    assert rules(guard) == {"subprocess", "introspection"}


def test_library_code_acting_for_itself_is_not_the_solution(guard, tmp_path):
    library = tmp_path / "trusted_lib"
    library.mkdir()
    (library / "helper_lib.py").write_text("import os\ndef compile_something():\n    os.system('true')\n")
    trusting = RuntimeGuard("cpu", trusted_paths=[library])
    trusting.install()
    try:
        spec = importlib.util.spec_from_file_location("helper_lib", library / "helper_lib.py")
        helper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helper)
        module = solution_module(tmp_path, "import logging, warnings\ndef run(helper):\n    helper.compile_something()\n"
                                           "    warnings.warn('x')\n    logging.getLogger('x').debug('y')\n")
        with trusting.armed(), pytest.warns(UserWarning):
            module.run(helper)
        assert trusting.findings() == []
    finally:
        trusting.uninstall()


def test_frames_read_through_inspect_and_traceback_count(guard, tmp_path):
    module = solution_module(tmp_path, "import inspect, traceback\ndef a():\n    return inspect.stack()\n"
                                       "def b():\n    return traceback.extract_stack()\n")
    with guard.armed():
        module.a()
    assert rules(guard) == {"introspection"}


def test_environment_writes_and_backend_flags(guard, tmp_path):
    solution_module(tmp_path, "import os, torch\nos.environ['KB_AUDIT_TEST'] = '1'\n"
                              "torch.backends.cudnn.benchmark = True\ntorch.set_float32_matmul_precision('medium')\n",
                    armed=guard)
    guard.check_state()
    assert rules(guard) == {"global-state", "precision-downgrade"}, guard.findings()
    guard.restore()
    assert "KB_AUDIT_TEST" not in os.environ
    assert torch.get_float32_matmul_precision() == "highest" and torch.backends.cudnn.benchmark is False


def file_access_evidence(guard, module) -> list[str]:
    """Run the solution module's `run` with the guard armed; the evidence of its file-access findings."""
    with guard.armed():
        module.run()
    return [f.evidence for f in guard.findings() if f.rule == "file-access"]


def test_file_opens_outside_the_allowed_places(guard, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "answers.txt").write_text("42")
    own = tmp_path / "own"
    own.mkdir()
    (own / "kernel.cu").write_text("// code")
    guard.allow_path(own)
    module = solution_module(tmp_path, f"def run():\n    open({str(own / 'kernel.cu')!r}).read()\n"
                                       f"    open({str(outside / 'answers.txt')!r}).read()\n")
    evidence = file_access_evidence(guard, module)
    assert len(evidence) == 1 and "answers.txt" in evidence[0]


def test_package_metadata_reads_are_not_file_access(guard, tmp_path):
    # torch.compile scans entry points: importlib.metadata opens every *.egg-info / *.dist-info on
    # sys.path, also an editable checkout's (seen as a false positive in a fresh clone)
    metadata = tmp_path / "checkout" / "somepkg.egg-info"
    metadata.mkdir(parents=True)
    (metadata / "entry_points.txt").write_text("[console_scripts]\n")
    outside = tmp_path / "checkout" / "answers.txt"
    outside.write_text("42")
    module = solution_module(tmp_path, f"def run():\n    open({str(metadata / 'entry_points.txt')!r}).read()\n"
                                       f"    open({str(outside)!r}).read()\n")
    evidence = file_access_evidence(guard, module)
    assert len(evidence) == 1 and "answers.txt" in evidence[0]


def test_threads_outliving_the_call_but_not_joined_ones(guard, tmp_path):
    module = solution_module(tmp_path, "import threading, time\n"
                                       "def joined():\n    t = threading.Thread(target=lambda: None)\n    t.start()\n"
                                       "    t.join()\n"
                                       "def escaped(event):\n    threading.Thread(target=event.wait, daemon=True).start()\n")
    with guard.armed():
        module.joined()
    assert guard.findings() == []
    release = threading.Event()
    with guard.armed():
        module.escaped(release)
    release.set()
    assert rules(guard) == {"background-thread"}


def test_check_call_inputs_outputs_and_aliases(guard):
    x = torch.randn(4, 4)
    before = InputSnapshot([x, 3])
    guard.check_call(before, [x, 3], [torch.randn(4, 4), 1.5, None])
    assert guard.findings() == []                            # plain tensors and Python scalars
    x.add_(1)
    guard.check_call(before, [x, 3], [x[:2]])
    assert rules(guard) == {"input-mutation", "output-aliases-input"}

    class Sub(torch.Tensor):
        pass

    guard.check_call(InputSnapshot([]), [], [torch.zeros(2).as_subclass(Sub)])
    assert "lazy-output" in rules(guard)


def test_check_call_allows_what_the_reference_does(guard):
    """The reference updates input 0 in place and returns it, and returns a broadcast view of input 1."""
    cache, bias = torch.randn(4, 4), torch.randn(4)
    before = InputSnapshot([cache, bias], skip={0})
    cache[1] = 0.0
    guard.check_call(before, [cache, bias], [cache, bias.expand(3, 4)], aliases={0: {0}, 1: {1}})
    assert guard.findings() == []
    guard.check_call(before, [cache, bias], [bias.expand(3, 4), cache], aliases={0: {0}, 1: {1}})  # swapped
    assert rules(guard) == {"output-aliases-input"}
    bias.add_(1)
    guard.check_call(before, [cache, bias], [], aliases={0: {0}, 1: {1}})
    assert rules(guard) == {"output-aliases-input", "input-mutation"}


def test_check_call_compares_nans_bitwise(guard):
    x = torch.tensor([float("nan"), 1.0])
    guard.check_call(InputSnapshot([x]), [x], [])
    assert guard.findings() == []


def test_dispatch_modes_left_on_the_stack(guard):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    mode = Spy()
    mode.__enter__()
    try:
        guard.check_state()
    finally:
        mode.__exit__(None, None, None)
    assert "monkeypatch" in rules(guard)


def test_armed_is_cheap_and_nestable(guard):
    import time

    with guard.armed(), guard.armed():
        assert guard._armed_depth == 2
    assert guard._armed_depth == 0
    start = time.perf_counter()
    for _ in range(10_000):
        with guard.armed():
            pass
    assert (time.perf_counter() - start) / 10_000 < 20e-6


# ------------------------------------------------------------------ probes


def test_check_below_sol():
    assert check_below_sol(None, 1.0) is None and check_below_sol(1.0, None) is None
    assert check_below_sol(1.2, 1.0) is None and check_below_sol(1.0, 1.0) is None
    finding = check_below_sol(0.5, 1.0)
    assert finding.rule == "faster-than-sol" and "2.00x" in finding.evidence
    assert check_below_sol(0.95, 1.0, slack=0.1) is None


def test_output_history_flags_a_failing_round_that_repeats_a_passing_one():
    history = OutputHistory()
    a, b = torch.randn(3), torch.randn(3)
    assert history.add("round 0", [a], True) is None
    assert history.add("round 1", [b], True) is None
    assert history.add("round 2", [torch.randn(3)], False) is None     # merely wrong
    finding = history.add("round 3", [a.clone()], False)
    assert finding == Finding("stale-output", "round 3 returned exactly the outputs of round 0 although its inputs "
                                              "(and the reference) changed")


def test_post_timing_and_shape_probe_findings():
    assert check_post_timing(True, True) is None and check_post_timing(False, False) is None
    assert check_post_timing(True, False, "INCORRECT_NUMERICAL: x").rule == "stale-output"
    assert check_shape_probe(None, True) is None


def test_overwrite_in_place_keeps_addresses():
    x = torch.zeros(4)
    ptr = x.data_ptr()
    (y, s) = overwrite_in_place([x, 1.0], [torch.ones(4), 2.0])
    assert y is x and y.data_ptr() == ptr and torch.equal(y, torch.ones(4)) and s == 2.0


DOUBLE = {"name": "double", "description": "y = 2x (test problem)", "axes": {"n": {"type": "var"}},
          "inputs": {"x": {"shape": ["n"], "dtype": "float32"}}, "outputs": {"y": {"shape": ["n"], "dtype": "float32"}},
          "reference": "def run(x):\n    return x * 2\n"}
CACHES = {  # solution source -> the rules the evaluator's probes find (no timing: rounds and the same-address probe)
    "def run(x):\n    return x * 2\n": set(),
    "_c = {}\ndef run(x):\n    return _c.setdefault(x.data_ptr(), x * 2)\n": {"stale-output"},      # by pointer
    "_c = {}\ndef run(x):\n    return _c.setdefault(tuple(x.shape), x * 2)\n": {"stale-output"},    # by shape
    "last = {}\ndef run(x, out):\n    if last.get('key') == (x.data_ptr(), out.data_ptr()):\n        return\n"  # skips
    "    out.copy_(x * 2)\n    last['key'] = (x.data_ptr(), out.data_ptr())\n": {"stale-output"},
}


def test_the_runner_probes_on_honest_and_caching_functions(tmp_path, make_problem):
    from kernelbench.core.solution import Solution, Source
    from kernelbench.eval.runner import RunPlan, run_in_process

    problem = load_problem(make_problem(tmp_path, DOUBLE, [{"uuid": "w", "axes": {"n": 8},
                                                            "inputs": {"x": {"type": "random"}}}]))
    for source, expected in CACHES.items():
        solution = Solution(name="candidate", definition="double", entry_point="main.py::run",
                            sources=(Source("main.py", source),), destination_passing_style="out" in source)
        report = run_in_process(problem, solution, RunPlan(rounds=3), shape_probe=False)
        assert report.rules == expected, (source, report.findings)


@pytest.fixture
def gemm():
    if not SAMPLE.is_dir():
        pytest.skip("sample problems absent")
    return load_problem(SAMPLE / "FlashInfer-Bench" / "004_gemm_n128_k2048")


def test_perturbed_workload_is_legal_new_and_small(gemm):
    probe = perturbed_workload(gemm)
    used = {w.axes["M"] for w in gemm.workloads}
    assert probe.axes["M"] not in used and probe.axes["M"] <= 9
    assert gemm.check_constraints(probe) == []


def test_perturbed_workload_respects_constraints(gemm):
    import dataclasses

    definition = dataclasses.replace(gemm.definition, constraints=("M % 4 == 0",))
    problem = dataclasses.replace(gemm, definition=definition,
                                  workloads=[w for w in gemm.workloads if w.axes["M"] % 4 == 0])
    probe = perturbed_workload(problem)
    assert probe.axes["M"] % 4 == 0 and probe.axes["M"] not in {w.axes["M"] for w in problem.workloads}


def test_findings_of_the_process_hook_stop_when_uninstalled(tmp_path):
    g = RuntimeGuard("cpu")
    g.install()
    g.uninstall()
    module = solution_module(tmp_path, "import os\ndef spawn():\n    os.system('true')\n")
    with g.armed():
        module.spawn()
    assert g.findings() == []
    assert sys.getrecursionlimit() > 0


def test_verdicts_cover_every_rule():
    from audit.rules import RULES, verdicts

    rows = verdicts([Finding("monkeypatch", "k.py:1: assigns torch.matmul")])
    assert list(rows) == list(RULES)
    flagged = {rule: row for rule, row in rows.items() if row["verdict"] == "FLAGGED"}
    assert list(flagged) == ["monkeypatch"] and flagged["monkeypatch"]["evidence"] == ["k.py:1: assigns torch.matmul"]


def test_check_call_leaves_no_cycle_that_keeps_the_inputs_alive(guard):
    """A round's inputs (multi-GB weights on big workloads) must go when the round ends, not at the
    next cyclic garbage collection: a frame cycle in the guard once kept three rounds alive at once."""
    def one_round():
        x = torch.randn(16)
        guard.check_call(InputSnapshot([x]), [x], [x * 2])
        return weakref.ref(x)

    gc.disable()
    try:
        assert one_round()() is None
    finally:
        gc.enable()
