"""Bootstrap confidence intervals of per-image metric means (AD, IC, scores, ...).

The notebooks' intervals until the move to :mod:`lib.analysis.stats`, whose rules are calibrated
by simulation: this percentile bootstrap calls too many differences resolved at small n
(``figures/stats_calibration.csv``) and gives zero-width intervals for constant samples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from lib.analysis.stats import as_values, sps

__all__ = ["bootstrap_ci", "summarize"]


def bootstrap_ci(values: torch.Tensor | np.ndarray | Sequence[float], level: float = 0.95,
                 n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap confidence interval.

    Uses ``scipy.stats.bootstrap`` (``method="percentile"``, ``n_resamples`` resamples of the
    mean, generator ``numpy.random.default_rng(seed)``: deterministic for a given seed).

    Degenerate inputs give no warning and no NaN: a single value, or a constant sample, returns
    ``(v, v, v)`` (the bootstrap distribution of the mean is a point). Empty input or NaN values
    raise ``ValueError``.

    Returns:
        ``(mean, ci_low, ci_high)`` as Python floats.
    """
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    x = as_values(values)
    mean = float(x.mean())
    if x.size < 2 or np.ptp(x) == 0:
        return mean, mean, mean
    res = sps.bootstrap((x,), np.mean, n_resamples=n_resamples, vectorized=True, axis=-1,
                        confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return mean, float(ci.low), float(ci.high)


def summarize(frame: pd.DataFrame, value_cols: str | Sequence[str], by: str | Sequence[str],
              level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-group mean, bootstrap CI and count of each value column (long format).

    E.g. ``summarize(to_frame(res, method="gradcam"), ["drop", "increase"], ["method", "fraction"])``
    gives AD and IC (means of the per-image terms) with their CIs.

    Returns:
        one row per (group, value column): the ``by`` columns, ``metric`` (the value column's
        name), ``mean``, ``ci_low``, ``ci_high``, ``n``.
    """
    value_cols = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in value_cols + by if c not in frame.columns]
    if missing:
        raise ValueError(f"columns not in frame: {missing}")
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        for col in value_cols:
            mean, low, high = bootstrap_ci(group[col].to_numpy(), level, n_resamples, seed)
            rows.append({**dict(zip(by, key)), "metric": col, "mean": mean, "ci_low": low,
                         "ci_high": high, "n": int(len(group))})
    return pd.DataFrame(rows, columns=by + ["metric", "mean", "ci_low", "ci_high", "n"])
