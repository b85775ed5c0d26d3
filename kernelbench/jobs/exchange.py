"""`kb export` and `kb import`: results as SOL-ExecBench's official files, and back into the store.

Export writes one directory per leaderboard row (task x hardware):

    OUT/<hardware>/<subset>/<task>/solution.json   the official Solution
                                   traces.jsonl    one official Trace per workload
                                   summary.json    kernelbench's record of the row (not an official file)

Both official files are checked against the official field rules first (`solution_violations`,
`trace_violations`: the rules of SOL-ExecBench's pydantic models, sol_execbench.core.data), and a
row that breaks one is reported, not written. Our traces keep their extra fields (T_SOL, clock,
timing samples, audit findings, device): the official models ignore unknown fields.

Import reads a tree of trace files (`traces.jsonl`, or `traces.json` as SOL-ExecBench's
run_dataset writes them: `<category>/<problem>/{solution.json, traces.json}`) with the solution
files beside them, and records per (task, solution) the solution, the traces and the leaderboard
row. The row is recomputed from the traces by the summary `kb optimize` writes; summary.json,
when present, supplies only what an official trace cannot carry: T_b and T_SOL of workloads
that failed (an official trace has performance only when PASSED), the environment fingerprint
and the time of the original result. So a store exported and imported into a fresh store gives
the same leaderboard. GPU traces measured elsewhere carry no T_SOL: it comes from our roofline
for the GPU they name, when the problem is found (by directory name) under `problems_root`;
without it the row is scored with T_SOL = 0, as on CPU, and a warning says so.

Another store (another machine's kernelbench.db, a GPU run's backup) is imported row by row
(`import_store`): every result with its traces, solutions, baselines and candidates, one
transaction per result (`merge_rows`, also how `kb batch --ray` brings a worker's rows home).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from kernelbench.core import statuses
from kernelbench.core.errors import KernelBenchError, SolutionError
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.settings import DEFAULTS, Settings
from kernelbench.core.solution import Solution, parse_solution
from kernelbench.core.store import Store, json_hash
from kernelbench.core.trace import Trace, TraceError
from kernelbench.jobs import leaderboard
from kernelbench.jobs.session import roofline_hardware
from kernelbench.jobs.summary import summarize
from roofline import sol_for_problem

# what one result brings along (every prompt and answer of its run included)
TABLES = ("problems", "solutions", "traces", "baselines", "results", "candidates", "knowledge", "llm_exchanges")
SQLITE_HEADER = b"SQLite format 3\x00"
SOLUTION_FILE = "solution.json"
TRACES_FILE = "traces.jsonl"
OFFICIAL_TRACES_FILE = "traces.json"   # SOL-ExecBench's run_dataset: a JSON list
SUMMARY_FILE = "summary.json"

# The official field rules (sol_execbench.core.data.solution / trace / workload).
PYTHON_LANGUAGES = ("pytorch", "triton", "cute_dsl", "cutile", "cudnn_frontend")
CPP_LANGUAGES = ("cutlass", "cudnn", "cublas", "cuda_cpp")
CPP_SUFFIXES = (".cu", ".cpp", ".cc", ".cxx", ".c", ".h", ".hpp", ".cuh")
TARGET_HARDWARE = ("B200", "LOCAL")
INPUT_FIELDS = {"random": (), "custom": (), "scalar": ("value",), "safetensors": ("path", "tensor_key")}
TOLERANCE_NUMBERS = ("max_atol", "max_rtol", "required_matched_ratio", "max_error_cap")
PERFORMANCE_NUMBERS = ("latency_ms", "reference_latency_ms", "speedup_factor")
# status -> (correctness present, performance present); every other status has neither
PRESENT = {statuses.PASSED: (True, True), statuses.INCORRECT_NUMERICAL: (True, False)}
# The first official format named one language (spec.language); ours are the current names.
LEGACY_LANGUAGES = {"python": "pytorch", "triton": "triton", "cuda": "cuda_cpp", "cpp": "cuda_cpp"}


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def solution_violations(data: Any) -> list[str]:
    """Every official field rule a solution.json breaks (empty: valid)."""
    if not isinstance(data, dict):
        return ["top level: must be an object"]
    found = [f"{key}: must be a non-empty string" for key in ("name", "definition", "author") if not _text(data.get(key))]
    if data.get("description") is not None and not isinstance(data["description"], str):
        found.append("description: must be a string or null")
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return found + ["spec: must be an object"]
    languages = spec.get("languages")
    if not isinstance(languages, list) or not languages or any(x not in PYTHON_LANGUAGES + CPP_LANGUAGES for x in languages):
        found.append(f"spec.languages: must list languages of {', '.join(PYTHON_LANGUAGES + CPP_LANGUAGES)}")
        languages = []
    python, cpp = [x for x in languages if x in PYTHON_LANGUAGES], [x for x in languages if x in CPP_LANGUAGES]
    if python and cpp:
        found.append(f"spec.languages: C++ {cpp} and Python {python} cannot be mixed")
    hardware = spec.get("target_hardware")
    if not isinstance(hardware, list) or not hardware or any(h not in TARGET_HARDWARE for h in hardware):
        found.append(f"spec.target_hardware: must list at least one of {', '.join(TARGET_HARDWARE)}")
    entry = spec.get("entry_point")
    entry_file = None
    if not _text(entry) or entry.count("::") != 1:
        found.append('spec.entry_point: must look like "file::function"')
    else:
        entry_file = entry.split("::")[0]
        suffix = PurePosixPath(entry_file).suffix
        if python and suffix != ".py":
            found.append(f"spec.entry_point: Python languages need a .py entry file, not {entry_file!r}")
        if cpp and suffix not in CPP_SUFFIXES:
            found.append(f"spec.entry_point: C++ languages need a C++/CUDA entry file, not {entry_file!r}")
    dependencies = spec.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(_text(d) for d in dependencies):
        found.append("spec.dependencies: must be a list of non-empty strings")
    if not isinstance(spec.get("destination_passing_style", True), bool):
        found.append("spec.destination_passing_style: must be true or false")
    if spec.get("binding") not in (None, "torch"):
        found.append('spec.binding: must be "torch" or null')
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        return found + ["sources: must be a non-empty list"]
    paths = []
    for i, source in enumerate(sources):
        if not isinstance(source, dict) or not _text(source.get("path")) or not _text(source.get("content")):
            found.append(f"sources[{i}]: needs a non-empty path and content")
            continue
        path = PurePosixPath(source["path"])
        if path.is_absolute() or ".." in path.parts:
            found.append(f"sources[{i}].path: {source['path']!r} must be relative, without '..'")
        if source["path"] in paths:
            found.append(f"sources[{i}].path: {source['path']!r} repeats")
        paths.append(source["path"])
    if entry_file is not None and entry_file not in paths:
        found.append(f"spec.entry_point: entry file {entry_file!r} is not among the sources")
    return found


def trace_violations(data: Any) -> list[str]:
    """Every official field rule a trace breaks (empty: valid)."""
    if not isinstance(data, dict):
        return ["top level: must be an object"]
    found = [] if _text(data.get("definition")) else ["definition: must be a non-empty string"]
    if data.get("solution") is not None and not isinstance(data["solution"], str):
        found.append("solution: must be a string or null")
    found += _workload_violations(data.get("workload"))
    evaluation = data.get("evaluation")
    if evaluation is None:
        return found
    if not isinstance(evaluation, dict):
        return found + ["evaluation: must be an object or null"]
    status = evaluation.get("status")
    if status not in statuses.ALL:
        found.append(f"evaluation.status: must be one of {', '.join(statuses.ALL)}")
    environment = evaluation.get("environment")
    if not isinstance(environment, dict) or not _text(environment.get("hardware")):
        found.append("evaluation.environment.hardware: must be a non-empty string")
    elif not isinstance(environment.get("libs", {}), dict) or not all(
            isinstance(v, str) for v in environment.get("libs", {}).values()):
        found.append("evaluation.environment.libs: must map library names to version strings")
    if not _text(evaluation.get("timestamp")):
        found.append("evaluation.timestamp: must be a non-empty string")
    if not isinstance(evaluation.get("log", ""), str):
        found.append("evaluation.log: must be a string")
    needs_correctness, needs_performance = PRESENT.get(status, (False, False))
    for name, needed in (("correctness", needs_correctness), ("performance", needs_performance)):
        present = evaluation.get(name) is not None
        if present != needed:
            found.append(f"evaluation.{name}: {'required' if needed else 'must be null'} when status is {status}")
    correctness = evaluation.get("correctness")
    if isinstance(correctness, dict):
        for key in ("max_relative_error", "max_absolute_error"):
            if not _number(correctness.get(key, 0.0)) or correctness.get(key, 0.0) < 0:
                found.append(f"evaluation.correctness.{key}: must be a non-negative number")
        for key in ("has_nan", "has_inf"):
            if not isinstance(correctness.get(key, False), bool):
                found.append(f"evaluation.correctness.{key}: must be true or false")
    elif correctness is not None:
        found.append("evaluation.correctness: must be an object or null")
    performance = evaluation.get("performance")
    if isinstance(performance, dict):
        for key in PERFORMANCE_NUMBERS:
            if not _number(performance.get(key, 0.0)) or performance.get(key, 0.0) < 0:
                found.append(f"evaluation.performance.{key}: must be a non-negative number")
    elif performance is not None:
        found.append("evaluation.performance: must be an object or null")
    return found


def _workload_violations(workload: Any) -> list[str]:
    if not isinstance(workload, dict):
        return ["workload: must be an object"]
    found = [] if _text(workload.get("uuid")) else ["workload.uuid: must be a non-empty string"]
    axes = workload.get("axes")
    if not isinstance(axes, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in axes.values()):
        found.append("workload.axes: must map axis names to non-negative integers")
    inputs = workload.get("inputs")
    if not isinstance(inputs, dict):
        return found + ["workload.inputs: must be an object"]
    for name, source in inputs.items():
        kind = source.get("type") if isinstance(source, dict) else None
        if kind not in INPUT_FIELDS:
            found.append(f"workload.inputs.{name}.type: must be one of {', '.join(INPUT_FIELDS)}")
            continue
        for key in INPUT_FIELDS[kind]:
            value = source.get(key)
            if not (isinstance(value, (int, float, bool)) if key == "value" else _text(value)):
                found.append(f"workload.inputs.{name}.{key}: required for a {kind} input")
    kinds = {source.get("type") == "custom" for source in inputs.values() if isinstance(source, dict)}
    if len(kinds) > 1:
        found.append("workload.inputs: custom and other inputs cannot be mixed")
    tolerance = workload.get("tolerance")
    if tolerance is not None:
        if not isinstance(tolerance, dict):
            found.append("workload.tolerance: must be an object")
        else:
            found += [f"workload.tolerance.{key}: must be a number" for key in TOLERANCE_NUMBERS
                      if tolerance.get(key) is not None and not _number(tolerance[key])]
    return found


# ---------------------------------------------------------------- export

@dataclass
class ExportReport:
    written: list[Path] = field(default_factory=list)       # one directory per leaderboard row
    skipped: dict[str, str] = field(default_factory=dict)   # "task on hardware" -> why it was not written


def export_results(store: Store, out_dir: Path, tasks: Sequence[str] = ()) -> ExportReport:
    """Write the leaderboard's rows (every task, or those named) as official files under out_dir."""
    rows = leaderboard.leaderboard_rows(store)
    unknown = sorted(set(tasks) - {row["task"] for row in rows})
    if unknown:
        raise KernelBenchError(f"no stored result for {', '.join(unknown)}")
    results = store.results()
    report = ExportReport()
    for row in rows:
        if tasks and row["task"] not in tasks:
            continue
        label = f"{row['task']} on {row['hardware']}"
        result = _chosen_result(row, results)
        if result is None or result["solution_hash"] is None:
            report.skipped[label] = "the result names no stored solution"
            continue
        found = store.db.execute("SELECT data FROM environments WHERE id = ?", (result["environment_id"],)).fetchone()
        environment = json.loads(found[0]) if found else {}   # none: the trace must name its hardware itself
        summary = json.loads(result["data"])
        reference_ms = {w["uuid"]: w["t_b_ms"] for w in summary.get("per_workload", [])}
        traces = [official_trace(json.loads(t["data"]), environment, reference_ms)
                  for t in store.traces(result["definition"], result["run_id"]) if t["solution_hash"] == result["solution_hash"]]
        stored = parse_solution(json.loads(store.db.execute("SELECT data FROM solutions WHERE hash = ?",
                                                            (result["solution_hash"],)).fetchone()[0]))
        # solutions are stored once per content: the same sources may be stored under another task's name
        solution = replace(stored, definition=result["definition"],
                           name=traces[0]["solution"] if traces else stored.name)
        solution_json = official_solution(solution, environment)
        violations = [f"solution.json: {v}" for v in solution_violations(solution_json)]
        violations += [f"trace {i}: {v}" for i, t in enumerate(traces) for v in trace_violations(t)]
        if not traces:
            violations.append("no traces stored for the result's run")
        if violations:
            report.skipped[label] = "; ".join(violations)
            continue
        directory = Path(out_dir) / _slug(row["hardware"]) / (row["subset"] or "unknown") / row["task"]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SOLUTION_FILE).write_text(json.dumps(solution_json, indent=2) + "\n")
        (directory / TRACES_FILE).write_text("".join(json.dumps(t) + "\n" for t in traces))
        record = {"task": result["definition"], "subset": result["subset"], "environment": environment,
                  "result": {"status": result["status"], "sol_score": result["sol_score"], "run_id": result["run_id"],
                             "created_at": result["created_at"]},
                  "summary": summary}
        (directory / SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n")
        report.written.append(directory)
    return report


def _chosen_result(row: dict, results) -> Any:
    """The stored result behind a leaderboard row."""
    return next((r for r in results if (r["definition"], r["run_id"], r["solution_hash"], r["created_at"])
                 == (row["task"], row["run_id"], row["solution_hash"], row["created_at"])), None)


def official_solution(solution: Solution, environment: dict) -> dict:
    """solution.json with the fields the official model requires: an author, official target hardware."""
    data = solution.to_json()
    data["author"] = data["author"] or "kernelbench"
    hardware = [h for h in data["spec"]["target_hardware"] if h in TARGET_HARDWARE]
    data["spec"]["target_hardware"] = hardware or ["B200" if "B200" in environment.get("hardware", "") else "LOCAL"]
    return data


def official_trace(trace: dict, environment: dict, reference_ms: dict[str, float | None] | None = None) -> dict:
    """A stored trace as the official model wants it: hardware and string-valued libs in the
    environment, correctness and performance only where the status has them, no null numbers.
    `reference_ms` (uuid -> T_b the result was scored with) fills a reference latency the trace
    lacks: the baseline variants' own traces are measured before T_b is known."""
    trace = copy.deepcopy(trace)
    evaluation = trace["evaluation"]
    given = evaluation.get("environment") or {}
    libs = given.get("libs") or environment.get("libs") or {}
    evaluation["environment"] = {**given, "hardware": given.get("hardware") or environment.get("hardware"),
                                 "libs": {k: str(v) for k, v in libs.items() if v is not None}}
    has_correctness, has_performance = PRESENT.get(evaluation["status"], (False, False))
    if not has_correctness:
        evaluation["correctness"] = None
    elif evaluation.get("correctness") is None:  # the evaluator kept no error figures for this failure
        evaluation["correctness"] = {"max_absolute_error": 0.0, "max_relative_error": 0.0, "extra": {"recorded": False}}
    if not has_performance:
        evaluation["performance"] = None
    elif evaluation.get("performance") is not None:
        performance = evaluation["performance"]
        reference = performance.get("reference_latency_ms") or (reference_ms or {}).get(trace["workload"]["uuid"])
        if reference and performance.get("latency_ms"):
            performance.update(reference_latency_ms=reference, speedup_factor=reference / performance["latency_ms"])
        # an unknown T_b is left out (the official default), not written as null
        evaluation["performance"] = {k: v for k, v in performance.items() if v is not None}
    return trace


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(text)).strip("_") or "unknown"


