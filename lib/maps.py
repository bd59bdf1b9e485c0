"""Map post-processing shared by CAM methods and metrics: min-max normalisation and upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

__all__ = ["minmax_normalize", "upsample", "gaussian_blur"]


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


def gaussian_blur(images: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """The one Gaussian blur of the library: ``[..., H, W]`` blurred with an isotropic ``kernel_size``
    x ``kernel_size`` Gaussian of standard deviation ``sigma``, "same" size, by
    :func:`torchvision.transforms.functional.gaussian_blur` (reflect borders, i.e. mirrored without
    repeating the edge pixel; the kernel ``exp(-x^2 / 2 sigma^2)`` at ``x = -(k//2) .. k//2``, as
    kornia's ``gaussian_blur2d`` and the released Group-CAM / UCAG code). Used by Group-CAM's and
    SA-CAM's blurred baselines, the blur substrate of deletion/insertion and UCAG's last step.
    Images no larger than the kernel's half-width cannot be mirrored: they are padded by repeating
    the edge first."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size!r}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    pad = kernel_size // 2
    if pad < min(images.shape[-2:]):
        return TF.gaussian_blur(images, [kernel_size, kernel_size], [float(sigma), float(sigma)])
    shape = images.shape
    flat = images.reshape(-1, 1, *shape[-2:])
    big = F.pad(flat, (pad, pad, pad, pad), mode="replicate")
    out = TF.gaussian_blur(big, [kernel_size, kernel_size], [float(sigma), float(sigma)])
    return out[..., pad:pad + shape[-2], pad:pad + shape[-1]].reshape(shape)
