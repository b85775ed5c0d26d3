"""The report's charts (matplotlib, no pyplot state): the overview's score chart and a task's
time and roofline charts. Each function returns a Figure; the report decides where it goes.

The time chart shows, per workload, the span from T_SOL up to T_b (where S runs from 1 down to
0.5) with T_k on it, and the launch floor as a line: no kernel finishes faster than one launch.
The roofline chart places each workload at its arithmetic intensity (FLOPs per DRAM byte) with
the FLOP/s it reaches at T_SOL, T_k and T_b under the memory and compute roofs; the launch floor
caps a workload of F FLOPs at F / T_launch, marked where that cap lies under the compute roof.
"""

from __future__ import annotations

from collections import defaultdict

from matplotlib.figure import Figure

from roofline import HardwareProfile, WorkloadSOL

BASELINE_SCORE = 0.5
KERNEL, BASELINE, SOL, LAUNCH = "tab:blue", "tab:gray", "black", "tab:red"
SPAN = "#d9e4f5"
LAUNCH_CAP_SHOWN = 3      # draw a workload's launch cap when it lies below 3x the roof at its intensity
MAX_AXES_IN_LABEL = 6     # more workloads than this: ticks read w1, w2, ... (the table names their axes)


def workload_label(index: int) -> str:
    return f"w{index + 1}"


def score_figure(scores: dict[str, list[float]], subset_means: dict[str, dict[str, float]]) -> Figure:
    """Left: how task scores spread (stacked per hardware); right: mean S per subset and hardware."""
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    spread, means = figure.subplots(1, 2, width_ratios=(3, 2))
    bins = [i / 20 for i in range(21)]
    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(set(scores) | set(subset_means)))}
    labels = sorted(scores)
    spread.hist([scores[label] for label in labels], bins=bins, stacked=True, label=labels,
                color=[colors[label] for label in labels], edgecolor="white")
    spread.axvline(BASELINE_SCORE, color=BASELINE, linestyle="--", linewidth=1)
    spread.text(BASELINE_SCORE, 1.0, " PyTorch baseline", transform=spread.get_xaxis_transform(),
                va="top", fontsize=8, color=BASELINE)
    spread.set(xlim=(0, 1), xlabel="SOL score S per task (0.5 = baseline, 1 = speed of light)", ylabel="tasks",
               title="Distribution of task scores")
    spread.yaxis.get_major_locator().set_params(integer=True)
    spread.legend(fontsize=8, loc="upper left")

    subsets = sorted({s for by_subset in subset_means.values() for s in by_subset}, reverse=True)
    height = 0.8 / max(1, len(subset_means))
    for i, label in enumerate(sorted(subset_means)):
        positions = [j + (i - (len(subset_means) - 1) / 2) * height for j in range(len(subsets))]
        values = [subset_means[label].get(s, 0.0) for s in subsets]
        means.barh(positions, values, height=height, color=colors[label], label=label)
        for y, value, subset in zip(positions, values, subsets):
            if subset in subset_means[label]:
                means.text(value + 0.01, y, f"{value:.3f}", va="center", fontsize=8)
    means.axvline(BASELINE_SCORE, color=BASELINE, linestyle="--", linewidth=1)
    means.set_yticks(range(len(subsets)), subsets)
    means.set(xlim=(0, 1.1), xlabel="mean S", title="Mean S per subset")
    return figure


def task_figure(rows: list[dict], sols: dict[str, WorkloadSOL], profile: HardwareProfile | None,
                cpu_clock: bool) -> Figure:
    """The time chart, and beside it the roofline chart when FLOPs and bytes are known."""
    on_roofline = [(i, r, sols[r["uuid"]]) for i, r in enumerate(rows)
                   if r["uuid"] in sols and sols[r["uuid"]].flops > 0 and sols[r["uuid"]].bytes > 0]
    if on_roofline and profile is not None:
        figure = Figure(figsize=(12, 4.6), layout="constrained")
        times, roof = figure.subplots(1, 2)
        _roofline_chart(roof, on_roofline, profile)
    else:
        figure = Figure(figsize=(7, 4.6), layout="constrained")
        times = figure.subplots()
    _time_chart(times, rows, profile, cpu_clock)
    return figure


