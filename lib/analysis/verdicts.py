"""Verdicts on the registry's claims, computed from our per-image estimates, never typed.

:func:`verdict` takes one claim (:class:`lib.analysis.claims.Claim`) and our estimate of its
difference (:func:`lib.analysis.stats.paired_difference` of the first method minus the second,
per image, in the metric's units) and says:

* ``agrees`` / ``disagrees``: the difference is resolved (p below ``alpha`` after Holm's
  adjustment over the claims tested together) and has / has not the sign the paper claims; a
  ``no_change`` claim agrees when the 90 % interval lies inside its margin (two one-sided tests)
  and disagrees when it lies entirely outside it (each a one-sided test at 5 %); a ``not_worse`` claim
  (non-inferiority, "maintained or increased") agrees when the 90 % interval's bound on the worse side
  lies within the margin (a one-sided test at 5 %) and disagrees when the whole interval is worse than
  the margin; a ``size`` claim agrees when our
  95 % interval holds the paper's difference and disagrees when it excludes it;
* ``not resolved``: none of these, with the n that would resolve our observed effect with 80 %
  power (:func:`lib.analysis.stats.required_n`; none when we observe no effect at all);
* ``too few``: fewer than :data:`lib.analysis.stats.MIN_N` images, so no interval and no verdict;
* ``not comparable`` (a qualitative claim, or one whose metric has no better/worse sense),
  ``not reproducible here`` (the registry's status, with its reason), ``not computed`` (no
  estimate given).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from .claims import METRICS, Claim
from .stats import LEVEL, Estimate, holm, required_n

__all__ = ["VERDICTS", "Verdict", "verdict", "verdicts", "evidence_key", "expected_sign", "paper_effect"]

VERDICTS = ("agrees", "disagrees", "not resolved", "too few", "not comparable", "not reproducible here",
            "not computed")


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    n: int | None
    ours: str
    paper: float | None
    reason: str
    needed_n: int | None = None
    p_adjusted: float | None = None

    def row(self) -> dict:
        return {column: getattr(self, column) for column in COLUMNS}


COLUMNS = ["claim", "n", "ours", "paper", "verdict", "needed_n", "p_adjusted", "reason"]


def paper_effect(claim: Claim) -> float | None:
    """The paper's difference, first method minus second, from its printed values (None if absent)."""
    if len(claim.methods) < 2:
        return None
    first, second = (claim.paper_values.get(m) for m in claim.methods[:2])
    if not all(isinstance(v, (int, float)) for v in (first, second)):
        return None  # absent, or a whole table's row (a "describes" claim)
    return float(first) - float(second)


def expected_sign(claim: Claim) -> int | None:
    """+1 / -1: the sign of ``first - second`` that the claim predicts; None without a sense."""
    if claim.direction not in ("better", "worse") or claim.metric is None:
        return None
    higher = METRICS[claim.metric].higher_is_better
    if higher is None:
        return None
    return 1 if (claim.direction == "better") == higher else -1


def verdict(claim: Claim, ours: Estimate | str | None, p_adjusted: float | None = None, alpha: float = 1 - LEVEL
            ) -> Verdict:
    """The verdict on ``claim`` from ``ours`` (see the module docstring): for ``no_change`` claims
    (and ``not_worse``) the estimate of :func:`lib.analysis.stats.equivalence` (its 90 % interval); a
    string: why no estimate can stand for the claim here ("not comparable"); for the others that
    of :func:`lib.analysis.stats.paired_difference`. ``p_adjusted``: the claim's p-value after
    Holm's adjustment in its family (default: its own p-value)."""
    effect = paper_effect(claim)

    def out(label: str, reason: str, needed: int | None = None) -> Verdict:
        digits = 3 if ours is not None and abs(ours.value) < 1 else 2
        shown = "" if ours is None else ours.format(digits) + ("" if ours.level == LEVEL or not ours.has_interval
                                                         else f" ({ours.level:.0%} interval)")
        if ours is not None and ours.has_interval and ours.note:  # e.g. which comparison decided it
            reason = f"{reason}; {ours.note}"
        return Verdict(claim.id, label, None if ours is None else ours.n, shown, effect, reason, needed, p_adjusted)

    if claim.status == "not_reproducible":
        return out("not reproducible here", claim.reason or "")
    if isinstance(ours, str):  # lib.analysis.evidence: a compared method cannot stand for the paper's here
        return Verdict(claim.id, "not comparable", None, "", effect, ours)
    if claim.direction == "describes" or claim.metric is None:
        return out("not comparable", "a qualitative claim: see the figure beside the paper's")
    if ours is None:
        return out("not computed", "no per-image estimate was given for this claim")
    if ours.method == "exact":  # lib.analysis.evidence: a count, not a sample (e.g. forward passes)
        return _exact(claim, ours, effect, out)
    if not ours.has_interval:
        return out("too few", ours.note)
    p = ours.p_value if p_adjusted is None else p_adjusted

    def needed() -> int | None:  # only where the verdict is "not resolved"
        return required_n(ours.value, ours.extra.get("sd", float("nan")))

    if claim.direction in ("better", "worse"):
        sign = expected_sign(claim)
        if sign is None:
            return out("not comparable", f"{claim.metric} has no better or worse sense")
        if p is not None and p < alpha:
            agrees = (ours.value > 0) == (sign > 0)
            return out("agrees" if agrees else "disagrees",
                       f"the difference is resolved (p = {p:.2g}) and its sign is "
                       + ("the paper's" if agrees else "opposite to the paper's"))
        why = "after Holm's adjustment in its family" if p_adjusted is not None else "the 95 % interval holds 0"
        return out("not resolved", f"p = {p:.2g}: {why}", needed())
    if claim.direction == "no_change":
        if "equivalent" not in ours.extra:
            raise ValueError(f"claim {claim.id}: a no-change claim is decided by lib.analysis.stats.equivalence(..., "
                             f"margin={claim.margin}), not by paired_difference. Fix: pass that estimate.")
        if ours.extra["equivalent"]:
            return out("agrees", f"the 90 % interval lies within +-{claim.margin:g}")
        if ours.low > claim.margin or ours.high < -claim.margin:
            return out("disagrees", f"the 90 % interval lies outside +-{claim.margin:g}")
        return out("not resolved", f"the 90 % interval neither fits within nor excludes +-{claim.margin:g}", needed())
    if claim.direction == "not_worse":
        if "margin" not in ours.extra:
            raise ValueError(f"claim {claim.id}: a not-worse claim is decided by lib.analysis.stats.equivalence(..., "
                             f"margin={claim.margin}). Fix: pass that estimate.")
        higher = METRICS[claim.metric].higher_is_better
        if higher is None:
            return out("not comparable", f"{claim.metric} has no better or worse sense")
        worst, best = (ours.low, ours.high) if higher else (-ours.high, -ours.low)  # in "better" units
        if worst > -claim.margin:
            return out("agrees", f"the 90 % interval excludes a loss larger than {claim.margin:g}")
        if best < -claim.margin:
            return out("disagrees", f"the 90 % interval lies entirely beyond a loss of {claim.margin:g}")
        return out("not resolved", f"the 90 % interval neither excludes nor lies beyond a loss of {claim.margin:g}",
                   needed())
    if claim.direction == "size":
        if effect is None:
            return out("not comparable", "the paper prints no values for the difference")
        if ours.low <= effect <= ours.high:
            return out("agrees", f"our 95 % interval holds the paper's difference {effect:g}")
        return out("disagrees", f"our 95 % interval excludes the paper's difference {effect:g}")
    raise ValueError(f"claim {claim.id}: unknown direction {claim.direction!r}")


