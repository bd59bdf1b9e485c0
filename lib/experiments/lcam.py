"""Notebook 02 (L-CAM, Gkartzonika, Gkalelis & Mezaris 2022): its experiments, moved out of the notebook.

* :func:`load_or_train`: the four attentions of Table 1 (L-CAM-Fm, L-CAM-Img and their CE-only
  ablations L-CAM-Fm*, L-CAM-Img*), from checkpoints or trained on the frozen classifier.
* :func:`moved_from_start` / :data:`UNTRAINED_BELOW`: how far training moved each attention from its
  CAM start, and the label its rows get ("L-CAM-Fm (untrained: = CAM start)" below the threshold).
* :func:`evaluate_ad_ic`: per-image AD/IC terms (Eqs. 10-11) of every method, maps from the map store;
  every method's rows read from the pipeline's evaluation rows (:data:`SHARED`): the one-pass methods'
  (Grad-CAM, Grad-CAM++, the CAM start and the four trained attentions) from its shards, Score-CAM's and
  RISE's from a head of ``n_slow`` images (:func:`lib.evaluation.part_names`).
* :func:`table1` / :func:`paper_table1` / :func:`paired_differences`: Table 1 as numbers, the paper's
  Table 1 from the claims registry, and the paired differences to the CAM start and to Grad-CAM.
* :func:`composite_draw` / :func:`class_specific_scores`: Fig. 4 scored on two-class composites.
* :func:`search_errors` / :func:`errors_figure` / :func:`bias_figure`: Figs. 5-9 (classification errors).
* :func:`conclusions_markdown`: the notebook's conclusions, rendered from those tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from lib.analysis.claims import load_claims
from lib.analysis.draws import composite_pairs
from lib.analysis.tables import display_table, formatted, paired, summarize
from lib.cams.activation import find_last_linear, forward_activations
from lib.cams.lcam import LCAMAttention
from lib.data import ImageFolder, collate_samples
from lib.evaluation import SuiteSettings, ad_ic_frame, dataset_rows
from lib.inference import forward_logits
from lib.metrics import average_drop_increase, energy_pointing_game, pointing_game, to_frame
from lib.metrics import spearman_rank_correlation
from lib.plotting import maps_figure, overlay

__all__ = ["VARIANTS", "START", "BASELINES", "METHODS", "FRACTIONS", "UNTRAINED_BELOW", "PAPER_NAMES",
           "checkpoint_name", "load_or_train", "moved_from_start", "labels_of", "SHARED", "evaluate_ad_ic", "column_name",
           "table1", "table1_shown", "paper_table1", "paired_differences", "fig3_figure", "composite_draw",
           "class_specific_scores", "fig4_figure", "class_neighbour_rank", "search_errors", "errors_figure",
           "bias_figure", "key_numbers", "conclusions_markdown"]

VARIANTS = {"L-CAM-Fm*": ("fm", True), "L-CAM-Fm": ("fm", False), "L-CAM-Img*": ("img", True),
            "L-CAM-Img": ("img", False)}
"""Table 1's attentions: method name -> (architecture: Eq. 4 "fm" or Eq. 5 "img", CE-only loss)."""
START = "CAM (L-CAM start)"
BASELINES = ("Grad-CAM", "Grad-CAM++", "Score-CAM", "RISE")
METHODS = (*BASELINES, START, *VARIANTS)
FRACTIONS = (1.0, 0.5, 0.15)
UNTRAINED_BELOW = 1e-3
"""An attention is *untrained* (equal to its CAM start) when both its relative weight change
``|W - W0| / |W0|`` and its largest map change ``max |L - L0| / range(L0)`` are below this. Reason:
a map that moved less than a thousandth of its range changes the min-max normalised soft mask
``phi_nu(V)`` of the AD/IC protocol by less than a quarter of one 8-bit grey level (1/255), so the
masked images, hence AD/IC, are those of the CAM start; the paper's trained numbers describe a
different map and must not be printed beside such a row."""
PAPER_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM", "rise": "RISE",
               "lcam_fm_ce": "L-CAM-Fm*", "lcam_fm": "L-CAM-Fm", "lcam_img_ce": "L-CAM-Img*",
               "lcam_img": "L-CAM-Img", "lcam_img_7x7": "L-CAM-Img†"}
