"""Notebook 05, FM-G-CAM (Rammuni Silva & Bird, ``../shared/papers/fm-g-cam.txt``): its experiments.

The paper has no quantitative evaluation; its results are figures. The notebook redraws them and
measures what the paper says about them, per image, with these functions:

* data: :func:`draw` (the seeded draws: figure images, choice-of-K images, composite pairs,
  consecutive slices of one :func:`lib.analysis.draws.seeded_order`), :func:`load_images`,
  :func:`load_composites`;
* Figs. 1 and 6 (Sec. 5.1): :func:`fig1_fig6` (FM-G-CAM beside per-class Grad-CAM) with
  :func:`pairwise_correlation` and :func:`area_won` per image;
* Fig. 3 (Sec. 3.3.1) and Fig. 5 (Sec. 4): :func:`top_k_class_maps` (Eqs. 1-3 once), then
  :func:`norm_per_image` (Eq. 6's readings) and :func:`activation_per_image` (ReLU / GELU / ELU);
* the choice of K (Sec. 3.3): :func:`choice_of_k` (the k-th class against a random low-ranked class);
* beyond the paper: :func:`composite_energy` (energy per class on two-photo composites);
* tables: :func:`summary_table` (means with intervals as numbers, :func:`lib.analysis.tables.summarize`),
  :func:`composite_summary` (with :func:`lib.analysis.tables.paired`), :func:`shown` (strings for display);
* text and checks: :func:`choice_of_k_text`, :func:`findings`, :func:`key_numbers`.

Tensors stay on the model's device; tables are tidy frames of numbers (one row per image and
variant), turned into strings only by :func:`shown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from tqdm.auto import tqdm

from lib.analysis.draws import composite_pairs, seeded_order, split_draws
from lib.analysis.tables import display_table, formatted, paired, summarize
from lib.cams import FMGCAM, GradCAM, finalize_maps
from lib.cams.fmgcam import ACTIVATIONS, class_maps, fuse
from lib.cams.gradient import gradcam_map
from lib.cams.hooks import forward_with_gradients
from lib.data import CompositeDataset, ImageFolder, collate_samples, verify_checksums
from lib.data.images import load_rgb
from lib.maps import minmax_normalize, upsample
from lib.metrics import energy_pointing_game
from lib.plotting import fused_figure

__all__ = ["NORM_READINGS", "LOWER_SHARE", "NORM_CHANGE", "LIT", "RELU_CHANGE", "CHOICE_METRICS", "ENERGY",
           "VARIANTS", "Draws", "draw", "load_images", "Composites", "make_composites", "load_composites",
           "pairwise_correlation", "area_won", "lower_class_share", "fig1_fig6", "TopK", "top_k_class_maps",
           "variants_figure", "norm_per_image", "activation_variants", "activation_per_image", "choice_of_k",
           "choice_of_k_figure", "k_supported", "choice_of_k_text", "composite_energy", "composites_figure",
           "summary_table", "composite_summary", "shown", "findings", "key_numbers"]

NORM_READINGS = {"no norm": None, "Eq. 6 (default)": "eq6", "released (dim=1)": "released",
                 "per class": "class", "per pixel": "pixel"}
"""Fig. 3's columns: Eq. 6's L2 norm under each reading (:data:`lib.cams.fmgcam.NORMS`), and none."""
LOWER_SHARE, NORM_CHANGE = "energy of classes 2..K (%)", "max |change| vs no norm"
LIT, RELU_CHANGE = "image lit > 10% (%)", "max |change| vs ReLU"
AREA, CONTROL, DIFFERENCE = "area won by class k (%)", "random class in its place (%)", "difference (%)"
PROBABILITY, ACCURACY = "top-k probability (%)", "top-k accuracy (%)"
CHOICE_METRICS = [AREA, CONTROL, DIFFERENCE, PROBABILITY, ACCURACY]
ENERGY = "energy"
VARIANTS = ["uniform map", "Grad-CAM (separate)", "FM-G-CAM", "FM-G-CAM, released norm"]
"""The composites' maps: chance level, the paper's baseline, FM-G-CAM (Eq. 6) and the released norm."""


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Draws:
    """Validation ids of the figures and of the choice of K, and the composites' ``(left, right)`` pairs."""

    figure: list[str]
    choose_k: list[str]
    pairs: list[tuple[str, str]]


