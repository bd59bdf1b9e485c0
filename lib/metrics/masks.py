"""Explanation masks for the AD / IC family of metrics.

``phi`` is L-CAM's ``phi_nu``: keep the top ``nu`` fraction of the pixels of a saliency map
(with their soft values), zero the rest. With ``binary=True`` it is the mask of the
attention-guided Grad-CAM paper (Sec. 4.2: "the top 5, 10, 20, 25, and 50% of pixels were 1 and
the rest 0").
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from ..maps import minmax_normalize  # re-exported: one implementation for CAMs and metrics

__all__ = ["minmax_normalize", "phi", "num_kept", "top_k_pixels"]


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, Real):
        raise ValueError(f"fraction must be a real number in (0, 1], got {fraction!r}")
    fraction = float(fraction)
    if not (0.0 < fraction <= 1.0):  # also rejects NaN
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return fraction


def num_kept(fraction: float, num_pixels: int) -> int:
    """``k = ceil(fraction * num_pixels)``, the number of pixels ``phi`` keeps (at least 1).

    The product is rounded to 9 decimals before the ceiling so that float noise does not add a
    pixel (``0.07 * 100 = 7.000000000000001`` gives 7, not 8).
    """
    fraction = _check_fraction(fraction)
    return max(1, min(num_pixels, math.ceil(round(fraction * num_pixels, 9))))


def top_k_pixels(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``[N, P]`` bool: the ``k`` largest values of each row of ``flat``, ties broken towards the lower index.

    The same pixels as the first ``k`` of a stable descending sort, found without sorting: the ``k``-th largest
    value ``v`` (``torch.kthvalue``, linear time), every pixel above ``v``, then the pixels equal to ``v`` in index
    order until ``k`` are kept (about five times faster than the sort on 224 x 224 maps)."""
    threshold = torch.kthvalue(flat, flat.shape[1] - k + 1, dim=1, keepdim=True).values
    above = flat > threshold
    tied = flat == threshold
    return above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))


def phi(maps: torch.Tensor, fraction: float, binary: bool = False) -> torch.Tensor:
    """Keep the top ``fraction`` of the pixels of each map (L-CAM's ``phi_nu``).

    Args:
        maps: ``[N, H, W]`` saliency maps, already min-max normalised to ``[0, 1]`` and of the
            image size.
        fraction: ``nu`` in ``(0, 1]``; exactly ``k = ceil(fraction * H * W)`` pixels of each map
            are kept (see :func:`num_kept`).
        binary: ``False`` (soft, PROTOCOLS "phi_nu ... with their soft values"): kept pixels keep
            their map value, the others are 0. ``True``: kept pixels are 1, the others 0 (the
            attention-guided paper's binarised mask).

    Ties are broken deterministically: the flattened (row-major) map is sorted in descending
    order with a *stable* sort, so among equal values the pixel with the lower flat index
    ``h * W + w`` is kept first. ``fraction == 1`` keeps every pixel: the soft result is the map
    itself (a copy), the binary result all ones.

    Returns:
        ``[N, H, W]`` masks, same dtype and device as ``maps``.
    """
    fraction = _check_fraction(fraction)
    if maps.dim() != 3:
        raise ValueError(f"maps must be [N, H, W], got shape {tuple(maps.shape)}")
    n, h, w = maps.shape
    if fraction == 1.0:
        return torch.ones_like(maps) if binary else maps.clone()
    k = num_kept(fraction, h * w)
    flat = maps.reshape(n, h * w)
    keep = top_k_pixels(flat, k)
    if binary:
        out = keep.to(maps.dtype)
    else:
        out = torch.where(keep, flat, torch.zeros_like(flat))
    return out.view(n, h, w)
