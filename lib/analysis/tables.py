"""Tables whose numbers stay numbers until they are displayed.

Every notebook table is built by one call on a tidy per-image frame (one row per image and method,
one column per metric):

* :func:`summarize`: the mean of each metric per group with its interval
  (:func:`lib.analysis.stats.mean_interval`, or :func:`~lib.analysis.stats.proportion_interval`
  for the 0/1 or 0/100 columns named in ``binary``), as numbers: ``mean, low, high, n, note``;
* :func:`paired`: per-image differences of each method minus a reference on the images both have
  (:func:`lib.analysis.stats.paired_difference`), with ``p_value`` and ``resolved``;
* :func:`formatted` / :func:`display_table`: the strings a reader sees, ``"0.43 [0.31, 0.55]"``
  or ``"0.43 (n = 4: too few for an interval)"``, made only at display time.

Below :data:`lib.analysis.stats.MIN_N` images ``low`` and ``high`` are NaN and ``note`` says why:
no interval is ever printed with zero width or from too few images.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import LEVEL, MIN_N, Estimate, mean_interval, paired_difference, proportion_interval

__all__ = ["BINARY_COLUMNS", "SUMMARY_COLUMNS", "PAIRED_COLUMNS", "summarize", "paired", "formatted",
           "display_table", "estimate_row"]

BINARY_COLUMNS = ("increase", "hit")
"""Per-image columns that are 0/1 or 0/100 outcomes (IC's increase, a pointing hit): their rates get
exact Clopper-Pearson intervals and their paired differences the exact McNemar test."""

SUMMARY_COLUMNS = ["metric", "mean", "low", "high", "n", "note"]
PAIRED_COLUMNS = ["method", "minus", "metric", "difference", "low", "high", "n", "p_value", "resolved", "note"]


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the frame (it has {list(frame.columns)}). "
                         "Fix: pass the per-image frame the notebook wrote, or name existing columns.")


def estimate_row(est: Estimate) -> dict:
    """``mean, low, high, n, note`` of an estimate (``low``/``high`` NaN without an interval)."""
    return {"mean": est.value, "low": est.low if est.has_interval else np.nan,
            "high": est.high if est.has_interval else np.nan, "n": est.n, "note": est.note}


def summarize(frame: pd.DataFrame, values: str | Sequence[str], by: str | Sequence[str] = (),
              binary: Sequence[str] = BINARY_COLUMNS, level: float = LEVEL, min_n: int = MIN_N) -> pd.DataFrame:
    """The mean of each column of ``values`` per group of ``by``, with its interval, one row per
    (group, column): the ``by`` columns, then :data:`SUMMARY_COLUMNS`.

    Columns named in ``binary`` are rates of 0/1 (or 0/100) outcomes (Clopper-Pearson); the others
    are means (Student t). NaN values raise (see :func:`lib.analysis.stats.as_values`)."""
    values, by = _as_list(values), _as_list(by)
    _check_columns(frame, values + by)
    groups = frame.groupby(by, sort=True, observed=True) if by else [((), frame)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for column in values:
            rule = proportion_interval if column in binary else mean_interval
            rows.append({**dict(zip(by, key)), "metric": column,
                         **estimate_row(rule(group[column].to_numpy(), level=level, min_n=min_n))})
    return pd.DataFrame(rows, columns=by + SUMMARY_COLUMNS)


def paired(frame: pd.DataFrame, values: str | Sequence[str], methods: Sequence[str], reference: str,
           by: str | Sequence[str] = (), method_column: str = "method", image_column: str = "image_id",
           binary: Sequence[str] = BINARY_COLUMNS, level: float = LEVEL, min_n: int = MIN_N) -> pd.DataFrame:
    """Each of ``methods`` minus ``reference``, per image, for each column of ``values`` and group
    of ``by``: the ``by`` columns, then :data:`PAIRED_COLUMNS` (``difference`` is the mean of the
    per-image differences; ``resolved``: the two-sided test rejects 0 at ``1 - level``). Only images
    that both methods have are paired; a group where they share none raises."""
    values, by = _as_list(values), _as_list(by)
    _check_columns(frame, values + by + [method_column, image_column])
    groups = frame.groupby(by, sort=True, observed=True) if by else [((), frame)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for column in values:
            wide = group.pivot_table(index=image_column, columns=method_column, values=column, aggfunc="first")
            for method in methods:
                if method not in wide or reference not in wide:
                    raise ValueError(f"paired: {method!r} or {reference!r} has no {column!r} values in group "
                                     f"{dict(zip(by, key))}. Fix: evaluate both methods on the same images.")
                both = wide[[method, reference]].dropna()
                est = paired_difference(both[method].to_numpy(), both[reference].to_numpy(),
                                        "binary" if column in binary else "continuous", level=level, min_n=min_n)
                row = estimate_row(est)
                rows.append({**dict(zip(by, key)), "method": method, "minus": reference, "metric": column,
                             "difference": row.pop("mean"), **row, "p_value": est.p_value,
                             "resolved": bool(est.p_value is not None and est.p_value < 1 - level)})
    return pd.DataFrame(rows, columns=by + PAIRED_COLUMNS)


def formatted(table: pd.DataFrame, value: str = "mean", digits: int = 2, signed: bool = False) -> pd.Series:
    """``"m [low, high]"`` per row of a :func:`summarize` or :func:`paired` table, or
    ``"m (note)"`` where there is no interval (the too-few note shortened to ``"n = 4, no interval"``)."""
    sign = "+" if signed else ""

    def text(row: pd.Series) -> str:
        shown = f"{row[value]:{sign}.{digits}f}"
        if pd.notna(row["low"]) and pd.notna(row["high"]):
            return f"{shown} [{row['low']:{sign}.{digits}f}, {row['high']:{sign}.{digits}f}]"
        note = row.get("note") if isinstance(row.get("note"), str) else ""
        note = re.sub(r": too few for an interval \(at least \d+\)", ", no interval", note)
        return f"{shown} ({note})" if note else shown

    return table.apply(text, axis=1) if len(table) else pd.Series([], dtype=str)


def display_table(table: pd.DataFrame, index: str | Sequence[str], columns: str | Sequence[str],
                  value: str = "mean", digits: int = 2, signed: bool = False,
                  order: Sequence | None = None) -> pd.DataFrame:
    """A :func:`summarize` / :func:`paired` table pivoted for reading: ``index`` rows, ``columns``
    columns, cells :func:`formatted` (rows in ``order`` when given)."""
    shown = table.assign(_cell=formatted(table, value, digits, signed))
    wide = shown.pivot_table(index=index, columns=columns, values="_cell", aggfunc="first")
    wide.columns.name = None
    return wide.reindex([o for o in order if o in wide.index]) if order is not None else wide