def _time_chart(axes, rows: list[dict], profile: HardwareProfile | None, cpu_clock: bool) -> None:
    xs = range(len(rows))
    for x, row in zip(xs, rows):
        if row.get("t_sol_ms") and row.get("t_b_ms"):
            axes.plot([x, x], [row["t_sol_ms"], row["t_b_ms"]], color=SPAN, linewidth=10, solid_capstyle="butt",
                      zorder=1)
    for key, marker, color, label in (("t_b_ms", "s", BASELINE, "T_b (best PyTorch)"),
                                      ("t_sol_ms", "v", SOL, "T_SOL"),
                                      ("t_k_ms", "o", KERNEL, "T_k (this solution)")):
        points = [(x, row[key]) for x, row in zip(xs, rows) if row.get(key)]
        if points:
            axes.scatter(*zip(*points), marker=marker, color=color, label=label, zorder=3, s=36)
    if profile is not None:
        floor_ms = profile.launch_floor_s * 1e3
        axes.axhline(floor_ms, color=LAUNCH, linestyle=":", linewidth=1.2,
                     label=f"launch floor {floor_ms * 1e3:.3g} µs ({profile.profile_id})")
    axes.set_yscale("log")
    axes.set_xticks(list(xs), [_tick(i, row, len(rows)) for i, row in enumerate(rows)], fontsize=8)
    axes.set_xlim(-0.6, len(rows) - 0.4)
    axes.set_ylabel("time per call (ms)" + (", CPU clock" if cpu_clock else ""))
    axes.set_title("Time per workload" + (" (CPU clock: no T_SOL)" if cpu_clock else ""))
    axes.grid(True, axis="y", which="both", alpha=0.25)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")


def _tick(index: int, row: dict, count: int) -> str:
    if count > MAX_AXES_IN_LABEL:
        return workload_label(index)
    return "\n".join([workload_label(index)] + [f"{k}={v}" for k, v in (row.get("axes") or {}).items()])


def _roofline_chart(axes, points: list[tuple[int, dict, WorkloadSOL]], profile: HardwareProfile) -> None:
    bandwidth = profile.dram_bandwidth
    roofs = _roofs(points, profile)
    peak = max(rate for _, rate in roofs)
    intensities = [sol.intensity for _, _, sol in points]
    low, high = min(intensities + [1.0]) / 4, max(intensities + [peak / bandwidth]) * 4   # the ridge in view
    xs = [low * (high / low) ** (i / 100) for i in range(101)]
    for (label, rate), color in zip(roofs, ("tab:green", "tab:olive", "tab:cyan", "tab:purple")):
        axes.plot(xs, [min(bandwidth * x, rate) for x in xs], color=color, linewidth=1.2,
                  label=f"{label} {rate / 1e12:.4g} TFLOP/s, DRAM {bandwidth / 1e12:.3g} TB/s")
    legend = set()
    for index, row, sol in points:
        x, flops = sol.intensity, sol.flops
        t_sol_s = (row.get("t_sol_ms") or sol.t_sol_s * 1e3) / 1e3
        achieved = {key: flops / (row[key] / 1e3) for key in ("t_b_ms", "t_k_ms") if row.get(key)}
        ys = [flops / t_sol_s, *achieved.values()]
        axes.plot([x, x], [min(ys), max(ys)], color=SPAN, linewidth=4, zorder=1)
        _point(axes, x, flops / t_sol_s, "v", SOL, "at T_SOL", legend)
        if "t_b_ms" in achieved:
            _point(axes, x, achieved["t_b_ms"], "s", BASELINE, "at T_b", legend)
        if "t_k_ms" in achieved:
            _point(axes, x, achieved["t_k_ms"], "o", KERNEL, "at T_k", legend)
        cap = flops / profile.launch_floor_s
        if cap < LAUNCH_CAP_SHOWN * min(bandwidth * x, peak):   # near or under the roofs: it binds, or nearly
            _point(axes, x, cap, "_", LAUNCH, "launch floor cap (FLOPs / T_launch)", legend, size=220)
        axes.annotate(workload_label(index), (x, achieved.get("t_k_ms", flops / t_sol_s)), xytext=(6, -3),
                      textcoords="offset points", fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    axes.set_ylabel("FLOP/s")
    axes.set_title(f"Roofline on {profile.profile_id}")
    axes.grid(True, which="both", alpha=0.2)
    axes.legend(fontsize=7, loc="lower right")


def _roofs(points, profile: HardwareProfile) -> list[tuple[str, float]]:
    """The compute ceilings of the classes these workloads use (tensor classes first), else fp32 CUDA cores."""
    flops: dict[str, float] = defaultdict(float)
    for _, _, sol in points:
        for cls, n in sol.tensor_flops.items():
            flops[f"tensor {cls}"] += n
        for cls, n in sol.cuda_flops.items():
            flops[f"CUDA {cls}"] += n
    used = [label for label, n in sorted(flops.items(), key=lambda kv: -kv[1]) if n > 0][:3] or ["CUDA fp32"]
    return [(label, profile.tensor_rate(label.split()[1]) if label.startswith("tensor")
             else profile.cuda[label.split()[1]]) for label in used]


def _point(axes, x, y, marker, color, label, legend: set, size=36) -> None:
    axes.scatter([x], [y], marker=marker, color=color, s=size, zorder=3,
                 label=None if label in legend else label)
    legend.add(label)
