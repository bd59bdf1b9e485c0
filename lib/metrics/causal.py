"""Deletion and insertion games (RISE's causal metrics, as run by UCAG's evaluation code).

Protocol (Petsiuk et al., RISE, ``evaluation.py``; UCAG's settings, PROTOCOLS "Metrics"):

* The pixels of each map are ordered by *decreasing* saliency. Ties are broken
  deterministically with a stable sort: among equal values the lower flat index ``h * W + w``
  comes first (RISE's ``flip(argsort)`` puts the *higher* index first among ties, and numpy's
  default quicksort is not stable; on continuous maps this makes no difference).
* ``n_steps = ceil(H * W / pixels_per_step)``; the curve has ``n_steps + 1`` points. Point ``k``
  (``k = 0 .. n_steps``) is the model's score on the image where the ``min(k * pixels_per_step,
  H * W)`` most salient pixels (all 3 channels) come from ``finish`` and the others from
  ``start``:

  - **deletion**: ``start`` = the image, ``finish`` = the substrate (UCAG and RISE: zeros);
  - **insertion**: ``start`` = the substrate (UCAG: Gaussian blur, kernel 51, sigma 50;
    RISE: kernel 11, sigma 5), ``finish`` = the image.

  So the deletion curve starts at the original score and ends at the substrate's score; the
  insertion curve the other way round.
* Score: the softmax probability of the target class (PROTOCOLS: the ground-truth label).
* ``AUC = (sum(curve) - (curve[0] + curve[-1]) / 2) / (n - 1)`` with ``n = n_steps + 1``: the
  trapezoid rule on ``[0, 1]`` with equal spacing (RISE's ``auc``; the last step may hold fewer
  pixels but counts as a full step, as in RISE).

Spaces (``convention``):

* ``"normalized"`` (default, UCAG / RISE): images are normalised first (``model.normalize``),
  the substrate is computed in the normalised tensor and the mixture is fed to ``model.net``.
  Deletion's zero substrate is therefore the dataset mean colour.
* ``"image"``: everything happens on the ``[0, 1]`` image and the mixture is fed to ``model``;
  the zero substrate is black (as in the AD / IC "image" convention).

The Gaussian blur is :func:`torchvision.transforms.functional.gaussian_blur` (reflect padding;
RISE's ``conv2d`` pads with zeros, which pulls a 25-pixel border towards 0 with kernel 51). With reflect
padding and a kernel that sums to one, blurring commutes with the per-channel affine
normalisation, so ``"blur"`` gives the same mixture in both spaces.

UCAG resizes the 224 x 224 image without a centre crop; that is a data-preparation choice (the
``Preprocess`` of the data set), not part of this function.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..batching import map_batches
from ..maps import gaussian_blur
from ..inputs import check_images
from ..inference import forward_logits
from .masking import _check_batch_size, check_convention, model_device, precision_autocast

__all__ = ["MODES", "SUBSTRATES", "auc", "deletion_insertion", "num_points", "saliency_ranks"]

MODES: tuple[str, ...] = ("deletion", "insertion")
SUBSTRATES: tuple[str, ...] = ("zero", "blur")
_DEFAULT_SUBSTRATE = {"deletion": "zero", "insertion": "blur"}

Substrate = str | Callable[[torch.Tensor], torch.Tensor]


def num_points(num_pixels: int, pixels_per_step: int) -> int:
    """Points of a deletion / insertion curve: ``ceil(num_pixels / pixels_per_step) + 1``."""
    return math.ceil(num_pixels / pixels_per_step) + 1


def auc(curves: torch.Tensor) -> torch.Tensor:
    """RISE's normalised area under each curve ``[..., n]``: ``(sum - (first + last) / 2) / (n - 1)``."""
    n = curves.shape[-1]
    if n < 2:
        raise ValueError(f"a curve needs at least 2 points, got {n}")
    return (curves.sum(-1) - (curves[..., 0] + curves[..., -1]) / 2) / (n - 1)


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Position of every pixel in the order of decreasing saliency: ``[N, H, W] -> [N, H*W]`` long.

    ``ranks[i, p] = r`` means that flat pixel ``p`` of map ``i`` is the ``r``-th most salient
    (``r = 0`` first). Stable: among equal values the lower flat index comes first.
    """
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _substrate_fn(substrate: Substrate, blur_kernel: int, blur_sigma: float
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(substrate):
        return substrate
    if substrate == "zero":
        return torch.zeros_like
    if substrate == "blur":
        if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int) or blur_kernel < 1 \
                or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd int, got {blur_kernel!r}")
        if not (blur_sigma > 0):
            raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")

        def blur(x: torch.Tensor) -> torch.Tensor:
            if blur_kernel // 2 >= min(x.shape[-2:]):
                raise ValueError(f"blur_kernel {blur_kernel} is too large for {tuple(x.shape[-2:])} images "
                                 "(reflect padding needs kernel // 2 < min(H, W))")
            return gaussian_blur(x, blur_kernel, blur_sigma)

        return blur
    raise ValueError(f"unknown substrate {substrate!r}; valid: {', '.join(SUBSTRATES)} or a callable")


def _space(model: nn.Module, convention: str
           ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """``(to_space, forward)`` for the convention: where mixing happens and how it is classified
    (:func:`lib.inference.forward_logits`: the CPU fast path, else PyTorch)."""
    if convention == "image":
        return (lambda x: x), lambda x: forward_logits(model, x)
    return model.normalize, lambda z: forward_logits(model, z, part="net")


def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                       targets: torch.Tensor | Sequence[int], mode: str = "deletion",
                       pixels_per_step: int = 1792, substrate: Substrate | None = None,
                       blur_kernel: int = 51, blur_sigma: float = 50.0,
                       convention: str = "normalized", batch_size: int = 64,
                       precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Per-image deletion or insertion curves and their AUCs (see the module docstring).

    Args:
        model: classifier with ``model(x) == model.net(model.normalize(x))`` for ``[0, 1]`` images.
        images: ``[N, 3, H, W]`` images in ``[0, 1]`` (any device; moved to the model's device in
            chunks).
        maps: ``[N, H, W]`` saliency maps of the image size (only their order matters; finite).
        targets: ``[N]`` class per image (PROTOCOLS: the ground-truth label).
        mode: ``"deletion"`` or ``"insertion"``.
        pixels_per_step: pixels moved per step (UCAG: 1792 = 224 * 8).
        substrate: ``"zero"``, ``"blur"`` or a callable ``z -> substrate`` applied to a
            ``[B, 3, H, W]`` batch in the convention's space. ``None``: the mode's UCAG default
            (deletion ``"zero"``, insertion ``"blur"``).
        blur_kernel, blur_sigma: Gaussian blur of the ``"blur"`` substrate (UCAG: 51, 50).
        convention: ``"normalized"`` (default, UCAG / RISE: mix normalised tensors, classify
            with ``model.net``) or ``"image"`` (mix ``[0, 1]`` images, classify with ``model``).
        batch_size: inputs per forward pass; the (image, step) pairs of a block of
            ``max(1, batch_size // (n_steps + 1))`` images are flattened, so one forward holds
            several steps (of several images); each image's substrate and pixel ranks are computed
            once. Halved on out-of-memory (:func:`lib.batching.map_batches`). Results do not
            depend on it.
        precision: ``"fp32"`` (reference) or ``"bf16"``: forward passes under bfloat16 autocast
            (the GPU fast path); probabilities in float32 from the logits.

    Returns:
        ``{"curves": [N, n_steps + 1], "auc": [N]}``, float32 on the model's device, computed
        under ``torch.no_grad``; every value is a probability in ``[0, 1]`` (never NaN).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    check_convention(convention)
    _check_batch_size(batch_size)
    if isinstance(pixels_per_step, bool) or not isinstance(pixels_per_step, int) or pixels_per_step < 1:
        raise ValueError(f"pixels_per_step must be a positive int, got {pixels_per_step!r}")
    check_images(images)
    if maps.dim() != 3 or maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps must be [N, H, W] matching images {tuple(images.shape)}, got {tuple(maps.shape)}")
    n_images = images.shape[0]
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    make_substrate = _substrate_fn(_DEFAULT_SUBSTRATE[mode] if substrate is None else substrate,
                                   blur_kernel, blur_sigma)
    to_space, forward = _space(model, convention)
    device = model_device(model, images.device)
    t_all = torch.as_tensor(targets, device=device).long().reshape(-1)
    if t_all.numel() != n_images:
        raise ValueError(f"targets must have one class per image ({n_images}), got {t_all.numel()}")

    h, w = images.shape[-2:]
    n = num_points(h * w, pixels_per_step)

    # Images are taken in blocks of about batch_size / n images: each block's substrate (a
    # 51 x 51 blur costs about one forward pass) and pixel ranks are computed once, and its
    # (image, step) pairs are then run through the network in chunks of batch_size.
    block = max(1, batch_size // n)

    def block_curves(images_sl: slice) -> torch.Tensor:
        z = to_space(images[images_sl].to(device))
        sub = make_substrate(z)
        start, finish = (z, sub) if mode == "deletion" else (sub, z)
        ranks = saliency_ranks(maps[images_sl].to(device))  # [m, HW]
        targets_block = t_all[images_sl]

        def scores(jobs: slice) -> torch.Tensor:
            # jobs are flat (image, step) pairs of the block: job j = image j // n, step j % n
            j = torch.arange(jobs.start, jobs.stop, device=device)
            img, step = j // n, j % n
            moved = (ranks[img] < (step * pixels_per_step)[:, None]).view(-1, 1, h, w)
            mixed = torch.where(moved, finish[img], start[img])
            logits = forward(mixed)
            return torch.softmax(logits.float(), dim=1).gather(1, targets_block[img, None]).squeeze(1)

        return map_batches(scores, z.shape[0] * n, batch_size).view(z.shape[0], n)

    with torch.no_grad(), precision_autocast(device, precision):
        curves = torch.cat([block_curves(slice(i, min(i + block, n_images))) for i in range(0, n_images, block)])
    return {"curves": curves, "auc": auc(curves)}
