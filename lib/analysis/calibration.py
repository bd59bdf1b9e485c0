"""Simulated per-image results with a known truth, to check the decision rules of :mod:`lib.analysis.stats`.

A *null* is two exchangeable methods evaluated on the same images: each image has its own
difficulty (shared by both methods) and each method its own noise, drawn from the same law, so
the true mean difference is 0 and any "resolved" difference is an error. The marginals take the
shapes that the compendium's metrics have:

=====================  ==========================================================================
shape                  per-image values
=====================  ==========================================================================
``normal``             difficulty N(0, 1) + noise N(0, 1)
``log-normal``         exp(difficulty N(0, 1) + noise N(0, 0.5)): strongly right-skewed scores
``bounded-ties``       AD-like drops in [0, 100], rounded to whole points, many exactly 0 or 100
``binary``             IC / pointing hits, 0 or 100, per-image rate Beta(2, 2)
``auc``                deletion/insertion AUCs in [0, 1]
``skewed-difference``  not exchangeable: differences Exp(1) - 1 (mean 0, skewness 2); reported,
                       not asserted (see :mod:`lib.analysis.stats`)
=====================  ==========================================================================

An *effect* adds ``effect`` standard deviations of the null's per-image difference to method
``a`` (binary: raises ``a``'s hit probability by ``effect`` on each image), for power.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import stats

__all__ = ["SHAPES", "ASSERTED_SHAPES", "BINARY_SHAPES", "difference_sd", "simulate_pairs", "resolved"]

SHAPES = ("normal", "log-normal", "bounded-ties", "binary", "auc", "skewed-difference")
ASSERTED_SHAPES = SHAPES[:-1]
BINARY_SHAPES = ("binary",)



@lru_cache(maxsize=None)
def difference_sd(shape: str) -> float:
    """The standard deviation of ``a - b`` under ``shape``'s null (200,000 seeded draws): the unit of ``effect``."""
    a, b = simulate_pairs(shape, 1, 200_000, np.random.default_rng(12345))
    return float((a - b).std())


def simulate_pairs(shape: str, n: int, sims: int, rng: np.random.Generator, effect: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``sims`` samples of ``n`` images: per-image values ``a, b`` of shape ``[sims, n]``."""
    size = (sims, n)
    if shape == "normal":
        u = rng.normal(size=size)
        a, b = u + rng.normal(size=size), u + rng.normal(size=size)
    elif shape == "log-normal":
        u = rng.normal(size=size)
        a, b = np.exp(u + 0.5 * rng.normal(size=size)), np.exp(u + 0.5 * rng.normal(size=size))
    elif shape == "bounded-ties":
        u = rng.beta(0.7, 2.0, size=size)
        a, b = (np.clip(np.round(100 * (u + rng.normal(0, 0.15, size=size))), 0, 100) for _ in range(2))
    elif shape == "auc":
        u = rng.beta(2.0, 5.0, size=size)
        a, b = (np.clip(u + rng.normal(0, 0.05, size=size), 0, 1) for _ in range(2))
    elif shape == "binary":
        p = rng.beta(2.0, 2.0, size=size)
        a = 100.0 * (rng.random(size) < np.clip(p + effect, 0, 1))
        b = 100.0 * (rng.random(size) < p)
        return a, b
    elif shape == "skewed-difference":
        b = np.zeros(size)
        a = rng.exponential(size=size) - 1.0
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")
    return (a + effect * difference_sd(shape) if effect else a), b


def resolved(shape: str, a: np.ndarray, b: np.ndarray, level: float = stats.LEVEL,
             min_n: int = stats.MIN_N) -> np.ndarray:
    """Whether the library's rule calls each row's difference resolved (``p < 1 - level``, n >= min_n)."""
    if a.shape[-1] < min_n:
        return np.zeros(a.shape[:-1], dtype=bool)
    if shape in BINARY_SHAPES:
        *_, p = stats.paired_binary_rule(a > 0, b > 0, level)
    else:
        *_, p = stats.paired_t_rule(a - b, level)
    return np.nan_to_num(p, nan=1.0) < 1 - level
