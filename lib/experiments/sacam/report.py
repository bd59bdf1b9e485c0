"""What notebook 03 shows of its tables: ours beside the paper's, the key numbers and computed text.

The tables themselves stay numbers (CSV); :func:`shown` and :func:`shown_paired` format them only
for display (:func:`lib.analysis.tables.display_table`).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from lib.analysis.tables import display_table

from .causal import METHODS

__all__ = ["shown", "shown_paired", "key_numbers", "agreement_markdown"]


def shown(table: pd.DataFrame, index: str | Sequence[str], order: Sequence | None = None, digits: int = 3,
          methods: Sequence[str] = METHODS) -> pd.DataFrame:
    """A table with a ``paper`` column for reading: rows ``index``, per method ``"<m> (ours)"``
    (mean [95% CI], or the reason there is none) and ``"<m> (paper)"``, and the images behind ours."""
    ours = display_table(table, index, "method", digits=digits, order=order)
    paper = table.pivot_table(index=index, columns="method", values="paper", aggfunc="first").reindex(ours.index)
    n = table.pivot_table(index=index, values="n", aggfunc="max").reindex(ours.index)["n"]
    columns = {}
    for m in [m for m in methods if m in ours]:
        columns[f"{m} (ours)"], columns[f"{m} (paper)"] = ours[m], paper[m]
    return pd.DataFrame({**columns, "n": n}, index=ours.index)


def shown_paired(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The paired differences for reading: rows ``"A - B"``, columns the metrics, cells the mean
    difference [95% CI] (or why there is none), and whether each is resolved."""
    pairs = table.assign(pair=table.method + " - " + table.minus)
    cells = display_table(pairs, "pair", "metric", value="difference", digits=digits, signed=True,
                          order=list(dict.fromkeys(pairs.pair)))
    resolved = pairs.pivot_table(index="pair", columns="metric", values="resolved", aggfunc="first")
    return cells.join(resolved.rename(columns=lambda c: f"{c} resolved"))


def key_numbers(aucs: pd.DataFrame, adversarial: pd.DataFrame, two: pd.DataFrame, same: pd.DataFrame) -> dict:
    """The notebook's key means per method: AUCs (Tables 1-3), adversarial accuracy and fading per
    case (Tables 4-5), energies of Figs 6-7."""
    numbers = {"auc": aucs.groupby("method")[["insertion", "deletion", "overall"]].mean().to_dict("index")}
    means = adversarial.groupby(["case", "method"])[["accuracy", "fading"]].mean().to_dict("index")
    numbers["adversarial"] = {f"{case} / {method}": values for (case, method), values in means.items()}
    numbers["fig6 energy"] = two.groupby("method").energy.mean().to_dict()
    numbers["fig7 weaker share"] = same.groupby("method")["weaker half's share"].mean().to_dict()
    return numbers


def agreement_markdown(paired_table: pd.DataFrame, sanity: pd.DataFrame, layer: str, model_layer: str) -> str:
    """Computed text beside the registry's verdicts: which paired differences our images resolve,
    how far each method's map moved after the last randomisation step, and which layer the tables use."""
    resolved = paired_table[paired_table.resolved]
    lines = [f"**Paired differences** (Tables 1-3, per image, t rule): {len(resolved)} of {len(paired_table)} "
             f"resolved at the 95% level on n = {int(paired_table.n.max())} images"
             + (":" if len(resolved) else ".")]
    lines += [f"* {r.method} - {r.minus}, {r.metric}: {r.difference:+.4f} [{r.low:+.4f}, {r.high:+.4f}]"
              for r in resolved.itertuples()]
    last = sanity[sanity.step == sanity.step.max()]
    means = last.groupby("method", sort=False)[["spearman", "ssim"]].mean()
    lines.append("\n**Sanity check** (Fig. 8): after randomising up to "
                 f"`{last['randomised up to'].iloc[0]}`, mean similarity to the trained maps: "
                 + "; ".join(f"{m} Spearman {r.spearman:.3f}, SSIM {r.ssim:.3f}" for m, r in means.iterrows())
                 + f" (on {last.image_id.nunique()} image{'s' if last.image_id.nunique() != 1 else ''}).")
    if layer != model_layer:
        lines.append(f"\n**Layer**: these tables use `{layer}`, not the model's CAM layer `{model_layer}`; the layer "
                     "check (below Table 3) says what that changes, so a Score-CAM ordering here is about the layer "
                     "as much as the method.")
    return "\n".join(lines)
