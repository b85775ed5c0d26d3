"""`kb report`: the store as a static HTML report (jinja2 templates), readable offline.

    index.html          overview: mean S per hardware and subset, the distribution of S, the best
                        and worst tasks, every task in a table that sorts and filters (plain JS)
    tasks/<slug>.html   one page per (task, hardware): per-workload T_b, T_k, T_SOL and S, the
                        time and roofline charts, the winning solution's sources (pygments), its
                        provenance, its audit verdict and every result stored for the task
    *.png               the charts (matplotlib), beside the page that shows them

`write_overview` writes the overview alone as one file, styles, script and chart inlined: what
`kb leaderboard --html FILE` writes. The rows are the leaderboard's (kernelbench.jobs.leaderboard),
so report and CSV always agree. A missing value reads "—", never "None".
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

from audit.rules import RULES
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import load_problem
from kernelbench.core.score import benchmark_score, geomean
from kernelbench.core.settings import Settings
from kernelbench.core.store import Store
from kernelbench.jobs import report_plots
from kernelbench.jobs.leaderboard import leaderboard_rows, task_history
from roofline import HardwareProfile, ProfileError, WorkloadSOL, load_profile, sol_for_workload

MISSING = "—"
SHORT_HASH = 8
BEST_AND_WORST = 5
DPI = 100
CODE_STYLE = "friendly"
BASELINE_AUTHOR = "kernelbench"        # the author of the reference variants (kernelbench.core.solution)


# ------------------------------------------------------------------------------ formatting

def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _digits(value: float) -> str:
    """Three significant digits, trailing zeros kept (34.0, 0.500), never an exponent (1234)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}"


def format_time(ms) -> str:
    """A time given in ms, in the unit that reads best: 507 ns, 34.0 µs, 1.38 ms, 2.10 s."""
    if _missing(ms):
        return MISSING
    for scale, unit in ((1e3, "s"), (1.0, "ms"), (1e-3, "µs")):
        if ms >= scale:
            return f"{_digits(ms / scale)} {unit}"
    return f"{_digits(ms * 1e6)} ns"


def format_score(value) -> str:
    return MISSING if _missing(value) else f"{value:.3f}"


def format_ratio(value) -> str:
    return MISSING if _missing(value) else f"{_digits(value)}×"


def format_percent(value) -> str:
    return MISSING if _missing(value) else f"{_digits(100 * value)}%"


def format_text(value) -> str:
    return MISSING if value is None or value == "" else str(value)


def short_hash(value) -> str:
    return value[:SHORT_HASH] if value else MISSING


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """`1 task`, `4 tasks`, `0 tasks`."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def sort_value(value) -> str:
    """What a table cell sorts by (data-value): the number, or empty for a missing one (sorted last)."""
    return "" if _missing(value) else repr(float(value))


def format_axes(axes: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (axes or {}).items()) or MISSING


def format_when(timestamp: float | None, pattern: str = "%Y-%m-%d %H:%M UTC") -> str:
    if timestamp is None:
        return MISSING
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime(pattern)


def format_day(timestamp: float | None) -> str:
    return format_when(timestamp, "%Y-%m-%d")


TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("kernelbench.jobs", "report_templates"),
                               autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters.update(time=format_time, score=format_score, ratio=format_ratio, percent=format_percent,
                         text=format_text, short=short_hash, sort_value=sort_value, axes=format_axes,
                         when=format_when, day=format_day)
TEMPLATES.globals.update(count_noun=count_noun)


# ------------------------------------------------------------------------------ what a page shows

@dataclass
class Task:
    """One leaderboard row (a task on one hardware) and what its page shows."""
    row: dict
    slug: str
    history: list[dict]
    solution: dict | None = None
    provenance: list[tuple[str, str]] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    sources: list[tuple[str, Markup]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chart: str | None = None

    @property
    def hardware_label(self) -> str:
        return hardware_label(self.row)

    @property
    def verdict(self) -> str:
        """Why a task is ranked or not, in a few words."""
        row = self.row
        audit = row.get("audit_status")
        if row["ranked"]:
            return "ranked"
        if audit and audit != "clean":
            return audit
        workloads = row.get("per_workload") or []
        failed = [w for w in workloads if w.get("status") != "PASSED"]
        if failed:
            return f"{len(failed)} of {count_noun(len(workloads), 'workload')} failed ({failed[0].get('status')})"
        if not audit:
            return "no audit verdict recorded"
        return f"status {row.get('status') or 'not recorded'}"


def hardware_label(row: dict) -> str:
    hardware = row.get("hardware") or "unknown hardware"
    return f"{hardware} (CPU clock)" if row.get("clock") == "cpu" else hardware


def _slugs(rows: list[dict]) -> list[str]:
    """A file name per row, unique even where two rows differ only in characters a name cannot hold."""
    seen: dict[str, int] = defaultdict(int)
    slugs = []
    for row in rows:
        name = f"{row['subset']}__{row['task']}__{row['hardware'] or 'unknown'}"
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
        seen[base] += 1
        slugs.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return slugs


def _tasks(store: Store) -> list[Task]:
    rows = leaderboard_rows(store)
    history = task_history(store)
    return [Task(row, slug, history[(row["task"], row["hardware"])]) for row, slug in zip(rows, _slugs(rows))]


def _provenance(store: Store, row: dict, solution: dict | None) -> list[tuple[str, str]]:
    """Where the solution came from: its candidate record when the generator stored one, else
    whether it is a variant of the reference (the baseline) or whose it is."""
    candidates = store.candidates(row["task"], solution_hash=row.get("solution_hash")) if row.get("solution_hash") else []
    if candidates:
        candidate = candidates[-1]
        parameters = json.loads(candidate["parameters"] or "{}")
        shown = (", ".join(f"{k}={v}" for k, v in parameters.items()) if isinstance(parameters, dict)
                 else json.dumps(parameters))
        return [("source", candidate["source"]), ("family", format_text(candidate["family"])),
                ("parameters", shown or MISSING),
                ("parent", short_hash(candidate["parent_hash"])), ("proposer", format_text(candidate["proposer"]))]
    if solution is None:
        return [("source", "unknown (the store does not hold this solution)")]
    if solution.get("author") == BASELINE_AUTHOR and solution.get("name", "").startswith(f"{row['task']}__"):
        return [("source", "baseline variant"), ("variant", solution.get("description") or MISSING)]
    return [("source", "submitted solution"), ("author", format_text(solution.get("author")))]


def _findings(store: Store, row: dict) -> list[dict]:
    """The audit findings in the traces of the result's run (each rule once, with its rationale)."""
    seen: dict[str, dict] = {}
    for trace in store.traces(row["task"], row.get("run_id")):
        if trace["solution_hash"] != row.get("solution_hash"):
            continue
        for finding in json.loads(trace["data"])["evaluation"].get("audit") or []:
            seen.setdefault(finding["rule"], {"rule": finding["rule"], "evidence": finding.get("evidence", ""),
                                              "rationale": RULES.get(finding["rule"], "")})
    return list(seen.values())


