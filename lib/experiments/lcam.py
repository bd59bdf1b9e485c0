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

import tempfile
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
           "checkpoint_name", "seed_label", "base_name", "label_seed", "load_or_train", "moved_from_start", "labels_of",
           "SHARED", "shared_key", "evaluation_group", "primary_rows", "seed_spread", "seed_verdicts", "mask_area_tv", "area_tv_table",
           "training_curves_figure", "evaluate_ad_ic", "column_name",
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


def checkpoint_name(model_name: str, variant: str, ce_only: bool, seed: int = 0) -> str:
    """``lcam_<model>_<img|fm>_<full|ce>_s<seed>.pt``, the file the pipeline's training rules write."""
    return f"lcam_{model_name}_{variant}_{'ce' if ce_only else 'full'}_s{seed}.pt"


def seed_label(name: str, seed: int, first: int) -> str:
    """A trained method's name for one training seed: the name itself for the first seed (the notebook's
    ``seed``: its rows are Table 1's and the claims'), ``"<name> (seed <s>)"`` for the others."""
    return name if seed == first else f"{name} (seed {seed})"


def base_name(label: str) -> str:
    """``"L-CAM-Fm (seed 1)"`` -> ``"L-CAM-Fm"``; any other name as is."""
    return label.split(" (seed ")[0]


def label_seed(label: str, first: int) -> int:
    """The training seed of a :func:`seed_label` (``first`` for the bare name)."""
    return int(label.split(" (seed ")[1].rstrip(")")) if " (seed " in label else first


def load_or_train(model: nn.Module, model_name: str, checkpoint_dir: str | Path | None,
                  train_set: Callable[[], object], device: torch.device, seeds: Sequence[int] = (0,),
                  features: Mapping | None = None, **train) -> tuple[dict, pd.DataFrame]:
    """The attentions of :data:`VARIANTS` for every training seed (eval mode, on ``device``) and their
    training histories.

    Returns ``{label: attention}`` with :func:`seed_label` labels (the first seed's under the bare
    name) and one history row per method, seed and epoch (``method``, ``seed``, ``how``, the trainer's
    columns). Each is loaded from ``checkpoint_dir/`` :func:`checkpoint_name` when that file exists,
    else trained here and saved there when a folder is given: L-CAM-Img with
    :func:`lib.train_lcam.train_lcam` (``LCAMConfig(model_name, "img", ce_only, seed=s, **train)``)
    on ``train_set()`` (called once); L-CAM-Fm on cached feature maps (:mod:`lib.lcam_features`:
    ``features["views"]`` seeded views per image, then ``FeatureTrainConfig(**features["config"])``)
    when ``features`` is given, else with ``train_lcam`` like L-CAM-Img."""
    from lib.lcam_features import FeatureTrainConfig, build_feature_cache, load_feature_cache, train_on_features
    from lib.train_lcam import LCAMConfig, load_lcam, train_lcam
    attentions, rows, data, cache = {}, [], None, None
    first = seeds[0]
    for seed in seeds:
        for name, (variant, ce_only) in VARIANTS.items():
            path = Path(checkpoint_dir) / checkpoint_name(model_name, variant, ce_only, seed) if checkpoint_dir else None
            if path is not None and path.exists():
                attention, state = load_lcam(path, device)
                history, how = state["history"], f"loaded {path.name}"
            elif variant == "fm" and features is not None:
                data = train_set() if data is None else data
                if cache is None:
                    folder = Path(checkpoint_dir or tempfile.mkdtemp()) / f"lcam_features_{model_name}"
                    cache = load_feature_cache(build_feature_cache(model, data, features["views"], first, folder,
                                                                   progress=False))
                config = FeatureTrainConfig(model_name, ce_only, seed=seed, cache_views=cache.views,
                                            cache_seed=first, **features["config"])
                attention, history = train_on_features(model, cache, config, out=path, progress=False)
                how = f"trained here on {cache.views} views of {len(data)} images"
            else:
                data = train_set() if data is None else data
                config = LCAMConfig(model_name, variant, ce_only, seed=seed, **train)
                attention, history = train_lcam(model, data, config, out=path)
                how = f"trained here on {len(data)} images"
            label = seed_label(name, seed, first)
            attentions[label] = attention.to(device).eval()
            rows += [{"method": name, "seed": seed, "how": how, **row} for row in history]
    return attentions, pd.DataFrame(rows)