# ---------------------------------------------------------------- import

@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)        # "task (solution)"
    already: list[str] = field(default_factory=list)         # the same result was in the store
    skipped: dict[str, str] = field(default_factory=dict)    # "task (solution)" or file -> why
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Task:
    """What `summarize` reads of a problem."""
    name: str
    subset: str


@dataclass(frozen=True)
class _Sol:
    """What `summarize` reads of a workload's roofline."""
    t_sol_s: float | None
    binding: str | None = None
    reason: str | None = None   # why a workload has no T_SOL


@dataclass(frozen=True)
class _Origin:
    """What `summarize` reads of a session: the environment the traces were measured in, and the
    roofline they were scored with (its profile name is taken from the traces afterwards)."""
    environment: dict
    device: str
    sols: dict = field(default_factory=dict)   # uuid -> _Sol, or the roofline's WorkloadSOL
    hardware: str = ""
    profile: str = ""

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def sol(self, problem) -> dict:
        return self.sols


def import_results(store: Store, path: Path, *, problems_root: Path | None = None,
                   settings: Settings = DEFAULTS) -> ImportReport:
    """Record every (task, solution) found in the trace files under path; GPU traces without T_SOL get
    it from the roofline (`settings.profile`) when their problem is under problems_root."""
    path = Path(path)
    sol = _RooflineSol(problems_root, settings)
    files = [path] if path.is_file() else sorted([*path.rglob(TRACES_FILE), *path.rglob(OFFICIAL_TRACES_FILE)])
    if not files:
        raise KernelBenchError(f"{path}: no {TRACES_FILE} or {OFFICIAL_TRACES_FILE} here")
    report = ImportReport()
    for file in files:
        solutions = _solutions_beside(file)
        record = _read_json(file.parent / SUMMARY_FILE) if (file.parent / SUMMARY_FILE).is_file() else None
        groups: dict[tuple[str, str], list[Trace]] = defaultdict(list)
        for number, data in enumerate(_read_traces(file), start=1):
            try:
                violations = trace_violations(data)
                trace = None if violations else Trace.from_json(data)
            except TraceError as exc:
                violations = [str(exc)]
            if violations:
                report.skipped[f"{file}:{number}"] = "; ".join(violations)
            elif trace.evaluation is not None:   # a workload-only trace records no result
                groups[(trace.definition, trace.solution or "")].append(trace)
        for (definition, name), traces in groups.items():
            label = f"{definition} ({name})"
            if name not in solutions:
                report.skipped[label] = f"no solution named {name!r} beside {file}"
                continue
            try:
                solution = parse_solution(_our_solution_json(solutions[name][0]), str(solutions[name][1]))
            except SolutionError as exc:
                report.skipped[label] = str(exc)
                continue
            own = record if record and record.get("task") == definition and \
                record.get("summary", {}).get("solution_hash") == solution.content_hash else None
            subset = own["subset"] if own else file.parent.parent.name
            if _record(store, solution, traces, subset, own, report, sol):
                report.imported.append(label)
            else:
                report.already.append(label)
    return report