def draw(ids: Sequence[str], labels: Mapping[str, int], seed: int, n_figure: int, n_choose_k: int,
         n_composites: int) -> Draws:
    """The notebook's draws: consecutive slices of ``seeded_order(ids, seed)`` (figures, then the
    choice of K), then up to ``n_composites`` pairs of different labels from the rest. Raises when
    the sample has fewer than ``n_figure + n_choose_k + 2 n_composites`` images."""
    parts = split_draws(seeded_order(ids, seed), {"figure": n_figure, "choose_k": n_choose_k,
                                                  "composites": 2 * n_composites})
    return Draws(parts["figure"], parts["choose_k"], composite_pairs(parts["composites"] + parts["rest"], labels,
                                                                     n_composites))


def load_images(dataset: ImageFolder, ids: Sequence[str], preprocess, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 3, H, W]`` and labels ``[N]`` of validation ``ids`` on ``device`` (checksums verified)."""
    if not ids:
        return torch.zeros(0, 3, 224, 224, device=device), torch.zeros(0, dtype=torch.long, device=device)
    verify_checksums(dataset.root, names=[f"images/{i}" for i in ids])
    batch = collate_samples([ImageFolder(dataset.root, preprocess, ids=list(ids))[j] for j in range(len(ids))])
    return batch.images.to(device), batch.labels.to(device)


@dataclass
class Composites:
    """Two-photo composites: images ``[N, 3, H, W]``, the two classes ``[N, 2]`` (left, right), their boxes."""

    images: torch.Tensor
    targets: torch.Tensor
    boxes: list
    box_labels: list
    ids: list[str]

    def __len__(self) -> int:
        return len(self.images)


def make_composites(preprocess, photo_pairs: Sequence, device) -> Composites:
    """Composites of ``(left, right)`` photos (``(image, label)`` pairs or :class:`lib.data.Photo`)
    side by side (:class:`lib.data.CompositeDataset`), on ``device``."""
    if not photo_pairs:
        raise ValueError("no composite pairs were drawn. Fix: raise n_composites_* or use a larger sample.")
    data = CompositeDataset(preprocess, photo_pairs)
    batch = collate_samples([data[i] for i in range(len(data))])
    targets = torch.stack([torch.stack([bl[0], bl[1]]) for bl in batch.box_labels]).to(device)
    return Composites(batch.images.to(device), targets, batch.boxes, batch.box_labels, list(batch.image_ids))


def load_composites(dataset: ImageFolder, pairs: Sequence[tuple[str, str]], preprocess, device) -> Composites:
    """:func:`make_composites` of validation id ``pairs`` (their photos and labels)."""
    labels = dataset.labels
    return make_composites(preprocess, [((load_rgb(dataset.path(a)), int(labels[a])),
                                         (load_rgb(dataset.path(b)), int(labels[b]))) for a, b in pairs], device)


# ---------------------------------------------------------------------------------- Figs. 1 and 6
def pairwise_correlation(maps: torch.Tensor) -> torch.Tensor:
    """Mean Pearson r over the K(K-1)/2 pairs of each image's K maps: ``[N, K, H, W] -> [N]``
    (Fig. 6, the paper: "all four Grad-CAMs are similar"; 1 = identical maps)."""
    flat = maps.flatten(2)
    flat = flat - flat.mean(2, keepdim=True)
    flat = flat / flat.norm(dim=2, keepdim=True).clamp_min(1e-12)
    corr = flat @ flat.transpose(1, 2)  # [N, K, K]
    kk = maps.shape[1]
    upper = torch.triu(torch.ones(kk, kk, dtype=torch.bool, device=maps.device), diagonal=1)
    return corr[:, upper].mean(1)


def area_won(fused: torch.Tensor) -> torch.Tensor:
    """``[N, K, h, w]`` fused maps (Eq. 4 applied) -> ``[N, K]``: the share of the positive pixels
    that each class wins (0 where no pixel is positive)."""
    winner = fused.argmax(1)
    claimed = fused.amax(1) > 0
    counts = torch.stack([((winner == c) & claimed).flatten(1).sum(1) for c in range(fused.shape[1])], 1)
    return counts / claimed.flatten(1).sum(1, keepdim=True).clamp_min(1)


def lower_class_share(fused: torch.Tensor) -> torch.Tensor:
    """``[N, K, h, w] -> [N]``: the share of the fused maps' total energy held by the classes ranked
    2..K (Sec. 3.3.1: the norm makes "classes with relatively lower weighted activations" visible)."""
    total = fused.flatten(1).sum(1)
    return torch.where(total > 0, fused[:, 1:].flatten(1).sum(1) / total.clamp_min(1e-12), torch.zeros_like(total))


def _names(class_ids: torch.Tensor, categories: Sequence[str]) -> list[list[str]]:
    return [[categories[int(c)] for c in row] for row in class_ids]


def fig1_fig6(model, images: torch.Tensor, names: Sequence[str], k: int, categories: Sequence[str]
              ) -> tuple[plt.Figure, pd.DataFrame]:
    """Figs. 1 and 6: FM-G-CAM of the top-``k`` classes beside Grad-CAM of each, and the per-image
    table: the top classes with their probabilities, the mean pairwise r of the K Grad-CAMs and of
    FM-G-CAM's K class maps, and the share of the positive pixels each rank wins (Eq. 4, layer grid)."""
    fm = FMGCAM(model, k=k)
    expl = fm.explain(images)
    gc = GradCAM(model)(images, expl.class_ids)  # [N, K, H, W], one min-max per map
    class_names = _names(expl.class_ids, categories)
    fig = fused_figure(images, {"FM-G-CAM": expl.maps}, class_names, expl.probabilities, per_class=gc)
    won = 100 * area_won(fm.explain(images, size=None).maps).cpu()
    table = pd.DataFrame({
        "image": list(names),
        "top classes (p)": [", ".join(f"{n} ({float(p):.0%})" for n, p in zip(row, probs))
                            for row, probs in zip(class_names, expl.probabilities.cpu())],
        "Grad-CAM pairwise r": pairwise_correlation(gc).double().cpu().numpy(),
        "FM-G-CAM pairwise r": pairwise_correlation(expl.maps).double().cpu().numpy(),
        **{f"area won by #{c + 1} (%)": won[:, c].double().numpy() for c in range(k)},
    })
    return fig, table