@torch.no_grad()
def moved_from_start(model: nn.Module, attentions: Mapping[str, LCAMAttention], probe: torch.Tensor,
                     threshold: float = UNTRAINED_BELOW, first: int = 0) -> pd.DataFrame:
    """How far training moved each attention (every seed) from its CAM start, and its label.

    The start is :meth:`LCAMAttention.from_classifier` (``L = W_c . A + b_c``, CAM before its ReLU,
    Sec. 3.3 with PROTOCOLS.md's CAM initialisation). One row per method (the base name) and seed:
    ``weight_change`` = ``|W - W0| / |W0|``, ``bias_change`` = ``|b - b0| / |b0|``, ``map_change`` =
    the largest ``max |L - L0| / (max L0 - min L0)`` over the ``probe`` images' pre-sigmoid maps (Eq. 3)
    of the predicted class, ``map_mad`` = the mean over those images of ``mean |zeta(L) - zeta(L0)|``
    (the min-max normalised low-resolution maps, as at inference: 0 = the start's map, 1 = its
    inverse); ``trained`` unless both weight and map change are below ``threshold``
    (:data:`UNTRAINED_BELOW`, reason there), and ``label``: the name, with " (untrained: = CAM start)"
    when not trained."""
    from lib.lcam_features import map_distance
    start = LCAMAttention.from_classifier(model).to(probe.device)
    features, _, predicted = forward_activations(model, probe)
    start_maps = start.class_logits(features, predicted)
    span = (start_maps.amax((2, 3)) - start_maps.amin((2, 3))).clamp_min(1e-12)
    w0, b0 = start.conv.weight, start.conv.bias
    rows = []
    for label, attention in attentions.items():
        name, seed = base_name(label), label_seed(label, first)
        maps = attention.class_logits(features, predicted)
        weight = float((attention.conv.weight - w0).norm() / w0.norm())
        moved = float(((maps - start_maps).abs().amax((2, 3)) / span).max())
        trained = not (weight < threshold and moved < threshold)
        rows.append({"method": name, "seed": seed, "weight_change": weight,
                     "bias_change": float((attention.conv.bias - b0).norm() / b0.norm().clamp_min(1e-12)),
                     "map_change": moved,
                     "map_mad": float(map_distance(attention, start, features, predicted[:, 0]).mean()),
                     "threshold": threshold, "trained": trained,
                     "label": name if trained else f"{name} (untrained: = CAM start)"})
    return pd.DataFrame(rows)


def labels_of(moved: pd.DataFrame) -> dict[str, str]:
    """Every method of :data:`METHODS` -> its label in the tables (the attentions' from ``moved``: a method
    is labelled untrained when any of its seeds is)."""
    labels = {m: m for m in METHODS}
    for name, rows in moved.groupby("method", sort=False):
        labels[name] = name if rows.trained.all() else f"{name} (untrained: = CAM start)"
    return labels


SHARED = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcam++", START: "lcam-start", "L-CAM-Fm*": "lcam-fm-ce",
          "L-CAM-Fm": "lcam-fm", "L-CAM-Img*": "lcam-img-ce", "L-CAM-Img": "lcam-img", "Score-CAM": "scorecam",
          "RISE": "rise"}
"""The methods whose rows notebook 02 reads from the pipeline's evaluation rows (:mod:`lib.evaluation`;
config/outputs.yaml ``reads:``), name -> method key of ``evaluation.methods``: Grad-CAM's and Grad-CAM++'s
are notebook 01's rows, computed once; the L-CAM keys load the train_lcam rules' checkpoints, the same
weights :func:`load_or_train` loads, so the map store serves both the same maps. Score-CAM and RISE run on
``n_slow`` images, fewer than a shard: their rows are a head of that many images (one-thread jobs of the
pipeline's parallel phase), and the map store gives the notebook their maps for Fig. 3."""


