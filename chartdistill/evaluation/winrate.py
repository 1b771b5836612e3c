"""Win rates of the fine-tuned student over the baseline: raw, length-controlled, bootstrapped.

Each judged pair gives `y`, the debiased expected verdict (P(fine-tuned better) + 0.5 P(tie),
averaged over both orders), and `Δ`, the fine-tuned essay's length minus the baseline's (words).
- raw: the mean of y (and, beside it, the hard win and score rates from the outcomes);
- length-controlled (AlpacaEval 2): a logistic model y ~ σ(θ + φ·tanh(Δ / sd(Δ))) fitted on all
  pairs (soft labels; a small ridge on φ keeps it finite when length alone separates the
  verdicts), read at Δ = 0: σ(θ). A judge that prefers the longer essay moves φ, not θ;
- paired bootstrap: charts resampled with replacement, every statistic recomputed per resample;
  the 2.5 and 97.5 percentiles are the 95 % interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

_NEWTON_STEPS = 100
_INTERCEPT_RIDGE = 1e-3  # keeps θ finite when every verdict is the same
_DIGITS = 4
OUTCOME_SCORE = {"finetuned": 1.0, "tie": 0.5, "baseline": 0.0}
Item = TypeVar("Item")


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def length_feature(diffs: Sequence[float], scale: float) -> list[float]:
    """tanh(Δ / scale) per pair (0 everywhere when scale is 0: lengths carry no signal)."""
    if scale <= 0:
        return [0.0] * len(diffs)
    return [math.tanh(d / scale) for d in diffs]


def spread(diffs: Sequence[float]) -> float:
    """The standard deviation of the length differences (population form; 0 for < 2 pairs)."""
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs))


def fit_logistic(y: Sequence[float], x: Sequence[float], ridge: float) -> tuple[float, float]:
    """(θ, φ) maximising Σ y·log σ(θ+φx) + (1-y)·log(1-σ(θ+φx)) - ridge/2·φ² (Newton steps);
    y may be fractional."""
    if not y:
        raise ValueError("fit_logistic: no data")
    theta, phi = 0.0, 0.0
    for _ in range(_NEWTON_STEPS):
        g0 = -_INTERCEPT_RIDGE * theta
        g1 = -ridge * phi
        h00, h01, h11 = _INTERCEPT_RIDGE, 0.0, ridge
        for yi, xi in zip(y, x, strict=True):
            p = _sigmoid(theta + phi * xi)
            w = p * (1.0 - p)
            g0 += yi - p
            g1 += (yi - p) * xi
            h00 += w
            h01 += w * xi
            h11 += w * xi * xi
        det = h00 * h11 - h01 * h01
        if det <= 1e-12:  # no length signal (all x = 0): fit θ alone
            step0, step1 = g0 / h00, 0.0
        else:
            step0 = (h11 * g0 - h01 * g1) / det
            step1 = (h00 * g1 - h01 * g0) / det
        theta += step0
        phi += step1
        if abs(step0) < 1e-10 and abs(step1) < 1e-10:
            break
    return theta, phi


def length_controlled_rate(
    y: Sequence[float], diffs: Sequence[float], scale: float, ridge: float
) -> float | None:
    """σ(θ) of the fitted length model: the expected verdict at equal lengths (None: no pairs)."""
    if not y:
        return None
    theta, _ = fit_logistic(y, length_feature(diffs, scale), ridge)
    return _sigmoid(theta)


@dataclass(frozen=True)
class PairScore:
    """One judged pair, as the win-rate statistics see it."""

    id: str
    chart_type: str
    outcome: str  # finetuned | tie | baseline
    expected: float  # debiased P(finetuned) + 0.5 P(tie)
    length_diff: float  # fine-tuned minus baseline, words


Statistic = Callable[[Sequence[PairScore]], float | None]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def statistics(scale: float, ridge: float) -> dict[str, Statistic]:
    """The statistics reported with a bootstrap interval, by name."""
    return {
        "win_rate": lambda s: mean([float(p.outcome == "finetuned") for p in s]),
        "score": lambda s: mean(
            [(p.outcome == "finetuned") + 0.5 * (p.outcome == "tie") for p in s]
        ),
        "expected_win_rate": lambda s: mean([p.expected for p in s]),
        "lc_win_rate": lambda s: length_controlled_rate(
            [p.expected for p in s], [p.length_diff for p in s], scale, ridge
        ),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 1]) of sorted values."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def bootstrap_intervals(
    pairs: Sequence[Item],
    stats: dict[str, Callable[[Sequence[Item]], float | None]],
    samples: int,
    seed: int,
) -> dict[str, dict[str, float] | None]:
    """Paired bootstrap 95 % intervals: the pairs (charts; or any items) resampled with
    replacement `samples` times, every statistic computed on the same resamples. None with no
    pairs."""
    if not pairs or samples <= 0:
        return dict.fromkeys(stats)
    rng = random.Random(seed)
    values: dict[str, list[float]] = {name: [] for name in stats}
    n = len(pairs)
    for _ in range(samples):
        resample = [pairs[rng.randrange(n)] for _ in range(n)]
        for name, stat in stats.items():
            value = stat(resample)
            if value is not None:
                values[name].append(value)
    out: dict[str, dict[str, float] | None] = {}
    for name, got in values.items():
        got.sort()
        out[name] = (
            {
                "low": round(percentile(got, 0.025), _DIGITS),
                "high": round(percentile(got, 0.975), _DIGITS),
            }
            if got
            else None
        )
    return out


def win_rates(
    pairs: Sequence[PairScore], scale: float, ridge: float, samples: int, seed: int
) -> dict[str, object]:
    """Every statistic with its bootstrap interval (`<name>_ci95`), and the length model's
    inputs (`length_scale`, mean length difference)."""
    stats = statistics(scale, ridge)
    intervals = bootstrap_intervals(pairs, stats, samples, seed)
    out: dict[str, object] = {}
    for name, stat in stats.items():
        value = stat(pairs)
        out[name] = None if value is None else round(value, _DIGITS)
        out[f"{name}_ci95"] = intervals[name]
    diffs = [p.length_diff for p in pairs]
    out["mean_length_diff"] = round(sum(diffs) / len(diffs), 2) if diffs else None
    return out
