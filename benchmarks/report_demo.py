"""Build a demo store from real measurements, render `kb report` from it, and screenshot it.

    PYTHONPATH=. python3 benchmarks/report_demo.py --work /tmp/report_demo --screenshots docs

The store holds, all of it measured, nothing invented:
- the H100 batch committed under benchmarks/results (leaderboard_h100.csv and its per-workload
  file; `gpu_checks.sh batch`, 2026-11-26), imported as recorded. Each winning solution is
  rebuilt from today's task and must have the recorded content hash (it is a baseline variant of
  the reference), else the import stops: the page then shows exactly the code that was measured;
- `kb optimize` on this machine's CPU for a few tasks235 L1 tasks (2 smallest workloads each),
  labelled "CPU clock" in the report;
- one adversarial solution from tests/exploits (cache-by-shape on the official sample problem
  L1/069_rms_norm) evaluated on the CPU, recorded as a submitted candidate: the audit flags it.

The screenshots (overview and one task page) are taken in headless Chromium (Debian's chromium
and chromium-driver, driven by selenium). CPU time: about 3 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import sys
import tempfile
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from kernelbench.core.problem import load_problem
from kernelbench.core.settings import REPOSITORY, Settings
from kernelbench.core.solution import load_solution
from kernelbench.core.store import Store
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.baseline_variants import VARIANTS, variant_solution
from kernelbench.jobs.baseline import measure_baseline
from kernelbench.jobs.optimize import optimize
from kernelbench.jobs.summary import summarize
from kernelbench.jobs.report import write_report
from kernelbench.jobs.session import Session, definition_hash

RESULTS = REPOSITORY / "benchmarks" / "results"
H100_TASKS, H100_WORKLOADS = RESULTS / "leaderboard_h100.csv", RESULTS / "leaderboard_per_workload_h100.csv"
H100_NAME = "NVIDIA H100 80GB HBM3"
CPU_TASKS = ("L1/001_llama3_8b_rmsnorm", "L1/002_qwen2_7b_swiglu_act", "L1/003_mistral_7b_rope")
EXPLOIT = REPOSITORY / "tests" / "exploits" / "cache-by-shape__069_rms_norm.json"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def import_h100(store: Store, tasks_root: Path) -> None:
    """The committed H100 batch, as recorded (a result per task, created at the recorded time)."""
    environment = store.environment_id({"imported": str(H100_TASKS.relative_to(REPOSITORY))}, H100_NAME, "cuda",
                                       {"source": str(H100_TASKS.relative_to(REPOSITORY))})
    workloads: dict[str, list[dict]] = {}
    for line in csv.DictReader(H100_WORKLOADS.open()):
        workloads.setdefault(line["task"], []).append({
            "uuid": line["uuid"], "axes": json.loads(line["axes"]), "status": line["status"], "log": "",
            **{key: _float(line[key]) for key in ("t_k_ms", "t_b_ms", "t_sol_ms", "score", "fraction_of_sol",
                                                  "speedup_vs_baseline")}})
    for line in csv.DictReader(H100_TASKS.open()):
        problem = load_problem(tasks_root / line["subset"] / line["task"])
        solution = next((s for s in (variant_solution(problem, v) for v in VARIANTS)
                         if s.content_hash == line["solution_hash"]), None)
        if solution is None:
            raise SystemExit(f"{line['task']}: no variant of today's reference has the recorded hash; not importing")
        store.record_problem(problem.name, problem.subset, str(problem.directory), definition_hash(problem),
                             len(problem.workloads))
        store.record_solution(solution)
        summary = {"task": line["task"], "subset": line["subset"], "solution": solution.name,
                   "solution_hash": line["solution_hash"], "language": line["language"], "hardware": line["hardware"],
                   "device": "cuda", "roofline_profile": line["roofline_profile"], "clock": line["clock"],
                   "workloads": int(line["workloads"]), "workloads_passed": int(line["workloads_passed"]),
                   "audit_status": line["audit_status"], "per_workload": workloads[line["task"]],
                   **{key: _float(line[key]) for key in ("geomean_t_k_ms", "geomean_t_b_ms", "geomean_t_sol_ms",
                                                         "sol_score", "fraction_of_sol", "speedup_vs_baseline")}}
        run_id = f"imported:{H100_TASKS.name}"
        store.record_result(line["task"], line["subset"], line["solution_hash"], environment, run_id, line["status"],
                            summary["sol_score"], summary)
        recorded = dt.datetime.fromisoformat(line["timestamp"]).timestamp()
        with store.transaction() as db:      # keep the time it was measured, not the time of the import
            db.execute("UPDATE results SET created_at = ? WHERE run_id = ? AND definition = ?",
                       (recorded, run_id, line["task"]))


def cpu_runs(settings: Settings, tasks_root: Path, sample_root: Path) -> None:
    config = EvalConfig(device="cpu", rounds=3, max_workloads=2, timing={"warmup": 2, "iterations": 10},
                        workload_timeout_s=300)
    session = Session.open(settings, "cpu")
    for task in CPU_TASKS:
        print(f"optimizing {task} on the CPU", flush=True)
        optimize(session, load_problem(tasks_root / task), config)
    # a submitted solution the audit flags: recorded as a candidate of source "user"
    problem = load_problem(sample_root / "L1" / "069_rms_norm")
    solution = load_solution(EXPLOIT)
    one = replace(config, max_workloads=1)
    t_b = measure_baseline(session, problem, one, variants=["eager"]).t_b
    session.store.record_problem(problem.name, problem.subset, str(problem.directory), definition_hash(problem),
                                 len(problem.workloads))
    session.store.record_solution(solution)
    run_id = "demo-submitted"
    traces = evaluate(problem, solution, one, environment=session.trace_environment(), baseline_ms=t_b)
    session.store.record_traces(traces, solution.content_hash, session.environment_id, run_id)
    summary = summarize(problem, solution, traces, t_b, session)
    session.store.record_candidate(problem.name, solution, {
        "source": "user", "proposer": f"{EXPLOIT.relative_to(REPOSITORY)} ({solution.author})"}, run_id,
        summary["status"], None)
    session.store.record_result(problem.name, problem.subset, solution.content_hash, session.environment_id, run_id,
                                summary["status"], summary["sol_score"], summary)


def screenshot(directory: Path, pages: dict[str, tuple[str, int, str | None]], out: Path) -> None:
    """pages: file name -> (path in the report, window height, column header to click first or None)."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        for name, (path, height, sort_by) in pages.items():
            driver.set_window_size(1480, height)
            driver.get(f"http://127.0.0.1:{server.server_port}/{path}")
            if sort_by:   # show a sorted table, as a reader would after one click
                driver.find_element(By.XPATH, f"//th/button[text()='{sort_by}']").click()
            if not driver.save_screenshot(str(out / name)):
                raise SystemExit(f"chromium could not write {out / name}")
            print(f"wrote {out / name}")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Directory for the demo store and the report.")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="Write report_overview.png and report_task.png here.")
    parser.add_argument("--tasks-root", type=Path, default=REPOSITORY / "tasks235")
    parser.add_argument("--sample-root", type=Path, default=REPOSITORY.parent / "shared" / "sol_execbench_sample")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / "demo.db"
    if not db.exists():
        settings = Settings(db=db)
        import_h100(Store(db), args.tasks_root)
        cpu_runs(settings, args.tasks_root, args.sample_root)
    settings = Settings(db=db, cache_dir=args.work / "cache")
    html = args.work / "html"
    pages = write_report(Store(db, read_only=True), settings, html)
    print(f"wrote {len(pages)} pages under {html}")
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
        task = next(p for p in pages if "L2__001_llama3_8b_mlp_block" in p.name)
        screenshot(html, {"report_overview.png": ("index.html", 1900, "S"),
                          "report_task.png": (f"tasks/{task.name}", 1500, None)}, args.screenshots)


if __name__ == "__main__":
    sys.exit(main())
