"""Notebook 04's summary tables: numbers from :mod:`lib.analysis.tables`, the paper's beside them.

Every table is one tidy frame: for each variant the mean of each metric with its interval
(``statistic = "mean"``, :func:`lib.analysis.tables.summarize`: Student t, Clopper-Pearson for the
pointing game's hits, none below ``MIN_N`` images) and for each compared pair the mean per-image
difference (``statistic = "difference"``, ``variant`` minus ``minus``,
:func:`lib.analysis.tables.paired`: paired t or exact McNemar), then one ``paper <column>`` per
column of the paper's table, read from the claims registry (``lib/analysis/claims/04_ucag.yaml``,
as printed; differences from those values). :func:`readable` makes the strings a reader sees.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from lib.analysis.claims import load_claims
from lib.analysis.tables import formatted, paired, summarize

from .evaluation import CENTRE
from .maps import BLUR, METHODS, RELEASED, SCALING, UCAG_NAMES

__all__ = ["REGISTRY_NAMES", "UCAG_PAIRS", "ABLATION", "summary", "paper_values", "with_paper", "table1",
           "localisation_summary", "table2", "table3", "table5", "ablation_table", "fig2_table", "readable",
           "key_numbers", "cost_table"]

REGISTRY_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "wgradcam": "LayerCAM",
                  "ucag_gradcam": "UCAG Grad-CAM", "ucag_gradcam++": "UCAG Grad-CAM++",
                  "ucag_wgradcam": "UCAG LayerCAM", "center": CENTRE, "cameras": SCALING}
"""Registry method -> our variant: LayerCAM stands in for WGradCAM, scaling-only Grad-CAM for CAMERAS."""
METRIC_COLUMNS = {"deletion_auc": "deletion", "insertion_auc": "insertion", "pointing_game": "hit",
                  "energy_pointing_game": "energy", "density_positive": "rho+", "density_negative": "rho-"}
UCAG_PAIRS = list(zip(UCAG_NAMES, METHODS))
ABLATION = ["Grad-CAM", BLUR, SCALING, "UCAG Grad-CAM", RELEASED]
ABLATION_PAIRS = [("UCAG Grad-CAM", SCALING), (BLUR, "Grad-CAM"), (RELEASED, "UCAG Grad-CAM")]
COLUMNS = ["variant", "statistic", "minus", "metric", "mean", "low", "high", "n", "p_value", "note"]


def summary(frame: pd.DataFrame, values: str | Sequence[str], pairs: Sequence[tuple[str, str]] = (),
            by: Sequence[str] = (), variants: Sequence[str] | None = None, pair_by: Sequence[str] | None = None
            ) -> pd.DataFrame:
    """Means of each variant (``variants``, default all) per group of ``by``, then each pair's
    per-image difference (first minus second) per group of ``pair_by`` (default ``by``)."""
    by, pair_by = list(by), list(by if pair_by is None else pair_by)
    chosen = frame if variants is None else frame[frame["variant"].isin(variants)]
    parts = [summarize(chosen, values, by=by + ["variant"]).assign(statistic="mean", minus="")]
    for a, b in pairs:
        diff = paired(frame, values, [a], b, by=pair_by, method_column="variant")
        parts.append(diff.rename(columns={"method": "variant", "difference": "mean"}).assign(statistic="difference"))
    table = pd.concat(parts, ignore_index=True)[by + COLUMNS]
    return table.astype({"p_value": float, "minus": str, "note": str})


def paper_values(item: str) -> pd.DataFrame:
    """The paper's values of one registry ``item`` ("Table 1" ...), one column ``paper <model>`` (with
    the data set for Tables 2-3) per column of its table: rows ``metric, variant[, subset]``."""
    rows = []
    for c in load_claims("04_ucag"):
        if c.item != item or c.metric not in METRIC_COLUMNS:
            continue
        tokens = c.id.split("-")
        dataset = next((t.upper() for t in tokens if t in ("voc07", "coco14")), None)
        subset = "difficult" if "diff" in tokens else "all" if "all" in tokens else None
        for method, value in c.paper_values.items():
            if method in REGISTRY_NAMES and isinstance(value, (int, float)):
                rows.append({"metric": METRIC_COLUMNS[c.metric], "variant": REGISTRY_NAMES[method], "subset": subset,
                             "column": f"paper {dataset + ' ' if dataset else ''}{c.model}", "value": float(value)})
    frame = pd.DataFrame(rows).drop_duplicates(["metric", "variant", "subset", "column"])
    keys = ["metric", "variant"] + (["subset"] if frame["subset"].notna().any() else [])
    wide = frame.pivot_table(index=keys, columns="column", values="value", aggfunc="first", sort=False)
    return wide[list(dict.fromkeys(frame["column"]))].reset_index()


def with_paper(table: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the paper's columns: its value on each mean row, the difference of its values
    on each difference row (``variant`` minus ``minus``)."""
    keys = [c for c in paper.columns if not c.startswith("paper ")]
    columns = [c for c in paper.columns if c.startswith("paper ")]
    lookup = paper.set_index(keys)[columns]

    def of(method_column: str) -> np.ndarray:
        index = pd.MultiIndex.from_frame(table[keys].assign(variant=table[method_column]))
        return lookup.reindex(index).to_numpy(float)

    first, second = of("variant"), of("minus")
    values = np.where(table["statistic"].eq("difference").to_numpy()[:, None], (first - second).round(3), first)
    return table.assign(**{c: values[:, k] for k, c in enumerate(columns)})


def table1(aucs: pd.DataFrame) -> pd.DataFrame:
    """Table 1: deletion and insertion AUC x 100 per model and method, with and without UCAG."""
    table = summary(aucs, ["deletion", "insertion"], UCAG_PAIRS, by=["model"], variants=METHODS + UCAG_NAMES)
    return with_paper(table, paper_values("Table 1"))


