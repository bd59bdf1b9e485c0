"""UCAG's unfold and fold (Unfold and Conquer Attribution Guidance, Alg. 1 lines 2-4 and Eq. 5-6).

Geometry (the authors' constants, PROTOCOLS.md): ``n = 6`` crops per side (36 in all), each of
side ``rho * S`` (``rho = 0.555``: 124 px of a 224 px image), placed at ``n`` evenly spaced offsets
from 0 to ``S - crop`` (stride 20 at 224 px), and upscaled by ``alpha = 2.6`` (124 -> 322 px,
bicubic) before the explained network sees it.  Offsets are rounded when ``S - crop`` is not a
multiple of ``n - 1`` (e.g. Lite2's 260 px), so every image size works.

Folding (Eq. 6) sums the crops' maps, scaled back to the crop size (``beta = 1 / alpha``), at their
places and divides each pixel by the number of crops covering it (the duplication matrix Gamma).
``count_init`` is what Gamma starts from: 0 gives the average the paper describes (a constant map
folds back to the same constant); the released code starts from ones, i.e. divides by
``count + 1``, which shrinks the border pixels (fewer crops) more than the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["UnfoldGeometry", "unfold_crops", "fold_maps", "duplication_matrix"]


@dataclass(frozen=True)
class UnfoldGeometry:
    """Where the ``n * n`` crops of a ``size x size`` image lie and how large the network sees them."""

    size: int
    n: int = 6
    rho: float = 0.555
    alpha: float = 2.6

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n (crops per side) must be >= 1, got {self.n}.")
        if not 0.0 < self.rho <= 1.0:
            raise ValueError(f"rho (crop side / image side) must be in (0, 1], got {self.rho}.")
        if self.alpha <= 0:
            raise ValueError(f"alpha (upscaling of each crop) must be > 0, got {self.alpha}.")
        if self.n > 1 and self.rho == 1.0:
            raise ValueError("rho = 1 makes every crop the whole image; use n = 1 or rho < 1.")

    @property
    def crop(self) -> int:
        """Crop side in pixels: ``round(rho * size)`` (124 at 224 px)."""
        return max(1, round(self.rho * self.size))

    @property
    def scaled(self) -> int:
        """Side of an upscaled crop: ``round(alpha * crop)`` (322 for a 124 px crop)."""
        return max(1, round(self.alpha * self.crop))

    @property
    def offsets(self) -> list[int]:
        """Top/left offsets along one axis: ``n`` evenly spaced from 0 to ``size - crop``."""
        if self.n == 1:
            return [(self.size - self.crop) // 2]
        span = self.size - self.crop
        return [round(i * span / (self.n - 1)) for i in range(self.n)]

    @property
    def positions(self) -> list[tuple[int, int]]:
        """``(top, left)`` of every crop, row by row: ``n * n`` of them."""
        return [(top, left) for top in self.offsets for left in self.offsets]


def _check_square(images: torch.Tensor, geometry: UnfoldGeometry) -> None:
    if images.ndim != 4 or images.shape[-2:] != (geometry.size, geometry.size):
        raise ValueError(f"expected [N, C, {geometry.size}, {geometry.size}] for this geometry, got "
                         f"{tuple(images.shape)}. Fix: build UnfoldGeometry(size=image side).")


def unfold_crops(images: torch.Tensor, geometry: UnfoldGeometry) -> torch.Tensor:
    """Alg. 1 lines 3-4: ``[N, C, S, S]`` -> upscaled crops ``[N, n*n, C, s, s]`` (``s = geometry.scaled``).

    Bicubic upscaling (as the released code), clamped to the input's range so that a [0, 1] image
    stays in [0, 1].
    """
    _check_square(images, geometry)
    c = geometry.crop
    crops = torch.stack([images[:, :, t:t + c, l:l + c] for t, l in geometry.positions], dim=1)
    flat = crops.flatten(0, 1)
    if geometry.scaled != c:
        flat = F.interpolate(flat, size=(geometry.scaled, geometry.scaled), mode="bicubic", align_corners=False)
        flat = flat.clamp(images.min(), images.max())
    return flat.unflatten(0, crops.shape[:2])


def duplication_matrix(geometry: UnfoldGeometry, count_init: float = 0.0, device=None) -> torch.Tensor:
    """Gamma ``[S, S]``: how many crops cover each pixel, plus ``count_init``."""
    count = torch.full((geometry.size, geometry.size), float(count_init), device=device)
    c = geometry.crop
    for t, l in geometry.positions:
        count[t:t + c, l:l + c] += 1
    return count


def fold_maps(maps: torch.Tensor, geometry: UnfoldGeometry, weights: torch.Tensor | None = None,
              count_init: float = 0.0) -> torch.Tensor:
    """Eq. 5-6: crop maps ``[N, n*n, h, w]`` (any resolution) -> ``[N, S, S]``.

    Each map is resized to the crop (bilinear: the scaling Psi with ``beta``), multiplied by its
    weight ``[N, n*n]`` (Y_s^k; ``None``: 1), added at its place, and every pixel divided by the
    duplication matrix (``count_init`` + the crops covering it).  Signs are kept: UCAG folds raw,
    un-ReLU'd maps.
    """
    n_crops = len(geometry.positions)
    if maps.ndim != 4 or maps.shape[1] != n_crops:
        raise ValueError(f"maps must be [N, {n_crops}, h, w] (one per crop), got {tuple(maps.shape)}.")
    c = geometry.crop
    resized = F.interpolate(maps.flatten(0, 1)[:, None].float(), size=(c, c), mode="bilinear",
                            align_corners=False)[:, 0].unflatten(0, maps.shape[:2])
    if weights is not None:
        if weights.shape != maps.shape[:2]:
            raise ValueError(f"weights must be [N, {n_crops}], got {tuple(weights.shape)}.")
        resized = resized * weights[..., None, None].to(resized.dtype)
    canvas = resized.new_zeros((maps.shape[0], geometry.size, geometry.size))
    for k, (t, l) in enumerate(geometry.positions):
        canvas[:, t:t + c, l:l + c] += resized[:, k]
    count = duplication_matrix(geometry, count_init, device=canvas.device)
    return canvas / count.clamp_min(1e-12)
