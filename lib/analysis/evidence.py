"""Our estimate of each claim, read from the per-image tables the notebooks write.

A claim's ``evidence`` (see :mod:`lib.analysis.claims`) names a tidy CSV of per-image values, the
value column, how the two methods compared are labelled there and which rows to keep; where
several rows belong to one independent unit (the two classes of one two-photo composite), a
``unit_pattern`` (a regular expression with one group, applied to the image column) averages them
per unit, so that n counts independent units.
:func:`claim_estimate` pairs the two methods' values by image and returns
:func:`lib.analysis.stats.paired_difference` (first minus second; ``equivalence`` with the claim's
margin for ``no_change`` and ``not_worse`` claims); :func:`evaluate` gives the verdicts of a set of claims, Holm's
adjustment over each notebook's directional claims.

Two more rules. A claim that the first method is better than *every* other one (more than two
methods) is an intersection-union test: the first against each other, and the claim holds only if
all are resolved its way, so the weakest comparison decides. A claim whose evidence names a
``trained`` table (a notebook's record of how far each learned attention moved from its start) is
not computed with an attention that table marks as untrained: it is "not comparable" with that
reason, never a verdict on the paper's trained method drawn from its untrained start.
"""

from __future__ import annotations

from functools import lru_cache
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import Claim, load_claims
from .stats import Estimate, equivalence, paired_difference
from .verdicts import expected_sign, verdicts

__all__ = ["ROOT", "evidence_path", "paired_values", "claim_estimate", "evaluate"]

ROOT = Path(__file__).resolve().parents[2]


def _matches(column: pd.Series, value) -> pd.Series:
    if isinstance(value, bool) or column.dtype == bool:
        return column.astype(str).str.lower() == str(value).lower()
    if isinstance(value, (int, float)) and pd.api.types.is_numeric_dtype(column):
        return np.isclose(column.astype(float), float(value))
    return column.astype(str) == str(value)


@lru_cache(maxsize=32)
def _read_table(path: str, mtime_ns: int) -> pd.DataFrame:
    """A per-image table, read once per version of the file (many claims share one)."""
    return pd.read_csv(path)


def evidence_path(table: str, root: Path = ROOT, figures: Path | None = None) -> Path:
    """Where an evidence table is: ``figures/...`` under ``figures`` when given (the pipeline's
    ``figures_dir``), else under ``root``."""
    if figures is not None and Path(table).parts[0] == "figures":
        return Path(figures).joinpath(*Path(table).parts[1:])
    return root / table


