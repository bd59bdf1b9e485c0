"""Figures shared by the notebooks: map overlays, thresholded explanations, metric curves."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

__all__ = ["overlay", "maps_figure", "thresholded_figure", "metric_curve_figure", "save_figure"]


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a ``[H, W]`` map in [0, 1] (coloured with ``cmap``) over a ``[3, H, W]`` image."""
    heat = matplotlib.colormaps[cmap](cam.detach().float().cpu().clamp(0, 1).numpy())[..., :3]
    return (1 - alpha) * _hwc(image) + alpha * heat


def maps_figure(images: torch.Tensor, maps: Mapping[str, torch.Tensor], titles: Sequence[str] | None = None,
                size: float = 2.0) -> plt.Figure:
    """Rows: images; columns: the image, then each method's map overlaid."""
    n, methods = len(images), list(maps)
    fig, axes = plt.subplots(n, len(methods) + 1, figsize=(size * (len(methods) + 1), size * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_hwc(images[i]))
        axes[i, 0].set_ylabel(titles[i] if titles else "", fontsize=8)
        for j, name in enumerate(methods, start=1):
            axes[i, j].imshow(overlay(images[i], maps[name][i]))
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def thresholded_figure(image: torch.Tensor, masks: Mapping[str, Mapping[float, torch.Tensor]],
                       title: str = "", size: float = 1.6) -> plt.Figure:
    """Figure 7's layout for one image: rows methods, columns the image kept at each threshold.

    ``masks[method][fraction]`` is a ``[H, W]`` mask (binary or soft) multiplying the image.
    """
    methods = list(masks)
    fractions = list(next(iter(masks.values())))
    fig, axes = plt.subplots(len(methods), len(fractions), figsize=(size * len(fractions), size * len(methods)),
                             squeeze=False)
    for i, name in enumerate(methods):
        for j, frac in enumerate(fractions):
            axes[i, j].imshow(_hwc(image * masks[name][frac].to(image.device)))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"top {frac:.0%}", fontsize=9)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def metric_curve_figure(summary: pd.DataFrame, x: str, y: str, hue: str, ylabel: str,
                        paper: pd.DataFrame | None = None) -> plt.Figure:
    """Mean with its confidence band per ``hue`` over ``x``; the paper's values as dashed lines.

    ``summary`` has columns ``x, hue, y, ci_low, ci_high``; ``paper`` (optional) ``x, hue, y``.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    palette = dict(zip(summary[hue].unique(), sns.color_palette("tab10")))
    for name, group in summary.groupby(hue, sort=False):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", label=name, color=palette[name])
        ax.fill_between(group[x], group["ci_low"], group["ci_high"], alpha=0.15, color=palette[name])
    if paper is not None:
        for name, group in paper.groupby(hue, sort=False):
            group = group.sort_values(x)
            ax.plot(group[x], group[y], ls="--", marker="x", color=palette.get(name, "grey"), alpha=0.7,
                    label=f"{name} (paper)")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically (temporary name, then rename) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return path