# ----------------------------------------------------------------------------- Figs. 3 and 5
@dataclass
class TopK:
    """One capture of the top-K classes: unfiltered class maps ``r`` ``[N, K, h, w]`` (Eq. 3), the
    layer's activations and the K classes' gradients, class ids and probabilities ``[N, K]``."""

    r: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor
    class_ids: torch.Tensor
    probabilities: torch.Tensor


def top_k_class_maps(model, images: torch.Tensor, k: int) -> TopK:
    """Eqs. 1-3 for the top-``k`` classes: one forward and one batched backward pass."""
    captured = forward_with_gradients(model, images, f"top{k}", batched_backward=True)
    return TopK(class_maps(captured.activations, captured.gradients), captured.activations, captured.gradients,
                captured.targets, captured.logits.softmax(1).gather(1, captured.targets))


def variants_figure(images: torch.Tensor, variants: Mapping[str, torch.Tensor], top: TopK,
                    categories: Sequence[str]) -> plt.Figure:
    """Figs. 3 and 5: one column per variant of the fused maps (layer grid, upsampled to the image)."""
    size = images.shape[-2:]
    return fused_figure(images, {t: upsample(m, size).clamp(0, 1) for t, m in variants.items()},
                        _names(top.class_ids, categories), top.probabilities)


