"""`kb report` and `kb leaderboard --html`: what the pages say (no browser; test_report_browser.py
opens them in Chromium), robustness to missing values, and the leaderboard CSV's pinned columns."""

from __future__ import annotations

import csv
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core.problem import load_problem
from kernelbench.core.settings import Settings
from kernelbench.core.trace import Trace
from kernelbench.core.solution import Solution, Source
from kernelbench.core.store import Store
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.jobs import leaderboard, report
from kernelbench.jobs.optimize import optimize
from kernelbench.jobs.session import Session, definition_hash
from tiny_problems import write_rmsnorm_problem

TRITON_SOURCE = "import triton\n\ndef run(x, weight, eps, out):\n    out.copy_(x)\n"


def build_store(root: Path) -> Path:
    """A store with every kind of row the report must show: a real CPU result (kb optimize on a tiny
    RMSNorm), a GPU-clock result of a generated candidate with provenance and a problem directory
    (roofline recomputed), a flagged result with audit findings in its traces, and a result whose
    summary lacks nearly everything (an older or foreign writer)."""
    db = root / "kb.db"
    tasks = root / "tasks"
    cpu_problem = load_problem(write_rmsnorm_problem(tasks, "001_cpu_rmsnorm"))
    session = Session.open(Settings(db=db), "cpu")
    optimize(session, cpu_problem, EvalConfig(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3},
                                              workload_timeout_s=60, build_timeout_s=60), variants=["eager"], budget_s=0)
    store = session.store

    gpu_problem = load_problem(write_rmsnorm_problem(tasks, "002_gpu_rmsnorm", subset="L2", batches=(1, 64, 4096)))
    store.record_problem(gpu_problem.name, "L2", str(gpu_problem.directory), definition_hash(gpu_problem), 3)
    candidate = Solution(name="rmsnorm_triton_bm64", definition=gpu_problem.name, entry_point="kernel.py::run",
                         sources=(Source("kernel.py", TRITON_SOURCE),), languages=("triton",), author="generator")
    store.record_solution(candidate)
    gpu = store.environment_id({"gpu": "test"}, "NVIDIA H100 80GB HBM3", "cuda", {})
    rows = [{"uuid": w.uuid, "axes": w.axes, "status": "PASSED", "log": "", "t_k_ms": t_k, "t_b_ms": t_b,
             "t_sol_ms": t_sol, "score": score, "fraction_of_sol": t_sol / t_k, "speedup_vs_baseline": t_b / t_k}
            for w, (t_k, t_b, t_sol, score) in zip(gpu_problem.workloads, [(0.004, 0.006, 0.0006, 0.6),
                                                                           (0.005, 0.009, 0.0008, 0.67),
                                                                           (0.02, 0.05, 0.011, 0.77)])]
    store.record_result(gpu_problem.name, "L2", candidate.content_hash, gpu, "run-gpu", "PASSED", 0.68, {
        "solution": candidate.name, "language": "triton", "hardware": "NVIDIA H100 80GB HBM3", "device": "cuda",
        "roofline_profile": "H100/datasheet", "clock": "cuda", "workloads": 3, "workloads_passed": 3,
        "geomean_t_k_ms": 0.0074, "geomean_t_b_ms": 0.014, "geomean_t_sol_ms": 0.0018, "sol_score": 0.68,
        "fraction_of_sol": 0.24, "speedup_vs_baseline": 1.9, "audit_status": "clean", "per_workload": rows})
    store.record_candidate(gpu_problem.name, candidate, {
        "source": "template", "family": "rowwise_reduction", "parameters": {"BLOCK": 64, "num_warps": 4},
        "parent": "f" * 64, "proposer": "templates/rowwise.j2@1"}, "run-gpu", "PASSED", None)

    flagged = Solution(name="cached", definition="003_flagged", entry_point="kernel.py::run",
                       sources=(Source("kernel.py", "_cache = {}\n"),), author="someone")
    store.record_solution(flagged)
    store.record_traces([Trace.from_json({
        "definition": "003_flagged", "workload": {"uuid": "w1", "axes": {}, "inputs": {}}, "evaluation": {
            "status": "REWARD_HACK", "log": "cache-by-pointer: kernel.py:3", "performance": None, "environment": {},
            "timestamp": "2026-12-06T00:00:00Z",
            "audit": [{"rule": "cache-by-pointer", "evidence": "kernel.py:3: keyed by data_ptr()"}]}})],
        flagged.content_hash, session.environment_id, "run-flagged")
    store.record_result("003_flagged", "L1", flagged.content_hash, session.environment_id, "run-flagged", "REWARD_HACK",
                        0.9, {"clock": "cpu", "audit_status": "REWARD_HACK: cache-by-pointer", "workloads": 1,
                              "workloads_passed": 0,
                              "per_workload": [{"uuid": "w1", "axes": {}, "status": "REWARD_HACK",
                                                "log": "cache-by-pointer: kernel.py:3"}]})
    store.record_result("004_sparse", "Quant", None, None, "run-sparse", "PASSED", 0.0, {"per_workload": []})
    return db