def shared_key(label: str) -> str:
    """The evaluation method key (config ``evaluation.methods``) of a method label: :data:`SHARED`'s, with
    ``-s<seed>`` for a :func:`seed_label` of another seed (``"L-CAM-Fm (seed 1)"`` -> ``"lcam-fm-s1"``)."""
    key = SHARED[base_name(label)]
    return f"{key}-s{label.split(' (seed ')[1].rstrip(')')}" if " (seed " in label else key


def evaluation_group(label: str) -> str:
    """The metric group notebook 02 reads a method's rows from (config/outputs.yaml ``reads:``): ``ad_ic`` for
    the methods notebook 01 reads too (Grad-CAM, Grad-CAM++) and for Score-CAM's and RISE's heads,
    ``ad_ic_lcam`` (the same values of Table 1's masks only) for the CAM start and the trained attentions."""
    return "ad_ic_lcam" if base_name(label) in (START, *VARIANTS) else "ad_ic"


def primary_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of every method under its own name: the trained methods' first seed (Table 1's, the claims')."""
    return results[~results.method.str.contains(" (seed ", regex=False)].reset_index(drop=True)


def seed_spread(results: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """Seed-to-seed spread of Table 1's means: per trained method and column (AD/IC at each ``nu``), the
    mean over the same images with the attention of each training seed (``seed_means``, in ``seeds``
    order), their ``seed_min``, ``seed_max`` and ``spread`` (max - min), ``seeds`` (how many) and ``n``
    (images per seed)."""
    first, rows = seeds[0], []
    trained = results[results.method.map(base_name).isin(VARIANTS)]
    for (name, fraction), group in trained.groupby([trained.method.map(base_name), "fraction"], sort=False):
        for metric in ("drop", "increase"):
            means = {label_seed(label, first): float(g[metric].mean()) for label, g in group.groupby("method")}
            values = [means[s] for s in seeds if s in means]
            rows.append({"method": name, "column": column_name(metric, fraction), "seeds": len(values),
                         "n": int(group.groupby("method").image_id.nunique().min()),
                         "seed_means": " / ".join(f"{v:.2f}" for v in values), "seed_min": min(values),
                         "seed_max": max(values), "spread": max(values) - min(values)})
    order = {m: i for i, m in enumerate(METHODS)}
    columns = [column_name(m, f) for f in FRACTIONS for m in ("drop", "increase")]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["method", "column"], key=lambda c: c.map(order) if c.name == "method" else
                             c.map({col: i for i, col in enumerate(columns)})).reset_index(drop=True)


def seed_verdicts(results: pd.DataFrame, moved: pd.DataFrame, seeds: Sequence[int],
                  notebook: str = "02_l_cam") -> pd.DataFrame:
    """The registry's verdict on every claim whose evidence is ``per_image_ad_ic.csv``, once per training
    seed: the claims are evaluated on a copy of the per-image table in which each trained method's rows
    are those of that seed's attention. Columns ``claim``, ``methods``, one ``seed <s>`` column per seed
    (the verdict) and ``agree`` (the same verdict under every seed)."""
    from lib.analysis.report import claims_reading, verdicts_on
    claims = claims_reading(notebook, "per_image_ad_ic.csv")
    first, columns = seeds[0], {}
    for seed in seeds:
        chosen = results[results.method.map(lambda m: base_name(m) not in VARIANTS or label_seed(m, first) == seed)]
        columns[f"seed {seed}"] = verdicts_on(claims, {
            "per_image_ad_ic.csv": chosen.assign(method=chosen.method.map(base_name)),
            "attention_moved.csv": moved[moved.seed == seed]})
    table = pd.DataFrame(columns)
    table.insert(0, "methods", pd.Series({c.id: " vs ".join(c.methods) for c in claims}))
    table["agree"] = table[[f"seed {s}" for s in seeds]].nunique(axis=1) == 1
    return table.rename_axis("claim").reset_index()