"""The claims registry's method names -> the names of Table 1 here."""
_PAPER_HALVES = {"lcam-t1-vgg16-all": "VGG-16", "lcam-t1-r50-all": "ResNet-50"}


def checkpoint_name(model_name: str, variant: str, ce_only: bool) -> str:
    """``lcam_<model>_<img|fm>_<full|ce>.pt``, the file ``python -m lib.train_lcam`` (and the pipeline) writes."""
    return f"lcam_{model_name}_{variant}_{'ce' if ce_only else 'full'}.pt"


def load_or_train(model: nn.Module, model_name: str, checkpoint_dir: str | Path | None,
                  train_set: Callable[[], object], device: torch.device, **train) -> tuple[dict, pd.DataFrame]:
    """The attentions of :data:`VARIANTS` (eval mode, on ``device``) and their training history.

    Each is loaded from ``checkpoint_dir/`` :func:`checkpoint_name` when that file exists, else
    trained (:func:`lib.train_lcam.train_lcam`, config ``LCAMConfig(model_name, variant, ce_only,
    **train)``) on ``train_set()`` (called once) and saved there when a folder is given. The history
    has one row per method and epoch, with ``how`` (loaded or trained)."""
    from lib.train_lcam import LCAMConfig, load_lcam, train_lcam
    attentions, rows, data = {}, [], None
    for name, (variant, ce_only) in VARIANTS.items():
        path = Path(checkpoint_dir) / checkpoint_name(model_name, variant, ce_only) if checkpoint_dir else None
        if path is not None and path.exists():
            attention, state = load_lcam(path, device)
            history, how = state["history"], f"loaded {path.name}"
        else:
            data = train_set() if data is None else data
            config = LCAMConfig(model_name, variant, ce_only, **train)
            attention, history = train_lcam(model, data, config, out=path)
            how = f"trained here on {len(data)} images"
        attentions[name] = attention.to(device).eval()
        rows += [{"method": name, "how": how, **row} for row in history]
    return attentions, pd.DataFrame(rows)


@torch.no_grad()
def moved_from_start(model: nn.Module, attentions: Mapping[str, LCAMAttention], probe: torch.Tensor,
                     threshold: float = UNTRAINED_BELOW) -> pd.DataFrame:
    """How far training moved each attention from its CAM start, and its label.

    The start is :meth:`LCAMAttention.from_classifier` (``L = W_c . A + b_c``, CAM before its ReLU,
    Sec. 3.3 with PROTOCOLS.md's CAM initialisation). Per method: ``weight_change`` =
    ``|W - W0| / |W0|``, ``bias_change`` = ``|b - b0| / |b0|``, ``map_change`` = the largest
    ``max |L - L0| / (max L0 - min L0)`` over the ``probe`` images' pre-sigmoid maps (Eq. 3) of the
    predicted class; ``trained`` unless both weight and map change are below ``threshold``
    (:data:`UNTRAINED_BELOW`, reason there), and ``label``: the name, with " (untrained: = CAM start)"
    when not trained."""
    start = LCAMAttention.from_classifier(model).to(probe.device)
    features, _, predicted = forward_activations(model, probe)
    start_maps = start.class_logits(features, predicted)
    span = (start_maps.amax((2, 3)) - start_maps.amin((2, 3))).clamp_min(1e-12)
    w0, b0 = start.conv.weight, start.conv.bias
    rows = []
    for name, attention in attentions.items():
        maps = attention.class_logits(features, predicted)
        weight = float((attention.conv.weight - w0).norm() / w0.norm())
        moved = float(((maps - start_maps).abs().amax((2, 3)) / span).max())
        trained = not (weight < threshold and moved < threshold)
        rows.append({"method": name, "weight_change": weight,
                     "bias_change": float((attention.conv.bias - b0).norm() / b0.norm().clamp_min(1e-12)),
                     "map_change": moved, "threshold": threshold, "trained": trained,
                     "label": name if trained else f"{name} (untrained: = CAM start)"})
    return pd.DataFrame(rows)


