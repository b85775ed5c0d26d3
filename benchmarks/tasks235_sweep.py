"""The sweep on the GPU: every workload of tasks235 (and of the sample problems) timed as PyTorch
eager, torch.compile and CUDA graphs, kb baseline's three variants, beside T_SOL on the datasheet
profile and on a measured profile calibrated in the same run. Soundness: no workload may run below
its T_SOL on either profile.

Before (here, on CPU, no device time): the sample problems and the roofline counts travel with the tree

    cp -r ../shared/sol_execbench_sample .shared_sample                                        # git ignores it
    PYTHONPATH=$PWD kb --cache-dir .kbcache roofline tasks235 --json --jobs 2 >/dev/null        # ~6 min, 6 MB
    PYTHONPATH=$PWD kb --cache-dir .kbcache roofline .shared_sample --json --jobs 2 >/dev/null  # ~1.5 min

On the device, one call per part (carry .shared_sample and .kbcache; each part stays under ~8 min):

    PYTHONPATH=$PWD PYTHONUNBUFFERED=1 python3 benchmarks/tasks235_sweep.py --out $OUT --part 1/2 \
        --roots tasks235 .shared_sample --cache-dir .kbcache 2>&1 | tee $OUT/sweep_part1.log
    (the same with --part 2/2 and sweep_part2.log)

After: python3 benchmarks/tasks235_sweep.py --merge P1/sweep_part1.json P2/sweep_part2.json --out DIR
writes DIR/sweep.md and DIR/sweep.json. Exit status 1 if any workload ran below T_SOL.

One part (--part i/n: every n-th task by cost, so parts take about the same time):
1. calibrate (roofline.calibrate, the improved `kb calibrate`): the measured profile this part checks;
2. T_SOL of every workload from the roofline's counts (carry the counts cache, --cache-dir, so the GPU
   host counts nothing); a workload without T_SOL keeps the counter's reason;
3. warm: one worker process per CPU core compiles the part's tasks in parallel, each compiled
   variant called once on every workload in file order (a static graph first, then a dynamic one,
   as in the fresh process kb baseline gives each variant); nothing is timed meanwhile;
4. time: the workers take turns on the GPU (one at a time, the others idle), timing each workload's
   three variants with the evaluator's timer (inputs copied to a fresh address before each call,
   L2 flushed, device-wide sync) and the compiled functions of step 3, on the same inputs;
5. kb baseline (the real one: child processes, the evaluator) on --check-baseline's task, to show
   the sweep's compile and CUDA-graph numbers are kb baseline's;
6. write sweep_part<i>.json (every row) and sweep_part<i>.md (the summary); --merge joins parts.

Each variant is shown to be what it says, per task: Dynamo's compiled frames and graphs, frames
that failed to compile (the recompile limit: eager fallback), graph breaks, Inductor's FX-graph
compilations and CUDA-graph skips (a skip: that "CUDA graphs" variant ran without graphs), and
any compilation during timing. Why a fresh entry function per task (`entry_function`): Dynamo keys
its cache by code object, and torch.compile puts a reference decorated with @torch.no_grad() (a
torch wrapper) behind one shared frame, so in one process every such reference shares one cache
and after 8 of them the recompile limit sends all to eager: what the old sweep timed as
"torch.compile" (1.11x eager on average, where kb baseline measured 7.6x faster on L1/001).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")   # one compiling process per core, not 16 each

import torch  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from kernelbench.core.dtypes import storage_bits, torch_dtype  # noqa: E402
from kernelbench.core.inputs import generate_inputs  # noqa: E402
from kernelbench.core.problem import Problem, find_problem_dirs, load_problem  # noqa: E402
from kernelbench.core.reference import compile_reference  # noqa: E402
from kernelbench.core.settings import Settings  # noqa: E402
from kernelbench.eval.evaluator import EvalConfig  # noqa: E402
from kernelbench.eval.gpu_state import environment_info  # noqa: E402
from kernelbench.eval.timing import TimingConfig, time_callable  # noqa: E402
from kernelbench.generate.baseline_variants import VARIANTS  # noqa: E402
from kernelbench.jobs.baseline import measure_baseline  # noqa: E402
from kernelbench.jobs.session import Session  # noqa: E402
from roofline import load_profile, prefetch_counts, sol_for_problem  # noqa: E402
from roofline.calibrate import calibrate, raise_to_observed  # noqa: E402
from roofline.hardware import canonical_name  # noqa: E402

VARIANT_NAMES = ("eager", "compile", "cudagraphs")   # kb baseline's; VARIANTS maps them to torch.compile modes
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)
MEMORY_FRACTION = 0.75                               # of the GPU's memory that warming workers may plan to use
BASELINE_RESERVE_S = 75                              # kept at the end of a part for the kb baseline check
LATE_S = 30                                          # past the budget, a task still being timed is stopped


# ------------------------------------------------------------------------------ tasks

def input_bytes(problem: Problem, workload) -> int:
    axes = problem.axes_for(workload)
    return sum(math.prod(problem.shape_of(s, axes)) * storage_bits(torch_dtype(s.dtype)) // 8
               for s in problem.definition.inputs.values() if s.shape is not None)


def task_label(problem: Problem, root: Path) -> str:
    prefix = "" if root.name == "tasks235" else "sample:"
    return f"{prefix}{problem.subset}/{problem.name}"


def discover(roots: list[Path]) -> list[tuple[str, Path]]:
    return [(task_label(load_problem(d), root), d) for root in roots for d in find_problem_dirs(root)]


def part_of(tasks: list[tuple[str, Path]], part: int, parts: int) -> list[tuple[str, Path]]:
    """Every parts-th task by cost (workloads, then input bytes), so that each part gets large and small ones."""
    def cost(item):
        problem = load_problem(item[1])
        return (len(problem.workloads), sum(input_bytes(problem, w) for w in problem.workloads))
    ordered = sorted(tasks, key=cost, reverse=True)
    return ordered[part - 1::parts]


def entry_function(reference, label: str):
    """A function of its own (its own code object, so its own Dynamo cache) that calls the reference."""
    namespace = {"reference": reference}
    exec(compile("def run(*args):\n    return reference(*args)\n", f"<sweep {label}>", "exec"), namespace)  # noqa: S102
    return namespace["run"]


# ------------------------------------------------------------------------------ compile evidence

def snapshot() -> dict[str, int]:
    return {"frames": counters["frames"]["total"], "frames_ok": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
            "fx_compiles": counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_bypass"],
            "fx_cache_hits": counters["inductor"]["fxgraph_cache_hit"],
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def delta(before: dict[str, int]) -> dict[str, int]:
    after = snapshot()
    d = {k: after[k] - before[k] for k in after}
    d["frames_failed"] = d.pop("frames") - d["frames_ok"]      # frames Dynamo gave up on: those run eagerly
    return d


# ------------------------------------------------------------------------------ workers

class MemoryBudget:
    """GPU bytes the warming workers may plan to hold at once (inputs and their activations)."""

    def __init__(self, context, total: float):
        self.total = total
        self.condition = context.Condition()
        self.free = context.Value("d", total, lock=False)

    def acquire(self, n: float) -> float:
        n = min(n, self.total)
        with self.condition:
            while self.free.value < n:
                self.condition.wait()
            self.free.value -= n
        return n

    def release(self, n: float) -> None:
        with self.condition:
            self.free.value += n
            self.condition.notify_all()


class TaskState:
    def __init__(self, label: str, directory: Path, device: str):
        self.label, self.device = label, device
        self.problem = load_problem(directory)
        self.module = compile_reference(self.problem.definition)
        self.compiled = {v: torch.compile(entry_function(self.module.run, f"{label} {v}"), mode=None if
                                          VARIANTS[v] == "default" else VARIANTS[v])
                         for v in VARIANT_NAMES if VARIANTS[v] is not None}
        self.evidence: dict = {}
        self.warmed = False


def warm(state: TaskState, memory: MemoryBudget) -> dict:
    """Call each compiled variant once per workload, in file order; returns the compile evidence."""
    start = time.monotonic()
    for variant, fn in state.compiled.items():
        before = snapshot()
        errors = []
        for workload in state.problem.workloads:
            held = memory.acquire(3 * input_bytes(state.problem, workload) + (1 << 30))
            try:
                inputs = generate_inputs(state.problem, workload, device=state.device, seed=0,
                                         reference_module=state.module)
                fn(*inputs)
                if state.device == "cuda":
                    torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, not fatal
                errors.append(f"{workload.uuid[:8]}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            finally:
                inputs = None
                torch.cuda.empty_cache()
                memory.release(held)
        state.evidence[variant] = {**delta(before), "errors": errors}
    state.evidence["warm_s"] = time.monotonic() - start
    state.warmed = True
    return state.evidence


def time_task(state: TaskState, config: TimingConfig) -> list[dict]:
    """Time every workload's three variants on the same inputs; one row per workload."""
    rows = []
    for index, workload in enumerate(state.problem.workloads):
        row = {"task": state.label, "index": index, "uuid": workload.uuid, "axes": workload.axes,
               "input_bytes": input_bytes(state.problem, workload), "errors": {}}
        try:
            inputs = generate_inputs(state.problem, workload, device=state.device, seed=0, reference_module=state.module)
        except Exception as exc:  # noqa: BLE001
            row["errors"]["inputs"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            rows.append(row)
            continue
        for variant in VARIANT_NAMES:
            fn = state.module.run if variant == "eager" else state.compiled[variant]
            before = snapshot()
            try:
                row[f"t_{variant}_ms"] = time_callable(fn, inputs, state.device, config).median_ms
            except Exception as exc:  # noqa: BLE001
                row["errors"][variant] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            if variant != "eager":
                row[f"{variant}_frames_while_timed"] = delta(before)["frames_ok"]
        inputs = None
        torch.cuda.empty_cache()
        rows.append(row)
    return rows


def worker(index: int, commands, results, memory: MemoryBudget, timing: dict, device: str) -> None:
    if device == "cuda":
        torch.cuda.init()
    config = TimingConfig(**timing)
    states: dict[str, TaskState] = {}
    while True:
        command, label, directory = commands.get()
        if command == "exit":
            break
        try:
            state = states.get(label) or states.setdefault(label, TaskState(label, Path(directory), device))
            if command == "warm":
                results.put(("warmed", index, label, warm(state, memory)))
            else:
                if not state.warmed:            # not reached in the warm phase: compiled while it is timed
                    warm(state, MemoryBudget(multiprocessing.get_context("spawn"), float("inf")))
                results.put(("timed", index, label, (time_task(state, config), state.evidence)))
        except Exception as exc:  # noqa: BLE001 - one task failing does not stop the worker
            results.put(("failed", index, label, f"{type(exc).__name__}: {str(exc)[:300]}"))


# ------------------------------------------------------------------------------ the run

def receive(results, processes, waiting: dict[int, str], result: dict, deadline: float) -> tuple:
    """The next message from the worker we wait on (a straggler's late warm result is filed in
    `result` on the way); ("died", i, label, why) if that worker has exited, ("late", ...) past the
    deadline."""
    while True:
        try:
            kind, i, label, payload = results.get(timeout=5)
        except queue.Empty:
            for i, label in waiting.items():
                if not processes[i].is_alive():
                    return "died", i, label, f"worker exited with code {processes[i].exitcode}"
            if time.monotonic() > deadline:
                i, label = next(iter(waiting.items()))
                return "late", i, label, "still running at the part's time limit: stopped"
            continue
        if waiting.get(i) == label and kind != "warmed":
            return kind, i, label, payload
        result["evidence" if kind == "warmed" else "failures"][label] = payload


def t_sol_rows(tasks, profiles: dict, settings: Settings) -> dict[tuple[str, str], dict]:
    """(task, uuid) -> T_SOL per profile, binding, counted_on, reason, and the count's work (for raising)."""
    problems = [(label, load_problem(d)) for label, d in tasks]
    table = {}
    for label, problem in problems:
        per = {kind: {s.uuid: s for s in sol_for_problem(problem, prof, settings=settings)} for kind, prof in profiles.items()}
        for uuid, sheet in per["datasheet"].items():
            entry = {"binding": sheet.binding, "counted_on": sheet.counted_on, "sol_reason": sheet.reason,
                     "tensor_flops": sheet.tensor_flops, "sfu": sheet.sfu_ops, "bytes": sheet.bytes}
            for kind in profiles:
                t = per[kind][uuid].t_sol_s
                entry[f"t_sol_{kind}_ms"] = t * 1e3 if t is not None else None
            table[(label, uuid)] = entry
    return table


def check_baseline(task: tuple[str, Path], timing: dict, cache_dir: Path | None, device: str) -> dict:
    """kb baseline's own measurement (evaluator, child processes, one correctness round) of one task."""
    label, directory = task
    problem = load_problem(directory)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db=Path(tmp) / "baseline.db", cache_dir=cache_dir)
        session = Session.open(settings, device)
        config = EvalConfig(device=device, rounds=1, timing=dict(timing))
        baseline = measure_baseline(session, problem, config, force=True)
    table = {uuid: {**row, "best": baseline.t_b[uuid]} for uuid, row in baseline.table.items()}
    return {"task": label, "workloads": table}


