"""Positive and negative map densities (CAMERAS, Jalwana et al. 2021; UCAG Table 5).

With ``M`` the saliency map (``[0, 1]``, image size), ``X`` the image, ``f`` the classifier and
``psi`` the softmax probability of the class::

    rho+ = psi(f(M (x) X))       * (h * w) / sum_ij M_ij            (higher is better)
    rho- = psi(f((1 - M) (x) X)) * (h * w) / sum_ij (1 - M_ij)      (lower is better)

No public code exists (PROTOCOLS "Metrics"). Our reading:

* ``M (x) X`` uses the same masking conventions as AD / IC (:mod:`lib.metrics.masking`):
  ``"image"`` (default) multiplies the ``[0, 1]`` image, so muted pixels are black;
  ``"normalized"`` multiplies the normalised tensor, muted pixels are the dataset mean.
* ``M`` is the soft map as given (already min-max normalised; not binarised, not ``phi_nu``).
  ``(h * w) / sum M`` is one over the map's mean, so ``rho+`` is the class probability per unit
  of mean saliency: a sparse map that keeps the score scores high.
* Zero sums: an all-zero map has ``sum M = 0`` and an all-one map ``sum (1 - M) = 0``; the
  corresponding density is defined as 0 (nothing is kept, no density), never inf or NaN. Very
  small sums are kept as they are (densities up to ``h * w`` are possible).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..batching import map_batches
from ..inputs import check_images
from .masking import _check_batch_size, check_convention, masked_forward, model_device, precision_autocast

__all__ = ["map_density"]

_MAP_TOL = 1e-4


def _density(prob: torch.Tensor, mass: torch.Tensor, num_pixels: int) -> torch.Tensor:
    safe = torch.where(mass > 0, mass, torch.ones_like(mass))
    return torch.where(mass > 0, prob * num_pixels / safe, torch.zeros_like(prob))


def map_density(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                targets: torch.Tensor | Sequence[int], convention: str = "image",
                batch_size: int = 64, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Per-image positive / negative map densities (see the module docstring).

    Args:
        model: classifier (``model(x) == model.net(model.normalize(x))``, ``[0, 1]`` images).
        images: ``[N, 3, H, W]`` images in ``[0, 1]``.
        maps: ``[N, H, W]`` maps in ``[0, 1]`` of the image size (values outside raise).
        targets: ``[N]`` class per image.
        convention: ``"image"`` (default, like AD / IC) or ``"normalized"``.
        batch_size: images per chunk; each chunk is one forward pass of ``2 * batch_size``
            inputs (``M (x) X`` and ``(1 - M) (x) X`` together).
        precision: ``"fp32"`` (reference) or ``"bf16"`` (bfloat16 autocast, the GPU fast path).

    Returns:
        ``{"positive": rho+ [N], "negative": rho- [N], "score_positive": psi(f(M X)) [N],
        "score_negative": psi(f((1 - M) X)) [N]}``, float32 on the model's device (no NaN).
    """
    check_convention(convention)
    _check_batch_size(batch_size)
    check_images(images)
    if maps.dim() != 3 or maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps must be [N, H, W] matching images {tuple(images.shape)}, got {tuple(maps.shape)}")
    n = images.shape[0]
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    lo, hi = torch.aminmax(maps)
    if bool(lo < -_MAP_TOL) or bool(hi > 1 + _MAP_TOL):
        raise ValueError("maps must be in [0, 1] (use lib.metrics.minmax_normalize), "
                         f"got range [{float(lo):.4g}, {float(hi):.4g}]")
    device = model_device(model, images.device)
    t_all = torch.as_tensor(targets, device=device).long().reshape(-1)
    if t_all.numel() != n:
        raise ValueError(f"targets must have one class per image ({n}), got {t_all.numel()}")
    num_pixels = maps.shape[-2] * maps.shape[-1]

    def chunk_scores(sl: slice) -> torch.Tensor:  # [n, 4]: psi+, psi-, sum M, sum (1 - M)
        x = images[sl].to(device)
        m = maps[sl].to(device=device, dtype=x.dtype).clamp(0, 1).unsqueeze(1)
        t = t_all[sl, None]
        both = masked_forward(model, torch.cat([x, x]), torch.cat([m, 1 - m]), convention)
        p = torch.softmax(both.float(), dim=1)
        return torch.stack([p[: x.shape[0]].gather(1, t).squeeze(1), p[x.shape[0]:].gather(1, t).squeeze(1),
                            m.float().flatten(1).sum(1), (1 - m.float()).flatten(1).sum(1)], dim=1)

    with torch.no_grad(), precision_autocast(device, precision):  # halved on out-of-memory
        s_pos, s_neg, mass_pos, mass_neg = map_batches(chunk_scores, n, batch_size).unbind(1)
    return {"positive": _density(s_pos, mass_pos, num_pixels),
            "negative": _density(s_neg, mass_neg, num_pixels),
            "score_positive": s_pos, "score_negative": s_neg}
