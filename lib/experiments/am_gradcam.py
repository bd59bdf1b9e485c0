"""Notebook 01's experiments: attention-map-guided Grad-CAM (An & Joe, 2022), Tables 3-4 and Fig. 7.

The notebook calls one function per step of the paper's experiment section:

* :func:`validation_set` / :func:`attention_for_run`: the seeded evaluation images, and the
  attention's weights (a checkpoint, or trained here by :mod:`lib.train_am_gradcam`);
* :func:`make_cams` and :func:`evaluate`: every method's per-image Average Drop, Increase in
  Confidence (Eqs. 8-9) and class probability of the masked image for the predicted class, for
  L-CAM's soft ``phi_nu`` masks and the paper's binary top-x% masks (Sec. 4.2): the rows of the
  pipeline's evaluation shards (:mod:`lib.evaluation`), or computed here when run alone;
* :func:`table3`, :func:`table3_extended`, :func:`table4`, :func:`paired_vs_gradcam`: tidy tables of
  numbers (:func:`lib.analysis.tables.summarize` / :func:`~lib.analysis.tables.paired`), with the
  paper's values as a column;
* :func:`percentage_in_figure`, :func:`overview_figure`, :func:`fig7_figures`: the figures;
* :func:`check_results`, :func:`key_numbers`, :func:`findings_markdown`: the checks, the numbers
  nbval compares, and the notebook-specific conclusions rendered from the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from lib import config as _config
from lib.analysis.draws import seeded_order
from lib.analysis.map_store import MapStore
from lib.analysis.tables import display_table, paired, summarize
from lib.evaluation import SuiteSettings, ad_ic_frame, dataset_rows
from lib.cams import GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, XGradCAM
from lib.cams.attention import AMGradCAM, ParameterFreeAttention
from lib.cams.targets import resolve_targets
from lib.data import ImageFolder, collate_samples, open_dataset, verify_checksums
from lib.metrics import phi
from lib.plotting import maps_figure, metric_curve_figure, thresholded_figure
from lib.train_am_gradcam import TrainConfig, load_attention, train_attention

__all__ = ["METHODS", "BASELINES", "SOFT", "BINARY", "PAPER_T3", "PAPER_T4", "draw_ids", "validation_set",
           "attention_for_run", "make_cams", "predicted_maps", "evaluate", "per_image_table",
           "table3", "table3_extended", "table4", "paired_vs_gradcam", "show_table3", "show_table4",
           "percentage_in_figure", "overview_figure", "fig7_figures", "check_results", "key_numbers",
           "findings_markdown"]

METHODS = ["Grad-CAM", "Grad-CAM++", "SmoothGrad-CAM++", "XGrad-CAM", "AM-Grad-CAM",
           "AM-Grad-CAM (parameter-free)"]
BASELINES = METHODS[:4]
EVAL_KEYS = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcam++", "SmoothGrad-CAM++": "smoothgradcam++",
             "XGrad-CAM": "xgradcam", "AM-Grad-CAM": "amgradcam", "AM-Grad-CAM (parameter-free)": "amgradcam-free"}
"""The method keys of :mod:`lib.evaluation` (config/outputs.yaml, ``reads:`` of notebook 01)."""
SOFT = (1.0, 0.5, 0.25, 0.2, 0.15, 0.1, 0.05)  # phi_nu soft masks (L-CAM's AD/IC at 100/50/15 %)
BINARY = (0.5, 0.25, 0.2, 0.1, 0.05)  # the paper's binary top-x % masks (Sec. 4.2, Table 4)
METRIC_NAMES = {"drop": "AD", "increase": "IC", "score": "percentage in"}

PAPER_T3 = pd.DataFrame({  # the paper's Table 3 (ResNet-50, %): AD (drop) and percent increase (increase)
    "method": BASELINES + ["AM-Grad-CAM"],
    "drop": [45.27, 44.35, 44.82, 46.33, 42.52],
    "increase": [23.06, 23.15, 23.75, 22.15, 25.35],
}).melt(id_vars="method", var_name="metric", value_name="paper")

PAPER_T4 = pd.DataFrame({  # the paper's Table 4 (ResNet-50, "percentage in", no unit printed)
    "fraction": [0.05, 0.10, 0.20, 0.25, 0.50],
    "Grad-CAM": [0.2846, 0.3954, 4.5524, 6.6328, 8.9952],
    "Grad-CAM++": [0.2715, 0.3841, 4.5001, 7.1551, 8.9876],
    "SmoothGrad-CAM++": [0.4997, 0.7814, 4.8335, 6.7879, 8.7792],
    "XGrad-CAM": [0.2915, 0.4521, 4.7527, 7.6782, 8.6304],
    "AM-Grad-CAM": [1.0229, 1.2898, 5.5308, 9.5161, 11.5334],
}).melt(id_vars="fraction", var_name="method", value_name="paper")


# ----------------------------------------------------------------------------------- data, weights
def draw_ids(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """The first ``n`` ids of :func:`lib.analysis.draws.seeded_order` (all ids, sorted, when ``n <= 0``
    or ``n >= len(ids)``): the images and order of :func:`lib.data.seeded_subset`, which the trainer's
    command line uses, so a notebook and a pipeline run draw the same images."""
    return seeded_order(ids, seed)[:n] if 0 < n < len(ids) else sorted(str(i) for i in ids)


def validation_set(preprocess, val_dir: str, data_dir: str | None, n: int, seed: int):
    """The ``n`` seeded validation images of ``val_dir`` with their checksums verified, or the packaged
    photos when there is no data directory; returns ``(dataset, message)``."""
    val = open_dataset(preprocess, split=val_dir, data_dir=data_dir or None)
    if not isinstance(val, ImageFolder):
        return val, f"No data directory: {len(val)} packaged photos instead"
    ids = draw_ids(val.ids, n, seed)
    checked = verify_checksums(val.root, names=[f"images/{i}" for i in ids])
    val = ImageFolder(val.root, preprocess, ids=ids)
    return val, f"{len(val)} validation images from {val.root.name}; {checked} checksums verified"


def attention_for_run(model: nn.Module, model_name: str, checkpoint: str, train_dir: str, data_dir: str | None,
                      train_images: int, epochs: int, batch_size: int, seed: int):
    """AM-Grad-CAM's channel-spatial attention (Eqs. 6-7): loaded from ``checkpoint`` when it exists,
    else trained here by :func:`lib.train_am_gradcam.train_attention` on ``train_images`` seeded
    images of ``train_dir`` (the packaged photos without a data directory: a smoke test) and written
    to ``checkpoint`` when one is named. Returns ``(attention, history frame, message)``."""
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and not ckpt.is_absolute():
        ckpt = _config.repo_root() / ckpt
    if ckpt is not None and ckpt.exists():
        attention, state = load_attention(ckpt, next(model.parameters()).device)
        message = f"Loaded the trained attention from {checkpoint} ({state['epoch']} epochs)"
        return attention, pd.DataFrame(state["history"]), message
    root = _config.split_dir(train_dir, data_dir or None)
    if root.exists():
        ids = draw_ids(ImageFolder(root, model.preprocess).ids, train_images, seed)
        train_set = ImageFolder(root, model.preprocess, ids=ids)
    else:
        train_set = open_dataset(model.preprocess, split=train_dir, data_dir=data_dir or None)
    cfg = TrainConfig(model_name, epochs=epochs, batch_size=batch_size, seed=seed, images=train_images)
    attention, history = train_attention(model, train_set, cfg, out=ckpt)
    return attention, pd.DataFrame(history), f"Trained the attention on {len(train_set)} images for {epochs} epoch(s)"


# ------------------------------------------------------------------------------------ maps, AD / IC
def make_cams(model: nn.Module, attention: nn.Module, seed: int) -> dict:
    """The five methods of Table 3 and the parameter-free variant, in :data:`METHODS` order.
    SmoothGrad-CAM++: Grad-CAM++ maps averaged over ``4`` noisy copies, sigma ``0.3`` (TorchCAM's)."""
    return {"Grad-CAM": GradCAM(model), "Grad-CAM++": GradCAMPlusPlus(model),
            "SmoothGrad-CAM++": SmoothGradCAMPlusPlus(model, n_samples=4, noise_std=0.3, seed=seed),
            "XGrad-CAM": XGradCAM(model), "AM-Grad-CAM": AMGradCAM(model, attention),
            "AM-Grad-CAM (parameter-free)": AMGradCAM(model, ParameterFreeAttention())}


def predicted_maps(store: MapStore, cams: Mapping, images: torch.Tensor, image_ids: Sequence[str]):
    """``({method: maps [N, H, W] in [0, 1]}, targets [N])``: every method's map for the predicted
    class (ReLU'd, min-max normalised, upsampled), read from or written to ``store``."""
    model = next(iter(cams.values())).model
    with torch.no_grad():
        targets = resolve_targets(model(images), "predicted")[:, 0]
    return {name: store.maps(cam, images, list(image_ids), targets) for name, cam in cams.items()}, targets


def evaluate(model: nn.Module, model_name: str, store: MapStore, cams: Mapping, dataset, batch_size: int,
             eval_dir: str | None = None, shard_size: int = 32, seed: int = 0) -> pd.DataFrame:
    """Every method's per-image drop, increase and score (Eqs. 8-9) for the predicted class, the soft
    :data:`SOFT` and binary :data:`BINARY` masks, masking convention "image" (L-CAM's): read from the
    pipeline's evaluation shards (:func:`lib.evaluation.dataset_rows`, rows under ``eval_dir``) or computed
    here; one row per (image, method, mask), columns of :func:`lib.metrics.to_frame`."""
    keyed = {name: (EVAL_KEYS[name], cam) for name, cam in cams.items()}
    rows = dataset_rows(model, model_name, keyed, dataset, store, target="predicted", group="ad_ic",
                        eval_dir=eval_dir or None, shard_size=shard_size, seed=seed,
                        suite=SuiteSettings(batch_size=batch_size), batch_size=batch_size)
    return ad_ic_frame(rows, convention="image")


# ------------------------------------------------------------------------------------------ tables
def per_image_table(results: pd.DataFrame) -> pd.DataFrame:
    """The per-image values behind Tables 3-4 that the claims registry reads: the soft map
    (``phi_100%``) and every binary mask."""
    keep = results[results.binary | (results.fraction == 1.0)]
    return keep[["image_id", "method", "binary", "fraction", "drop", "increase", "score"]]


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Table 3: AD (mean ``drop``, t interval) and IC (rate of ``increase``, Clopper-Pearson) of the
    full soft map per method, with the paper's value (ResNet-50) in column ``paper``."""
    full = results[~results.binary & (results.fraction == 1.0)]
    return summarize(full, ["drop", "increase"], "method").merge(PAPER_T3, on=["method", "metric"], how="left")


def table3_extended(results: pd.DataFrame) -> pd.DataFrame:
    """AD and IC for every mask: soft ``phi_nu`` and the paper's binary top-x% masks."""
    return summarize(results, ["drop", "increase"], ["method", "binary", "fraction"])


def table4(results: pd.DataFrame) -> pd.DataFrame:
    """Table 4, our reading of "percentage in": the mean class probability (%) of the image kept at
    the top x% of the map, binary masks (the paper's) and soft ones; ``paper`` on the binary rows."""
    t4 = summarize(results[results.fraction.isin(BINARY)], "score", ["method", "binary", "fraction"])
    paper = PAPER_T4.assign(binary=True)
    return t4.merge(paper, on=["method", "binary", "fraction"], how="left")


def paired_vs_gradcam(results: pd.DataFrame) -> pd.DataFrame:
    """Each method minus Grad-CAM on the same images (paired t; exact McNemar for IC): AD and IC of
    the soft map (Table 3) and the percentage in of each binary mask (Table 4)."""
    rows = results[results.binary | (results.fraction == 1.0)]
    table = paired(rows, ["drop", "increase", "score"], METHODS[1:], "Grad-CAM", by=["binary", "fraction"])
    table3_rows = ~table.binary & table.metric.isin(["drop", "increase"])
    table = table[table3_rows | (table.binary & (table.metric == "score"))]
    return table.assign(item=table.binary.map({False: "Table 3", True: "Table 4"})).reset_index(drop=True)


def show_table3(t3: pd.DataFrame) -> pd.DataFrame:
    """Table 3 for reading: "mean [low, high]" of AD and IC per method, the paper's values beside."""
    cells = display_table(t3.replace({"metric": METRIC_NAMES}), "method", "metric", order=METHODS)
    paper = t3.replace({"metric": METRIC_NAMES}).pivot_table(index="method", columns="metric", values="paper")
    return cells.join(paper.add_prefix("paper ")).astype(object).fillna("")


def show_table4(t4: pd.DataFrame) -> pd.DataFrame:
    """Table 4 for reading: rows "binary 5%" .. "soft 50%", then the paper's rows; methods as columns."""
    t4 = t4.assign(mask=[f"{'binary' if b else 'soft'} {f:.0%}" for b, f in zip(t4.binary, t4.fraction)])
    cells = display_table(t4, "mask", "method", order=[r for b in (True, False) for r in
                                                       dict.fromkeys(t4[t4.binary == b]["mask"])])
    paper = PAPER_T4.pivot_table(index="fraction", columns="method", values="paper")
    paper.index = [f"the paper's {f:.0%}" for f in paper.index]
    return pd.concat([cells, paper]).reindex(columns=METHODS).astype(object).fillna("")


# ----------------------------------------------------------------------------------------- figures
def percentage_in_figure(t4: pd.DataFrame) -> plt.Figure:
    """Table 4 as curves: our binary-mask percentage in per method with its interval, the paper's dashed."""
    ours = t4[t4.binary].rename(columns={"mean": "probability", "low": "ci_low", "high": "ci_high"})
    paper = PAPER_T4.rename(columns={"paper": "probability"})
    return metric_curve_figure(ours, "fraction", "probability", "method", "class probability (%)", paper=paper)


def overview_figure(model: nn.Module, store: MapStore, cams: Mapping, dataset, n: int = 4):
    """Every method's map over the first ``n`` images: ``(figure, images, maps, titles)``."""
    show = next(iter(torch.utils.data.DataLoader(dataset, batch_size=min(n, len(dataset)), collate_fn=collate_samples)))
    images = show.images.to(next(model.parameters()).device)
    maps, targets = predicted_maps(store, cams, images, show.image_ids)
    titles = [f"{i[:22]}\npred: {model.categories[t][:18]}" for i, t in zip(show.image_ids, targets.tolist())]
    fig = maps_figure(images.cpu(), {k: v.cpu() for k, v in maps.items()}, titles)
    return fig, images, maps, titles


def fig7_figures(images: torch.Tensor, maps: Mapping[str, torch.Tensor], titles: Sequence[str],
                 count: int = 2) -> list[plt.Figure]:
    """Fig. 7 for the first ``count`` images: rows methods, columns the image kept at the top 5, 10,
    20, 25, 50% (binary masks); a figure saying so where the run has fewer images."""
    figs = []
    for i in range(count):
        if i >= len(images):
            fig, ax = plt.subplots(figsize=(4, 1))
            ax.axis("off")
            ax.text(0.5, 0.5, f"this run evaluated {len(images)} image(s): no image {i + 1} to show", ha="center")
            figs.append(fig)
            continue
        masks = {name: {f: phi(maps[name][i:i + 1], f, binary=True)[0].cpu() for f in sorted(BINARY)} for name in maps}
        figs.append(thresholded_figure(images[i].cpu(), masks, title=titles[i].replace("\n", " | ")))
    return figs


# ------------------------------------------------------------------------ checks and conclusions
def check_results(results: pd.DataFrame, n_images: int, attention: nn.Module) -> str:
    """Raise unless every method has every image, all values are finite percentages, and the trained
    attention has moved from its zero initialisation (where it *is* Grad-CAM)."""
    assert results.groupby("method").image_id.nunique().eq(n_images).all(), "a method misses images"
    values = results[["drop", "increase", "score"]]
    assert values.notna().all().all() and ((values >= 0) & (values <= 100)).all().all(), "values outside [0, 100]"
    moved = any(float(p.detach().abs().sum()) > 0 for p in attention.spatial.conv.parameters())
    assert moved, "the trained attention is still at its zero initialisation"
    full = results[~results.binary & (results.fraction == 1.0)]
    wide = full.pivot_table(index="image_id", columns="method", values="drop")
    gap = (wide["XGrad-CAM"] - wide["Grad-CAM"]).abs().max()
    return f"checks passed; max |AD(XGrad-CAM) - AD(Grad-CAM)| per image: {gap:.2e}"


def key_numbers(t3: pd.DataFrame, t4: pd.DataFrame) -> dict:
    """``{method: {"AD": .., "IC": .., "pin 5%": .., "pin 20%": .., "pin 50%": ..}}``: Table 3's means and
    Table 4's binary percentage in at three thresholds, per method (30 numbers)."""
    out = {m: {} for m in METHODS}
    for row in t3.itertuples():
        out[row.method][METRIC_NAMES[row.metric]] = row.mean
    for row in t4[t4.binary & t4.fraction.isin([0.05, 0.2, 0.5])].itertuples():
        out[row.method][f"pin {row.fraction:.0%}"] = row.mean
    return out


def _span(values) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"


def _difference(row) -> str:
    """``"+d [low, high] (resolved)"`` of a :func:`paired` row; tiny differences in scientific notation."""
    size = max(abs(v) for v in (row.difference, row.low, row.high) if pd.notna(v))
    spec = "+.1e" if 0 < size < 0.005 else "+.2f"
    shown = f" [{row.low:{spec}}, {row.high:{spec}}]" if pd.notna(row.low) else f" ({row.note})"
    return f"{row.difference:{spec}}{shown} ({'resolved' if row.resolved else 'not resolved'})"


def findings_markdown(t3: pd.DataFrame, pairs: pd.DataFrame, claims: pd.DataFrame, run: str) -> str:
    """The notebook-specific conclusions, every number from the tables: levels beside the paper's,
    XGrad-CAM and both AM-Grad-CAM variants against Grad-CAM (paired, "resolved" when the test
    rejects 0), and the count of the registry's verdicts on the Table 3 and Table 4 claims."""
    ours = t3.pivot_table(index="method", columns="metric", values="mean").loc[BASELINES]
    paper = PAPER_T3.pivot_table(index="method", columns="metric", values="paper").loc[BASELINES]
    soft = pairs[pairs.item == "Table 3"].set_index(["method", "metric"])

    def diff(method: str, metric: str) -> str:
        return _difference(soft.loc[(method, metric)])

    verdicts = claims[claims.item.isin(["Table 3", "Table 4"])].groupby("item").verdict.value_counts()
    return "\n".join([
        f"Rendered from this run ({run}).", "",
        f"* **Levels.** Our AD of the four baselines spans {_span(ours['drop'])}% (the paper's: "
        f"{_span(paper['drop'])}%, ResNet-50), IC {_span(ours['increase'])}% "
        f"(the paper's: {_span(paper['increase'])}%). Another classifier, and masks the paper does not "
        "specify: compare verdicts, not levels.",
        f"* **XGrad-CAM minus Grad-CAM**, AD per image: {diff('XGrad-CAM', 'drop')}. On a GAP + linear head "
        "the two are the same method (see \"Maps\"), so the paper's gap between them cannot come from the "
        "equations it cites.",
        f"* **Trained AM-Grad-CAM minus Grad-CAM**: AD {diff('AM-Grad-CAM', 'drop')}, "
        f"IC {diff('AM-Grad-CAM', 'increase')}. Its training objective is close to AD itself (see \"Our reading\").",
        f"* **Parameter-free attention minus Grad-CAM**: AD {diff('AM-Grad-CAM (parameter-free)', 'drop')}, "
        f"IC {diff('AM-Grad-CAM (parameter-free)', 'increase')}: the equations alone, without learned weights.",
        "* **The registry's verdicts** on the per-baseline claims (above, with Holm's adjustment): "
        + "; ".join(f"{item}: " + ", ".join(f"{n} {v}" for v, n in verdicts[item].items())
                    for item in ("Table 3", "Table 4") if item in verdicts.index) + ".",
    ])
