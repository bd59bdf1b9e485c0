"""Notebook 01's experiments: attention-map-guided Grad-CAM (An & Joe, 2022), Tables 3-4 and Fig. 7.

The notebook calls one function per step of the paper's experiment section:

* :func:`validation_set` / :func:`load_or_train`: the seeded evaluation images, and the attention's
  weights for each training objective of :mod:`lib.train_am_gradcam` (:data:`OBJECTIVE_NAMES`:
  ``masked-image``, close to the Average Drop metric itself, and ``feature-ce``, which never sees a
  masked image) and each training seed, from the pipeline's checkpoints or trained here;
* :func:`make_cams` and :func:`evaluate`: every method's per-image Average Drop, Increase in
  Confidence (Eqs. 8-9) and class probability of the masked image for the predicted class, for
  L-CAM's soft ``phi_nu`` masks and the paper's binary top-x% masks (Sec. 4.2): the rows of the
  pipeline's evaluation shards (:mod:`lib.evaluation`; method keys :func:`eval_key`), or computed
  here when run alone;
* :func:`table3`, :func:`table3_extended`, :func:`table4`, :func:`paired_vs_gradcam`: tidy tables of
  numbers (:func:`lib.analysis.tables.summarize` / :func:`~lib.analysis.tables.paired`) of each
  method's first training seed (:func:`primary_rows`: both objectives beside the baselines), with the
  paper's values as a column;
* :func:`seed_spread` and :func:`attention_verdicts`: the seed-to-seed spread of those means per
  objective, and the claims registry's verdicts with each (objective, seed) attention standing in as
  AM-Grad-CAM;
* :func:`percentage_in_figure`, :func:`overview_figure`, :func:`fig7_figures`: the figures;
* :func:`check_results`, :func:`key_numbers`, :func:`findings_markdown`: the checks, the numbers
  nbval compares, and the notebook-specific conclusions rendered from the tables.

Labels: the attention of an objective's first training seed is the method :data:`OBJECTIVE_NAMES`
names (``"AM-Grad-CAM"`` for ``masked-image``: the rows the claims registry reads); another seed's
is ``"<name> (seed <s>)"`` (:func:`lib.experiments.lcam.seed_label`, as in notebook 02).
"""

from __future__ import annotations

import ast
import re
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
from lib.analysis.tables import display_table, formatted, paired, summarize
from lib.evaluation import SuiteSettings, ad_ic_frame, dataset_rows
from lib.cams import GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, XGradCAM
from lib.cams.attention import AMGradCAM, ParameterFreeAttention
from lib.cams.targets import resolve_targets
from lib.data import ImageFolder, collate_samples, open_dataset, verify_checksums
from lib.experiments.lcam import base_name, label_seed, seed_label
from lib.metrics import phi
from lib.plotting import maps_figure, metric_curve_figure, thresholded_figure
from lib.train_am_gradcam import OBJECTIVES, TrainConfig, load_attention, train_attention

__all__ = ["METHODS", "BASELINES", "OBJECTIVE_NAMES", "FEATURE_CE", "KEY_METHODS", "EVAL_KEYS", "SOFT", "BINARY",
           "PAPER_T3", "PAPER_T4", "PER_IMAGE_FORMAT", "SPREAD_COLUMNS", "draw_ids", "validation_set", "seed_list",
           "checkpoint_name", "seed_label", "base_name", "label_seed", "objective_of", "eval_key", "training_set",
           "load_or_train", "make_cams", "predicted_maps", "evaluate", "primary_rows", "per_image_table", "table3",
           "table3_extended", "table4", "paired_vs_gradcam", "show_table3", "show_table4", "seed_spread",
           "attention_verdicts", "percentage_in_figure", "overview_figure", "fig7_figures", "check_results",
           "key_numbers", "findings_markdown"]