def localisation_summary(loc: pd.DataFrame, metric: str, variants: Sequence[str],
                         pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """A metric of Tables 2-3 per set and subset ('all' targets, and the 'difficult' ones)."""
    both = pd.concat([loc.assign(subset="all"), loc[loc["difficult"]].assign(subset="difficult")], ignore_index=True)
    return summary(both, metric, pairs, by=["set", "subset"], variants=variants)


def table2(loc: pd.DataFrame) -> pd.DataFrame:
    """Table 2: pointing-game accuracy (%) of the centre baseline, Grad-CAM and UCAG Grad-CAM."""
    table = localisation_summary(loc, "hit", [CENTRE, "Grad-CAM", "UCAG Grad-CAM"], [UCAG_PAIRS[0]])
    return with_paper(table, paper_values("Table 2"))


def table3(loc: pd.DataFrame) -> pd.DataFrame:
    """Table 3: energy-based pointing game (%) of the uniform baseline and the six maps."""
    table = localisation_summary(loc, "energy", [CENTRE] + METHODS + UCAG_NAMES, UCAG_PAIRS)
    return with_paper(table, paper_values("Table 3"))


def table5(density: pd.DataFrame) -> pd.DataFrame:
    """Table 5: positive and negative map densities; the paper's CAMERAS values on the scaling-only row."""
    table = summary(density, ["rho+", "rho-"], [("UCAG Grad-CAM", "Grad-CAM"), ("UCAG Grad-CAM", SCALING)],
                    variants=["Grad-CAM", SCALING, "UCAG Grad-CAM", RELEASED])
    return with_paper(table, paper_values("Table 5"))


def ablation_table(aucs: pd.DataFrame, loc: pd.DataFrame, density: pd.DataFrame, tied: pd.DataFrame) -> pd.DataFrame:
    """The ablation (scaling only vs unfolding, the count initialisation, the blur-only control) on
    one model: every metric of :data:`ABLATION`'s variants and the differences of its pairs."""
    sources = [(aucs, ["deletion", "insertion"]), (loc, ["hit", "energy"]), (density, ["rho+", "rho-"]),
               (tied, ["tied pixels (%)"])]
    return pd.concat([summary(frame, values, ABLATION_PAIRS, variants=ABLATION) for frame, values in sources],
                     ignore_index=True)


def fig2_table(scaling: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2: deletion and insertion per input side, and largest minus smallest side per image."""
    first, last = (f"{s} px" for s in (scaling["side"].min(), scaling["side"].max()))
    return summary(scaling, ["deletion", "insertion"], [(last, first)], by=["side"], pair_by=[])


def readable(table: pd.DataFrame, index: Sequence[str] = (), digits: int = 1) -> pd.DataFrame:
    """The reader's view of a table of this module: one row per variant and per difference ("A − B"),
    one column per metric ("mean [low, high]" or "mean (why no interval)"), then the paper's values."""
    keys = list(index) + ["row"]
    is_mean = table["statistic"].eq("mean")
    t = table.assign(row=np.where(is_mean, table["variant"], table["variant"] + " − " + table["minus"]))
    t["cell"] = pd.concat([formatted(t[is_mean], digits=digits), formatted(t[~is_mean], digits=digits, signed=True)])
    wide = t.pivot_table(index=keys, columns="metric", values="cell", aggfunc="first", sort=False)
    for column in [c for c in t.columns if c.startswith("paper ")]:
        paper = t.pivot_table(index=keys, columns="metric", values=column, aggfunc="first", sort=False)
        wide = wide.join(paper.rename(columns=lambda m: f"{m} ({column})"))
    order = t[keys].drop_duplicates()
    order = order.sort_values(list(index), kind="stable") if index else order
    wide = wide.reindex(pd.MultiIndex.from_frame(order) if len(keys) > 1 else order["row"].to_list())
    wide.columns.name = None
    return wide.fillna("")


def key_numbers(table1: pd.DataFrame, table2: pd.DataFrame, table3: pd.DataFrame, table5: pd.DataFrame,
                fig2: pd.DataFrame) -> dict[str, float]:
    """The means checked against ``notebooks/expected/04.json``: Table 1 (every model, variant and
    metric), Tables 2, 3 and 5 (Grad-CAM and UCAG Grad-CAM on the validation images, all targets),
    Fig. 2 (every side): ``{"<table> / <row> / <metric>": mean}``."""
    chosen = [("table1", table1, ["model", "variant"]), ("fig2", fig2, ["variant"])]
    for name, table in (("table2", table2), ("table3", table3), ("table5", table5)):
        rows = table["variant"].isin(["Grad-CAM", "UCAG Grad-CAM"])
        if "set" in table:
            rows &= table["set"].eq("ImageNet val") & table["subset"].eq("all")
        chosen.append((name, table[rows], ["variant"]))
    out = {}
    for name, table, keys in chosen:
        for row in table[table["statistic"] == "mean"].to_dict("records"):
            out[" / ".join([name, *(str(row[k]) for k in keys), row["metric"]])] = float(row["mean"])
    return out


def cost_table(timer: dict) -> pd.DataFrame:
    """Seconds per image of each step of :func:`lib.experiments.ucag.maps.joint_maps` in this run (maps
    read from the store cost nothing and are not counted; one row says so when all were)."""
    rows = [{"model": net, "step": step, "images": n, "seconds per image": round(t / n, 3)}
            for (net, step), (t, n) in timer.items()]
    if not rows:
        rows = [{"model": "", "step": "all maps read from the map store", "images": 0, "seconds per image": np.nan}]
    return pd.DataFrame(rows, columns=["model", "step", "images", "seconds per image"])
