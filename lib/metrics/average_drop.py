"""Average Drop (AD), Increase in Confidence (IC) and the "percentage in" metric.

Definitions (attention-guided Grad-CAM paper, Sec. 4.2, Eqs. 8 and 9; L-CAM's evaluation code),
with ``Y_i^c`` the softmax probability of the target class ``c`` on the original image ``i`` and
``O_i^c`` the same on its explanation map (the image masked by ``phi_nu`` of the saliency map,
see :mod:`lib.metrics.masks` and :mod:`lib.metrics.masking`)::

    AD = 100/N * sum_i max(0, Y_i^c - O_i^c) / Y_i^c          (Eq. 8)
    IC = 100/N * sum_i 1[Y_i^c < O_i^c]     (strict)            (Eq. 9)

This module returns *per-image* values (``drop_i = 100 * max(0, Y - O) / Y``,
``increase_i = 100 * 1[O > Y]``, ``score_i = 100 * O``); AD and IC are their means, so bootstrap
CIs can be taken over images (:mod:`lib.metrics.stats`).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn

from ..inference import forward_logits
from .masking import _check_batch_size, check_convention, chunks, masked_forward, model_device, precision_autocast
from ..batching import map_batches
from ..inputs import check_images
from .masks import _check_fraction, phi

__all__ = [
    "confidence_scores",
    "average_drop_increase",
    "percentage_in",
    "ad_ic",
    "to_frame",
    "FRAME_COLUMNS",
    "PERCENTAGE_IN_FRACTIONS",
]

FRAME_COLUMNS: tuple[str, ...] = ("image_id", "method", "fraction", "binary", "drop", "increase", "score",
                                  "original")
#: thresholds of the attention-guided paper's Table 4 (top 5/10/20/25/50 % of pixels).
PERCENTAGE_IN_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20, 0.25, 0.50)

_MAP_TOL = 1e-4


# --------------------------------------------------------------------------------------------- helpers
def _targets(targets: torch.Tensor | Sequence[int], n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(targets, device=device).long().reshape(-1)
    if t.numel() != n:
        raise ValueError(f"targets must have one class per image ({n}), got {t.numel()}")
    return t


def _class_prob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax probability (float32) of ``targets`` from ``[n, C]`` logits."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)


def _check_inputs(images: torch.Tensor, maps: torch.Tensor) -> None:
    check_images(images)
    if maps.dim() != 3 or maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps must be [N, H, W] matching images {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    lo, hi = torch.aminmax(maps)
    if bool(lo < -_MAP_TOL) or bool(hi > 1 + _MAP_TOL):
        raise ValueError("maps must be min-max normalised to [0, 1] (use lib.metrics.minmax_normalize), "
                         f"got range [{float(lo):.4g}, {float(hi):.4g}]")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(_check_fraction(f) for f in fractions)
    if not fr:
        raise ValueError("fractions must not be empty")
    if len(set(fr)) != len(fr):
        raise ValueError(f"fractions must be distinct, got {fractions!r}")
    return fr


def _probabilities(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                   targets: torch.Tensor | Sequence[int], fractions: tuple[float, ...],
                   binaries: tuple[bool, ...], convention: str, batch_size: int,
                   original: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[tuple[bool, float], torch.Tensor]]:
    """``Y`` ``[N]`` (one original forward, skipped when ``original`` is given) and
    ``O[(binary, fraction)]`` ``[N]``, chunked."""
    check_convention(convention)
    _check_batch_size(batch_size)
    _check_inputs(images, maps)
    device = model_device(model, images.device)
    t_all = _targets(targets, images.shape[0], device)
    keys = [(b, f) for b in binaries for f in fractions]

    def chunk_probs(sl: slice) -> torch.Tensor:  # [n, 1 + len(keys)]: Y, then O per key
        x = images[sl].to(device)
        m = maps[sl].to(device=device, dtype=x.dtype)
        t = t_all[sl]
        cols = [_class_prob(forward_logits(model, x), t) if original is None else original[sl].to(device=device, dtype=torch.float32)]
        cols += [_class_prob(masked_forward(model, x, phi(m, f, binary=b).unsqueeze(1), convention), t)
                 for b, f in keys]
        return torch.stack(cols, dim=1)

    with torch.no_grad():  # chunks of batch_size images, halved on out-of-memory
        probs = map_batches(chunk_probs, images.shape[0], batch_size)
    return probs[:, 0], {key: probs[:, i + 1] for i, key in enumerate(keys)}


def _drop(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per-image ``100 * max(0, Y - O) / Y`` (summand of Eq. 8); ``Y`` is guarded away from 0."""
    return 100.0 * (y - o).clamp_min(0) / y.clamp_min(torch.finfo(y.dtype).tiny)


