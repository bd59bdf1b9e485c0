"""Means, proportions and paired differences with intervals whose error rates are checked by simulation.

The rules (all two-sided, ``level`` 95 % unless given):

* **Continuous values** (AD, scores, AUCs, densities): the Student-t interval of the mean
  (``scipy.stats.ttest_1samp``); a paired difference is the t interval of the per-image
  differences, and its p-value the paired t-test's, so "the interval excludes 0" and
  "p < 0.05" are the same decision.
* **Binary values** (IC's per-image increase, pointing hits; stored as 0/1 or 0/100): a single
  rate gets the Clopper-Pearson interval (``scipy.stats.binomtest``); a paired difference of two
  rates is decided by the exact McNemar test (the central two-sided binomial test on the
  discordant pairs) and shown with Newcombe's square-and-add interval for paired rates (his
  method 10: Wilson intervals of the two rates combined with their continuity-corrected phi). The two can disagree at the edge of
  significance; the verdict follows the test, and the record says so.
* **No interval below** :data:`MIN_N` observations (``"n = 4: too few for an interval"``), and never
  a zero-width one: a continuous sample without spread gets no interval (``"all 12 values equal"``).
* **Equivalence** ("no change" claims with a margin): two one-sided tests, i.e. the
  ``1 - 2 alpha`` interval inside ``[-margin, margin]``.
* **Families** of claims tested together: Holm's step-down adjustment of the p-values
  (:func:`holm`).

The calibration (``tests/test_analysis_stats.py`` asserts it; ``python -m tools.stats_calibration``
writes ``figures/stats_calibration.csv``, beside the old percentile-bootstrap rule and with power): under true nulls built as two
exchangeable methods on the same images (paired values whose marginals are normal, log-normal,
bounded in [0, 100] with ties, binary, or AUC-like in [0, 1]), the rate of "resolved" differences
stays at or under 5 % plus simulation error at every n. What no rule can promise at small n is a
mean of strongly *skewed differences* whose mean is 0 (methods that win a little on most images
and lose a lot on a few): the t rule's error there is tabulated by the calibration script, not
hidden (it falls towards 5 % as n grows). Likewise the t interval of a *single mean* of
strongly right-skewed values (the ``log-normal`` shape) covers less than 95 % at n <= 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["LEVEL", "MIN_N", "Estimate", "as_values", "mean_interval", "proportion_interval", "paired_difference",
           "equivalence", "holm", "paired_t_rule", "paired_binary_rule", "required_n"]


class _ScipyStats:
    """``scipy.stats``, imported on first use: importing it costs ~1.4 s, which every pipeline job (one
    process per evaluation shard) would pay through ``lib.analysis`` without needing it."""

    def __getattr__(self, name: str):
        from scipy import stats

        return getattr(stats, name)


sps = _ScipyStats()

LEVEL = 0.95
MIN_N = 10
"""The smallest sample that gets an interval and a verdict. Below it a paired t rule keeps its
5 % only when the differences are symmetric, any skew inflates its error, and its power against
the effects the papers claim is small (``figures/stats_calibration.csv``, made by
``python -m tools.stats_calibration``, tabulates both beside the old bootstrap rule)."""


@dataclass(frozen=True)
class Estimate:
    """A mean, a rate or a paired difference, with its interval (or the reason it has none).

    Attributes:
        value: the point estimate (mean, rate, or mean of ``a - b``), in the values' units.
        low, high: the interval at ``level``; ``None`` when there is none (see ``note``).
        n: the observations (images) behind it.
        method: the rule: ``"t"``, ``"clopper-pearson"``, ``"mcnemar-exact/newcombe"``,
            ``"tost-t"``, ``"tost-newcombe"``.
        level: the interval's confidence level.
        p_value: the two-sided p-value of "the difference is 0" (paired differences only).
        note: why there is no interval, or how the verdict and the interval relate.
    """

    value: float
    low: float | None
    high: float | None
    n: int
    method: str
    level: float = LEVEL
    p_value: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def width(self) -> float | None:
        return None if not self.has_interval else self.high - self.low

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval lies entirely on one side of ``value`` (False without an interval)."""
        return self.has_interval and (self.low > value or self.high < value)

    def format(self, digits: int = 2) -> str:
        """``"0.43 [0.31, 0.55]"``, or ``"0.43 (n = 4: too few for an interval)"``."""
        text = f"{self.value:.{digits}f}"
        if self.has_interval:
            return f"{text} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{text} ({self.note})" if self.note else text

    def __str__(self) -> str:
        return self.format()