def labels_of(moved: pd.DataFrame) -> dict[str, str]:
    """Every method of :data:`METHODS` -> its label in the tables (the attentions' from ``moved``)."""
    return {m: m for m in METHODS} | dict(zip(moved["method"], moved["label"]))


SHARED = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcam++", START: "lcam-start", "L-CAM-Fm*": "lcam-fm-ce",
          "L-CAM-Fm": "lcam-fm", "L-CAM-Img*": "lcam-img-ce", "L-CAM-Img": "lcam-img", "Score-CAM": "scorecam",
          "RISE": "rise"}
"""The methods whose rows notebook 02 reads from the pipeline's evaluation rows (:mod:`lib.evaluation`;
config/outputs.yaml ``reads:``), name -> method key of ``evaluation.methods``: Grad-CAM's and Grad-CAM++'s
are notebook 01's rows, computed once; the L-CAM keys load the train_lcam rules' checkpoints, the same
weights :func:`load_or_train` loads, so the map store serves both the same maps. Score-CAM and RISE run on
``n_slow`` images, fewer than a shard: their rows are a head of that many images (one-thread jobs of the
pipeline's parallel phase), and the map store gives the notebook their maps for Fig. 3."""


def evaluate_ad_ic(model: nn.Module, cams: Mapping[str, Callable], dataset, store, batch_size: int,
                   device: torch.device, fractions: Sequence[float] = FRACTIONS, shared: Sequence[str] = (),
                   model_name: str = "", eval_dir: str | None = None, shard_size: int = 64,
                   seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Per-image AD/IC terms (Eqs. 10-11, soft ``phi_nu``, [0, 1] image masked) of every CAM in
    ``cams`` for the predicted class, and the first batch's images, targets, ids and maps.

    Maps come from ``store`` (:class:`lib.analysis.map_store.MapStore`); the unmasked probability is
    computed once per batch and shared by the methods. The methods named in ``shared`` (keys of
    :data:`SHARED`) are read from the evaluation rows instead (:func:`lib.evaluation.dataset_rows`: the
    pipeline's shards under ``eval_dir``, or computed there when missing). Rows: :func:`lib.metrics.to_frame`'s."""
    own = {name: cam for name, cam in cams.items() if name not in shared}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    frames, first = [], None
    for batch in tqdm(loader, desc=", ".join(cams)[:40], unit="batch"):
        images = batch.images.to(device)
        with torch.no_grad():
            targets = model(images).argmax(1)
        original, maps = None, {}
        for name, cam in (cams if first is None else own).items():  # the first batch's maps: every method's
            maps[name] = store.maps(cam, images, batch.image_ids, targets)
            if name not in own:
                continue
            result = average_drop_increase(model, images, maps[name], targets, fractions=fractions,
                                           batch_size=batch_size, original=original)
            original = result["original"] / 100
            frames.append(to_frame(result, batch.image_ids, method=name))
        if first is None:
            first = {"images": images.cpu(), "targets": targets.cpu(), "ids": list(batch.image_ids),
                     "maps": {k: v.cpu() for k, v in maps.items()}}
    if shared:
        keyed = {name: (SHARED[name], cams[name]) for name in shared}
        rows = dataset_rows(model, model_name, keyed, dataset, store, target="predicted", group="ad_ic",
                            eval_dir=eval_dir or None, shard_size=shard_size, seed=seed,
                            suite=SuiteSettings(batch_size=batch_size), batch_size=batch_size)
        wide = ad_ic_frame(rows)
        frames.insert(0, wide[~wide.binary & wide.fraction.isin([float(f) for f in fractions])])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), first


def column_name(metric: str, fraction: float) -> str:
    """``"AD100"``, ``"IC15"``: Table 1's column of a metric (drop/increase) at a fraction."""
    return ("AD" if metric == "drop" else "IC") + str(int(round(fraction * 100)))


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 (both halves), from the claims registry: ``backbone, method, column, value``."""
    claims = {c.id: c for c in load_claims("l-cam")}
    return pd.DataFrame([{"backbone": half, "method": PAPER_NAMES[m], "column": col, "value": float(v)}
                         for cid, half in _PAPER_HALVES.items()
                         for m, cols in claims[cid].paper_values.items() for col, v in cols.items()])


def table1(results: pd.DataFrame, moved: pd.DataFrame, forward_passes: Mapping[str, int]) -> pd.DataFrame:
    """Table 1 as numbers: per method and column (AD/IC at each ``nu``) :func:`lib.analysis.tables.summarize`'s
    ``mean, low, high, n, note``, the method's ``label``, ``forward_passes`` and the paper's value per
    backbone (``paper_VGG-16``, ``paper_ResNet-50``). An untrained attention (``moved``) gets no paper
    value: the paper's numbers are of a trained one."""
    s = summarize(results, ["drop", "increase"], ["method", "fraction"])
    s.insert(2, "column", [column_name(m, f) for m, f in zip(s.metric, s.fraction)])
    labels, untrained = labels_of(moved), set(moved.method[~moved.trained])
    s.insert(1, "label", s.method.map(labels))
    s["forward_passes"] = s.method.map(forward_passes)
    paper = paper_table1().pivot_table(index=["method", "column"], columns="backbone", values="value")
    for backbone in paper.columns:
        values = [paper[backbone].get((m, c)) for m, c in zip(s.method, s.column)]
        s[f"paper_{backbone}"] = [float("nan") if m in untrained or v is None else v for m, v in zip(s.method, values)]
    order = {m: i for i, m in enumerate(METHODS)}
    return s.sort_values(["method", "fraction", "metric"], key=lambda c: c.map(order) if c.name == "method" else
                         (-c if c.name == "fraction" else c)).reset_index(drop=True)


def paired_differences(results: pd.DataFrame, moved: pd.DataFrame) -> pd.DataFrame:
    """Per image, each attention minus its CAM start (what training changed) and each attention and
    the start minus Grad-CAM (Table 1's comparison), for AD and IC at every ``nu``
    (:func:`lib.analysis.tables.paired`), with each method's label and Table 1's column name."""
    frames = [paired(results, ["drop", "increase"], list(VARIANTS), START, by="fraction"),
              paired(results, ["drop", "increase"], [START, *VARIANTS], "Grad-CAM", by="fraction")]
    t = pd.concat(frames, ignore_index=True)
    t.insert(2, "label", t.method.map(labels_of(moved)))
    t.insert(4, "column", [column_name(m, f) for m, f in zip(t.metric, t.fraction)])
    order = {m: i for i, m in enumerate(METHODS)} | {START: -1}  # what training changed first, then vs Grad-CAM
    return t.sort_values(["minus", "method", "fraction", "metric"], key=lambda c: c.map(order) if c.name in (
        "minus", "method") else (-c if c.name == "fraction" else c)).reset_index(drop=True)


def fig3_figure(shown: dict, slow_shown: dict, labels: Mapping[str, str], categories: Sequence[str],
                k: int = 4) -> plt.Figure:
    """Fig. 3: the first ``k`` images (as many as Score-CAM and RISE have) with every method's map."""
    k = min(k, len(shown["ids"]), len(slow_shown["ids"]))
    maps = {**shown["maps"], **slow_shown["maps"]}
    titles = [f"{i[:20]}\npred: {categories[t][:18]}" for i, t in zip(shown["ids"][:k], shown["targets"][:k].tolist())]
    return maps_figure(shown["images"][:k], {labels[m]: maps[m][:k] for m in METHODS if m in maps}, titles, size=1.7)


def composite_draw(model: nn.Module, dataset, n_pairs: int, batch_size: int, device: torch.device
                   ) -> list[tuple[str, str]]:
    """Up to ``n_pairs`` pairs of ``dataset`` ids (in its order) for Fig. 4's composites: images the
    model classifies correctly, each class used once (:func:`lib.analysis.draws.composite_pairs`)."""
    index, seen = {i: k for k, i in enumerate(dataset.ids)}, set()

    def keep(ids: list[str]) -> list[bool]:
        batch = collate_samples([dataset[index[i]] for i in ids])
        with torch.no_grad():
            predicted = model(batch.images.to(device)).argmax(1).cpu().tolist()
        out = []
        for label, p in zip(batch.labels.tolist(), predicted):
            out.append(p == label and label not in seen)
            seen.add(label) if out[-1] else None
        return out
    return composite_pairs(dataset.ids, dataset.labels, n_pairs, keep=keep, chunk=batch_size)


def class_specific_scores(cams: Mapping[str, Callable], batch, methods: Sequence[str]
                          ) -> tuple[pd.DataFrame, dict]:
    """Fig. 4 scored: for each composite of ``batch`` (two classes side by side, boxes known) and
    each of its two classes, the map of that class; per composite the energy in the class's own
    half (energy-based pointing game) averaged over its two classes, ``hit_rate`` (pointing game, 15 px
    tolerance) and ``both_hit``. Returns that frame (one row per method and composite) and the maps
    ``{(method, "left"|"right"): [N, H, W]}``."""
    frames, class_maps = [], {}
    for name in methods:
        for side, k in (("left", 0), ("right", 1)):
            targets = torch.stack([b[k] for b in batch.box_labels]).to(batch.images.device)
            maps = cams[name](batch.images, targets)
            class_maps[(name, side)] = maps.cpu()
            frames.append(pd.DataFrame({"method": name, "side": side, "composite": batch.image_ids,
                                        "energy": energy_pointing_game(maps, batch.boxes, batch.box_labels, targets)[
                                            "energy"].cpu().numpy(),
                                        "hit": pointing_game(maps, batch.boxes, batch.box_labels, targets)[
                                            "hits"].cpu().numpy().astype(float)}))
    per = pd.concat(frames).groupby(["method", "composite"], sort=False)
    scores = per.agg(energy=("energy", "mean"), hit_rate=("hit", "mean"), both_hit=("hit", "min")).reset_index()
    return scores, class_maps


def fig4_figure(images: torch.Tensor, class_maps: dict, box_labels: Sequence[torch.Tensor],
                categories: Sequence[str], labels: Mapping[str, str], methods=("Grad-CAM", "L-CAM-Img"),
                n: int = 2) -> plt.Figure:
    """Fig. 4: composites (rows) with each method's map for the left and the right class."""
    n = min(n, len(images))
    fig, axes = plt.subplots(n, 1 + 2 * len(methods), figsize=(1.9 * (1 + 2 * len(methods)), 1.9 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].cpu().permute(1, 2, 0).clamp(0, 1).numpy())
        for j, (name, k) in enumerate([(m, k) for m in methods for k in (0, 1)], start=1):
            axes[i, j].imshow(overlay(images[i].cpu(), class_maps[(name, ("left", "right")[k])][i]))
            axes[i, j].set_title(f"{labels[name][:24]}\n{categories[int(box_labels[i][k])][:16]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def class_neighbour_rank(model: nn.Module) -> torch.Tensor:
    """``[C, C]``: rank of class ``j`` among the classes nearest to class ``i`` (0 = nearest other class) by
    the cosine of their rows in the classifier's final linear layer (relatedness without WordNet)."""
    _, fc = find_last_linear(model)
    weights = torch.nn.functional.normalize(fc.weight.detach().float(), dim=1)
    similarity = weights @ weights.T
    similarity.fill_diagonal_(-2.0)
    return similarity.argsort(dim=1, descending=True).argsort(dim=1)


def search_errors(model: nn.Module, cam: Callable, dataset, categories: Sequence[str], batch_size: int,
                  device: torch.device, related: int = 10) -> tuple[pd.DataFrame, list]:
    """Figs. 5-6: every misclassified image of ``dataset``, with ``group`` "related classes" when the
    predicted class is among the ``related`` nearest of the true one (:func:`class_neighbour_rank`) and
    the Spearman correlation of ``cam``'s maps for the true and the predicted class. Returns the frame
    and, per row, ``(image, map of the true class, map of the predicted class)`` on the CPU."""
    rank = class_neighbour_rank(model).to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    rows, keep = [], []
    for batch in tqdm(loader, desc="searching errors", unit="batch"):
        images = batch.images.to(device)
        with torch.no_grad():
            probs = forward_logits(model, images).softmax(1)
        pred, truth = probs.argmax(1), batch.labels.to(device)
        wrong = (pred != truth).nonzero().flatten()
        if len(wrong) == 0:
            continue
        x, t, p = images[wrong], truth[wrong], pred[wrong]
        m_true, m_pred = cam(x, t), cam(x, p)
        rho = spearman_rank_correlation(m_true, m_pred)
        for j, w in enumerate(wrong.tolist()):
            r = int(rank[t[j], p[j]])
            rows.append({"image_id": batch.image_ids[w], "true": categories[int(t[j])],
                         "predicted": categories[int(p[j])], "p(predicted)": float(probs[w, p[j]]),
                         "p(true)": float(probs[w, t[j]]), "neighbour rank": r + 1,
                         "group": "related classes" if r < related else "unrelated classes", "spearman": float(rho[j])})
            keep.append((x[j].cpu(), m_true[j].cpu(), m_pred[j].cpu()))
    columns = ["image_id", "true", "predicted", "p(predicted)", "p(true)", "neighbour rank", "group", "spearman"]
    return pd.DataFrame(rows, columns=columns), keep


def _none_found(title: str, what: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.4, 1.4))
    ax.text(0.5, 0.5, f"{what}: none found in this sample", ha="center", va="center", fontsize=9)
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return fig


def errors_figure(frame: pd.DataFrame, keep: list, title: str, n: int) -> plt.Figure:
    """Rows: the first ``n`` errors of ``frame``; columns: image, map of the true class, of the predicted
    class. Without errors: one panel saying none were found (the file is written in every run)."""
    sel = frame.head(n)
    if sel.empty:
        return _none_found(title, "misclassified images of this group")
    fig, axes = plt.subplots(len(sel), 3, figsize=(5.4, 1.9 * len(sel)), squeeze=False)
    for r, (i, row) in enumerate(sel.iterrows()):
        image, m_true, m_pred = keep[i]
        axes[r, 0].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[r, 1].imshow(overlay(image, m_true))
        axes[r, 2].imshow(overlay(image, m_pred))
        axes[r, 0].set_ylabel(f"rho {row['spearman']:.2f}", fontsize=8)
        axes[r, 1].set_title(f"true: {row['true'][:18]}", fontsize=8)
        axes[r, 2].set_title(f"pred: {row['predicted'][:18]}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def bias_figure(model: nn.Module, cam: Callable, dataset, classes: Sequence[str], device: torch.device
                ) -> tuple[plt.Figure, list[str]]:
    """Figs. 7-9: every image of ``dataset`` whose label is one of ``classes`` (the paper's bias
    classes), with ``cam``'s map of its true class and the prediction; the ids shown. A data set without
    labels by id, or without such images, gives a panel saying so."""
    categories = list(model.categories)
    wanted = {categories.index(c) for c in classes if c in categories}
    ids = [i for i in dataset.ids if dataset.labels[i] in wanted] if isinstance(dataset, ImageFolder) else []
    if not ids:
        return _none_found("Figs. 7-9 analogue", f"images of {', '.join(classes)}"), ids
    batch = collate_samples([dataset[dataset.ids.index(i)] for i in ids])
    images = batch.images.to(device)
    with torch.no_grad():
        pred = model(images).argmax(1)
    maps = cam(images, batch.labels.to(device)).cpu()
    fig, axes = plt.subplots(1, len(ids), figsize=(1.9 * len(ids), 2.3), squeeze=False)
    for j in range(len(ids)):
        axes[0, j].imshow(overlay(images[j].cpu(), maps[j]))
        axes[0, j].set_title(f"{categories[int(batch.labels[j])][:14]}\npred: {categories[int(pred[j])][:14]}",
                             fontsize=7)
        axes[0, j].set_xticks([]), axes[0, j].set_yticks([])
    fig.tight_layout()
    return fig, ids


def key_numbers(t1: pd.DataFrame, fig4: pd.DataFrame) -> dict:
    """The notebook's checked numbers: Table 1's AD100, IC100 and AD15 means per method, Fig. 4's energy
    and both-hit rate per method (names ``table1 / <method> / AD100``, ``fig4 / <method> / energy``)."""
    main = t1[t1.column.isin(["AD100", "IC100", "AD15"])]
    values = {f"table1 / {m} / {c}": float(v) for m, c, v in zip(main.method, main.column, main["mean"])}
    values |= {f"fig4 / {m} / {c}": float(v) for m, c, v in zip(fig4.method, fig4.metric, fig4["mean"])
               if c in ("energy", "both_hit")}
    return values


def conclusions_markdown(moved: pd.DataFrame, claims: pd.DataFrame, differences: pd.DataFrame,
                         fig4: pd.DataFrame, errors: pd.DataFrame, n_images: int, n_slow: int) -> str:
    """The notebook's conclusions beside the claims' verdicts, every number from the tables given:
    whether training moved the attentions (and so why the L-CAM claims have no computed verdict), the
    CAM start against Grad-CAM, Fig. 4's scores and the errors' map similarity per group."""
    untrained = moved[~moved.trained]
    lcam = claims[claims.methods.str.contains("lcam") & (claims.verdict == "not computed")]
    lines = [f"* **Did training move L-CAM from its CAM start?** Relative weight change "
             f"{moved.weight_change.min():.1e} to {moved.weight_change.max():.1e}, largest map change "
             f"{moved.map_change.max():.1e} of the map's range (threshold `{UNTRAINED_BELOW:g}`): "
             f"{len(untrained)} of {len(moved)} attentions are untrained"
             + (f" ({', '.join(untrained.method)}); their rows are labelled \"= CAM start\" and carry no paper value."
                if len(untrained) else ".")]
    if len(untrained):
        lines.append(f"* **Why {len(lcam)} L-CAM claims are `not computed`:** their per-image values would measure "
                     f"the CAM start, not a learned attention, since {len(untrained)} of the {len(moved)} attentions did "
                     "not move; the registry wires no evidence to them until the attentions are trained (issue 20).")
    elif len(lcam):
        lines.append(f"* **Every attention moved beyond the threshold**, yet {len(lcam)} L-CAM claims have no "
                     "evidence: wire them to `per_image_ad_ic.csv` in the registry.")
    start = differences[(differences.method == START) & (differences.minus == "Grad-CAM")
                        & differences.column.isin(["AD100", "AD15"])]
    lines.append(f"* **The CAM start minus Grad-CAM** ({n_images} images; on a GAP + linear head Grad-CAM is "
                 "ReLU(CAM) up to scale): " + "; ".join(
                     f"{c} {s}" + ("" if pd.isna(low) else f" ({'resolved' if r else 'not resolved'})") for c, s, r, low
                     in zip(start.column, formatted(start, "difference", signed=True), start.resolved, start.low)) + ".")
    lines.append(f"* **Score-CAM and RISE** rest on {n_slow} image(s); compare them on "
                 "`table1_ad_ic_slow_subset.csv`, where every method is on the same images.")
    energy = fig4[fig4.metric == "energy"].sort_values("method", key=lambda c: c.map({m: i for i, m in enumerate(METHODS)}))
    lines.append("* **Fig. 4 (two classes in one image)**, energy of each class's map in its own half: "
                 + "; ".join(f"{m} {s}" for m, s in zip(energy.label, formatted(energy, digits=3))) + ".")
    groups = summarize(errors, "spearman", "group") if len(errors) else errors
    lines.append(f"* **Errors (Figs. 5-6):** {len(errors)} misclassified; Spearman of the true- and predicted-class "
                 "maps " + ("; ".join(f"{g} {s}" for g, s in zip(groups.group, formatted(groups, digits=3)))
                            if len(errors) else "not measured (none found)") + ".")
    return "\n".join(lines)


def table1_shown(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 for reading: rows the methods' labels, cells ``"m [low, high]"`` (or the note), ``#FW``, ``n``."""
    order = list(dict.fromkeys(t1.label))
    shown = display_table(t1, "label", "column", order=order)[[column_name(m, f) for f in FRACTIONS
                                                                for m in ("drop", "increase")]]
    first = t1.drop_duplicates("label").set_index("label")
    return shown.assign(**{"#FW": first.forward_passes, "n": first.n})