def _record(store: Store, solution: Solution, traces: list[Trace], subset: str, own: dict | None,
            report: ImportReport, roofline: "_RooflineSol") -> bool:
    """Store one (task, solution): its traces and the leaderboard row recomputed from them.
    False when the same result is already in the store."""
    definition = traces[0].definition
    environment = own["environment"] if own else _environment_of(traces[0])
    run_id = own["result"]["run_id"] if own else f"import-{json_hash([t.to_json() for t in traces])[:12]}"
    if store.db.execute("SELECT 1 FROM results WHERE definition = ? AND solution_hash = ? AND run_id = ?",
                        (definition, solution.content_hash, run_id)).fetchone():
        return False
    environment_id = store.environment_id(environment["fingerprint"], environment["hardware"],
                                          environment["device"], environment)
    t_b, sols = _reference_and_sol(traces, own)
    device = environment["device"]
    profile = own["summary"].get("roofline_profile") if own else traces[0].evaluation.environment.roofline_profile
    if device.startswith("cuda") and own is None and len(sols) < len(traces):   # measured elsewhere, scored here
        computed, profile = roofline.sol(definition, environment)
        sols = {**computed, **sols}
        if profile is None:
            report.warnings.append(f"{definition}: no T_SOL (the problem is not under the problems root): "
                                   f"scored with T_SOL = 0")
    origin = _Origin(environment, device, sols)
    summary = summarize(_Task(definition, subset), solution, traces, t_b, origin)
    summary["roofline_profile"] = profile if origin.on_gpu else None
    if own and own["summary"].get("sol_score") != summary["sol_score"]:
        report.warnings.append(f"{definition}: {SUMMARY_FILE} says score {own['summary'].get('sol_score')}, "
                               f"the traces give {summary['sol_score']}; the traces count")
    store.record_solution(solution)
    store.record_traces(traces, solution.content_hash, environment_id, run_id)
    store.record_result(definition, subset, solution.content_hash, environment_id, run_id, summary["status"],
                        summary["sol_score"], summary,
                        created_at=own["result"]["created_at"] if own else _latest_timestamp(traces))
    return True


