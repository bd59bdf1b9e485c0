"""The metric suite: every per-image metric the five papers use, in seven groups, as tidy rows.

Each group function takes a batch (model, images ``[N, 3, H, W]`` in ``[0, 1]``, maps ``[N, H, W]``
in ``[0, 1]``, targets ``[N]``, and for ``localisation`` the batch's boxes) and returns rows
``(index, metric, protocol, value)``; :mod:`.run` adds the image id, model, method and target.
Every value is in % (the papers' unit). ``protocol`` is ``key=value`` pairs joined by ``,``
(:func:`parse_protocol` splits it into columns).

* ``ad_ic``: Average Drop (Eq. 8 summand, ``drop``), Increase in Confidence (Eq. 9 summand, 0 or
  100, ``increase``) and the masked image's class probability (``score``; notebook 01's reading of
  "percentage in"), for L-CAM's soft ``phi_nu`` masks and the attention-guided paper's binary top-x%
  masks at every paper's fraction, the ``[0, 1]`` image masked (convention ``"image"``: L-CAM's
  evaluation code, the papers' protocol); plus ``original``, the unmasked image's class probability.
  :func:`lib.metrics.average_drop_increase`.
* ``ad_ic_normalized``: the same under the other masking convention (``"normalized"``: the
  normalised tensor masked, pytorch-grad-cam's and TorchCAM's), a group of its own so that a
  notebook that reads one convention does not pay for the other.
* ``ad_ic_lcam``: ``ad_ic``'s rows of L-CAM's Table 1 only (soft masks at 100 / 50 / 15 %, the same values),
  for the trained L-CAM keys that only notebook 02 reads: 4 forward passes per image instead of 13.
* ``causal``: deletion and insertion AUCs (RISE's games, UCAG's step of 1792 pixels) under the papers'
  protocol: deletion to zeros, insertion from UCAG's blur (UCAG and SA-CAM, PROTOCOLS.md).
  :func:`lib.metrics.deletion_insertion`.
* ``causal_swapped``: the same games on the other substrate (deletion to the blur, insertion from zeros),
  a group of its own so that a notebook that reads the papers' protocol does not pay for the other (the
  full profile computes both).
* ``causal_curves``: ``causal``'s AUCs and the curves they integrate, one row per point
  (``deletion_curve`` / ``insertion_curve``, the class probability in % after ``point`` of ``points`` steps):
  SA-CAM's Fig. 9. Not in the full profile (29 rows per game and image).
* ``localisation``: the pointing game (hit within 15 pixels of a box of the target class, 0 or 100),
  the energy-based pointing game and the share of the image the class's boxes cover (UCAG's
  'difficult' split); only for images with a box of the target class. :mod:`lib.metrics.localisation`.
* ``density``: CAMERAS' positive and negative map densities (UCAG Table 5). :func:`lib.metrics.map_density`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from lib.metrics import (average_drop_increase, class_box_masks, deletion_insertion,
                         energy_pointing_game, map_density, pointing_game)

__all__ = ["GROUPS", "SuiteSettings", "Row", "group_rows", "parse_protocol", "protocol"]

Row = tuple[int, str, str, float]
"""``(index in the batch, metric, protocol, value)``."""


@dataclass(frozen=True)
class SuiteSettings:
    """The protocols of the suite (PROTOCOLS.md "Metrics"); the defaults are the papers'."""

    soft: tuple[float, ...] = (1.0, 0.5, 0.25, 0.2, 0.15, 0.1, 0.05)
    """``phi_nu`` fractions: L-CAM's 100/50/15 % and the attention-guided paper's 5-50 %."""
    binary: tuple[float, ...] = (0.5, 0.25, 0.2, 0.1, 0.05)
    """Binary top-x % masks (attention-guided Grad-CAM, Sec. 4.2, Table 4)."""
    causal_substrates: tuple[tuple[str, str], ...] = (("deletion", "zero"), ("insertion", "blur"))
    """The papers' substrate of each game (group ``causal``); ``causal_swapped`` uses the other of the two."""
    pixels_per_step: int = 1792
    """Deletion / insertion step (UCAG: 224 * 8)."""
    causal_convention: str = "normalized"
    """UCAG's and RISE's space for the causal games."""
    tolerance: float = 15
    """Pointing-game radius in pixels (TorchRay, UCAG)."""
    density_convention: str = "image"
    batch_size: int = 16
    """Forward passes per chunk; no value depends on it."""


def protocol(**parts) -> str:
    """``protocol(mask="soft", fraction=0.5)`` -> ``"mask=soft,fraction=0.5"``."""
    return ",".join(f"{k}={v}" for k, v in parts.items())


def parse_protocol(text: str) -> dict[str, str]:
    """The inverse of :func:`protocol` (values as strings); ``""`` gives ``{}``."""
    if not text:
        return {}
    try:
        return dict(part.split("=", 1) for part in text.split(","))
    except ValueError:
        raise ValueError(f"protocol {text!r} is not key=value pairs joined by ','") from None


