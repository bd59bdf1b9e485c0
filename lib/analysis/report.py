"""A notebook's verdicts on its paper's claims, written to ``claims.csv`` and rendered as Markdown.

:func:`notebook_claims` evaluates every registry claim of one notebook
(:func:`lib.analysis.evidence.evaluate`, Holm's adjustment over the notebook's family) on the
per-image tables the notebook has just written under ``out`` (its ``figures/NN`` folder) and writes
``out/claims.csv``: claim id, n, our effect with its interval, the paper's effect, verdict, the n
that would resolve it, and why. :func:`claims_markdown` turns those rows into the notebook's
"Where we agree with the paper" text, so that no measured number is typed into a markdown cell.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import pandas as pd

from .claims import load_claims
from .evidence import evaluate

__all__ = ["notebook_claims", "claims_markdown", "claims_reading", "verdicts_on"]

DECIDED = ("agrees", "disagrees", "not resolved", "too few")


def notebook_claims(notebook: str, out: str | Path) -> pd.DataFrame:
    """Verdicts on the claims of ``notebook`` (e.g. ``"03_sa_cam"``) from the tables in ``out``,
    written to ``out/claims.csv`` and returned. ``out`` stands for the registry's ``figures/NN``."""
    claims = [c for c in load_claims() if c.notebook == notebook]
    if not claims:
        known = sorted({c.notebook for c in load_claims()})
        raise ValueError(f"no claims for notebook {notebook!r}. Fix: use one of {known}.")
    out = Path(out)
    # the registry names figures/NN/<table>; the notebook writes <out>/<table>
    figures = _figures_root(claims, out)
    frame = evaluate(claims, figures=figures)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "claims.csv", index=False)
    return frame


def claims_reading(notebook: str, table: str) -> list:
    """The registry claims of ``notebook`` whose evidence is the per-image table ``table`` (a file name)."""
    return [c for c in load_claims() if c.notebook == notebook and c.evidence and c.evidence["table"].endswith(table)]


def verdicts_on(claims: list, tables: Mapping[str, pd.DataFrame], float_format: str | None = None) -> pd.Series:
    """The verdicts (claim id -> verdict) of ``claims`` evaluated on the given tables instead of the notebook's
    files: ``{file name: frame}``, written to a temporary folder that stands for the claims' ``figures/NN``
    (e.g. a per-image table in which a trained method's rows are another seed's). Holm's adjustment runs over
    ``claims``, as in ``claims.csv`` when they are the notebook's directional ones."""
    if not claims:
        return pd.Series(dtype=object, name="verdict")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / Path(claims[0].evidence["table"]).parts[1]
        folder.mkdir(parents=True)
        for name, frame in tables.items():
            frame.to_csv(folder / name, index=False, float_format=float_format)
        return evaluate(claims, figures=Path(tmp)).set_index("claim").verdict


def _figures_root(claims, out: Path) -> Path:
    """The folder that stands for ``figures/``, so that ``figures/NN/x.csv`` resolves to ``out/x.csv``."""
    folders = {Path(c.evidence["table"]).parts[1] for c in claims if c.evidence and len(Path(c.evidence["table"]).parts) > 2}
    if folders and folders != {out.name}:
        raise ValueError(f"the claims read tables in figures/{sorted(folders)[0]}/, but the notebook writes to {out}. "
                         f"Fix: name the output folder {sorted(folders)[0]!r} (as the pipeline and the quick defaults do).")
    return out.parent


def claims_markdown(frame: pd.DataFrame, title: str = "Verdicts on the paper's claims") -> str:
    """Markdown of a :func:`notebook_claims` frame: the count of each verdict, then one line per
    claim with a computed estimate (ours beside the paper's, the verdict and why)."""
    counts = frame["verdict"].value_counts()
    lines = [f"**{title}** ({len(frame)} claims in the registry; Holm's adjustment over this notebook's "
             "directional claims): " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".", ""]
    decided = frame[frame["verdict"].isin(DECIDED)]
    for row in decided.itertuples(index=False):
        paper = "" if pd.isna(row.paper) else f"; the paper: {row.paper:+.4g}"
        needed = "" if pd.isna(row.needed_n) else f" ({row.needed_n} images would resolve it)"
        lines.append(f"* `{row.claim}` ({row.item}, {row.metric}: {row.methods}): ours {row.ours}, n = {row.n}"
                     f"{paper}. **{row.verdict}**{needed}: {row.reason}.")
    if decided.empty:
        lines.append("* No claim of this notebook has a per-image estimate in this run.")
    return "\n".join(lines)