class Part:
    """One part's run: the workers, what they hold, and the results so far (saved after every task,
    so that a run stopped at its time limit still leaves its rows in --out)."""

    def __init__(self, args, tasks, profile, raw, environment, memory_total: float, start: float):
        self.args, self.tasks, self.start = args, tasks, start
        self.timing = {"warmup": args.warmup, "iterations": args.iterations}
        context = multiprocessing.get_context("spawn")
        self.memory = MemoryBudget(context, memory_total)   # held here: the workers unpickle its semaphores
        self.results = context.Queue()
        self.queues = [context.Queue() for _ in range(args.workers)]
        self.processes = [context.Process(target=worker, args=(i, self.queues[i], self.results, self.memory, self.timing,
                                                               args.device), daemon=True) for i in range(args.workers)]
        for process in self.processes:
            process.start()
        self.owner: dict[str, int] = {}
        self.result = {"part": args.part, "environment": {k: environment.get(k) for k in
                                                          ("hardware", "torch", "cuda", "triton", "driver")},
                       "date": time.strftime("%Y-%m-%d"), "workers": args.workers, "timing": self.timing,
                       "seconds": {"total": 0.0, "warm": 0.0, "timed": 0.0}, "profile": profile.to_dict(),
                       "calibration_raw": raw, "raised_by_observations": [], "raised_profile": None,
                       "tasks": [t[0] for t in tasks], "untimed": [], "failures": {}, "evidence": {},
                       "baseline_check": None, "rows": [], "complete": False}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def save(self) -> None:
        self.result["seconds"]["total"] = self.elapsed()
        path = self.args.out / f"sweep_part{self.args.part.split('/')[0]}.json"
        path.write_text(json.dumps(self.result, default=str) + "\n")

    def warm(self, deadline: float) -> None:
        """Hand tasks to free workers until all are warm or the deadline; stragglers finish later."""
        pending, idle, working = list(self.tasks), list(range(self.args.workers)), {}
        evidence, failures = self.result["evidence"], self.result["failures"]
        while (pending or working) and time.monotonic() < deadline:
            while idle and pending:
                label, directory = pending.pop(0)
                i = idle.pop()
                self.owner[label] = i
                working[i] = label
                self.queues[i].put(("warm", label, str(directory)))
            try:
                kind, i, label, payload = self.results.get(timeout=5)
            except queue.Empty:
                for i in [i for i in working if not self.processes[i].is_alive()]:
                    failures[working.pop(i)] = f"worker exited with code {self.processes[i].exitcode}"
                continue
            working.pop(i, None)
            idle.append(i)
            (failures if kind == "failed" else evidence)[label] = payload
        alive = [i for i in range(self.args.workers) if self.processes[i].is_alive()] or [0]
        for n, (label, _) in enumerate(pending):        # not warmed in time: compiled when timed
            self.owner[label] = alive[n % len(alive)]
        self.result["seconds"]["warm"] = self.elapsed()
        print(f"{self.elapsed():6.1f}s warm: {len(evidence)} tasks, {len(working)} still compiling, "
              f"{len(pending)} left to compile while timed", flush=True)
        self.save()

    def time_all(self, stop: float) -> None:
        """One worker at a time on the GPU: each times its tasks, then exits (its CUDA graphs and memory go)."""
        result, orphans = self.result, []
        for i in range(self.args.workers):
            mine = [t for t in self.tasks if self.owner.get(t[0]) == i
                    and not (t[0] in result["failures"] and t[0] not in result["evidence"])]
            if not self.processes[i].is_alive():         # its tasks go to the next worker, compiled while timed
                orphans.extend(mine)
                continue
            mine, orphans = mine + orphans, []
            for label, directory in mine:
                if time.monotonic() > stop:
                    result["untimed"].append(label)
                    continue
                self.queues[i].put(("time", label, str(directory)))
                kind, _, _, payload = receive(self.results, self.processes, {i: label}, result,
                                              self.start + self.args.budget_s + LATE_S)
                if kind == "late":                      # a compile or a workload that does not end: stop it
                    self.processes[i].terminate()
                if kind in ("failed", "died", "late"):
                    result["failures"][label] = payload
                    continue
                rows, result["evidence"][label] = payload
                result["rows"].extend(rows)
                print(f"{self.elapsed():6.1f}s {label}", flush=True)
                self.save()
            self.queues[i].put(("exit", "", ""))
        result["untimed"].extend(label for label, _ in orphans)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        result["seconds"]["timed"] = self.elapsed() - result["seconds"]["warm"]


