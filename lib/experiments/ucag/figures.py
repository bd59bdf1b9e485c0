"""Notebook 04's figures: Fig. 2 (upscaling the input), Fig. 4 (UCAG beside the plain maps) and the
composites' maps. Each returns a figure; the notebook saves it (:func:`lib.plotting.save_figure`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from lib.models import categories
from lib.plotting import maps_figure

from .maps import METHODS, UCAG_NAMES, Stacked

__all__ = ["upscaling_figure", "qualitative_figure", "composites_figure"]


def upscaling_figure(fig2: pd.DataFrame) -> plt.Figure:
    """Fig. 2: deletion and insertion AUC x 100 against the input side (mean, and its 95 % interval
    where there is one), from :func:`lib.experiments.ucag.tables.fig2_table`."""
    means = fig2[fig2["statistic"] == "mean"].sort_values("side")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("deletion", "insertion")):
        sel = means[means["metric"] == metric]
        ax.plot(sel["side"], sel["mean"], marker="o")
        ax.fill_between(sel["side"].astype(float), sel["low"].astype(float), sel["high"].astype(float), alpha=0.2)
        ax.set_xlabel("input side (px)")
        ax.set_ylabel(f"{metric} AUC x 100")
        ax.set_title(f"Grad-CAM, {metric} ({int(sel['n'].max())} images)", fontsize=9)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def qualitative_figure(data: Stacked, maps: Mapping[str, torch.Tensor], n: int) -> plt.Figure:
    """Fig. 4: the first ``n`` images (titled by class), each plain map beside its UCAG version."""
    names = [m for pair in zip(METHODS, UCAG_NAMES) for m in pair]
    titles = [categories()[int(c)] for c in data.labels[:n]]
    return maps_figure(data.images[:n].cpu(), {m: maps[m][:n].cpu() for m in names}, titles=titles)


def composites_figure(data: Stacked, maps: Mapping[str, torch.Tensor],
                      names: Sequence[str] = ("Grad-CAM", "UCAG Grad-CAM", "Grad-CAM++", "UCAG Grad-CAM++")
                      ) -> plt.Figure:
    """Each composite twice (its left and its right class), with the named maps ``[N, 2, H, W]``."""
    images = data.images.repeat_interleave(2, 0).cpu()
    titles = [categories()[int(c)] for c in data.targets.flatten()]
    return maps_figure(images, {m: maps[m].flatten(0, 1).cpu() for m in names}, titles=titles)