OBJECTIVE_NAMES = {"masked-image": "AM-Grad-CAM", "feature-ce": "AM-Grad-CAM (feature CE)"}
""":data:`lib.train_am_gradcam.OBJECTIVES` -> the method name of that objective's attention (first training
seed). ``masked-image`` (the trainer's default, close to AD itself) is the paper's method in the tables and
the claims registry; ``feature-ce`` (the classifier's head on the attention-gated features) stands beside it."""
FEATURE_CE = OBJECTIVE_NAMES["feature-ce"]
METHODS = ["Grad-CAM", "Grad-CAM++", "SmoothGrad-CAM++", "XGrad-CAM", "AM-Grad-CAM", FEATURE_CE,
           "AM-Grad-CAM (parameter-free)"]
"""The methods of the tables (each trained attention's first seed), in display order."""
BASELINES = METHODS[:4]
KEY_METHODS = [m for m in METHODS if m != FEATURE_CE]
"""The methods whose means :func:`key_numbers` gives (the names notebooks/expected/01.json stores)."""
EVAL_KEYS = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcam++", "SmoothGrad-CAM++": "smoothgradcam++",
             "XGrad-CAM": "xgradcam", "AM-Grad-CAM": "amgradcam", FEATURE_CE: "amgradcam-fce",
             "AM-Grad-CAM (parameter-free)": "amgradcam-free"}
"""The method keys of :mod:`lib.evaluation` (config/outputs.yaml, ``reads:`` of notebook 01) of the first
seed's labels; :func:`eval_key` adds ``-s<seed>`` for the others (``amgradcam-s1``, ``amgradcam-fce-s2``)."""
SOFT = (1.0, 0.5, 0.25, 0.2, 0.15, 0.1, 0.05)  # phi_nu soft masks (L-CAM's AD/IC at 100/50/15 %)
BINARY = (0.5, 0.25, 0.2, 0.1, 0.05)  # the paper's binary top-x % masks (Sec. 4.2, Table 4)
METRIC_NAMES = {"drop": "AD", "increase": "IC", "score": "percentage in"}
PER_IMAGE_FORMAT = "%.5g"  # per_image_ad_ic.csv's floats (the registry reads that file; attention_verdicts a copy)

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

SPREAD_COLUMNS = (("Table 3", "AD", "drop", False, 1.0), ("Table 3", "IC", "increase", False, 1.0),
                  *(("Table 4", f"pin {f:.0%}", "score", True, f) for f in sorted(BINARY)))
"""The columns :func:`seed_spread` measures: ``(item, column, metric, binary, fraction)``: Table 3's AD and IC
of the soft map and Table 4's percentage in of each binary mask."""


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


def seed_list(value) -> list[int]:
    """The training seeds of the notebook parameter ``train_seeds``: a list (``[0, 1, 2]``), one number, or
    the text papermill passes for a list given as a raw string (``"[0, 1, 2]"``, ``"0,1,2"``, ``"0 1 2"``).
    Duplicates are dropped, the order kept (the first seed's attentions are the tables' and the claims')."""
    if isinstance(value, str):
        text = value.strip()
        value = ast.literal_eval(text) if text.startswith(("[", "(")) else text.replace(",", " ").split()
    if isinstance(value, (int, float)):
        value = [value]
    seeds = list(dict.fromkeys(int(s) for s in value))
    if not seeds:
        raise ValueError(f"train_seeds {value!r} names no seed. Fix: e.g. train_seeds = [0] (or [0, 1, 2]).")
    return seeds


def checkpoint_name(model_name: str, objective: str, seed: int) -> str:
    """``am_gradcam_<model>_<objective>_s<seed>.pt``: the file the pipeline's train_am_gradcam rule writes
    (workflow/rules/common.smk ``checkpoint_path``)."""
    return f"am_gradcam_{model_name}_{objective}_s{seed}.pt"


def objective_of(label: str) -> str | None:
    """The training objective of a trained attention's label (``"AM-Grad-CAM (feature CE) (seed 1)"`` ->
    ``"feature-ce"``); ``None`` for any other method."""
    return {name: objective for objective, name in OBJECTIVE_NAMES.items()}.get(base_name(label))