def _increase(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per-image ``100 * 1[Y < O]`` (summand of Eq. 9, strict inequality)."""
    return 100.0 * (o > y).to(y.dtype)


# ------------------------------------------------------------------------------------------------ API
def confidence_scores(model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                      targets: torch.Tensor | Sequence[int], convention: str = "image",
                      batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities ``(Y, O)`` of the target class, each ``[N]`` in ``[0, 1]``.

    ``Y_i^c``: on the original image ``images[i]``; ``O_i^c``: on the explanation map
    ``images[i] (x) masks[i]`` built with ``convention`` (see :mod:`lib.metrics.masking`).
    ``masks`` ``[N, H, W]`` are used as given (no ``phi``). Computed under ``torch.no_grad`` in
    chunks of ``batch_size``; results on the model's device.
    """
    check_convention(convention)
    _check_batch_size(batch_size)
    check_images(images)
    if masks.dim() != 3 or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"images [N, 3, H, W] and masks [N, H, W] do not match: "
                         f"{tuple(images.shape)} vs {tuple(masks.shape)}")
    device = model_device(model, images.device)
    t_all = _targets(targets, images.shape[0], device)
    ys, os_ = [], []
    with torch.no_grad():
        for sl in chunks(images.shape[0], batch_size):
            x = images[sl].to(device)
            m = masks[sl].to(device=device, dtype=x.dtype).unsqueeze(1)
            ys.append(_class_prob(forward_logits(model, x), t_all[sl]))
            os_.append(_class_prob(masked_forward(model, x, m, convention), t_all[sl]))
    return torch.cat(ys), torch.cat(os_)


def average_drop_increase(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                          targets: torch.Tensor | Sequence[int],
                          fractions: Sequence[float] = (1.0, 0.5, 0.15), binary: bool = False,
                          convention: str = "image", batch_size: int = 64,
                          original: torch.Tensor | None = None, precision: str = "fp32") -> dict[str, Any]:
    """Per-image Average Drop / Increase in Confidence terms for each ``phi_nu`` fraction.

    Args:
        model: classifier (module protocol: ``model(x) == model.net(model.normalize(x))``).
        images: ``[N, 3, H, W]`` images in ``[0, 1]``.
        maps: ``[N, H, W]`` saliency maps, min-max normalised to ``[0, 1]``, image size (they
            are *not* re-normalised here; values outside ``[0, 1]`` raise ``ValueError``).
        targets: ``[N]`` class per image (PROTOCOLS: the predicted top-1 class).
        fractions: the ``nu`` of ``phi_nu`` (L-CAM: 100/50/15 %; attention-guided paper:
            5/10/20/25/50 %, binary).
        binary: soft ``phi_nu`` (kept pixels keep their map value) or binary top-x % mask.
        convention: ``"image"`` (default, L-CAM) or ``"normalized"`` (pytorch-grad-cam).
        batch_size: chunk size of the forward passes.
        original: optional ``[N]`` probabilities ``Y`` in ``[0, 1]`` already computed for these
            images and targets (e.g. ``result["original"] / 100`` of another method's call),
            so that comparing several methods does not repeat the unmasked forward.
        precision: ``"fp32"`` (reference) or ``"bf16"``: the forward passes run under bfloat16
            autocast (the GPU fast path); probabilities are computed in float32 from the logits.

    The original image is forwarded once per chunk, not once per fraction.

    Returns:
        ``{"fractions": tuple, "binary": bool, "convention": str,
        "original": Y*100 [N], "drop": {f: [N]}, "increase": {f: [N]}, "score": {f: [N]}}``
        with ``drop[f] = 100 * max(0, Y - O) / Y`` (Eq. 8 summand), ``increase[f] =
        100 * 1[O > Y]`` (Eq. 9 summand, strict) and ``score[f] = 100 * O``; all float32 tensors
        on the model's device. ``AD = drop[f].mean()``, ``IC = increase[f].mean()`` (see
        :func:`ad_ic`); :func:`to_frame` gives a long DataFrame.
    """
    fr = _check_fractions(fractions)
    binary = bool(binary)
    with precision_autocast(model_device(model, images.device), precision):
        y, o = _probabilities(model, images, maps, targets, fr, (binary,), convention, batch_size, original)
    return {
        "fractions": fr,
        "binary": binary,
        "convention": convention,
        "original": 100.0 * y,
        "drop": {f: _drop(y, o[(binary, f)]) for f in fr},
        "increase": {f: _increase(y, o[(binary, f)]) for f in fr},
        "score": {f: 100.0 * o[(binary, f)] for f in fr},
    }