def norm_per_image(top: TopK, names: Sequence[str]) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Fig. 3: the fused maps (ReLU) under each of :data:`NORM_READINGS`, and per image and reading
    the energy share of classes 2..K (%) and the largest change from the maps without a norm."""
    by_norm = {label: fuse(top.r, "relu", norm) for label, norm in NORM_READINGS.items()}
    rows = [pd.DataFrame({"reading": label, "image": list(names),
                          LOWER_SHARE: 100 * lower_class_share(maps).cpu().numpy(),
                          NORM_CHANGE: (maps - by_norm["no norm"]).abs().flatten(1).amax(1).cpu().numpy()})
            for label, maps in by_norm.items()]
    return by_norm, pd.concat(rows, ignore_index=True)


def activation_variants(top: TopK) -> dict[str, torch.Tensor]:
    """Fig. 5: the fused maps with ReLU, GELU and ELU, under Eq. 6's norm and the released one."""
    return {f"{act.upper()} · {label}": fuse(top.r, act, norm)
            for label, norm in [("Eq. 6", "eq6"), ("released", "released")] for act in ACTIVATIONS}


def activation_per_image(variants: Mapping[str, torch.Tensor], top: TopK, names: Sequence[str]) -> pd.DataFrame:
    """Fig. 5, per image: the share of the image each FM-G-CAM variant lights above 10% of its
    maximum (%), and for Grad-CAM of the same K classes with its ReLU swapped (then its own min-max)
    the largest change from ReLU over the K maps (the paper: Grad-CAM "remains identical")."""
    rows = [pd.DataFrame({"variant": title, "image": list(names),
                          LIT: 100 * (maps.amax(1) > 0.1).flatten(1).float().mean(1).cpu().numpy()})
            for title, maps in variants.items()]
    signed = gradcam_map(top.activations, top.gradients, relu=False)  # [K, N, h, w]
    for act, f in ACTIVATIONS.items():
        change = (minmax_normalize(f(signed)) - minmax_normalize(torch.relu(signed))).abs()
        rows.append(pd.DataFrame({"variant": f"Grad-CAM · {act.upper()}", "image": list(names),
                                  RELU_CHANGE: change.transpose(0, 1).flatten(1).amax(1).cpu().numpy()}))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------------------ choice of K
def choice_of_k(model, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[str], max_k: int, seed: int,
                batch_size: int = 16) -> pd.DataFrame:
    """Sec. 3.3, per image and k = 1..``max_k``: the share of the positive pixels the k-th class wins
    when the top k are fused (Eq. 4), the same with a random class of rank >= 100 in its place (one
    per image, ``torch.Generator().manual_seed(seed)``; NaN at k = 1), their difference, the
    cumulative softmax probability of the top k and whether the label is among them (0/100).
    One forward and one batched backward pass per batch, for the top ``max_k`` and the control."""
    generator = torch.Generator().manual_seed(seed)
    added, control, cum_prob, hits = [], [], [], []
    for start in tqdm(range(0, len(images), batch_size), desc="choice of K", disable=len(images) <= batch_size):
        xb, yb = images[start:start + batch_size], labels[start:start + batch_size]
        with torch.no_grad():
            ranked = model(xb).argsort(1, descending=True)
        control_rank = torch.randint(100, ranked.shape[1], (len(xb), 1), generator=generator).to(xb.device)
        targets = torch.cat([ranked[:, :max_k], ranked.gather(1, control_rank)], 1)  # [n, max_k + 1]
        captured = forward_with_gradients(model, xb, targets, batched_backward=True)
        r = class_maps(captured.activations, captured.gradients)  # [n, max_k + 1, h, w]
        added.append(torch.stack([area_won(fuse(r[:, :kk]))[:, kk - 1] for kk in range(1, max_k + 1)], 1).cpu())
        control.append(torch.stack([area_won(fuse(torch.cat([r[:, :kk - 1], r[:, -1:]], 1)))[:, kk - 1]
                                    for kk in range(1, max_k + 1)], 1).cpu())
        cum_prob.append(captured.logits.softmax(1).gather(1, targets[:, :max_k]).cumsum(1).cpu())
        hits.append((targets[:, :max_k] == yb[:, None]).cumsum(1).clamp(max=1).float().cpu())
    added, control, cum_prob, hits = (100 * torch.cat(t) for t in (added, control, cum_prob, hits))
    difference = added - control
    control[:, 0] = difference[:, 0] = float("nan")  # k = 1: nothing to replace
    n = len(images)
    return pd.DataFrame({"image": np.repeat(list(ids), max_k), "k": np.tile(np.arange(1, max_k + 1), n),
                         AREA: added.flatten().numpy(), CONTROL: control.flatten().numpy(),
                         DIFFERENCE: difference.flatten().numpy(), PROBABILITY: cum_prob.flatten().numpy(),
                         ACCURACY: hits.flatten().numpy()})