def eval_key(label: str) -> str:
    """The evaluation method key (config ``evaluation.methods``) of a method label: :data:`EVAL_KEYS`'s,
    with ``-s<seed>`` for a seed label (``"AM-Grad-CAM (seed 1)"`` -> ``"amgradcam-s1"``,
    ``"AM-Grad-CAM (feature CE) (seed 2)"`` -> ``"amgradcam-fce-s2"``)."""
    key = EVAL_KEYS[base_name(label)]
    return f"{key}-s{label.split(' (seed ')[1].rstrip(')')}" if " (seed " in label else key


def training_set(preprocess, train_dir: str, data_dir: str | None, images: int, seed: int):
    """The trainer's images: ``images`` seeded images of ``train_dir`` (every image, sorted, for ``0``),
    drawn as ``python -m lib.train_am_gradcam --images N --seed S`` draws them; the packaged photos when the
    folder does not exist (a smoke test)."""
    root = _config.split_dir(train_dir, data_dir or None)
    if root.exists():
        return ImageFolder(root, preprocess, ids=draw_ids(ImageFolder(root, preprocess).ids, images, seed))
    return open_dataset(preprocess, split=train_dir, data_dir=data_dir or None)


def load_or_train(model: nn.Module, model_name: str, checkpoint_dir: str | Path | None, train_dir: str,
                  data_dir: str | None, train_images: int, epochs: int, batch_size: int, seeds: Sequence[int] = (0,),
                  objectives: Sequence[str] = OBJECTIVES) -> tuple[dict, pd.DataFrame, str]:
    """AM-Grad-CAM's channel-spatial attention (Eqs. 6-7) for every training objective and seed.

    Each is loaded from ``checkpoint_dir/`` :func:`checkpoint_name` when that file exists (its stored
    objective and seed must match the name), else trained here by :func:`lib.train_am_gradcam.train_attention`
    (``TrainConfig(model_name, epochs, batch_size, seed=s, images=train_images, objective=o)`` on
    :func:`training_set`'s images, drawn with that seed as the trainer's command line draws them) and saved
    there when a folder is given. A relative ``checkpoint_dir`` is under the repository root.

    Returns ``({label: attention}, history, message)``: labels :func:`seed_label` of
    :data:`OBJECTIVE_NAMES` (the first seed's under the bare name), in seed then objective order, each in
    eval mode on the model's device; one history row per objective, seed and epoch (``method``,
    ``objective``, ``seed``, ``how``, the trainer's columns); a one-line summary."""
    unknown = [o for o in objectives if o not in OBJECTIVE_NAMES]
    if unknown:
        raise ValueError(f"Unknown AM-Grad-CAM objective(s) {unknown}. Fix: any of {', '.join(OBJECTIVE_NAMES)}.")
    seeds = seed_list(seeds)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    if folder is not None and not folder.is_absolute():
        folder = _config.repo_root() / folder
    device = next(model.parameters()).device
    attentions, rows, loaded, trained = {}, [], 0, 0
    for seed in seeds:
        for objective in objectives:
            path = folder / checkpoint_name(model_name, objective, seed) if folder is not None else None
            if path is not None and path.exists():
                attention, state = load_attention(path, device)
                stored = state.get("config") or {}
                if (stored.get("objective"), stored.get("seed", seed)) != (objective, seed):
                    raise ValueError(f"{path} holds an attention trained with objective {stored.get('objective')!r}, "
                                     f"seed {stored.get('seed')}, not {objective!r}, seed {seed}. Fix: delete it "
                                     "(the pipeline's train_am_gradcam rule rewrites it) or point checkpoint_dir "
                                     "elsewhere.")
                history, how, loaded = state["history"], f"loaded {path.name} ({state['epoch']} epochs)", loaded + 1
            else:
                data = training_set(model.preprocess, train_dir, data_dir, train_images, seed)
                cfg = TrainConfig(model_name, epochs=epochs, batch_size=batch_size, seed=seed, images=train_images,
                                  objective=objective)
                attention, history = train_attention(model, data, cfg, out=path)
                how, trained = f"trained here on {len(data)} images, {epochs} epoch(s)", trained + 1
            label = seed_label(OBJECTIVE_NAMES[objective], seed, seeds[0])
            attentions[label] = attention.to(device).eval()
            rows += [{"method": OBJECTIVE_NAMES[objective], "objective": objective, "seed": seed, "how": how, **row}
                     for row in history]
    where = f" ({folder})" if folder is not None else ""
    message = (f"{len(attentions)} attention(s): {len(objectives)} objective(s) x {len(seeds)} seed(s) {seeds}; "
               f"{loaded} loaded from checkpoints{where}, {trained} trained here")
    return attentions, pd.DataFrame(rows), message