_BUILT: dict[str, Path] = {}


def built_site(tmp_path_factory) -> tuple[Path, Path]:
    """The store and its `kb report --html` site, built once per test session: both report test
    modules read them (the store costs a real optimize run)."""
    if not _BUILT:
        db = build_store(tmp_path_factory.mktemp("report"))
        site = db.parent / "site"
        result = CliRunner().invoke(main, ["--db", str(db), "--cache-dir", "off", "report", "--html", str(site)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"wrote {site / 'index.html'} and 4 task pages"), result.output
        _BUILT.update(db=db, site=site)
    return _BUILT["db"], _BUILT["site"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    return built_site(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return built_site(tmp_path_factory)[1]


class VisibleText(HTMLParser):
    """The text a reader sees in table cells, headings and paragraphs: not scripts, styles or source code."""

    def __init__(self):
        super().__init__()
        self.skipping, self.chunks = 0, []

    def handle_starttag(self, tag, attrs):
        self.skipping += tag in ("script", "style", "pre", "code")

    def handle_endtag(self, tag):
        self.skipping -= tag in ("script", "style", "pre", "code")

    def handle_data(self, data):
        if not self.skipping:
            self.chunks.append(data)


def visible_text(path: Path) -> str:
    parser = VisibleText()
    parser.feed(path.read_text())
    return " ".join(" ".join(parser.chunks).split())


def bare_missing_values(path: Path) -> list[str]:
    """Text a formatter let through unformatted: None, nan, inf (prose such as "None of the rules" aside)."""
    parser = VisibleText()
    parser.feed(path.read_text())
    return [chunk for chunk in parser.chunks
            if re.search(r"\b(None|nan|NaN|inf|null)\b", chunk) and not chunk.strip().startswith("None of the")]


def page_of(site: Path, task: str) -> Path:
    [page] = (site / "tasks").glob(f"*{task}*.html")
    return page


def test_formatting_never_prints_none():
    assert [report.format_time(v) for v in (None, float("nan"), 0.000507, 0.034, 1.38, 2100.0)] == \
        ["—", "—", "507 ns", "34.0 µs", "1.38 ms", "2.10 s"]
    assert report.format_score(None) == report.format_ratio(None) == report.format_percent(None) == "—"
    assert (report.format_ratio(1.0), report.format_percent(0.0472), report.format_percent(0.532)) == \
        ("1.00×", "4.72%", "53.2%")
    assert [report.count_noun(n, "task") for n in (0, 1, 4)] == ["0 tasks", "1 task", "4 tasks"]
    assert report.short_hash("9e9068cda99e09971da339a986f4a281") == "9e9068cd" and report.short_hash(None) == "—"
    assert report.sort_value(None) == "" and float(report.sort_value(0.5)) == 0.5


def test_overview_reads_cleanly(site):
    text = visible_text(site / "index.html")
    assert "4 tasks on 3 devices" in text             # a result with no environment: "unknown hardware"
    assert "no audit verdict recorded" in text
    assert not bare_missing_values(site / "index.html") and "1 tasks" not in text
    html = (site / "index.html").read_text()
    assert "9e9068cda99e09971da339a986f4a281" not in html
    assert (site / "scores.png").stat().st_size > 10_000
    assert "REWARD_HACK: cache-by-pointer" in text          # not ranked, and why
    assert "NVIDIA H100 80GB HBM3" in text and "(CPU clock)" in text
    assert "cdn" not in html.lower() and "https://" not in html  # works offline
    assert html.count('href="tasks/') >= 4


def test_task_page_of_a_generated_candidate(site, store_path):
    page = page_of(site, "002_gpu_rmsnorm")
    text = visible_text(page)
    html = page.read_text()
    for expected in ("source template", "family rowwise_reduction", "BLOCK=64, num_warps=4", "parent ffffffff",
                     "proposer templates/rowwise.j2@1", "None of the 24 audit rules fired", "0.680", "3/3"):
        assert expected in text
    assert 'class="highlight"' in html and '<span class="kn">import</span>' in html   # pygments
    chart = site / "tasks" / page.name.replace(".html", ".png")
    assert chart.stat().st_size > 20_000 and f'src="{chart.name}"' in html
    assert "roofline could not" not in text and "not here" not in text   # the roofline was recomputed


def test_task_page_of_a_flagged_result_names_the_rule(site):
    text = visible_text(page_of(site, "003_flagged"))
    assert "Not ranked: REWARD_HACK: cache-by-pointer" in text
    assert "1 rule fired" in text and "keyed by data_ptr()" in text and "cache-by-pointer" in text
    assert "submitted solution" in text and "author someone" in text


def test_task_page_of_a_cpu_result_and_of_a_sparse_result(site):
    cpu = visible_text(page_of(site, "001_cpu_rmsnorm"))
    assert "CPU clock: no roofline describes this device" in cpu and "baseline variant" in cpu
    sparse = visible_text(page_of(site, "004_sparse"))
    assert "This result records no workloads" in sparse and "The store holds no sources" in sparse
    for page in (site / "tasks").glob("*.html"):
        assert not bare_missing_values(page), page.name


@pytest.mark.parametrize("problem, note", [
    ("gone", "the problem directory is not here: the charts use the stored T_SOL only"),
    ("broken", "the roofline could not count 002_gpu_rmsnorm here"),
])
def test_without_a_usable_problem_the_charts_use_the_stored_t_sol(store_path, tmp_path, problem, note):
    copy = tmp_path / "kb.db"
    with sqlite3.connect(store_path) as source, sqlite3.connect(copy) as target:   # WAL: a byte copy may miss rows
        source.backup(target)
    if problem == "broken":
        (tmp_path / problem).mkdir()
        (tmp_path / problem / "definition.json").write_text("{not json")
    with Store(copy).transaction() as db:
        db.execute("UPDATE problems SET path = ?", (str(tmp_path / problem),))
    pages = report.write_report(Store(copy, read_only=True), Settings(db=copy), tmp_path / "site")
    page = next(p for p in pages if "002_gpu_rmsnorm" in p.name)
    assert note in visible_text(page)
    assert page.with_suffix(".png").stat().st_size > 10_000     # the time chart alone


def test_empty_store_says_what_to_do(tmp_path):
    Store(tmp_path / "kb.db").close()
    pages = report.write_report(Store(tmp_path / "kb.db", read_only=True), Settings(db=tmp_path / "kb.db"),
                                tmp_path / "site")
    assert len(pages) == 1 and "0 tasks on 0 devices" in visible_text(pages[0])
    assert "The store holds no results yet" in visible_text(pages[0])


def test_leaderboard_html_is_the_overview_in_one_file(store_path, tmp_path):
    out = tmp_path / "board.html"
    result = CliRunner().invoke(main, ["--db", str(store_path), "leaderboard", "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "data:image/png;base64," in html and 'href="tasks/' not in html and "<script>" in html
    assert "4 tasks on 3 devices" in visible_text(out)


# The CSV is what other tools script against: its columns, in this order, do not change.
TASK_COLUMNS = ["task", "subset", "hardware", "workloads", "workloads_passed", "geomean_t_k_ms", "geomean_t_b_ms",
                "geomean_t_sol_ms", "sol_score", "fraction_of_sol", "speedup_vs_baseline", "solution_hash",
                "language", "audit_status", "status", "clock", "roofline_profile", "timestamp"]
WORKLOAD_COLUMNS = ["task", "subset", "hardware", "uuid", "axes", "status", "t_k_ms", "t_b_ms", "t_sol_ms", "score",
                    "fraction_of_sol", "speedup_vs_baseline", "solution_hash", "language", "audit_status", "timestamp",
                    "host_ms"]


def test_leaderboard_csv_keeps_its_columns(store_path, tmp_path):
    assert leaderboard.TASK_COLUMNS == TASK_COLUMNS and leaderboard.WORKLOAD_COLUMNS == WORKLOAD_COLUMNS
    for args, columns, count in ((["--csv"], TASK_COLUMNS, 4), (["--per-workload", "--csv"], WORKLOAD_COLUMNS, 6)):
        out = tmp_path / "board.csv"
        result = CliRunner().invoke(main, ["--db", str(store_path), "leaderboard", *args, str(out)])
        assert result.exit_code == 0, result.output
        with out.open() as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == columns and len(list(reader)) == count