@dataclass
class _RooflineSol:
    """T_SOL per workload from our roofline, for the GPU an environment names."""
    problems_root: Path | None
    settings: Settings

    def sol(self, definition: str, environment: dict) -> tuple[dict, str | None]:
        """(uuid -> the roofline's WorkloadSOL, "hardware/profile"); ({}, None) when the problem is not found."""
        directories = [d for d in find_problem_dirs(self.problems_root) if d.name == definition] \
            if self.problems_root and Path(self.problems_root).is_dir() else []
        if len(directories) != 1:
            return {}, None
        hardware = roofline_hardware({**environment, "device": "cuda"})
        sols = sol_for_problem(load_problem(directories[0]), hardware, self.settings.profile, self.settings)
        return {s.uuid: s for s in sols}, f"{hardware}/{self.settings.profile}"


def is_store(path: Path) -> bool:
    path = Path(path)
    return path.is_file() and path.open("rb").read(len(SQLITE_HEADER)) == SQLITE_HEADER


def import_store(store: Store, path: Path) -> ImportReport:
    """Every result of another store, with the rows behind it; a result already here is left alone."""
    other = Store(path, read_only=True)
    report = ImportReport()
    for result in other.db.execute("SELECT * FROM results ORDER BY id").fetchall():
        label = f"{result['definition']} ({result['run_id']})"
        if store.db.execute("SELECT 1 FROM results WHERE definition = ? AND run_id = ? AND created_at = ?",
                            (result["definition"], result["run_id"], result["created_at"])).fetchone():
            report.already.append(label)
            continue
        merge_rows(store, _rows_of(other, dict(result)))
        report.imported.append(label)
    other.close()
    return report