def percentage_in(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                  targets: torch.Tensor | Sequence[int],
                  fractions: Sequence[float] = PERCENTAGE_IN_FRACTIONS, convention: str = "image",
                  batch_size: int = 64) -> dict[str, dict[float, torch.Tensor]]:
    """The attention-guided paper's "percentage in" metric (Sec. 4.2.3, Table 4), per image.

    The paper only says that "the percentage specifies how much to mask the input image, and
    this image is fed into the original Resnet-50 model" and reports one number per threshold
    (0.28 ... 11.5). **Our reading**: the probability (in %) that the classifier gives to the
    target class on the explanation image that keeps the top x % of the pixels of the map,
    averaged over images. The paper's own mask description (Sec. 4.2: "top ... % of pixels were
    1 and the rest 0") makes the mask *binary*; the soft ``phi_nu`` variant is returned beside it.
    This is exactly ``average_drop_increase(...)["score"][f]`` (its mean is the table entry).

    Returns:
        ``{"binary": {f: score [N]}, "soft": {f: score [N]}}``, scores ``100 * O`` in %, with
        one original forward shared by both.
    """
    fr = _check_fractions(fractions)
    _, o = _probabilities(model, images, maps, targets, fr, (True, False), convention, batch_size)
    return {"binary": {f: 100.0 * o[(True, f)] for f in fr},
            "soft": {f: 100.0 * o[(False, f)] for f in fr}}


def ad_ic(result: dict[str, Any]) -> dict[float, dict[str, torch.Tensor]]:
    """Dataset-level metrics from :func:`average_drop_increase`'s result, per fraction.

    ``{f: {"AD": mean drop (Eq. 8), "IC": mean increase (Eq. 9), "percentage_in": mean score}}``
    as 0-dim tensors (all in %).
    """
    return {f: {"AD": result["drop"][f].mean(), "IC": result["increase"][f].mean(),
                "percentage_in": result["score"][f].mean()}
            for f in result["fractions"]}


def to_frame(result: dict[str, Any], image_ids: Sequence[Any] | None = None,
             method: str | None = None) -> pd.DataFrame:
    """Long DataFrame of :func:`average_drop_increase`'s result: one row per (image, fraction).

    Columns: ``image_id, method, fraction, binary, drop, increase, score, original`` (all values
    in %; ``image_id`` defaults to ``0 .. N-1``).
    """
    original = result["original"].detach().cpu().double().numpy()
    n = original.shape[0]
    if image_ids is None:
        image_ids = list(range(n))
    elif len(image_ids) != n:
        raise ValueError(f"image_ids has {len(image_ids)} entries for {n} images")
    frames = []
    for f in result["fractions"]:
        frames.append(pd.DataFrame({
            "image_id": list(image_ids),
            "method": [method] * n,
            "fraction": [float(f)] * n,
            "binary": [bool(result["binary"])] * n,
            "drop": result["drop"][f].detach().cpu().double().numpy(),
            "increase": result["increase"][f].detach().cpu().double().numpy(),
            "score": result["score"][f].detach().cpu().double().numpy(),
            "original": original,
        }))
    return pd.concat(frames, ignore_index=True)[list(FRAME_COLUMNS)]