def as_values(values: Any, name: str = "values") -> np.ndarray:
    """``values`` (tensor, array, list) as a 1-D float64 array; NaN, infinities and empties raise."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image), got shape {arr.shape}. Fix: pass one "
                         "metric's per-image values.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty. Fix: pass at least one per-image value.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values at positions "
                         f"{np.flatnonzero(~np.isfinite(arr))[:10].tolist()}. Fix: drop the images whose metric "
                         "is undefined (and report how many) before summarising.")
    return arr


def _check_level(level: float) -> None:
    if not 0.5 < level < 1.0:
        raise ValueError(f"level must be in (0.5, 1), got {level!r}")


def _too_few(n: int, min_n: int) -> str:
    return f"n = {n}: too few for an interval (at least {min_n})"


# ------------------------------------------------------------------------- vectorised rules
def paired_t_rule(d: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """The t rule on rows of differences (or values) ``d [..., n]``: ``(mean, low, high, p)``.

    ``mean +- t_{n-1, (1+level)/2} * sd / sqrt(n)`` and the two-sided p-value of "the mean is 0"
    (``scipy.stats.t``). Rows without spread get NaN for ``low``, ``high`` and ``p`` (no interval,
    no test). Vectorised over the leading axes, so the calibration simulates the very code that
    the notebooks use.
    """
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[-1]
    mean = d.mean(-1)
    sd = d.std(-1, ddof=1) if n > 1 else np.zeros_like(mean)
    spread = sd > 1e-12 * np.maximum(1.0, np.abs(d).max(-1))
    se = np.where(spread, sd, np.nan) / math.sqrt(n)
    q = sps.t.ppf(0.5 + level / 2, max(n - 1, 1))
    p = 2 * sps.t.sf(np.abs(mean) / se, max(n - 1, 1))
    return mean, mean - q * se, mean + q * se, p


def _wilson(k: np.ndarray, n: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_binary_rule(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """Exact McNemar p-value and Newcombe's hybrid-score interval for rows of paired 0/1 outcomes.

    ``a``, ``b``: ``[..., n]`` of 0/1. Returns ``(difference of rates, low, high, p)``, rates in
    [0, 1]. Newcombe (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", method 10.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    n = a.shape[-1]
    both = (a & b).sum(-1).astype(float)
    only_a = (a & ~b).sum(-1).astype(float)
    only_b = (~a & b).sum(-1).astype(float)
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    z = sps.norm.ppf(0.5 + level / 2)
    l1, u1 = _wilson(both + only_a, n, z)
    l2, u2 = _wilson(both + only_b, n, z)
    denominator = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    # Newcombe's continuity-corrected phi: A - n/2 when A = ad - bc exceeds n/2, 0 for 0 <= A <= n/2
    cross = both * neither - only_a * only_b
    corrected = np.where(cross > n / 2, cross - n / 2, np.where(cross >= 0, 0.0, cross))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(denominator > 0, corrected / np.sqrt(denominator), 0.0)
    delta = np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    epsilon = np.sqrt(np.maximum((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    diff = p1 - p2
    discordant = only_a + only_b
    tail = np.minimum(sps.binom.cdf(only_a, discordant, 0.5), sps.binom.sf(only_a - 1, discordant, 0.5))
    p = np.where(discordant > 0, np.minimum(1.0, 2 * tail), 1.0)
    return diff, np.maximum(diff - delta, -1.0), np.minimum(diff + epsilon, 1.0), p


# ---------------------------------------------------------------------------- per-sample API
def mean_interval(values: Any, level: float = LEVEL, min_n: int = MIN_N) -> Estimate:
    """The mean of per-image ``values`` with its Student-t interval (no interval below ``min_n``,
    none for a sample without spread)."""
    _check_level(level)
    x = as_values(values)
    mean = float(x.mean())
    if x.size < min_n:
        return Estimate(mean, None, None, x.size, "t", level, note=_too_few(x.size, min_n))
    _, low, high, _ = paired_t_rule(x, level)
    if np.isnan(low):
        return Estimate(mean, None, None, x.size, "t", level, note=f"all {x.size} values equal")
    return Estimate(mean, float(low), float(high), x.size, "t", level)


def _binary(values: np.ndarray, name: str, scale: float | None = None) -> tuple[np.ndarray, float]:
    """0/1 outcomes of ``values`` stored as {0, 1} or {0, 100}, and that scale (``None``: 100 when
    a value exceeds 1; give it when every value may be 0)."""
    if scale is None:
        scale = 100.0 if values.max(initial=0.0) > 1 else 1.0
    if not np.isin(values, (0.0, scale)).all():
        raise ValueError(f"{name} must be binary per image (0/1 or 0/100), got values such as "
                         f"{np.unique(values)[:6].tolist()}. Fix: use kind='continuous' for graded values.")
    return values == scale, scale


def proportion_interval(values: Any, level: float = LEVEL, min_n: int = MIN_N, scale: float | None = None
                        ) -> Estimate:
    """A rate of per-image 0/1 (or 0/100: ``scale``) outcomes with its exact Clopper-Pearson
    interval, in the values' scale (a rate of 0 or 1 still gets an interval of positive width)."""
    _check_level(level)
    hits, scale = _binary(as_values(values), "values", scale)
    n, k = hits.size, int(hits.sum())
    rate = scale * k / n
    if n < min_n:
        return Estimate(rate, None, None, n, "clopper-pearson", level, note=_too_few(n, min_n))
    ci = sps.binomtest(k, n).proportion_ci(level, method="exact")
    return Estimate(rate, scale * ci.low, scale * ci.high, n, "clopper-pearson", level)


def paired_difference(a: Any, b: Any, kind: str = "continuous", level: float = LEVEL,
                      min_n: int = MIN_N) -> Estimate:
    """The mean per-image difference ``a - b`` of two methods on the same images, with its interval
    and two-sided p-value (t rule for ``kind="continuous"``, exact McNemar with Newcombe's interval
    for ``kind="binary"``, in the values' scale)."""
    _check_level(level)
    a, b = as_values(a, "a"), as_values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same images in the same order, got {a.size} and {b.size} values.")
    n = a.size
    if kind == "continuous":
        d = a - b
        value = float(d.mean())
        if n < min_n:
            return Estimate(value, None, None, n, "t", level, note=_too_few(n, min_n))
        _, low, high, p = paired_t_rule(d, level)
        if np.isnan(low):
            note = (f"all {n} differences are 0" if np.all(d == 0) else f"all {n} differences equal {value:.3g}")
            return Estimate(value, None, None, n, "t", level, note=note)
        return Estimate(value, float(low), float(high), n, "t", level, p_value=float(p),
                        extra={"sd": float(d.std(ddof=1))})
    if kind == "binary":
        (a01, scale_a), (b01, scale_b) = _binary(a, "a"), _binary(b, "b")
        scale = max(scale_a, scale_b)
        method = "mcnemar-exact/newcombe"
        diff, low, high, p = (float(v) for v in paired_binary_rule(a01, b01, level))
        if n < min_n:
            return Estimate(scale * diff, None, None, n, method, level, note=_too_few(n, min_n))
        agree = (p < 1 - level) == (low > 0 or high < 0)
        note = "" if agree else "the exact test and Newcombe's interval disagree at this edge; the verdict follows the test"
        return Estimate(scale * diff, scale * low, scale * high, n, method, level, p_value=p, note=note,
                        extra={"sd": float(scale * (a01.astype(float) - b01.astype(float)).std(ddof=1))})
    raise ValueError(f"kind must be 'continuous' or 'binary', got {kind!r}")


def equivalence(a: Any, b: Any, margin: float, kind: str = "continuous", alpha: float = 0.05,
                min_n: int = MIN_N) -> Estimate:
    """Two one-sided tests of ``|mean(a - b)| < margin``: the ``1 - 2 alpha`` interval of the
    difference, which shows equivalence when it lies inside ``[-margin, margin]``
    (``extra["equivalent"]``)."""
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin!r}")
    est = paired_difference(a, b, kind, level=1 - 2 * alpha, min_n=min_n)
    equivalent = est.has_interval and -margin < est.low and est.high < margin
    return replace(est, method="tost-" + ("t" if kind == "continuous" else "newcombe"),
                   extra={**est.extra, "margin": margin, "equivalent": bool(equivalent)})


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control for claims tested together)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p_values must be a 1-D list of numbers in [0, 1], got {p_values!r}")
    m = p.size
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def required_n(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05, max_n: int = 100_000) -> int | None:
    """The smallest n at which a paired t-test at ``alpha`` detects a mean difference ``effect``
    with per-image standard deviation ``sd`` with probability ``power`` (noncentral t; exact for
    normal differences). ``None`` when the effect is 0 or more than ``max_n`` images would be needed."""
    if effect == 0 or not math.isfinite(effect) or not sd > 0:
        return None
    d = abs(effect) / sd

    def power_at(n: int) -> float:
        q = sps.t.ppf(1 - alpha / 2, n - 1)
        nc = d * math.sqrt(n)
        return float(sps.nct.sf(q, n - 1, nc) + sps.nct.cdf(-q, n - 1, nc))

    lo, hi = 2, 2
    while power_at(hi) < power:
        if hi >= max_n:
            return None
        lo, hi = hi, min(max_n, hi * 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if power_at(mid) >= power:
            hi = mid
        else:
            lo = mid + 1
    return max(hi, MIN_N)