def choice_of_k_figure(table: pd.DataFrame, k: int) -> plt.Figure:
    """The means of :func:`choice_of_k`'s summary against k, with the paper's K marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, colour, style in [(AREA, "tab:red", "-"), (CONTROL, "grey", "--"), (PROBABILITY, "tab:blue", "-"),
                                (ACCURACY, "tab:green", "-")]:
        rows = table[table["metric"] == name]
        ax.plot(rows["k"], rows["mean"], marker="o", color=colour, ls=style, label=name)
    ax.axvline(k, ls=":", color="grey", label=f"K = {k} (the paper)")
    ax.set_xlabel("k (rank of the added class = number of classes fused)")
    ax.set_ylabel("%")
    ax.legend(fontsize=7)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def k_supported(table: pd.DataFrame) -> int:
    """The largest k such that for every k' = 2..k the k'-th class wins more pixels than the random
    class in its place, by the interval of the paired difference (1 where k = 2 is not resolved)."""
    rows = table[table["metric"] == DIFFERENCE].sort_values("k")
    above = (rows["low"] > 0).to_numpy()  # NaN (no interval) counts as not resolved
    return 1 + int(np.argmin(above)) if not above.all() else 1 + len(above)


def _at(table: pd.DataFrame, metric: str, k: int) -> pd.Series:
    return table[(table["metric"] == metric) & (table["k"] == k)].iloc[0]


def _percent(row: pd.Series) -> str:
    """``"88.1 % [82.3, 93.3]"``, or ``"88.1 % (n = 8: too few ...)"`` without an interval."""
    interval = f" [{row['low']:.1f}, {row['high']:.1f}]" if pd.notna(row["low"]) else f" ({row['note']})"
    return f"{row['mean']:.1f} %{interval}"


def choice_of_k_text(table: pd.DataFrame, k: int) -> str:
    """Markdown: up to which k the added class beats the control, and the top-k probability and
    accuracy at the paper's K and there (all read from the summary of :func:`choice_of_k`)."""
    max_k = int(table["k"].max())
    diff2 = _at(table, DIFFERENCE, 2) if max_k >= 2 else None
    if diff2 is None or pd.isna(diff2["low"]):
        kk, why = k, "only k = 1 was tried" if diff2 is None else diff2["note"]
        parts = [f"No k is resolved against the random class in its place here ({why})."]
    else:
        kk = k_supported(table)
        stop = f", not at k = {kk + 1}" if kk < max_k else f" (of the {max_k} tried)"
        parts = [f"The k-th class wins more pixels than a random low-ranked class in its place (the paired "
                 f"interval above 0) for every k up to **{kk}**{stop}: by this measure K = {kk} fuses every "
                 "class that the map can tell apart from an unpredicted one."]
    for kind in dict.fromkeys([k, kk]):
        parts.append(f"The top {kind} hold {_percent(_at(table, PROBABILITY, kind))} of the probability and "
                     f"contain the true class in {_percent(_at(table, ACCURACY, kind))} of the images.")
    return " ".join(parts)


