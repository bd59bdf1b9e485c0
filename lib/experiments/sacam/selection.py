"""Choosing SA-CAM's lambda1, lambda2 and key-area threshold on training images (Alg. 2; the paper gives none).

Rule (:func:`lib.cams.sacam.select_parameters`): the grid point with the highest mean per-image
insertion AUC - deletion AUC (Table 3's "overall"); ties to the smallest lambda1 + lambda2, then
the smallest threshold. :func:`selection_grid` scores every point (the masked passes depend on the
threshold only: :func:`lib.cams.sacam.candidate_maps`), :func:`perturbation_frame` compares the
three operators of Eq. 13 at the chosen point, :func:`selection_text` says what was chosen.
"""

from __future__ import annotations

import inspect
from typing import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from lib.cams.sacam import SACAM, candidate_maps, read_selection_grid, select_parameters

from .causal import auc_pair

__all__ = ["PERTURBATIONS", "parse_grid", "selection_grid", "read_grid", "chosen_parameters", "library_defaults",
           "grid_means", "selection_text", "perturbation_frame"]

PERTURBATIONS = ("constant", "noise", "blur")
"""Eq. 13's three operators."""


def parse_grid(thresholds: str, lambdas: str, core_fractions: str) -> tuple[list, list[float], list[float]]:
    """The notebook's comma-separated parameters: thresholds (``"none"``: keep every pixel),
    lambda values, and the three core fractions of Cases 1-3 (Tables 4-5)."""
    grid_t = [None if t.strip().lower() == "none" else float(t) for t in thresholds.split(",")]
    fractions = [float(v) for v in core_fractions.split(",")]
    if len(fractions) != 3:
        raise ValueError(f"core_fractions must name three fractions (Cases 1-3), got {core_fractions!r}.")
    return grid_t, [float(v) for v in lambdas.split(",")], fractions


def _label(threshold):
    return "none" if threshold is None else threshold


def selection_grid(model: nn.Module, layer: str, images: torch.Tensor, targets: torch.Tensor, image_ids: Sequence[str],
                   thresholds: Sequence, lambdas: Sequence[float], perturbation: str, seed: int, batch_size: int
                   ) -> tuple[pd.DataFrame, dict[tuple, torch.Tensor]]:
    """Per image and grid point (thresholds x lambda1 x lambda2): ``threshold, lambda1, lambda2,
    image_id, deletion, insertion, overall``, and ``{(threshold, lambda1, lambda2): overall [N]}``."""
    selector = SACAM(model, layer, perturbation=perturbation, seed=seed, batch_size=batch_size, progress=False)
    rows, scores = [], {}
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        for key, maps in candidate_maps(selector, images[sl], targets[sl], thresholds, lambdas, lambdas):
            d, i = auc_pair(model, images[sl], maps, targets[sl], batch_size)
            scores[key] = torch.cat([scores.get(key, torch.empty(0)), i - d])
            rows += [{"threshold": _label(key[0]), "lambda1": key[1], "lambda2": key[2], "image_id": k,
                      "deletion": float(a), "insertion": float(b), "overall": float(b - a)}
                     for k, a, b in zip(image_ids[sl], d, i)]
    return pd.DataFrame(rows), scores


read_grid = read_selection_grid
"""A selection grid file with its thresholds as :func:`selection_grid` gives them (``"none"`` or a number):
:func:`lib.cams.sacam.read_selection_grid`."""


def chosen_parameters(scores: Mapping[tuple, torch.Tensor]) -> dict:
    """The selection rule's point as SA-CAM's keyword arguments ``threshold, lambda1, lambda2``."""
    threshold, lambda1, lambda2 = select_parameters(dict(scores))
    return {"threshold": threshold, "lambda1": lambda1, "lambda2": lambda2}


def library_defaults() -> dict:
    """``SACAM``'s own defaults of ``threshold, lambda1, lambda2`` (not changed by the selection)."""
    parameters = inspect.signature(SACAM).parameters
    return {k: parameters[k].default for k in ("threshold", "lambda1", "lambda2")}


def grid_means(grid: pd.DataFrame) -> pd.DataFrame:
    """Mean overall per grid point (the selection's criterion), best first."""
    means = grid.groupby(["threshold", "lambda1", "lambda2"], sort=False).overall.mean().reset_index()
    return means.sort_values("overall", ascending=False, kind="stable", ignore_index=True)


def selection_text(chosen: Mapping, grid: pd.DataFrame) -> str:
    """What the rule chose, computed: the point, its mean overall, the spread of the grid's means,
    and whether it equals ``SACAM``'s library defaults (the notebook uses the chosen point)."""
    means = grid_means(grid)
    mask = ((means.threshold.astype(str) == str(_label(chosen["threshold"]))) & (means.lambda1 == chosen["lambda1"])
            & (means.lambda2 == chosen["lambda2"]))
    defaults = library_defaults()
    return (f"chosen on {grid.image_id.nunique()} training images: threshold {_label(chosen['threshold'])}, "
            f"lambda1 {chosen['lambda1']:g}, lambda2 {chosen['lambda2']:g} (mean overall "
            f"{float(means.overall[mask].iloc[0]):.4f}; the {len(means)} grid means span "
            f"{means.overall.max() - means.overall.min():.4f}). SACAM's library defaults (threshold "
            f"{_label(defaults['threshold'])}, lambda1 {defaults['lambda1']:g}, lambda2 {defaults['lambda2']:g}) are "
            + ("the same point." if dict(chosen) == defaults else "another point; the tables use the chosen one."))


def perturbation_frame(model: nn.Module, layer: str, images: torch.Tensor, targets: torch.Tensor,
                       image_ids: Sequence[str], chosen: Mapping, grid: pd.DataFrame, perturbation: str, seed: int,
                       batch_size: int) -> pd.DataFrame:
    """Per image, the AUCs of SA-CAM at the chosen point with each operator of Eq. 13 (the grid's
    own operator read from ``grid``): ``perturbation, image_id, deletion, insertion, overall``."""
    at = grid[(grid.threshold.astype(str) == str(_label(chosen["threshold"]))) & (grid.lambda1 == chosen["lambda1"])
              & (grid.lambda2 == chosen["lambda2"])]
    rows = at.assign(perturbation=perturbation)[["perturbation", "image_id", "deletion", "insertion",
                                                 "overall"]].to_dict("records")
    for kind in [k for k in PERTURBATIONS if k != perturbation]:
        cam = SACAM(model, layer, perturbation=kind, seed=seed, batch_size=batch_size, progress=False, **chosen)
        for start in range(0, len(images), batch_size):
            sl = slice(start, start + batch_size)
            d, i = auc_pair(model, images[sl], cam(images[sl], targets[sl]), targets[sl], batch_size)
            rows += [{"perturbation": kind, "image_id": k, "deletion": float(a), "insertion": float(b),
                      "overall": float(b - a)} for k, a, b in zip(image_ids[sl], d, i)]
    return pd.DataFrame(rows)
