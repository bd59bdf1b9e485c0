"""Map post-processing shared by CAM methods and metrics: min-max normalisation and upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["minmax_normalize", "upsample"]


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each map of ``[..., H, W]`` to ``[0, 1]`` over its own H, W.

    ``(m - min) / (max - min)``; a constant map (``max - min <= eps``) becomes all zeros, never
    NaN: a map that ranks no pixel above another carries no explanation.
    """
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """Bilinear (``align_corners=False``, like OpenCV's ``INTER_LINEAR``) resize of ``[..., h, w]`` maps."""
    if isinstance(size, int):
        size = (size, size)
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size, mode="bilinear",
                        align_corners=False)
    return out.view(*lead, *size)