def _rows_of(store: Store, result: dict) -> dict[str, list[dict]]:
    """The rows behind one result: its run's traces and candidates, their solutions (a candidate screened out
    has no trace, only its row), the task's problem records, baselines in the result's environment,
    knowledge-base entries and the run's LLM log."""
    def rows(query: str, *args) -> list[dict]:
        return [dict(row) for row in store.db.execute(query, args)]

    run = (result["definition"], result["run_id"])
    return {
        "environments": rows("SELECT * FROM environments WHERE id = ?", result["environment_id"]),
        "problems": rows("SELECT * FROM problems WHERE name = ?", result["definition"]),
        "solutions": rows("SELECT * FROM solutions WHERE hash = ? OR hash IN (SELECT solution_hash FROM traces "
                          "WHERE definition = ? AND run_id = ?) OR hash IN (SELECT solution_hash FROM candidates "
                          "WHERE definition = ? AND run_id = ?)", result["solution_hash"], *run, *run),
        "traces": rows("SELECT * FROM traces WHERE definition = ? AND run_id = ? ORDER BY id", *run),
        "baselines": rows("SELECT * FROM baselines WHERE definition = ? AND environment_id = ?",
                          result["definition"], result["environment_id"]),
        "results": [result],
        "candidates": rows("SELECT * FROM candidates WHERE definition = ? AND run_id = ? ORDER BY id", *run),
        "knowledge": rows("SELECT * FROM knowledge WHERE definition = ?", result["definition"]),
        "llm_exchanges": rows("SELECT * FROM llm_exchanges WHERE definition = ? AND run_id = ? ORDER BY id", *run),
    }