def _rows(metric: str, proto: str, values: torch.Tensor, keep: torch.Tensor | None = None) -> list[Row]:
    values = values.detach().double().cpu().tolist()
    keep = [True] * len(values) if keep is None else keep.detach().cpu().tolist()
    return [(i, metric, proto, float(v)) for i, (v, k) in enumerate(zip(values, keep)) if k]


def ad_ic_rows(model, images, maps, targets, batch, s: SuiteSettings, convention: str = "image") -> list[Row]:
    rows: list[Row] = []
    original = None
    for binary, fractions in ((False, s.soft), (True, s.binary)):
        if not fractions:
            continue
        res = average_drop_increase(model, images, maps, targets, fractions=fractions, binary=binary,
                                    convention=convention, batch_size=s.batch_size, original=original)
        if original is None:
            original = res["original"] / 100
            rows += _rows("original", protocol(convention=convention), res["original"])
        for f in fractions:
            proto = protocol(mask="binary" if binary else "soft", fraction=float(f), convention=convention)
            rows += [r for metric in ("drop", "increase", "score") for r in _rows(metric, proto, res[metric][f])]
    return rows


def ad_ic_normalized_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    return ad_ic_rows(model, images, maps, targets, batch, s, convention="normalized")


LCAM_FRACTIONS = (1.0, 0.5, 0.15)
"""The soft ``phi_nu`` fractions of L-CAM's Table 1 (group ``ad_ic_lcam``)."""


def ad_ic_lcam_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    """L-CAM's Table 1 only: the soft masks at 100 / 50 / 15 % and no binary ones, a subset of ``ad_ic``'s rows
    with the same values (4 passes per image instead of 13), for the methods only notebook 02 reads."""
    return ad_ic_rows(model, images, maps, targets, batch, replace(s, soft=LCAM_FRACTIONS, binary=()))


SUBSTRATES = ("zero", "blur")
"""The substrates of the causal games: zeros (in the masking convention's space) and UCAG's blur."""


def causal_rows(model, images, maps, targets, batch, s: SuiteSettings, swapped: bool = False,
                curves: bool = False) -> list[Row]:
    rows: list[Row] = []
    for mode, paper in s.causal_substrates:
        substrate = next(o for o in SUBSTRATES if o != paper) if swapped else paper
        res = deletion_insertion(model, images, maps, targets, mode=mode, pixels_per_step=s.pixels_per_step,
                                 substrate=substrate, convention=s.causal_convention, batch_size=s.batch_size)
        proto = protocol(substrate=substrate, step=s.pixels_per_step, convention=s.causal_convention)
        rows += _rows(mode, proto, 100 * res["auc"])
        points = res["curves"].shape[1] if curves else 0
        for k in range(points):
            rows += _rows(f"{mode}_curve", f"{proto},{protocol(point=k, points=points)}", 100 * res["curves"][:, k])
    return rows


def causal_curves_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    return causal_rows(model, images, maps, targets, batch, s, curves=True)


def causal_swapped_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    return causal_rows(model, images, maps, targets, batch, s, swapped=True)


def localisation_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    boxes, labels = batch.boxes, batch.box_labels
    pg = pointing_game(maps, boxes, labels, targets, tolerance=s.tolerance)
    eg = energy_pointing_game(maps, boxes, labels, targets)
    share = class_box_masks(boxes, labels, targets, tuple(maps.shape[-2:]), maps.device).flatten(1).float().mean(1)
    valid = pg["valid"]
    return (_rows("pointing", protocol(tolerance=s.tolerance), 100 * pg["hits"].float(), valid)
            + _rows("energy_pointing", protocol(boxes="target class"), 100 * eg["energy"], valid)
            + _rows("box_share", protocol(boxes="target class"), 100 * share, valid))


def density_rows(model, images, maps, targets, batch, s: SuiteSettings) -> list[Row]:
    res = map_density(model, images, maps, targets, convention=s.density_convention, batch_size=s.batch_size)
    proto = protocol(convention=s.density_convention)
    return _rows("rho+", proto, res["positive"]) + _rows("rho-", proto, res["negative"])


GROUPS: dict[str, Callable[..., list[Row]]] = {
    "ad_ic": ad_ic_rows,
    "ad_ic_normalized": ad_ic_normalized_rows,
    "ad_ic_lcam": ad_ic_lcam_rows,
    "causal": causal_rows,
    "causal_swapped": causal_swapped_rows,
    "causal_curves": causal_curves_rows,
    "localisation": localisation_rows,
    "density": density_rows,
}
"""Metric group -> its row function ``(model, images, maps, targets, batch, settings) -> rows``."""


def group_rows(group: str, model, images, maps, targets, batch, settings: SuiteSettings) -> list[Row]:
    """The rows of ``group`` for one batch; raises naming the groups for an unknown one."""
    if group not in GROUPS:
        raise ValueError(f"Unknown metric group {group!r}. Fix: use one of {', '.join(GROUPS)}.")
    return GROUPS[group](model, images, maps, targets, batch, settings)
