"""Notebook 04's per-image tables: one row per image (or image and class) and variant.

* :func:`causal_table`: deletion and insertion AUCs x 100 (Table 1, Fig. 2, ablation), UCAG's
  protocol in :func:`lib.metrics.deletion_insertion`;
* :func:`localisation_table`: pointing-game hits (15 px) and energy-based pointing game (Tables 2-3);
* :func:`density_table`: CAMERAS' positive and negative map densities (Table 5);
* :func:`tied_pixels`: the share of a map's pixels at exactly 0 (the ablation);
* :func:`upscaling_table`: Fig. 2, Grad-CAM on the input upscaled to each side.

These are the tables the registry's ``evidence`` entries read (``lib/analysis/claims/04_ucag.yaml``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch

from lib.analysis.map_store import MapStore
from lib.cams import UCAG, GradCAM
from lib.metrics import class_box_masks, deletion_insertion, energy_pointing_game, map_density, pointing_game

from .maps import Stacked

__all__ = ["CENTRE", "DIFFICULT_SHARE", "causal_table", "centre_map", "localisation_rows", "localisation_table",
           "density_table", "tied_pixels", "upscaling_table"]

CENTRE = "Centre / uniform"
"""The baselines: the image centre for the pointing game (the paper's), a uniform map for the energy game."""
DIFFICULT_SHARE = 0.25
"""'Difficult' (the paper's 'diff'): the class's boxes cover less than this share of the image."""


def causal_table(net, images: torch.Tensor, targets: torch.Tensor, image_ids: Sequence[str],
                 maps: Mapping[str, torch.Tensor], names: Sequence[str], batch_size: int = 8) -> pd.DataFrame:
    """Per-image deletion and insertion AUCs x 100 (Table 1) of each named map ``[N, H, W]``:
    columns ``model, variant, image_id, deletion, insertion``."""
    rows = []
    for name in names:
        auc = {mode: deletion_insertion(net, images, maps[name], targets, mode=mode, batch_size=batch_size)["auc"].cpu()
               for mode in ("deletion", "insertion")}
        rows += [{"model": net.name, "variant": name, "image_id": i, "deletion": 100 * float(d),
                  "insertion": 100 * float(a)} for i, d, a in zip(image_ids, auc["deletion"], auc["insertion"])]
    return pd.DataFrame(rows, columns=["model", "variant", "image_id", "deletion", "insertion"])


def centre_map(like: torch.Tensor) -> torch.Tensor:
    """A map whose maximum is the image centre (the pointing game's centre baseline)."""
    m = torch.zeros_like(like)
    m[..., like.shape[-2] // 2, like.shape[-1] // 2] = 1.0
    return m


def localisation_rows(set_name: str, maps: Mapping[str, torch.Tensor], boxes, box_labels, targets: torch.Tensor,
                      image_ids: Sequence[str], tolerance: float = 15, like: torch.Tensor | None = None
                      ) -> pd.DataFrame:
    """Per-(image, class) pointing hits and energies x 100 of the baselines and each map ``[N, H, W]``
    for targets ``[N]``: columns ``set, variant, image_id, hit, energy, valid, difficult``. ``like``: a
    tensor of the maps' shape, for the baselines alone (``maps`` empty)."""
    first = next(iter(maps.values())) if maps else like
    if first is None:
        raise ValueError("localisation_rows needs maps, or `like` (a tensor of the maps' shape) for the baselines.")
    masks = class_box_masks(boxes, box_labels, targets, tuple(first.shape[-2:]), first.device)
    share = masks.flatten(1).float().mean(1).cpu()
    rows = []
    for name, m in {CENTRE: None, **maps}.items():
        pg = pointing_game(centre_map(first) if m is None else m, boxes, box_labels, targets, tolerance=tolerance)
        eg = energy_pointing_game(torch.ones_like(first) if m is None else m, boxes, box_labels, targets)
        rows += [{"set": set_name, "variant": name, "image_id": i, "hit": 100 * float(hit), "energy": 100 * float(e),
                  "valid": bool(v), "difficult": float(s) < DIFFICULT_SHARE}
                 for i, hit, e, v, s in zip(image_ids, pg["hits"].cpu(), eg["energy"].cpu(), pg["valid"].cpu(), share)]
    return pd.DataFrame(rows, columns=["set", "variant", "image_id", "hit", "energy", "valid", "difficult"])


def localisation_table(sets: Mapping[str, tuple[Mapping[str, torch.Tensor], Stacked]]) -> pd.DataFrame:
    """Tables 2-3's per-target table over several sets: ``{set: (maps, data)}`` with maps
    ``[N, K, H, W]`` (or ``[N, H, W]`` for one target) for ``data.targets [N, K]``.

    With several targets per image (the composites), target ``j`` of image ``i`` is row ``"i:j"``
    and is 'difficult' (it shares the image with another class). Targets without a box of their
    class (``valid`` False) are dropped."""
    parts = []
    for set_name, (maps, data) in sets.items():
        k = data.targets.shape[1]
        for j in range(k):
            ids = data.ids if k == 1 else [f"{i}:{j}" for i in data.ids]
            chosen = {n: m if m.dim() == 3 else m[:, j] for n, m in maps.items()}
            part = localisation_rows(set_name, chosen, data.boxes, data.box_labels, data.targets[:, j], ids)
            parts.append(part.assign(difficult=part.difficult | (k > 1)))
    loc = pd.concat(parts, ignore_index=True)
    return loc[loc.valid].reset_index(drop=True)


def density_table(net, images: torch.Tensor, maps: Mapping[str, torch.Tensor], targets: torch.Tensor,
                  image_ids: Sequence[str], names: Sequence[str], batch_size: int = 8) -> pd.DataFrame:
    """Per-image positive and negative map densities (Table 5, :func:`lib.metrics.map_density`):
    columns ``variant, image_id, rho+, rho-``."""
    rows = []
    for name in names:
        res = map_density(net, images, maps[name], targets, batch_size=batch_size)
        rows += [{"variant": name, "image_id": i, "rho+": float(p), "rho-": float(q)}
                 for i, p, q in zip(image_ids, res["positive"].cpu(), res["negative"].cpu())]
    return pd.DataFrame(rows, columns=["variant", "image_id", "rho+", "rho-"])


def tied_pixels(maps: Mapping[str, torch.Tensor], image_ids: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    """Per-image share (%) of a map's pixels at exactly 0: the deletion and insertion games order tied
    pixels by position, so large zero plateaus are deleted or inserted in raster order."""
    rows = []
    for name in names:
        share = 100 * (maps[name] == 0).float().flatten(1).mean(1).cpu()
        rows += [{"variant": name, "image_id": i, "tied pixels (%)": float(s)} for i, s in zip(image_ids, share)]
    return pd.DataFrame(rows, columns=["variant", "image_id", "tied pixels (%)"])


def upscaling_table(store: MapStore, net, images: torch.Tensor, targets: torch.Tensor, image_ids: Sequence[str],
                    sides: Sequence[int], batch_size: int = 8) -> pd.DataFrame:
    """Fig. 2 per image: Grad-CAM computed on the input upscaled to each side (bicubic), brought back
    (bilinear), ReLU and min-max, no blur (``UCAG(GradCAM, n=1, rho=1, alpha=side/S, blur_kernel=0)``),
    scored on the original image: columns ``side, variant ("<side> px"), input ("smallest side",
    "largest side" or "between"), image_id, deletion, insertion``."""
    parts = []
    for side in sides:
        cam = UCAG(GradCAM(net), n=1, rho=1.0, alpha=side / images.shape[-1], blur_kernel=0, crop_batch=batch_size)
        maps = {f"{side} px": store.maps(cam, images, list(image_ids), targets)}
        part = causal_table(net, images, targets, image_ids, maps, list(maps), batch_size)
        where = "smallest side" if side == min(sides) else "largest side" if side == max(sides) else "between"
        parts.append(part.drop(columns="model").assign(side=side, input=where))
    return pd.concat(parts, ignore_index=True)[["side", "variant", "input", "image_id", "deletion", "insertion"]]