@torch.no_grad()
def mask_area_tv(model: nn.Module, attentions: Mapping[str, LCAMAttention], dataset, batch_size: int,
                 device: torch.device) -> pd.DataFrame:
    """Per image and attention, what the area and TV terms of the loss act on: the predicted class's
    training mask ``M = sigma(L)`` at the feature maps' size (Eq. 3), its ``area`` (mean of ``M``; the
    AV term of Eq. 7 is the mean of ``M ** 0.3``) and ``tv`` (Eq. 8 with the authors' border term,
    :func:`lib.train_lcam.tv_loss` of the one map). Includes the CAM start as :data:`START`. Rows:
    ``image_id, method, area, tv``."""
    from lib.train_lcam import tv_loss
    every = {START: LCAMAttention.from_classifier(model).to(device), **attentions}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    rows = []
    for batch in loader:
        features, _, predicted = forward_activations(model, batch.images.to(device))
        for name, attention in every.items():
            masks = torch.sigmoid(attention.class_logits(features, predicted))[:, 0]
            for image_id, mask in zip(batch.image_ids, masks):
                rows.append({"image_id": image_id, "method": name, "area": float(mask.mean()),
                             "tv": float(tv_loss(mask[None]))})
    return pd.DataFrame(rows)


def area_tv_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The masks' area and TV (:func:`mask_area_tv`): each method's mean with its interval
    (``kind="mean"``), and paired per image (``kind="paired"``): each full-loss attention minus its
    CE-only ablation (what the area and TV terms do) and every attention minus the CAM start."""
    means = summarize(frame, ["area", "tv"], "method").assign(kind="mean")
    pairs = [paired(frame, ["area", "tv"], [full], ablation) for full, ablation in
             (("L-CAM-Fm", "L-CAM-Fm*"), ("L-CAM-Img", "L-CAM-Img*")) if {full, ablation} <= set(frame.method)]
    pairs.append(paired(frame, ["area", "tv"], [m for m in VARIANTS if m in set(frame.method)], START))
    return pd.concat([means, *[p.assign(kind="paired") for p in pairs]], ignore_index=True)


def training_curves_figure(history: pd.DataFrame) -> plt.Figure:
    """Loss curves and distances from the CAM start per epoch, one line per training seed: each trained
    method's total loss (training views solid, held-out views dashed where the trainer has them), CE,
    area, TV, and the map and weight distances (L-CAM-Fm's trainer records them every epoch)."""
    panels = [("loss", "val_loss", "loss (Eq. 6)"), ("ce", "val_ce", "CE"), ("area", "val_area", "area (AV)"),
              ("tv", "val_tv", "TV"), ("map_distance", None, "map distance from CAM start"),
              ("weight_distance", None, "weight distance from CAM start")]
    methods = [m for m in VARIANTS if m in set(history.method)]
    fig, axes = plt.subplots(len(methods), len(panels), figsize=(2.6 * len(panels), 2.1 * len(methods)),
                             squeeze=False)
    for row, method in zip(axes, methods):
        rows = history[history.method == method]
        for ax, (train, held, title) in zip(row, panels):
            for seed, runs in rows.groupby("seed"):
                line = None
                if train in runs and runs[train].notna().any():
                    (line,) = ax.plot(runs.epoch, runs[train], marker=".", lw=1, label=f"seed {seed}")
                if held and held in runs and runs[held].notna().any():
                    ax.plot(runs.epoch, runs[held], ls="--", lw=1, color=line.get_color() if line else None)
            ax.set_title(f"{method}: {title}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("epoch", fontsize=7)
        row[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


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
        parts = []
        for group in ("ad_ic", "ad_ic_lcam"):
            keyed = {name: (shared_key(name), cams[name]) for name in shared if evaluation_group(name) == group}
            if keyed:
                parts.append(dataset_rows(model, model_name, keyed, dataset, store, target="predicted", group=group,
                                          eval_dir=eval_dir or None, shard_size=shard_size, seed=seed,
                                          suite=SuiteSettings(batch_size=batch_size), batch_size=batch_size))
        wide = ad_ic_frame(pd.concat(parts, ignore_index=True))
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
                         fig4: pd.DataFrame, errors: pd.DataFrame, n_images: int, n_slow: int,
                         spread: pd.DataFrame | None = None, verdicts: pd.DataFrame | None = None,
                         area_tv: pd.DataFrame | None = None) -> str:
    """The notebook's conclusions beside the claims' verdicts, every number from the tables given:
    whether training moved the attentions (every seed), what the area/TV terms did to the masks, the
    seed-to-seed spread and whether the verdicts hold under every seed, the CAM start against Grad-CAM,
    Fig. 4's scores and the errors' map similarity per group."""
    untrained = moved[~moved.trained]
    lcam = claims[claims.methods.str.contains("lcam") & (claims.verdict == "not computed")]
    seeds = moved.seed.nunique()
    lines = [f"* **Did training move L-CAM from its CAM start?** Over {len(moved)} attentions ({moved.method.nunique()} "
             f"methods x {seeds} seed(s)): relative weight change {moved.weight_change.min():.2g} to "
             f"{moved.weight_change.max():.2g}; mean absolute difference of the normalised maps from the start's "
             f"{moved.map_mad.min():.3f} to {moved.map_mad.max():.3f} (on {n_images and min(n_images, 8)} evaluation "
             f"images; threshold of 'untrained' `{UNTRAINED_BELOW:g}`): {len(untrained)} of {len(moved)} untrained"
             + (f" ({', '.join(sorted(set(untrained.method)))}); their rows are labelled \"= CAM start\" and carry no "
                "paper value." if len(untrained) else ".")]
    if len(untrained) and len(lcam):
        lines.append(f"* **Why {len(lcam)} L-CAM claims are `not computed`:** their per-image values would measure "
                     "the CAM start, not a learned attention; the registry gives no verdict on an untrained one.")
    if area_tv is not None and len(area_tv):
        pairs = area_tv[(area_tv.kind == "paired") & area_tv.minus.isin(["L-CAM-Fm*", "L-CAM-Img*"])]
        lines.append("* **Do the area and TV terms make the masks smaller and smoother?** Full loss minus its "
                     "CE-only ablation, per image (mask mean and TV of the training mask sigma(L)): " + "; ".join(
                         f"{m} {metric} {s} ({'resolved' if r else 'not resolved'})" for m, metric, s, r in zip(
                             pairs.method, pairs.metric, formatted(pairs, "difference", signed=True, digits=3),
                             pairs.resolved)) + ".")
    if spread is not None and len(spread):
        worst = spread.loc[spread.spread.idxmax()]
        lines.append(f"* **Seed-to-seed spread** ({int(spread.seeds.max())} seed(s), the same {int(spread.n.min())} "
                     f"images): the means of Table 1's trained rows differ between seeds by at most "
                     f"{spread.spread.max():.2f} points ({worst.method}, {worst.column}: {worst.seed_means}); "
                     f"median {spread.spread.median():.2f}.")
    if verdicts is not None and len(verdicts):
        decided = verdicts.filter(like="seed ").isin(["agrees", "disagrees", "not resolved"]).any(axis=1)
        computed = verdicts[decided]
        lines.append(f"* **Do the verdicts rest on one seed?** Of the {len(computed)} claims with a computed verdict "
                     "(agrees, disagrees or not resolved) under some seed, "
                     f"{int(computed.agree.sum())} get the same verdict under every seed"
                     + ("" if computed.agree.all() else " and " + ", ".join(f"`{c}`" for c in computed.claim[~computed.agree])
                        + " change with the seed (`claims_by_seed.csv`)") + ".")
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
