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
import torch.nn.functional as F
from matplotlib.patches import Patch

__all__ = ["overlay", "maps_figure", "thresholded_figure", "metric_curve_figure", "save_figure",
           "CLASS_COLOURS", "class_colours", "fused_overlay", "fused_legend", "fused_figure"]

CLASS_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.0, 1.0, 1.0))
"""FM-G-CAM's class colours, in rank order: red, green, blue, yellow, cyan (the authors' library)."""


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


def class_colours(k: int) -> list[tuple[float, float, float]]:
    """``k`` RGB colours: :data:`CLASS_COLOURS`, then tab10's for classes beyond the fifth."""
    extra = [tuple(c) for c in sns.color_palette("tab10")]
    return (list(CLASS_COLOURS) + extra * (1 + k // len(extra)))[:k]


def fused_overlay(image: torch.Tensor, maps: torch.Tensor, colours: Sequence[tuple[float, float, float]] | None = None,
                  alpha: float = 0.8) -> np.ndarray:
    """FM-G-CAM's multi-colour rendering: ``[K, h, w]`` fused maps in [0, 1] over a ``[3, H, W]`` image.

    Each class has its own single-hue colour map, from transparent to its colour (``colours``,
    default :data:`CLASS_COLOURS` in rank order). Maps are resized bicubically to the image (as the
    authors' library displays them) and clipped to [0, 1]; at each pixel the strongest class's
    colour is blended over the image with opacity ``alpha * intensity`` (``alpha = 0.8``, the
    library's), so pixels no class claims show the image unchanged. Returns ``[H, W, 3]`` in [0, 1].
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be [K, h, w] (one fused map per class), got {tuple(maps.shape)}.")
    palette = torch.tensor(colours if colours is not None else class_colours(len(maps)), dtype=torch.float32)
    if len(palette) < len(maps):
        raise ValueError(f"{len(maps)} maps but {len(palette)} colours. Fix: pass one colour per class.")
    size = tuple(image.shape[-2:])
    resized = F.interpolate(maps.detach().float().cpu()[None], size=size, mode="bicubic",
                            align_corners=False)[0].clamp(0, 1)
    intensity, winner = resized.max(0)  # [H, W]
    opacity = (alpha * intensity)[..., None].numpy()
    colour = palette[winner].numpy()  # [H, W, 3]
    return (1 - opacity) * _hwc(image) + opacity * colour


def fused_legend(ax: plt.Axes, names: Sequence[str], probabilities: Sequence[float] | torch.Tensor,
                 colours: Sequence[tuple[float, float, float]] | None = None, **kwargs) -> None:
    """A legend naming each class with its colour and softmax probability, e.g. ``tabby (39%)``."""
    colours = colours if colours is not None else class_colours(len(names))
    handles = [Patch(facecolor=c, edgecolor="black", label=f"{n} ({float(p):.0%})")
               for n, p, c in zip(names, probabilities, colours)]
    ax.legend(handles=handles, **{"loc": "upper center", "bbox_to_anchor": (0.5, -0.02), "fontsize": 7,
                                  "frameon": False, **kwargs})


def fused_figure(images: torch.Tensor, fused: Mapping[str, torch.Tensor], class_names: Sequence[Sequence[str]],
                 probabilities: torch.Tensor, per_class: torch.Tensor | None = None,
                 per_class_title: str = "Grad-CAM", size: float = 2.2) -> plt.Figure:
    """Figs. 1 and 6's layout: the image, the fused map(s), one single-class map per class, the legend.

    ``fused[title]`` is ``[N, K, H, W]`` (one column each, e.g. FM-G-CAM with and without a step);
    ``class_names[i]`` the K class names of image i and ``probabilities`` ``[N, K]`` (the legend, in
    the last column); ``per_class`` an optional ``[N, K, H, W]`` of single-class maps (e.g. Grad-CAM
    for each of the top-K classes), drawn with ``jet`` and titled with class and probability.
    """
    n = len(images)
    k = len(class_names[0])
    n_maps = 1 + len(fused) + (k if per_class is not None else 0)
    fig, axes = plt.subplots(n, n_maps + 1, figsize=(size * (n_maps + 0.9), size * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n_maps + [0.9]})
    for i in range(n):
        axes[i, 0].imshow(_hwc(images[i]))
        for j, (title, maps) in enumerate(fused.items(), start=1):
            axes[i, j].imshow(fused_overlay(images[i], maps[i]))
            axes[i, j].set_title(title, fontsize=8)
        if per_class is not None:
            for c in range(k):
                ax = axes[i, 1 + len(fused) + c]
                ax.imshow(overlay(images[i], per_class[i, c]))
                ax.set_title(f"{per_class_title}: {class_names[i][c]}\n({float(probabilities[i, c]):.0%})",
                             fontsize=7)
        axes[i, -1].axis("off")
        fused_legend(axes[i, -1], class_names[i], probabilities[i], loc="center left", bbox_to_anchor=(0, 0.5))
    axes[0, 0].set_title("image", fontsize=8)
    for ax in axes[:, :-1].flat:
        ax.set_xticks([])
        ax.set_yticks([])
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