def merge_rows(store: Store, rows: dict[str, list[dict]], problem_path: Path | None = None) -> dict:
    """Commit the rows behind one result (from another store) in one transaction; returns the result row.
    Rows keep their times; the environment is matched by fingerprint; `problem_path` replaces the
    problems' recorded path (where this machine has the problem)."""
    environment_id = None
    for environment in rows["environments"]:
        data = json.loads(environment["data"])
        environment_id = store.environment_id(data["fingerprint"], environment["hardware"], environment["device"], data)
    with store.transaction():
        for table in TABLES:
            records = [{**row, "environment_id": environment_id} if "environment_id" in row else row for row in rows[table]]
            if table == "problems" and problem_path is not None:
                records = [{**row, "path": str(problem_path)} for row in records]
            insert_rows(store, table, records, transaction=False)
    [result] = rows["results"]
    return result


def insert_rows(store: Store, table: str, rows: list[dict], transaction: bool = True) -> None:
    """Rows of one of our tables, without their ids (the target numbers its own); columns checked
    against the target's schema, so rows from elsewhere can name no other column."""
    if table not in TABLES:
        raise KernelBenchError(f"{table} is not a table that records results")
    columns = {row[1] for row in store.db.execute(f"PRAGMA table_info({table})")} - {"id"}
    verb = {"problems": "INSERT OR IGNORE", "solutions": "INSERT OR IGNORE", "baselines": "INSERT OR REPLACE",
            "knowledge": "INSERT OR REPLACE"}.get(table, "INSERT")

    def insert_all(db) -> None:
        for row in rows:
            row = {k: v for k, v in row.items() if k != "id"}
            unknown = set(row) - columns
            if unknown:
                raise KernelBenchError(f"{table} rows with unknown columns {sorted(unknown)}")
            db.execute(f"{verb} INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values()))

    if transaction:
        with store.transaction() as db:
            insert_all(db)
    else:
        insert_all(store.db)


def _environment_of(trace: Trace) -> dict:
    """An environment record for traces measured elsewhere: its fingerprint is built like ours
    (hardware, device, library versions), so traces of the same machine share one record."""
    given = trace.evaluation.environment
    device = given.device or "cuda"   # SOL-ExecBench measures on NVIDIA GPUs only
    fingerprint = {"hardware": given.hardware, "device": device,
                   **{k: given.libs.get(k) for k in ("torch", "triton", "cuda", "driver")}}
    return {"hardware": given.hardware, "device": device, "libs": dict(given.libs), "fingerprint": fingerprint}


def _reference_and_sol(traces: list[Trace], own: dict | None) -> tuple[dict, dict]:
    """T_b (ms) and the roofline (T_SOL, binding unit, why none) per workload: from the trace's
    performance, else (a failed workload; the binding unit; the reason) from summary.json."""
    recorded = {row["uuid"]: row for row in (own["summary"].get("per_workload", []) if own else [])}
    t_b, sols = {}, {}
    for trace in traces:
        uuid = trace.workload.uuid
        performance = trace.evaluation.performance
        row = recorded.get(uuid, {})
        # 0 is the official "unknown"
        t_b[uuid] = (performance and performance.reference_latency_ms) or row.get("t_b_ms")
        sol_ms = (performance and performance.sol_latency_ms) or row.get("t_sol_ms")
        if sol_ms or row.get("t_sol_reason"):
            sols[uuid] = _Sol(_seconds(sol_ms) if sol_ms else None, row.get("binding"), row.get("t_sol_reason"))
    return t_b, sols


def _seconds(ms: float) -> float:
    """s with s * 1e3 == ms exactly, as the summary computes T_SOL in ms from seconds (ms / 1e3 nearly
    always is; else a neighbouring float)."""
    seconds = ms / 1e3
    for _ in range(8):   # a few ulps away at most
        if seconds * 1e3 == ms:
            break
        seconds = math.nextafter(seconds, math.inf if seconds * 1e3 < ms else -math.inf)
    return seconds


def _latest_timestamp(traces: list[Trace]) -> float:
    times = []
    for trace in traces:
        try:
            stamp = dt.datetime.fromisoformat(trace.evaluation.timestamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        times.append((stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp())
    return max(times, default=time.time())


def _our_solution_json(official: dict) -> dict:
    """The first official format's spec.language ("python", "cuda", ...) in the current names."""
    spec = official.get("spec")
    if isinstance(spec, dict) and "languages" not in spec and isinstance(spec.get("language"), str):
        official = {**official, "spec": {**spec, "languages": [LEGACY_LANGUAGES.get(spec["language"], spec["language"])]}}
    return official


def _solutions_beside(file: Path) -> dict[str, tuple[dict, Path]]:
    """name -> (solution.json, its path) of the solution files in the trace file's directory."""
    found = {}
    for path in sorted(file.parent.glob("*.json")):
        if path.name in (OFFICIAL_TRACES_FILE, SUMMARY_FILE) or path == file:
            continue
        data = _read_json(path)
        if isinstance(data, dict) and {"name", "spec", "sources"} <= set(data):
            found[str(data["name"])] = (data, path)
    return found


def _read_traces(file: Path) -> list[Any]:
    if file.suffix == ".jsonl":
        traces = []
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    traces.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise KernelBenchError(f"{file}:{number}: invalid JSON: {exc.msg}") from None
        return traces
    data = _read_json(file)
    return data if isinstance(data, list) else [data]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KernelBenchError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