def _exact(claim: Claim, ours: Estimate, effect: float | None, out) -> Verdict:
    """A claim about a quantity without sampling error (a method's forward passes): decided by our
    exact difference, first minus second."""
    if claim.direction in ("better", "worse"):
        sign = expected_sign(claim)
        if sign is None:
            return out("not comparable", f"{claim.metric} has no better or worse sense")
        agrees = ours.value != 0 and (ours.value > 0) == (sign > 0)
        return out("agrees" if agrees else "disagrees", f"exact difference {ours.value:+g}: {ours.note}")
    if claim.direction == "size" and effect is not None:
        return out("agrees" if ours.value == effect else "disagrees",
                   f"exact difference {ours.value:+g} against the paper's {effect:+g}: {ours.note}")
    if claim.direction in ("no_change", "not_worse"):
        ok = abs(ours.value) <= claim.margin if claim.direction == "no_change" else sign_ok(claim, ours.value)
        return out("agrees" if ok else "disagrees", f"exact difference {ours.value:+g}: {ours.note}")
    return out("not comparable", "the paper prints no values for the difference")


def sign_ok(claim: Claim, value: float) -> bool:
    """Whether an exact difference is within a ``not_worse`` claim's margin on the worse side."""
    higher = METRICS[claim.metric].higher_is_better
    return (value if higher else -value) > -claim.margin


def evidence_key(claim: Claim) -> str:
    """What a claim's estimate is computed from (its table, rows, column and the two methods' labels
    there): claims with the same key test one hypothesis on the same data."""
    ev = claim.evidence
    if not ev:
        return f"claim:{claim.id}"
    labels = [ev.get("methods", {}).get(m, m) for m in claim.methods]
    parts = {k: ev.get(k) for k in ("table", "value", "where", "method_column", "image_column", "unit_pattern")}
    return json.dumps({**parts, "labels": labels, "kind": claim.kind}, sort_keys=True, default=str)


def verdicts(pairs: list[tuple[Claim, Estimate | None]], family: str = "holm") -> pd.DataFrame:
    """Verdicts on claims tested together, Holm-adjusting the p-values of the directional ones
    (``family="none"``: each on its own). Claims that read the same evidence (:func:`evidence_key`,
    e.g. a paper's ResNet-50 and Inception-v3 columns both stood in for by one model's rows) are one
    hypothesis of the family, so repeating a stand-in does not make Holm stricter."""
    if family not in ("holm", "none"):
        raise ValueError(f"family must be 'holm' or 'none', got {family!r}")
    tested = [i for i, (c, e) in enumerate(pairs) if c.direction in ("better", "worse") and c.status != "not_reproducible"
              and isinstance(e, Estimate) and e.p_value is not None]
    adjusted = {}
    if tested and family == "holm":
        keys = {i: evidence_key(pairs[i][0]) for i in tested}
        distinct = {}
        for i in tested:
            distinct.setdefault(keys[i], pairs[i][1].p_value)
        by_key = dict(zip(distinct, holm(list(distinct.values()))))
        adjusted = {i: by_key[keys[i]] for i in tested}
    rows = [verdict(c, e, p_adjusted=adjusted.get(i)).row() for i, (c, e) in enumerate(pairs)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"n": "Int64", "needed_n": "Int64", "paper": "float64", "p_adjusted": "float64"})
