"""RISE (Petsiuk, Das & Saenko, BMVC 2018): saliency as the score-weighted mean of random masks.

Masks, exactly as the authors' ``generate_masks`` (github.com/eclique/RISE, ``explanations.py``):

1. ``n_masks`` binary grids ``s x s``, each cell 1 with probability ``p1``;
2. each grid is upsampled bilinearly to ``(s + 1) * cell`` pixels, ``cell = ceil(H / s)``
   (skimage ``resize(order=1, mode="reflect", anti_aliasing=False)``: pixel-centre aligned,
   mirrored borders; so each of the ``s`` cells spans ``(s + 1) / s * cell`` pixels);
3. a random shift ``(dx, dy)``, each uniform in ``0 .. cell - 1``, picks the ``H x W`` crop.

Steps 2-3 are computed as two small matrix products per mask (separable bilinear weights of the
cropped rows and columns), equal to skimage's resize to float rounding
(``tests/test_perturbation_cams.py`` checks it).

Saliency for class ``c``: ``S_c = 1 / (n_masks * p1) * sum_i P(c | x * M_i) M_i`` with softmax
probabilities.  The masks are drawn on the model's device from a ``torch.Generator`` seeded with
``seed`` (grids and shifts first, all at once, so the masks do not depend on ``batch_size``; the
same seed gives the same masks on the same kind of device, and the same masks for every image).
They are built chunk by chunk, never all held in memory.  The authors multiply the
*normalised* tensor (``convention="normalized"``); the default ``"image"`` multiplies the
``[0, 1]`` image (black where masked, as in the AD/IC protocol).

No target layer (``target_layer`` is accepted and ignored, for the shared call shape).  Cost:
``n_masks`` masked forward passes per image plus one unmasked pass for the targets (the papers use
4000 for VGG-16 and 8000 for ResNet-50).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .perturbation import PerturbationCAM
from .targets import Targets, resolve_targets

__all__ = ["RISE", "rise_grids", "rise_masks"]


def rise_grids(n_masks: int, s: int, p1: float, size: tuple[int, int], seed: int = 0,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded binary grids ``[n, s, s]`` (float) and shifts ``[n, 2]`` (long) for masks of ``size``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    grids = (torch.rand(n_masks, s, s, generator=generator, device=device) < p1).float()
    cells = [math.ceil(side / s) for side in size]
    shifts = torch.stack(
        [torch.randint(0, cell, (n_masks,), generator=generator, device=device) for cell in cells], dim=1
    )
    return grids, shifts


def _interpolation_matrices(offsets: torch.Tensor, length: int, s: int, up_len: int) -> torch.Tensor:
    """``[n, length, s]`` weights of pixels ``offsets + 0 .. length-1`` of an ``s -> up_len`` bilinear resize.

    Pixel-centre aligned (``src = (dst + 0.5) * s / up_len - 0.5``) with mirrored borders
    (index ``-1`` reads cell 1, index ``s`` reads cell ``s - 2``): skimage's
    ``resize(order=1, mode="reflect")``.
    """
    dst = offsets[:, None].double() + torch.arange(length, device=offsets.device, dtype=torch.float64)
    src = (dst + 0.5) * (s / up_len) - 0.5
    lo = src.floor()
    frac = (src - lo).float()[..., None]
    lo = lo.long()

    def mirror(i: torch.Tensor) -> torch.Tensor:
        if s == 1:
            return torch.zeros_like(i)
        i = i.abs()
        return torch.where(i > s - 1, 2 * (s - 1) - i, i)

    return F.one_hot(mirror(lo), s).float() * (1 - frac) + F.one_hot(mirror(lo + 1), s).float() * frac


def rise_masks(grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks ``[n, H, W]`` in [0, 1] from grids ``[n, s, s]`` and shifts ``[n, 2]`` (see the module doc).

    Bilinear resizing is separable, so each mask is ``Wy @ grid @ Wx^T`` with ``Wy [H, s]`` and
    ``Wx [W, s]`` the interpolation weights of exactly the cropped rows and columns: the
    ``(s + 1) * cell`` upsampled grid is never materialised.
    """
    s = grids.shape[-1]
    height, width = size
    cell_h, cell_w = math.ceil(height / s), math.ceil(width / s)
    wy = _interpolation_matrices(shifts[:, 0], height, s, (s + 1) * cell_h)  # [n, H, s]
    wx = _interpolation_matrices(shifts[:, 1], width, s, (s + 1) * cell_w)  # [n, W, s]
    return wy @ grids @ wx.transpose(1, 2)