def paired_values(claim: Claim, root: Path = ROOT, figures: Path | None = None, against: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first method's and the second's (or ``against``'s) per-image values, aligned on the images
    both have: ``(a, b, ids)``."""
    ev = claim.evidence
    if ev is None:
        raise ValueError(f"claim {claim.id} has no evidence")
    path = evidence_path(ev["table"], root, figures)
    if not path.exists():
        raise FileNotFoundError(f"claim {claim.id}: {ev['table']} does not exist. Fix: run its notebook "
                                f"({claim.notebook}) or the pipeline (make pipeline).")
    frame = _read_table(str(path), path.stat().st_mtime_ns)
    method_column, image_column = ev.get("method_column", "method"), ev.get("image_column", "image_id")
    for column in [method_column, image_column, ev["value"], *ev.get("where", {})]:
        if column not in frame.columns:
            raise ValueError(f"claim {claim.id}: {ev['table']} has no column {column!r} (it has {list(frame.columns)})")
    for column, value in (ev.get("where") or {}).items():
        frame = frame[_matches(frame[column], value)]
    series = []
    for method in (claim.methods[0], against or claim.methods[1]):
        rows = frame[frame[method_column] == ev["methods"][method]]
        if rows.empty:
            raise ValueError(f"claim {claim.id}: no rows of {ev['methods'][method]!r} in {ev['table']} "
                             f"after {ev.get('where') or {}}")
        if rows[image_column].duplicated().any():
            raise ValueError(f"claim {claim.id}: several rows per image for {ev['methods'][method]!r} in "
                             f"{ev['table']}. Fix: narrow the evidence with 'where'.")
        series.append(rows.set_index(image_column)[ev["value"]].astype(float))
    a, b = series[0].align(series[1], join="inner")
    if ev.get("unit_pattern"):  # several rows of one independent unit (e.g. the two classes of a composite)
        units = a.index.to_series().str.extract(ev["unit_pattern"], expand=False)
        if units.isna().any():
            raise ValueError(f"claim {claim.id}: unit_pattern {ev['unit_pattern']!r} matches no unit in "
                             f"{list(a.index[units.isna()][:3])}")
        a, b = a.groupby(units.to_numpy()).mean(), b.groupby(units.to_numpy()).mean()
    return a.to_numpy(), b.to_numpy(), list(a.index)


def untrained_methods(claim: Claim, root: Path = ROOT, figures: Path | None = None) -> list[str]:
    """The compared methods that the evidence's ``trained`` table (a notebook's record of how far each
    learned attention moved from its start: columns ``method``, ``trained``, ``weight_change``; one row
    per method, or one per method and training seed) marks as not trained (any seed), with how far they
    moved (the least of the seeds); empty without such a table."""
    ev = claim.evidence or {}
    if not ev.get("trained"):
        return []
    path = evidence_path(ev["trained"], root, figures)
    if not path.exists():
        raise FileNotFoundError(f"claim {claim.id}: {ev['trained']} does not exist. Fix: run {claim.notebook}.")
    table = _read_table(str(path), path.stat().st_mtime_ns)
    labels = [ev["methods"][m] for m in claim.methods if ev["methods"].get(m) in set(table.method)]
    rows = {label: table[table.method == label] for label in labels}  # one row per training seed, or one
    return [f"{label} (weights moved {rows[label].weight_change.min():.1e} of their norm)" for label in labels
            if not rows[label].trained.astype(bool).all()]


def _against_each(claim: Claim, root: Path, figures: Path | None) -> Estimate:
    """A "first is better than every other" claim as an intersection-union test: the first method
    against each other one; the claim holds only if every comparison is resolved its way, so the
    estimate returned is the weakest one (largest p-value), or a comparison resolved the other way."""
    sign = expected_sign(claim)
    estimates = {m: paired_difference(*paired_values(claim, root, figures, against=m)[:2], claim.kind)
                 for m in claim.methods[1:]}
    without = {m: e for m, e in estimates.items() if e.p_value is None}
    if without:
        m, e = next(iter(without.items()))
        return replace(e, note=f"{e.note} (against {m})")
    against = {m: e for m, e in estimates.items() if e.p_value < 0.05 and (e.value > 0) != (sign > 0)}
    if against:
        m, e = min(against.items(), key=lambda item: item[1].p_value)
        return replace(e, note=f"against {m}: resolved the other way ({len(estimates)} comparisons)")
    m, e = max(estimates.items(), key=lambda item: item[1].p_value)
    return replace(e, note=f"the weakest of {len(estimates)} comparisons, against {m}: the claim holds only if "
                           "every one does (intersection-union test)")


def claim_estimate(claim: Claim, root: Path = ROOT, figures: Path | None = None) -> Estimate | str | None:
    """Our estimate of the claim's difference; ``None`` when it names no evidence; a string (why)
    when a compared method cannot stand for the paper's here (an attention that was not trained)."""
    if claim.evidence is None or claim.status == "not_reproducible":
        return None
    untrained = untrained_methods(claim, root, figures)
    if untrained:
        return ("not trained here, so it cannot stand for the paper's trained method: " + "; ".join(untrained)
                + f" ({claim.evidence['trained']})")
    if claim.direction in ("better", "worse") and len(claim.methods) > 2 and expected_sign(claim) is not None:
        unmapped = [m for m in claim.methods if m not in claim.evidence["methods"]]
        if unmapped:
            raise ValueError(f"claim {claim.id} compares {list(claim.methods)} but its evidence maps no label for "
                             f"{unmapped}. Fix: add them to evidence.methods (a claim against every other method is "
                             "tested against each).")
        return _against_each(claim, root, figures)
    a, b, _ = paired_values(claim, root, figures)
    if claim.evidence.get("exact"):  # a property of the method (e.g. forward passes), not a sample
        if np.ptp(a) != 0 or np.ptp(b) != 0:
            raise ValueError(f"claim {claim.id}: evidence marked exact, but {claim.evidence['value']!r} varies across "
                             f"rows. Fix: drop 'exact' (it is a sampled quantity) or narrow 'where'.")
        return Estimate(float(a[0] - b[0]), None, None, len(a), "exact",
                        note="a count from the implementation, the same on every image: no sampling error")
    if claim.direction in ("no_change", "not_worse"):
        return equivalence(a, b, claim.margin, claim.kind)
    return paired_difference(a, b, claim.kind)


def evaluate(claims: list[Claim] | None = None, root: Path = ROOT, figures: Path | None = None) -> pd.DataFrame:
    """Verdicts on ``claims`` (default: the whole registry), Holm-adjusted within each notebook,
    beside each claim's registry fields."""
    claims = load_claims() if claims is None else claims
    frames = []
    for notebook in sorted({c.notebook for c in claims}):
        family = [c for c in claims if c.notebook == notebook]
        result = verdicts([(c, claim_estimate(c, root, figures)) for c in family])
        result.insert(0, "notebook", notebook)
        result.insert(2, "item", [c.item for c in family])
        result.insert(3, "metric", [c.metric or "" for c in family])
        result.insert(4, "methods", [" vs ".join(c.methods) for c in family])
        result.insert(5, "status", [c.status for c in family])
        frames.append(result)
    return pd.concat(frames, ignore_index=True)