def _highlighted(solution: dict | None) -> list[tuple[str, Markup]]:
    out = []
    for source in (solution or {}).get("sources", []):
        try:
            lexer = get_lexer_for_filename(source["path"], stripnl=False)
        except ClassNotFound:
            lexer = get_lexer_for_filename("source.txt")
        html = highlight(source["content"], lexer, HtmlFormatter(linenos="table", cssclass="highlight"))
        out.append((source["path"], Markup(html)))
    return out


def _profile(row: dict, settings: Settings, notes: list[str]) -> HardwareProfile | None:
    """The roofline profile the result was scored with ("H100/datasheet"), or None on a CPU clock."""
    if row.get("clock") == "cpu" or not row.get("roofline_profile"):
        return None
    hardware, _, kind = row["roofline_profile"].partition("/")
    try:
        return load_profile(hardware, kind or "datasheet", settings.profile_dir)
    except ProfileError as exc:
        notes.append(f"roofline profile {row['roofline_profile']} not available here ({exc}): "
                     f"no launch floor or roofs drawn")
        return None


def _sols(store: Store, row: dict, profile: HardwareProfile | None, settings: Settings,
          notes: list[str]) -> dict[str, WorkloadSOL]:
    """FLOPs and bytes per workload from the roofline, when the problem directory is still there."""
    if profile is None:
        return {}
    path = store.problem_path(row["task"], row["subset"])
    if path is None or not (Path(path) / "definition.json").is_file():
        notes.append("the problem directory is not here: the charts use the stored T_SOL only (no roofline)")
        return {}
    try:
        problem = load_problem(path)
        workloads = {w.uuid: w for w in problem.workloads}
        sols = {uuid: sol_for_workload(problem, workloads[uuid], profile, settings=settings)
                for uuid in (r["uuid"] for r in row.get("per_workload") or []) if uuid in workloads}
    except (KernelBenchError, OSError, ValueError, MemoryError) as exc:   # CountError is a KernelBenchError
        notes.append(f"the roofline could not count {row['task']} here ({type(exc).__name__}: {exc}): "
                     f"the charts use the stored T_SOL only")
        return {}
    for index, workload_row in enumerate(row.get("per_workload") or []):
        sol, stored = sols.get(workload_row["uuid"]), workload_row.get("t_sol_ms")
        if sol and stored and abs(sol.t_sol_s * 1e3 / stored - 1) > 0.01:
            notes.append(f"{report_plots.workload_label(index)}: the roofline now gives T_SOL "
                         f"{format_time(sol.t_sol_s * 1e3)}, the stored result {format_time(stored)} (charted)")
    return sols