class RISE(PerturbationCAM):
    """Randomized Input Sampling for Explanation; see the module docstring.

    Args:
        model: a classifier taking ``[0, 1]`` images.
        target_layer: ignored (RISE looks only at inputs and outputs).
        n_masks: number of random masks ``N`` (4000 in the paper for VGG-16, 8000 for ResNet-50).
        s: grid size (7).
        p1: probability of a grid cell being kept (0.5).
        seed: seed of the mask generator.
        batch_size: masked inputs per forward pass (default: :func:`lib.cams.perturbation.default_batch_size`).
        precision: ``"fp32"`` or ``"bf16"`` (CUDA only).
        convention: ``"image"`` or ``"normalized"`` (the authors' code), see :mod:`lib.cams.perturbation`.
        progress: tqdm bar over the masked passes (``None``: when a call runs >= 512 of them).
    """

    name = "RISE"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, n_masks: int = 4000,
                 s: int = 7, p1: float = 0.5, *, seed: int = 0, batch_size: int | None = None,
                 precision: str = "fp32", convention: str = "image", progress: bool | None = None):
        if isinstance(target_layer, (int, float)) and not isinstance(target_layer, bool):
            raise TypeError(f"RISE got {target_layer!r} as target_layer (RISE has none). Fix: RISE(model, n_masks={target_layer}).")
        if n_masks < 1 or s < 1 or not 0.0 < p1 <= 1.0:
            raise ValueError(f"RISE needs n_masks >= 1, s >= 1 and 0 < p1 <= 1; got {n_masks}, {s}, {p1}.")
        super().__init__(model, None, batch_size=batch_size, precision=precision, convention=convention,
                         progress=progress)
        self.n_masks, self.s, self.p1, self.seed = n_masks, s, p1, seed

    @property
    def forward_passes(self) -> int:
        """``n_masks + 1``: the masked passes plus the unmasked pass that picks the targets."""
        return self.n_masks + 1

    def generate_masks(self, size: tuple[int, int], device: torch.device | str | None = None,
                       start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Masks ``start .. stop`` (default all) of this seed, ``[n, H, W]`` on ``device``."""
        device = self.device if device is None else device
        grids, shifts = rise_grids(self.n_masks, self.s, self.p1, size, self.seed, device)
        return rise_masks(grids[start:stop], shifts[start:stop], size)

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw saliency ``[K, N, H, W]`` and target ids ``[N, K]``."""
        with torch.no_grad():
            device = images.device
            size = tuple(images.shape[-2:])
            with self._autocast(device):
                logits = self.model(images).float()
            ids = resolve_targets(logits, targets)  # [N, K]
            grids, shifts = rise_grids(self.n_masks, self.s, self.p1, size, self.seed, device)
            base = self._base(images)
            n_img, m = images.shape[0], self.n_masks
            saliency = torch.zeros(n_img, ids.shape[1], size[0] * size[1], device=device)

            def scores(chunk: slice, n: int) -> torch.Tensor:
                masks = rise_masks(grids[chunk], shifts[chunk], size)  # [b, H, W]
                probs = self._logits(base[n : n + 1] * masks[:, None]).softmax(-1)
                p = probs[:, ids[n]]  # [b, K]
                saliency[n] += p.transpose(0, 1) @ masks.flatten(1)  # one deterministic matmul, no atomics
                return p

            with self._progress_bar(n_img * m, self.name) as bar:
                for n in range(n_img):  # masks are rebuilt per image and chunk: cheap next to the forwards
                    self._batched(functools.partial(scores, n=n), m, device, bar)
            saliency = saliency / (m * self.p1)
            return saliency.view(n_img, -1, *size).transpose(0, 1), ids
