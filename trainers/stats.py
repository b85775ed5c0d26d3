"""Seeds: a result is the mean over several seeds with its spread, and an improvement over a
baseline is claimed only when Welch's t-test says the difference is unlikely to be seed noise.

A seed-hunted "improvement" (one lucky seed, or the best of many runs) does not survive this:
the CLI tests every recorded run of the candidate under the same configuration, not the runs a
user chose to show.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .extras import require

ALPHA = 0.05


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    std: float          # sample standard deviation (n - 1); 0 for one value

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n})"


@dataclass(frozen=True)
class Comparison:
    candidate: SeedSummary
    baseline: SeedSummary
    p_value: float | None     # one-sided: the candidate is better (lower)
    supported: bool
    verdict: str

    def to_json(self) -> dict:
        return asdict(self)


def summarize(values: list[float]) -> SeedSummary:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return SeedSummary(n, mean, std)


def compare(candidate: list[float], baseline: list[float], *, alpha: float = ALPHA) -> Comparison:
    """Is the candidate's metric (lower is better: bpb, loss, seconds) lower than the baseline's?"""
    ours, theirs = summarize(candidate), summarize(baseline)
    if ours.n < 2 or theirs.n < 2:
        return Comparison(ours, theirs, None, False, "not tested: needs at least 2 seeds on each side")
    if ours.mean >= theirs.mean:
        return Comparison(ours, theirs, None, False, "no improvement: the mean is not lower than the baseline's")
    if ours.std == 0 and theirs.std == 0:
        p = 0.0
    else:
        p = float(require("scipy.stats").ttest_ind(candidate, baseline, equal_var=False, alternative="less").pvalue)
    supported = p < alpha
    words = "improvement supported" if supported else "improvement not supported (could be seed noise)"
    return Comparison(ours, theirs, p, supported,
                      f"{words}: Welch's t-test p = {p:.3g} over {ours.n} and {theirs.n} seeds")