def _fill(task: Task, store: Store, settings: Settings, images: "_Images") -> None:
    row = task.row
    task.solution = store.solution(row["solution_hash"]) if row.get("solution_hash") else None
    task.provenance = _provenance(store, row, task.solution)
    task.findings = _findings(store, row)
    task.sources = _highlighted(task.solution)
    if row.get("clock") == "cpu":
        task.notes.append("CPU clock: no roofline describes this device, so T_SOL does not apply and "
                          "S = T_b / (T_b + T_k)")
    profile = _profile(row, settings, task.notes)
    sols = _sols(store, row, profile, settings, task.notes)
    rows = row.get("per_workload") or []
    if any(r.get(key) for r in rows for key in ("t_k_ms", "t_b_ms", "t_sol_ms")):
        figure = report_plots.task_figure(rows, sols, profile, cpu_clock=row.get("clock") == "cpu")
        task.chart = images.save(figure, f"{task.slug}.png")


# ------------------------------------------------------------------------------ the overview's numbers

def _subset_rows(tasks: list[Task]) -> list[dict]:
    """Per hardware: one line per subset, then all subsets together."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for task in tasks:
        groups[(task.hardware_label, task.row["subset"])].append(task.row)
        groups[(task.hardware_label, "")].append(task.row)
    out = []
    for (hardware, subset), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "", kv[0][1])):
        ranked = [r for r in rows if r["ranked"]]
        fractions = [r["fraction_of_sol"] for r in ranked if not _missing(r.get("fraction_of_sol"))]
        out.append({"hardware": hardware, "subset": subset or "all subsets", "total": not subset,
                    "tasks": len(rows), "ranked": len(ranked),
                    "mean_score": benchmark_score(r["sol_score"] for r in rows),
                    "median_fraction_of_sol": statistics.median(fractions) if fractions else None,
                    "geomean_speedup": geomean(r.get("speedup_vs_baseline") for r in ranked)})
    return out


def _best_and_worst(tasks: list[Task]) -> tuple[list[Task], list[Task]]:
    """The best ranked tasks and, among the rest, the worst (unranked ones score 0)."""
    count = min(BEST_AND_WORST, max(1, len(tasks) // 2))
    best = sorted((t for t in tasks if t.row["ranked"]), key=lambda t: -t.row["sol_score"])[:count]
    rest = [t for t in tasks if t not in best]
    return best, sorted(rest, key=lambda t: t.row["sol_score"])[:count]


def _overview_chart(tasks: list[Task], subsets: list[dict], images: "_Images") -> str | None:
    if not tasks:
        return None
    scores: dict[str, list[float]] = defaultdict(list)
    for task in tasks:
        scores[task.hardware_label].append(task.row["sol_score"])
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for line in subsets:
        if not line["total"]:
            means[line["hardware"]][line["subset"]] = line["mean_score"]
    return images.save(report_plots.score_figure(dict(scores), dict(means)), "scores.png")


# ------------------------------------------------------------------------------ writing

@dataclass
class _Images:
    """Charts as PNG files in `directory` (pages link them by name), or inline as data URIs."""
    directory: Path | None

    def save(self, figure, name: str) -> str:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        if self.directory is None:
            return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        (self.directory / name).write_bytes(buffer.getvalue())
        return name


def _overview_html(tasks: list[Task], store: Store, images: _Images, task_links: bool) -> str:
    subsets = _subset_rows(tasks)
    best, worst = _best_and_worst(tasks)
    return TEMPLATES.get_template("overview.html.j2").render(
        tasks=tasks, task_count=len({(t.row["subset"], t.row["task"]) for t in tasks}), subsets=subsets, best=best,
        worst=worst, task_links=task_links,
        chart=_overview_chart(tasks, subsets, images), hardware=sorted({t.hardware_label for t in tasks}),
        subset_names=sorted({t.row["subset"] for t in tasks}), store_name=Path(store.path).name,
        generated=format_when(dt.datetime.now(dt.timezone.utc).timestamp()), code_css="")


def write_report(store: Store, settings: Settings, directory: Path) -> list[Path]:
    """Write the overview and one page per task under `directory`; returns the pages written."""
    directory = Path(directory)
    (directory / "tasks").mkdir(parents=True, exist_ok=True)
    tasks = _tasks(store)
    pages = [directory / "index.html"]
    pages[0].write_text(_overview_html(tasks, store, _Images(directory), task_links=True), encoding="utf-8")
    code_css = Markup(HtmlFormatter(style=CODE_STYLE).get_style_defs(".highlight"))
    template = TEMPLATES.get_template("task.html.j2")
    for task in tasks:
        _fill(task, store, settings, _Images(directory / "tasks"))
        page = directory / "tasks" / f"{task.slug}.html"
        page.write_text(template.render(task=task, row=task.row, code_css=code_css, store_name=Path(store.path).name,
                                        rules=RULES), encoding="utf-8")
        pages.append(page)
    return pages


def write_overview(store: Store, path: Path) -> None:
    """The overview alone, as one self-contained file (no task pages to link to)."""
    Path(path).write_text(_overview_html(_tasks(store), store, _Images(None), task_links=False), encoding="utf-8")
