"""Notebook 04's own conclusions, rendered from its tables (the paper's claims are decided by the
registry: :func:`lib.analysis.report.notebook_claims`)."""

from __future__ import annotations

import pandas as pd

from lib.analysis.tables import formatted

from .maps import BLUR, RELEASED

__all__ = ["differences_text", "findings_markdown"]


def differences_text(table: pd.DataFrame, variant: str, minus: str, metrics: list[str], digits: int = 2) -> str:
    """``"deletion +0.12 [-0.3, 0.5], insertion ..."``: the pair's differences in a table of
    :mod:`lib.experiments.ucag.tables`."""
    rows = table[(table["statistic"] == "difference") & (table["variant"] == variant) & (table["minus"] == minus)]
    rows = rows.set_index("metric").reindex([m for m in metrics if m in set(rows["metric"])]).reset_index()
    return ", ".join(f"{m} {text}" for m, text in zip(rows["metric"], formatted(rows, digits=digits, signed=True)))


def findings_markdown(ablation: pd.DataFrame, fig2: pd.DataFrame, xgrad_difference: float) -> str:
    """What this notebook measures beyond the paper's claims: XGrad-CAM = Grad-CAM on this head, the
    blur-only control, the released count + 1 against the average, and Fig. 2's trend."""
    largest, smallest = (f"{fig2['side'].agg(f):.0f} px" for f in ("max", "min"))
    return "\n".join([
        "**Beyond the registry** (this run's tables):", "",
        f"* XGrad-CAM minus Grad-CAM, largest absolute difference of the maps: `{xgrad_difference:.1e}` "
        f"({'identical up to float rounding' if xgrad_difference < 1e-4 else 'NOT identical'}).",
        f"* Blur alone ({BLUR} − Grad-CAM): "
        + differences_text(ablation, BLUR, "Grad-CAM", ["deletion", "insertion", "rho+", "tied pixels (%)"])
        + ". What the post-processing explains of UCAG's differences, without any unfolding.",
        f"* The released count + 1 minus the paper's average ({RELEASED} − UCAG Grad-CAM): "
        + differences_text(ablation, RELEASED, "UCAG Grad-CAM", ["deletion", "insertion", "hit", "energy"]) + ".",
        f"* Fig. 2, Grad-CAM at {largest} minus at {smallest}, per image: "
        + differences_text(fig2, largest, smallest, ["deletion", "insertion"])
        + " (the paper: both decrease; its verdicts are `ucag-fig2-*` above).",
    ])