def run_part(args) -> dict:
    start = time.monotonic()
    part, parts = (int(x) for x in args.part.split("/"))
    tasks = [t for t in discover(args.roots) if not args.tasks or any(fnmatch.fnmatch(t[0], g) for g in args.tasks)]
    if args.retry:                                      # the tasks earlier parts left untimed or failed
        left = {label for path in args.retry for r in [json.loads(path.read_text())]
                for label in r["untimed"] + list(r["failures"])}
        tasks = [t for t in tasks if t[0] in left]
    tasks = part_of(tasks, part, parts)
    settings = Settings(cache_dir=args.cache_dir)
    prefetch_counts([load_problem(d) for _, d in tasks], jobs=os.cpu_count() or 1, settings=settings)
    environment = environment_info(args.device)
    if args.device == "cuda":
        hardware = canonical_name(environment["hardware"])
        profile, raw, _ = calibrate(str(args.out / f"profile_{hardware}_part{part}.json"))
        torch.cuda.empty_cache()
        memory_total = torch.cuda.get_device_properties(0).total_memory * MEMORY_FRACTION
    else:                                               # a CPU smoke run of the machinery: no calibration
        hardware, raw, memory_total = "H100", {}, 8e9
        profile = load_profile(hardware)
        environment.setdefault("hardware", "cpu")
    sols = t_sol_rows(tasks, {"datasheet": load_profile(hardware), "measured": profile}, settings)
    print(f"part {part}/{parts}: {len(tasks)} tasks, {len(sols)} workloads on {environment.get('hardware')}; "
          f"{time.monotonic() - start:.1f}s: counted, calibrated ({profile.profile_id})", flush=True)

    run = Part(args, tasks, profile, raw, environment, memory_total, start)
    check = [t for t in tasks if t[0] == args.check_baseline]
    run.warm(start + args.budget_s * args.warm_share)
    run.time_all(start + args.budget_s - (BASELINE_RESERVE_S if check else 0))
    result = run.result
    if check:
        try:
            result["baseline_check"] = check_baseline(check[0], run.timing, args.cache_dir, args.device)
        except Exception as exc:  # noqa: BLE001
            result["baseline_check"] = {"task": args.check_baseline, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    for row in result["rows"]:
        row.update(sols.get((row["task"], row["uuid"]), {}))
        finish_row(row)
    raised, result["raised_by_observations"] = raise_to_observed(profile, observations(result["rows"]))
    result["raised_profile"] = raised.to_dict() if result["raised_by_observations"] else None
    result["complete"] = True
    run.save()
    return result


def finish_row(row: dict) -> None:
    times = {v: row.get(f"t_{v}_ms") for v in VARIANT_NAMES if row.get(f"t_{v}_ms") is not None}
    row["t_b_ms"] = min(times.values()) if times else None
    row["best_variant"] = min(times, key=times.get) if times else None
    row["below"] = {kind: [v for v, t in times.items() if row.get(f"t_sol_{kind}_ms") and t < row[f"t_sol_{kind}_ms"]]
                    for kind in ("datasheet", "measured")}


def observations(rows: list[dict]) -> list[dict]:
    return [{"label": f"{r['task']} #{r['index']} {r['best_variant']}", "seconds": r["t_b_ms"] * 1e-3,
             "tensor_flops": r.get("tensor_flops") or {}, "sfu": r.get("sfu") or 0, "bytes": r.get("bytes") or 0}
            for r in rows if r.get("t_b_ms") and r.get("t_sol_datasheet_ms") is not None]


# ------------------------------------------------------------------------------ report

def quantiles(values: list[float]) -> list[float | None]:
    if not values:
        return [None] * len(QUANTILES)
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] for q in QUANTILES]


def cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    rows, env = result["rows"], result["environment"]
    lines = [f"# tasks235 + sample sweep: eager, torch.compile, CUDA graphs vs T_SOL (part {result['part']})", "",
             f"{env['hardware']}, torch {env['torch']}, CUDA {env['cuda']}, triton {env['triton']}, driver "
             f"{env['driver']}; {result['date']}; {result['workers']} compiling workers; timer warmup "
             f"{result['timing']['warmup']}, {result['timing']['iterations']} iterations (median); "
             f"{result['seconds']['total']:.0f} s (warm {result['seconds']['warm']:.0f} s, "
             f"timing {result['seconds']['timed']:.0f} s).", ""]
    lines += ["## Soundness: workloads timed below T_SOL (0 expected)", "",
              "| profile | T_b below T_SOL | eager below | compile below | cudagraphs below | workloads with T_SOL |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("datasheet", "measured"):
        with_sol = [r for r in rows if r.get(f"t_sol_{kind}_ms") is not None and r.get("t_b_ms") is not None]
        lines.append(f"| {kind} | {sum(bool(r['below'][kind]) for r in with_sol)} | " + " | ".join(
            str(sum(v in r["below"][kind] for r in with_sol)) for v in VARIANT_NAMES) + f" | {len(with_sol)} |")
    below = [r for r in rows if r["below"]["datasheet"] or r["below"]["measured"]]
    for r in below:
        lines.append(f"- {r['task']} #{r['index']} {json.dumps(r['axes'])}: T_b {cell(r['t_b_ms'])} ms "
                     f"({r['best_variant']}), T_SOL {cell(r.get('t_sol_datasheet_ms'))} (datasheet) / "
                     f"{cell(r.get('t_sol_measured_ms'))} ms (measured), bound by {r.get('binding')}")
    if result.get("raised_by_observations"):
        lines += ["", "Measured ceilings these timings beat (raise_to_observed):", ""]
        lines += [f"- {c}" for c in result["raised_by_observations"]]
    lines += ["", "## T_SOL / T_b per subset (datasheet profile; 1 = the best PyTorch variant at SOL)", "",
              "| subset | tasks | workloads | timed | errors | no T_SOL | q0 | q10 | q50 | q90 | q100 | "
              "best: eager / compile / cudagraphs | compile speedup over eager (geomean) |",
              "| --- |" + " --- |" * 12]
    subsets = sorted({r["task"].rsplit("/", 1)[0] for r in rows})
    for subset in subsets:
        group = [r for r in rows if r["task"].rsplit("/", 1)[0] == subset]
        ratios = [r["t_sol_datasheet_ms"] / r["t_b_ms"] for r in group if r.get("t_b_ms") and r.get("t_sol_datasheet_ms")]
        speedups = [r["t_eager_ms"] / r["t_compile_ms"] for r in group if r.get("t_eager_ms") and r.get("t_compile_ms")]
        wins = "/".join(str(sum(r["best_variant"] == v for r in group)) for v in VARIANT_NAMES)
        geo = math.exp(statistics.fmean(math.log(s) for s in speedups)) if speedups else None
        lines.append(f"| {subset} | {len({r['task'] for r in group})} | {len(group)} | "
                     f"{sum(r.get('t_b_ms') is not None for r in group)} | {sum(bool(r['errors']) for r in group)} | "
                     f"{sum(r.get('t_sol_datasheet_ms') is None for r in group)} | "
                     + " | ".join(cell(q) for q in quantiles(ratios)) + f" | {wins} | {cell(geo)} |")
    lines += ["", "## Each variant is what it says", ""]
    evidence = result["evidence"]
    for variant in ("compile", "cudagraphs"):
        tasks = [e[variant] for e in evidence.values() if variant in e]
        no_graph = [t for t, e in evidence.items() if variant in e and e[variant]["graphs"] == 0]
        failed = [t for t, e in evidence.items() if variant in e and e[variant]["frames_failed"]]
        lines.append(f"- {variant} ({VARIANTS[variant]}): {len(tasks)} tasks compiled, "
                     f"{sum(e['graphs'] for e in tasks)} graphs, {sum(e['fx_compiles'] for e in tasks)} Inductor "
                     f"compilations + {sum(e['fx_cache_hits'] for e in tasks)} cache hits, "
                     f"{sum(e['graph_breaks'] for e in tasks)} graph breaks; tasks with no graph: {len(no_graph)} "
                     f"{no_graph[:10]}; tasks with frames Dynamo gave up on (eager fallback): {len(failed)} {failed[:10]}")
    skips = [t for t, e in evidence.items() if e.get("cudagraphs", {}).get("cudagraph_skips")]
    lines.append(f"- CUDA graphs skipped (those tasks' cudagraphs variant ran as plain Inductor): {len(skips)} {skips}")
    recompiled = [f"{r['task']} #{r['index']}" for r in rows
                  if r.get("compile_frames_while_timed") or r.get("cudagraphs_frames_while_timed")]
    lines.append(f"- workloads that compiled again while timed (warmup absorbed it): {len(recompiled)} {recompiled[:10]}")
    if result.get("baseline_check"):
        lines += ["", "## kb baseline on the same task (evaluator, child processes) vs this sweep", ""]
        check = result["baseline_check"]
        if "error" in check:
            lines.append(f"- {check['task']}: {check['error']}")
        else:
            lines += ["| workload | " + " | ".join(f"{v} sweep / kb baseline (ms)" for v in VARIANT_NAMES) + " |",
                      "| --- |" + " --- |" * 3]
            sweep = {r["uuid"]: r for r in rows if r["task"] == check["task"]}
            for uuid, base in check["workloads"].items():
                mine = sweep.get(uuid, {})
                lines.append(f"| {uuid[:8]} {json.dumps(mine.get('axes'))} | " + " | ".join(
                    f"{cell(mine.get(f't_{v}_ms'))} / {cell(base.get(v))}" for v in VARIANT_NAMES) + " |")
    lines += ["", "## Calibration (measured profile of this part)", "", "| field | used | source |", "| --- | --- | --- |"]
    profile = result["profile"]
    for key, source in sorted(profile["sources"].items()):
        group, _, cls = key.partition(".")
        value = profile.get(group, {}).get(cls) if cls else profile.get(key)
        if isinstance(value, (int, float)):
            lines.append(f"| {key} | {value:.4g} | {source} |")
    problems = [f"- {r['task']} #{r['index']}: {r['errors']}" for r in rows if r["errors"]]
    problems += [f"- {t}: task failed: {m}" for t, m in result["failures"].items()]
    problems += [f"- {t}: not timed (out of time)" for t in result["untimed"]]
    problems += [f"- {r['task']} #{r['index']}: no T_SOL: {r['sol_reason']}" for r in rows if r.get("sol_reason")]
    if problems:
        lines += ["", "## Errors, untimed tasks, workloads without T_SOL", ""] + problems
    return "\n".join(lines) + "\n"


def merge(paths: list[Path]) -> dict:
    parts = [json.loads(p.read_text()) for p in paths]
    result = dict(parts[0])
    result["part"] = "+".join(p["part"] for p in parts)
    for key in ("rows", "tasks", "untimed"):
        result[key] = [x for p in parts for x in p[key]]
    for key in ("evidence", "failures"):
        result[key] = {k: v for p in parts for k, v in p[key].items()}
    timed = {r["task"] for r in result["rows"]}         # a --retry part may time what an earlier one left
    result["untimed"] = sorted(set(result["untimed"]) - timed)
    result["failures"] = {k: v for k, v in result["failures"].items() if k not in timed}
    result["raised_by_observations"] = [c for p in parts for c in p["raised_by_observations"]]
    result["baseline_check"] = next((p["baseline_check"] for p in parts if p.get("baseline_check")), None)
    result["seconds"] = {k: sum(p["seconds"][k] for p in parts) for k in parts[0]["seconds"]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for sweep_part<i>.json/.md")
    parser.add_argument("--part", default="1/1", help="i/n: this run's share of the tasks")
    parser.add_argument("--roots", type=Path, nargs="+", default=[Path("tasks235")])
    parser.add_argument("--tasks", nargs="+", default=None, help="only tasks whose label matches one of these globs")
    parser.add_argument("--retry", type=Path, nargs="+", default=None,
                        help="part JSONs: run only the tasks they left untimed or failed")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test the machinery")
    parser.add_argument("--cache-dir", type=Path, default=None, help="roofline counts cache (carry it)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=420,
                        help="seconds for the part: no new task is timed after this (less the kb baseline check)")
    parser.add_argument("--warm-share", type=float, default=0.5, help="of the budget, at most for the warm phase")
    parser.add_argument("--check-baseline", default="L1/001_llama3_8b_rmsnorm",
                        help="task also measured by kb baseline, in the part that holds it")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="part JSONs to join into one report")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        result = merge(args.merge)
        name = "sweep"
    else:
        result = run_part(args)
        name = f"sweep_part{args.part.split('/')[0]}"
    if args.merge:
        (args.out / f"{name}.json").write_text(json.dumps(result, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    below = sum(bool(r["below"]["datasheet"] or r["below"]["measured"]) for r in result["rows"])
    print(f"{len(result['rows'])} workloads timed, {below} below T_SOL; {args.out / (name + '.md')}", flush=True)
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
