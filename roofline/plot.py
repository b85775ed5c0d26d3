"""A log-log roofline chart: one point per workload at (FLOPs/byte, FLOPs/T_SOL) under the roofs."""

from __future__ import annotations

from pathlib import Path

from .hardware import HardwareProfile
from .model import WorkloadSOL

COLORS = {"tensor": "tab:red", "cuda": "tab:orange", "sfu": "tab:purple", "dram": "tab:blue", "launch": "tab:gray"}


def roofline_plot(groups: dict[str, list[WorkloadSOL]], profile: HardwareProfile, path: str | Path,
                  measured: dict[str, list[tuple[float, float]]] | None = None) -> Path:
    """Write a PNG. `groups`: label -> workloads; `measured`: label -> [(intensity, FLOP/s)] from traces."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    points = [s for sols in groups.values() for s in sols if s.bytes and s.flops]
    lo = min([s.intensity for s in points] + [0.1]) / 2
    hi = max([s.intensity for s in points] + [1e4]) * 2
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    bw = profile.dram_bandwidth
    roofs = [(f"tensor {c}", r) for c, r in sorted(profile.tensor.items(), key=lambda kv: -kv[1])
             if c in ("bf16", "fp8", "fp4", "tf32")] + [("CUDA fp32", profile.cuda["fp32"])]
    for label, rate in roofs:
        ax.plot(xs, [min(bw * x, rate) for x in xs], lw=1, alpha=0.6, label=f"{label} {rate / 1e12:.0f} TFLOP/s")
    markers = "o^sDv<>ph*"
    for i, (label, sols) in enumerate(groups.items()):
        for s in sols:
            if not (s.bytes and s.flops):
                continue
            ax.scatter(s.intensity, s.flops / s.t_sol_s, s=22, marker=markers[i % len(markers)],
                       color=COLORS.get(s.binding, "k"), edgecolor="k", linewidth=0.3)
        for x, y in (measured or {}).get(label, []):
            ax.scatter(x, y, s=22, marker="x", color="k")
    for binding, color in COLORS.items():
        ax.scatter([], [], color=color, label=f"bound by {binding}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("FLOP/s at T_SOL")
    title = ", ".join(groups) if len(groups) <= 3 else f"{len(groups)} problems"
    ax.set_title(f"Roofline on {profile.profile_id}: {title}")
    ax.set_ylim(bottom=max(1e6, min([s.flops / s.t_sol_s for s in points] + [1e9]) / 3))
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