# --------------------------------------------------------------------------------- composites
def composite_energy(model, comp: Composites, batch_size: int = 16) -> pd.DataFrame:
    """Energy pointing game per (composite, class) item (``"<composite id>:<0|1>"``), in %, of each
    of :data:`VARIANTS` with both labels as targets (FM-G-CAM at K = 2). Every variant is a function
    of one forward and one batched backward pass per batch."""
    fm, fm_released, gradcam = FMGCAM(model), FMGCAM(model, norm="released"), GradCAM(model)
    rows = []
    for start in tqdm(range(0, len(comp), batch_size), desc="composites", disable=len(comp) <= batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = comp.images[sl], comp.targets[sl]
        captured = forward_with_gradients(model, xb, yb, batched_backward=True)
        size = tuple(xb.shape[-2:])
        variants = {"FM-G-CAM": upsample(fm.maps_from(captured).transpose(0, 1), size).clamp(0, 1),
                    "FM-G-CAM, released norm": upsample(fm_released.maps_from(captured).transpose(0, 1),
                                                        size).clamp(0, 1),
                    "Grad-CAM (separate)": finalize_maps(gradcam.maps_from(captured), size, True)}
        variants["uniform map"] = torch.ones_like(variants["Grad-CAM (separate)"])
        for name, maps in variants.items():
            for j in range(2):
                eg = energy_pointing_game(maps[:, j], comp.boxes[sl], comp.box_labels[sl], yb[:, j])
                rows += [{"variant": name, "item": f"{comp.ids[start + i]}:{j}", "energy": 100 * float(e)}
                         for i, e in enumerate(eg["energy"].cpu())]
    return pd.DataFrame(rows)


def composites_figure(model, comp: Composites, categories: Sequence[str], show: int = 3) -> plt.Figure:
    """FM-G-CAM of both labels beside each label's Grad-CAM, on the first ``show`` composites."""
    x, y = comp.images[:show], comp.targets[:show]
    expl = FMGCAM(model).explain(x, y)
    return fused_figure(x, {"FM-G-CAM (both labels)": expl.maps}, _names(y, categories), expl.probabilities,
                        per_class=GradCAM(model)(x, y))


# --------------------------------------------------------------------------------------- tables
def summary_table(frame: pd.DataFrame, values: Sequence[str], by: str, order: Sequence | None = None,
                  binary: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`lib.analysis.tables.summarize` of each column of ``values`` per ``by`` over the rows
    where it is defined (not NaN), plus ``max``: the largest per-image value. Rows in ``order``."""
    parts = []
    for column in values:
        rows = frame.dropna(subset=[column])
        table = summarize(rows, column, by=by, binary=binary)
        parts.append(table.assign(max=table[by].map(rows.groupby(by)[column].max()).to_numpy()))
    table = pd.concat(parts, ignore_index=True)
    if order is not None:
        table = table.assign(_o=table[by].map({v: i for i, v in enumerate(order)})).sort_values(["_o", "metric"],
                                                                                              kind="stable")
        table = table.drop(columns="_o").reset_index(drop=True)
    return table


def composite_summary(per_item: pd.DataFrame) -> pd.DataFrame:
    """The composites' table: each variant's mean energy in its own photo and the paired differences
    FM-G-CAM - Grad-CAM, with one unit per composite (its two class items averaged, as the registry's
    ``unit_pattern`` does). Columns: ``variant, minus, metric, mean, low, high, n, p_value, resolved, note``."""
    units = per_item.assign(composite=per_item["item"].str.extract(r"^([^:]+):", expand=False))
    units = units.groupby(["variant", "composite"], as_index=False)[ENERGY].mean()
    means = summarize(units, ENERGY, by="variant")
    diffs = paired(units, ENERGY, ["FM-G-CAM", "FM-G-CAM, released norm"], "Grad-CAM (separate)",
                   method_column="variant", image_column="composite")
    table = pd.concat([means, diffs.rename(columns={"method": "variant", "difference": "mean"})], ignore_index=True)
    table["_o"] = table["variant"].map({v: i for i, v in enumerate(VARIANTS)})
    table = table.sort_values(["_o", "minus"], na_position="first", kind="stable").drop(columns="_o")
    return table[["variant", "minus", "metric", "mean", "low", "high", "n", "p_value", "resolved", "note"]]


def shown(table: pd.DataFrame, index: str, order: Sequence | None = None, maxima: Sequence[str] = (),
          digits: int = 1) -> pd.DataFrame:
    """A summary for reading: ``"m [low, high]"`` per metric (:func:`lib.analysis.tables.display_table`),
    but the largest per-image value for the metrics in ``maxima`` (a largest change is what Figs. 3
    and 5 are about). Composite tables (with ``minus``) get the paired difference as a column."""
    if "minus" in table and table["minus"].notna().any():
        plain, diffs = table[table["minus"].isna()], table[table["minus"].notna()]
        wide = display_table(plain, index, "metric", digits=digits, order=order)
        signed = diffs.assign(_cell=formatted(diffs, digits=digits, signed=True).to_numpy())
        return wide.join(signed.set_index(index)["_cell"].rename(f"minus {diffs['minus'].iloc[0]} (paired)")
                         ).fillna("-")
    wide = display_table(table[~table["metric"].isin(maxima)], index, "metric", digits=digits, order=order)
    for metric in maxima:
        rows = table[table["metric"] == metric].set_index(index)["max"]
        wide = wide.join(rows.map(lambda v: f"{v:.2g}").rename(metric), how="outer")
    return (wide.reindex([o for o in order if o in wide.index]) if order is not None else wide).fillna("-")


# ------------------------------------------------------------------------------- text, checks
def findings(fig_table: pd.DataFrame, norm_table: pd.DataFrame, act_table: pd.DataFrame,
             composites: pd.DataFrame, claims: pd.DataFrame) -> str:
    """Markdown bullets of what the tables show, each number read from them; the comparison with
    the paper's abstract claim is the registry's verdict (``claims``, :func:`lib.analysis.report.notebook_claims`)."""
    r = {m: formatted(summarize(fig_table, f"{m} pairwise r"), digits=2).iloc[0] for m in ("Grad-CAM", "FM-G-CAM")}
    change = norm_table[norm_table["metric"] == NORM_CHANGE].set_index("reading")["max"]
    relu = act_table[act_table["metric"] == RELU_CHANGE].set_index("variant")["max"]
    diff = composites[composites["minus"].notna()].set_index("variant")
    verdict = claims.set_index("claim").loc["fmgcam-abstract-benefits-vs-gradcam"]
    return "\n".join([
        f"* **Figs. 1 and 6** ({len(fig_table)} images): the per-class Grad-CAMs of an image correlate at mean "
        f"r = {r['Grad-CAM']}; FM-G-CAM's class maps at r = {r['FM-G-CAM']} (Eq. 4 gives each pixel to one class).",
        f"* **Fig. 3**: under ReLU, Eq. 6's norm changes the maps by at most {change['Eq. 6 (default)']:.1g} "
        f"(the final min-max undoes it); the released per-column norm by up to {change['released (dim=1)']:.2f}.",
        f"* **Fig. 5**: swapping Grad-CAM's ReLU for GELU or ELU changes its min-max-normalised maps by at most "
        f"{relu['Grad-CAM · GELU']:.2g} and {relu['Grad-CAM · ELU']:.2g}.",
        f"* **Composites**: energy in the own photo, FM-G-CAM minus separate Grad-CAMs "
        f"{formatted(diff.loc[['FM-G-CAM']], signed=True).iloc[0]} points per composite: registry verdict "
        f"**{verdict['verdict']}** ({verdict['reason']}); the released norm minus Grad-CAM: "
        f"{formatted(diff.loc[['FM-G-CAM, released norm']], signed=True).iloc[0]}.",
    ])


def key_numbers(fig_table: pd.DataFrame, norm_table: pd.DataFrame, act_table: pd.DataFrame,
                choice_table: pd.DataFrame, composites: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The means checked against ``notebooks/expected/05.json`` (quick defaults on a CPU)."""
    def means(table: pd.DataFrame, key: str, metric: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in table[table["metric"] == metric].set_index(key)["mean"].items()}

    choice = {f"{m} k={int(row.k)}": float(row.mean) for m in (AREA, CONTROL, PROBABILITY)
              for row in choice_table[choice_table["metric"] == m].itertuples()}
    return {"fig1_fig6": {c: float(fig_table[c].mean()) for c in ("Grad-CAM pairwise r", "FM-G-CAM pairwise r")},
            "fig3 energy of classes 2..K": means(norm_table, "reading", LOWER_SHARE),
            "fig5 lit": means(act_table, "variant", LIT),
            "choice of K": choice,
            "composites": {row.variant + (f" minus {row.minus}" if isinstance(row.minus, str) else ""): float(row.mean)
                           for row in composites.itertuples()}}