# ------------------------------------------------------------------------------------ maps, AD / IC
def make_cams(model: nn.Module, attentions: Mapping[str, nn.Module], seed: int) -> dict:
    """The baselines of Table 3, AM-Grad-CAM with every trained attention of ``attentions`` (labels of
    :func:`load_or_train`) and the parameter-free variant: :data:`METHODS` first, in that order (those of
    them ``attentions`` has), then the other seeds' labels. SmoothGrad-CAM++: Grad-CAM++ maps averaged
    over ``4`` noisy copies, sigma ``0.3`` (TorchCAM's)."""
    cams = {"Grad-CAM": GradCAM(model), "Grad-CAM++": GradCAMPlusPlus(model),
            "SmoothGrad-CAM++": SmoothGradCAMPlusPlus(model, n_samples=4, noise_std=0.3, seed=seed),
            "XGrad-CAM": XGradCAM(model)}
    cams |= {name: AMGradCAM(model, attentions[name]) for name in OBJECTIVE_NAMES.values() if name in attentions}
    cams["AM-Grad-CAM (parameter-free)"] = AMGradCAM(model, ParameterFreeAttention())
    return cams | {label: AMGradCAM(model, a) for label, a in attentions.items() if label not in cams}


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
    here; one row per (image, method, mask), columns of :func:`lib.metrics.to_frame`. Each method's
    rows are those of its key :func:`eval_key` (the seed labels' too)."""
    keyed = {name: (eval_key(name), cam) for name, cam in cams.items()}
    rows = dataset_rows(model, model_name, keyed, dataset, store, target="predicted", group="ad_ic",
                        eval_dir=eval_dir or None, shard_size=shard_size, seed=seed,
                        suite=SuiteSettings(batch_size=batch_size), batch_size=batch_size)
    return ad_ic_frame(rows, convention="image")


# ------------------------------------------------------------------------------------------ tables
def primary_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of every method under its own name: each trained attention's first seed (the tables', the
    claims'); the other seeds' (``"<name> (seed <s>)"``) left out."""
    return results[~results.method.str.contains(" (seed ", regex=False)].reset_index(drop=True)


def per_image_table(results: pd.DataFrame) -> pd.DataFrame:
    """The per-image values behind Tables 3-4: the soft map (``phi_100%``) and every binary mask, of every
    label (every objective and seed; the claims registry reads the ``"AM-Grad-CAM"`` rows: masked-image,
    first seed). Write it with ``float_format=``:data:`PER_IMAGE_FORMAT`."""
    keep = results[results.binary | (results.fraction == 1.0)]
    return keep[["image_id", "method", "binary", "fraction", "drop", "increase", "score"]]


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Table 3: AD (mean ``drop``, t interval) and IC (rate of ``increase``, Clopper-Pearson) of the
    full soft map per method (:func:`primary_rows`), with the paper's value (ResNet-50) in column ``paper``."""
    results = primary_rows(results)
    full = results[~results.binary & (results.fraction == 1.0)]
    return summarize(full, ["drop", "increase"], "method").merge(PAPER_T3, on=["method", "metric"], how="left")


def table3_extended(results: pd.DataFrame) -> pd.DataFrame:
    """AD and IC for every mask: soft ``phi_nu`` and the paper's binary top-x% masks (:func:`primary_rows`)."""
    return summarize(primary_rows(results), ["drop", "increase"], ["method", "binary", "fraction"])


def table4(results: pd.DataFrame) -> pd.DataFrame:
    """Table 4, our reading of "percentage in": the mean class probability (%) of the image kept at
    the top x% of the map, binary masks (the paper's) and soft ones; ``paper`` on the binary rows
    (:func:`primary_rows`)."""
    results = primary_rows(results)
    t4 = summarize(results[results.fraction.isin(BINARY)], "score", ["method", "binary", "fraction"])
    paper = PAPER_T4.assign(binary=True)
    return t4.merge(paper, on=["method", "binary", "fraction"], how="left")


def paired_vs_gradcam(results: pd.DataFrame) -> pd.DataFrame:
    """Each method minus Grad-CAM on the same images (paired t; exact McNemar for IC): AD and IC of
    the soft map (Table 3) and the percentage in of each binary mask (Table 4); :func:`primary_rows`."""
    results = primary_rows(results)
    rows = results[results.binary | (results.fraction == 1.0)]
    methods = [m for m in METHODS[1:] if m in set(rows.method)]
    table = paired(rows, ["drop", "increase", "score"], methods, "Grad-CAM", by=["binary", "fraction"])
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


def seed_spread(results: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """Seed-to-seed spread of the trained attentions' means, per objective and column of
    :data:`SPREAD_COLUMNS` (Table 3's AD and IC of the soft map, Table 4's percentage in per binary mask):
    the mean over the same images with the attention of each training seed (``seed_means``, in ``seeds``
    order), their mean ``seed_mean``, ``seed_min``, ``seed_max`` and ``spread`` (max - min), ``seeds`` (how
    many), ``n`` (images per seed) and ``gradcam``: Grad-CAM's mean on those images (so
    ``gradcam - seed_max`` .. ``gradcam - seed_min`` is the range of AD gains over the seeds)."""
    seeds, rows = seed_list(seeds), []
    first = seeds[0]
    for item, column, metric, binary, fraction in SPREAD_COLUMNS:
        cell = results[(results.binary == binary) & (results.fraction == fraction)]
        reference = cell[cell.method == "Grad-CAM"]
        for objective, name in OBJECTIVE_NAMES.items():
            group = cell[cell.method.map(base_name) == name]
            if group.empty:
                continue
            means = {label_seed(label, first): float(g[metric].mean()) for label, g in group.groupby("method")}
            values = [means[s] for s in seeds if s in means]
            images = set(group.image_id)
            rows.append({"method": name, "objective": objective, "item": item, "column": column, "seeds": len(values),
                         "n": int(group.groupby("method").image_id.nunique().min()),
                         "seed_means": " / ".join(f"{v:.2f}" for v in values),
                         "seed_mean": sum(values) / len(values), "seed_min": min(values), "seed_max": max(values),
                         "spread": max(values) - min(values),
                         "gradcam": float(reference[reference.image_id.isin(images)][metric].mean())
                         if len(reference) else float("nan")})
    return pd.DataFrame(rows, columns=["method", "objective", "item", "column", "seeds", "n", "seed_means", "seed_mean",
                                       "seed_min", "seed_max", "spread", "gradcam"])


def attention_verdicts(results: pd.DataFrame, seeds: Sequence[int],
                       notebook: str = "01_attention_map_gradcam") -> pd.DataFrame:
    """The registry's verdict on every claim of ``notebook`` whose evidence is ``per_image_ad_ic.csv``, once
    per (objective, seed) attention: each time the claims are evaluated (:func:`lib.analysis.evidence.evaluate`,
    Holm's adjustment over those claims, as in ``claims.csv``) on a copy of :func:`per_image_table` in
    which the ``"AM-Grad-CAM"`` rows are that attention's and no other trained attention's rows remain.

    Columns ``claim``, ``item``, ``methods``, one ``"<objective> s<seed>"`` column per attention (the
    verdict; ``"masked-image s<first>"`` is ``claims.csv``'s), ``agree_<objective>`` (the same verdict under
    every seed of that objective) and ``agree_objectives`` (the two objectives give the same verdict at each
    seed both have). Attentions missing from ``results`` get no column."""
    from lib.analysis.report import claims_reading, verdicts_on
    claims = claims_reading(notebook, "per_image_ad_ic.csv")
    seeds, table = seed_list(seeds), per_image_table(results)
    trained = table.method.map(objective_of).notna()
    columns, present = {}, {}
    for objective, name in OBJECTIVE_NAMES.items():
        for seed in seeds:
            label = seed_label(name, seed, seeds[0])
            if label not in set(table.method):
                continue
            chosen = pd.concat([table[~trained], table[table.method == label].assign(method="AM-Grad-CAM")])
            columns[f"{objective} s{seed}"] = verdicts_on(claims, {"per_image_ad_ic.csv": chosen},
                                                          float_format=PER_IMAGE_FORMAT)
            present.setdefault(objective, []).append(seed)
    out = pd.DataFrame(columns, index=pd.Index([c.id for c in claims], name="claim"))
    out.insert(0, "methods", pd.Series({c.id: " vs ".join(c.methods) for c in claims}))
    out.insert(0, "item", pd.Series({c.id: c.item for c in claims}))
    for objective, done in present.items():
        out[f"agree_{objective}"] = out[[f"{objective} s{s}" for s in done]].nunique(axis=1) == 1
    both = [s for s in seeds if all(s in done for done in present.values())] if len(present) > 1 else []
    out["agree_objectives"] = (pd.concat([out[[f"{o} s{s}" for o in present]].nunique(axis=1) == 1 for s in both],
                                         axis=1).all(axis=1) if both else False)
    return out.reset_index()


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
def check_results(results: pd.DataFrame, n_images: int, attentions: Mapping[str, nn.Module]) -> str:
    """Raise unless every method has every image, all values are finite percentages, and every trained
    attention (``{label: attention}``) has moved from its zero initialisation (where it *is* Grad-CAM)."""
    assert results.groupby("method").image_id.nunique().eq(n_images).all(), "a method misses images"
    values = results[["drop", "increase", "score"]]
    assert values.notna().all().all() and ((values >= 0) & (values <= 100)).all().all(), "values outside [0, 100]"
    still = [label for label, attention in attentions.items()
             if not any(float(p.detach().abs().sum()) > 0 for p in attention.spatial.conv.parameters())]
    assert not still, f"the trained attention of {', '.join(still)} is still at its zero initialisation"
    full = results[~results.binary & (results.fraction == 1.0)]
    wide = full.pivot_table(index="image_id", columns="method", values="drop")
    gap = (wide["XGrad-CAM"] - wide["Grad-CAM"]).abs().max()
    return (f"checks passed ({len(attentions)} trained attention(s) moved); max |AD(XGrad-CAM) - AD(Grad-CAM)| "
            f"per image: {gap:.2e}")


def key_numbers(t3: pd.DataFrame, t4: pd.DataFrame) -> dict:
    """``{method: {"AD": .., "IC": .., "pin 5%": .., "pin 20%": .., "pin 50%": ..}}``: Table 3's means and
    Table 4's binary percentage in at three thresholds, per method of :data:`KEY_METHODS` (30 numbers; the
    feature-ce attention's are not among them: notebooks/expected/01.json would need them first)."""
    out = {m: {} for m in KEY_METHODS}
    for row in t3[t3.method.isin(KEY_METHODS)].itertuples():
        out[row.method][METRIC_NAMES[row.metric]] = row.mean
    for row in t4[t4.binary & t4.fraction.isin([0.05, 0.2, 0.5]) & t4.method.isin(KEY_METHODS)].itertuples():
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


def _gain_sentence(soft: pd.DataFrame, spread: pd.DataFrame | None) -> str:
    """How much of the masked-image objective's AD gain over Grad-CAM remains with the feature-ce objective:
    from the first seed's paired differences (``soft``: Table 3 rows of :func:`paired_vs_gradcam` indexed by
    method and metric), the share only when the masked-image gain is resolved (else it is noise over noise);
    and the range of both gains over the seeds from ``spread`` (:func:`seed_spread`) when it has several."""
    masked_row, feature_row = (soft.loc[(OBJECTIVE_NAMES[o], "drop")] for o in ("masked-image", "feature-ce"))
    masked, feature = -masked_row.difference, -feature_row.difference
    if masked <= 0 or not masked_row.resolved:
        text = (f"The masked-image objective has no resolved AD gain over Grad-CAM in this run: AD "
                f"{_difference(masked_row)}. There is no gain to split into what training on the metric brings "
                f"and what remains without it (feature-ce: AD {_difference(feature_row)}).")
    else:
        ratio = feature / masked
        text = (f"Of the masked-image objective's AD gain over Grad-CAM, {masked:.2f} points, the feature-ce "
                f"objective, which never sees a masked image, keeps {feature:+.2f} points ({ratio:.0%}"
                + ("" if feature_row.resolved else "; its own difference from Grad-CAM is not resolved") + "): ")
        if ratio < 0:
            text += (f"its AD is {-feature:.2f} points above Grad-CAM's, so without training on the masked image "
                     "there is no gain at all: all of it comes with the objective that trains on the AD metric itself.")
        elif ratio <= 1:
            text += (f"the other {masked - feature:.2f} points ({1 - ratio:.0%}) come only with the objective that "
                     "trains on the image times the map, i.e. on the AD metric itself, and are in that sense by "
                     "construction.")
        else:
            text += "none of the gain needs training on the metric itself."
    if spread is not None and len(spread) and int(spread.seeds.max()) > 1:
        ad = spread[spread.column == "AD"].set_index("objective")
        ranges = [f"{o} {row.gradcam - row.seed_max:+.2f} to {row.gradcam - row.seed_min:+.2f}"
                  for o, row in ad.iterrows()]
        text += (f" Over the {int(ad.seeds.max())} training seeds, Grad-CAM's AD minus each seed's: "
                 + "; ".join(ranges) + " points.")
    return text


def findings_markdown(t3: pd.DataFrame, pairs: pd.DataFrame, claims: pd.DataFrame, run: str,
                      spread: pd.DataFrame | None = None, verdicts: pd.DataFrame | None = None) -> str:
    """The notebook-specific conclusions, every number from the tables: levels beside the paper's,
    XGrad-CAM, both trained objectives and the parameter-free variant against Grad-CAM (paired, "resolved"
    when the test rejects 0), how much of the masked-image objective's AD gain remains with feature-ce,
    the seed-to-seed spread (:func:`seed_spread`), whether the verdicts change with the seed or the
    objective (:func:`attention_verdicts`), and the count of the registry's verdicts on the Table 3 and
    Table 4 claims."""
    ours = t3.pivot_table(index="method", columns="metric", values="mean").loc[BASELINES]
    paper = PAPER_T3.pivot_table(index="method", columns="metric", values="paper").loc[BASELINES]
    soft = pairs[pairs.item == "Table 3"].set_index(["method", "metric"])
    level = t3[t3.metric == "drop"].assign(shown=lambda t: formatted(t)).set_index("method").shown

    def diff(method: str, metric: str) -> str:
        return _difference(soft.loc[(method, metric)])

    verdicts_t34 = claims[claims.item.isin(["Table 3", "Table 4"])].groupby("item").verdict.value_counts()
    lines = [
        f"Rendered from this run ({run}).", "",
        f"* **Levels.** Our AD of the four baselines spans {_span(ours['drop'])}% (the paper's: "
        f"{_span(paper['drop'])}%, ResNet-50), IC {_span(ours['increase'])}% "
        f"(the paper's: {_span(paper['increase'])}%). Another classifier, and masks the paper does not "
        "specify: compare verdicts, not levels.",
        f"* **XGrad-CAM minus Grad-CAM**, AD per image: {diff('XGrad-CAM', 'drop')}. On a GAP + linear head "
        "the two are the same method (see \"Maps\"), so the paper's gap between them cannot come from the "
        "equations it cites.",
        f"* **Trained AM-Grad-CAM minus Grad-CAM**: AD {diff('AM-Grad-CAM', 'drop')}, "
        f"IC {diff('AM-Grad-CAM', 'increase')}. Its training objective (masked-image) is close to AD itself "
        "(see \"Our reading\").",
    ]
    if (FEATURE_CE, "drop") in soft.index:
        lines += [
            f"* **Feature-ce minus Grad-CAM**: AD {diff(FEATURE_CE, 'drop')}, IC {diff(FEATURE_CE, 'increase')}. "
            "This objective never sees a masked image. AD of the soft map (first seed, mean [95% interval]): "
            f"Grad-CAM {level['Grad-CAM']}, masked-image (`AM-Grad-CAM`) {level['AM-Grad-CAM']}, feature-ce "
            f"(`{FEATURE_CE}`) {level[FEATURE_CE]}.",
            "* **How much of the AD gain is by construction?** " + _gain_sentence(soft, spread),
        ]
    lines.append(f"* **Parameter-free attention minus Grad-CAM**: AD {diff('AM-Grad-CAM (parameter-free)', 'drop')}, "
                 f"IC {diff('AM-Grad-CAM (parameter-free)', 'increase')}: the equations alone, without learned weights.")
    if spread is not None and len(spread):
        ad = spread[spread.column == "AD"]
        worst = spread.loc[spread.spread.idxmax()]
        if int(spread.seeds.max()) > 1:
            lines.append(f"* **Seed-to-seed spread** ({int(spread.seeds.max())} training seeds, the same "
                         f"{int(spread.n.min())} images): AD of the soft map with each seed's attention: "
                         + "; ".join(f"{o} {m} (spread {s:.2f})" for o, m, s in zip(ad.objective, ad.seed_means, ad.spread))
                         + f". The largest spread of any Table 3/4 mean: {worst.spread:.2f} points ({worst.objective}, "
                         f"{worst.column}: {worst.seed_means}); `seed_spread.csv`.")
        else:
            lines.append("* **Seed-to-seed spread:** one training seed in this run, so none measured (the pipeline "
                         "trains `notebook01.train_seeds` of config/config.yaml).")
    if verdicts is not None and len(verdicts):
        columns = [c for c in verdicts.columns if re.fullmatch(rf"(?:{'|'.join(OBJECTIVE_NAMES)}) s\d+", c)]
        decided = verdicts[verdicts[columns].isin(["agrees", "disagrees", "not resolved"]).any(axis=1)]
        counts = "; ".join(f"{c}: " + ", ".join(f"{n} {v}" for v, n in verdicts[c].value_counts().items())
                           for c in columns)
        several = [o for o in OBJECTIVE_NAMES if sum(c.startswith(f"{o} s") for c in columns) > 1]
        clauses = [f"{int(decided[f'agree_{o}'].sum())} keep it under every seed of {o}" for o in several]
        if sum(f"agree_{o}" in verdicts for o in OBJECTIVE_NAMES) > 1:
            changed = decided.claim[~decided.agree_objectives]
            clauses.append(f"{int(decided.agree_objectives.sum())} get the same verdict from both objectives"
                           + ("" if changed.empty else " (not: " + ", ".join(f"`{c}`" for c in changed.head(8))
                              + (", ..." if len(changed) > 8 else "") + ")"))
        lines.append(
            f"* **Do the verdicts rest on one seed or one objective?** The {len(verdicts)} claims read from "
            "`per_image_ad_ic.csv`, evaluated with each attention standing in as AM-Grad-CAM "
            f"(`claims_by_attention.csv`): {counts}."
            + (f" Of the {len(decided)} with a computed verdict under some attention, " + ", ".join(clauses) + "."
               if clauses else ""))
    lines.append("* **The registry's verdicts** on the per-baseline claims (above, with Holm's adjustment): "
                 + "; ".join(f"{item}: " + ", ".join(f"{n} {v}" for v, n in verdicts_t34[item].items())
                             for item in ("Table 3", "Table 4") if item in verdicts_t34.index) + ".")
    return "\n".join(lines)
