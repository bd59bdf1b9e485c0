"""Notebook 03's figures, built from its tables and maps (the notebook saves and shows them)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lib.plotting import overlay

from .multi_target import Composites
from .selection import grid_means

__all__ = ["selection_figure", "curves_figure", "backbones_figure", "multi_target_figure", "cascade_maps_figure",
           "cascade_curves_figure"]


def _clean(axes) -> None:
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])


def selection_figure(grid: pd.DataFrame, chosen: Mapping) -> plt.Figure:
    """Mean overall of every grid point, one heat map (lambda1 x lambda2) per threshold; the chosen
    point framed in red."""
    means = grid_means(grid)
    panels = list(dict.fromkeys(grid.threshold))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 2.9), squeeze=False)
    for ax, t in zip(axes[0], panels):
        table = means[means.threshold.astype(str) == str(t)].pivot(index="lambda1", columns="lambda2", values="overall")
        sns.heatmap(table.sort_index().sort_index(axis=1), ax=ax, annot=True, fmt=".3f", cmap="viridis",
                    vmin=means.overall.min(), vmax=means.overall.max(), cbar=False, annot_kws={"fontsize": 7})
        ax.set_title(f"threshold {t}", fontsize=9)
        if str(t) == str("none" if chosen["threshold"] is None else chosen["threshold"]):
            r, c = sorted(table.index).index(chosen["lambda1"]), sorted(table.columns).index(chosen["lambda2"])
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, edgecolor="red", lw=2))
    fig.suptitle("Mean insertion - deletion AUC on the training images (selection grid)", fontsize=10)
    fig.tight_layout()
    return fig


def curves_figure(bands: pd.DataFrame) -> plt.Figure:
    """Fig. 9: mean deletion and insertion curves per method with their t bands (where n allows)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.9), sharey=True)
    for ax, mode in zip(axes, ("deletion", "insertion")):
        for name, part in bands[bands["mode"] == mode].groupby("method", sort=False):
            line, = ax.plot(part.fraction, part["mean"], label=name)
            ax.fill_between(part.fraction, part.low, part.high, where=part.low.notna().to_numpy(),
                            color=line.get_color(), alpha=0.2)
        ax.set(title=mode, xlabel="fraction of pixels", ylabel="probability")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def backbones_figure(rows: Sequence[tuple[str, torch.nn.Module, torch.Tensor, Mapping]], target: int,
                     class_name: str) -> plt.Figure:
    """Fig. 5: one row per backbone ``(name, net, image [1, 3, H, W], {method: map [1, H, W]})``:
    the image with the net's probability of ``target``, then each method's map."""
    methods = list(rows[0][3])
    fig, axes = plt.subplots(len(rows), len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.7 * len(rows)),
                             squeeze=False)
    for r, (net_name, net, image, maps) in enumerate(rows):
        with torch.no_grad():
            p = float(net(image).softmax(1)[0, int(target)])
        axes[r, 0].imshow(image[0].cpu().permute(1, 2, 0).clamp(0, 1).numpy())
        axes[r, 0].set_ylabel(f"{net_name}\np({class_name[:12]}) = {p:.2f}", fontsize=7)
        for c, name in enumerate(methods, start=1):
            axes[r, c].imshow(overlay(image[0].cpu(), maps[name][0].cpu()))
            axes[r, c].set_title(name, fontsize=8) if r == 0 else None
    _clean(axes)
    fig.tight_layout()
    return fig


def multi_target_figure(two: Composites, two_maps: Mapping[str, torch.Tensor], same: Composites,
                        same_maps: Mapping[str, torch.Tensor], categories: Sequence[str], n_show: int = 2
                        ) -> plt.Figure:
    """Figs 6-7: up to ``n_show`` two-class composites (each method's map for each class) and
    ``n_show`` same-class composites (each method's one map)."""
    methods = list(two_maps)
    n2, n1 = min(n_show, len(two)), min(n_show, len(same))
    cols = 1 + 2 * len(methods)
    fig, axes = plt.subplots(n2 + n1, cols, figsize=(1.5 * cols, 1.6 * (n2 + n1)), squeeze=False)
    for r in range(n2):
        image = two.batch.images[r].cpu()
        axes[r, 0].imshow(image.permute(1, 2, 0).numpy())
        for j, (name, side) in enumerate([(m, s) for m in methods for s in (0, 1)], start=1):
            axes[r, j].imshow(overlay(image, two_maps[name][r, side]))
            axes[r, j].set_title(f"{name}\n{categories[int(two.labels[r, side])][:14]}", fontsize=7)
    for r in range(n1):
        row, image = n2 + r, same.batch.images[r].cpu()
        axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
        for j, name in enumerate(methods):
            axes[row, 1 + 2 * j].imshow(overlay(image, same_maps[name][r]))
            axes[row, 1 + 2 * j].set_title(f"{name}\n{categories[int(same.labels[r, 0])][:14]} (both)", fontsize=7)
            axes[row, 2 + 2 * j].axis("off")
    _clean(axes)
    fig.tight_layout()
    return fig


def cascade_maps_figure(maps: Mapping[str, torch.Tensor], steps: Sequence[str]) -> plt.Figure:
    """Fig. 8 (maps): rows methods, columns the randomisation steps, the first image's map."""
    fig, axes = plt.subplots(len(maps), len(steps), figsize=(1.3 * len(steps), 1.45 * len(maps)), squeeze=False)
    for r, (name, stacked) in enumerate(maps.items()):
        for c, step in enumerate(steps):
            axes[r, c].imshow(stacked[c, 0].cpu(), cmap="jet", vmin=0, vmax=1)
            axes[r, c].set_title(step.replace("net.", "").replace("._", " ")[:16], fontsize=6) if r == 0 else None
        axes[r, 0].set_ylabel(name, fontsize=8)
    _clean(axes)
    fig.tight_layout()
    return fig


def cascade_curves_figure(bands: pd.DataFrame) -> plt.Figure:
    """Fig. 8 (curves): mean Spearman and SSIM to the trained map per step and method, with t bands
    (a :func:`lib.analysis.tables.summarize` table by method and step; no band below its minimum n)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.9), sharey=True)
    for ax, metric in zip(axes, ("spearman", "ssim")):
        for name, part in bands[bands.metric == metric].groupby("method", sort=False):
            line, = ax.plot(part.step, part["mean"], marker="o", label=name)
            ax.fill_between(part.step, part.low, part.high, where=part.low.notna().to_numpy(),
                            color=line.get_color(), alpha=0.2)
        ax.set(title=metric, xlabel="step", ylim=(-0.2, 1.05), xticks=sorted(bands.step.unique()))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
