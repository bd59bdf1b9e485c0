"""Feeding masked images ("explanation maps") to a classifier, under two conventions.

The model protocol is duck-typed: ``model(x) == model.net(model.normalize(x))`` for ``[0, 1]``
images ``x`` of shape ``[N, 3, H, W]``; logits ``[N, C]``.

* ``"image"`` (default; L-CAM's evaluation code, PROTOCOLS "Metrics"): the explanation is the
  ``[0, 1]`` image times the mask, normalised afterwards: ``model(images * mask)``. Muted pixels
  are black, not the dataset mean.
* ``"normalized"`` (pytorch-grad-cam, TorchCAM): the mask multiplies the normalised tensor:
  ``model.net(model.normalize(images) * mask)``. Muted pixels are the dataset mean.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from ..inference import forward_logits
from ..inputs import check_images
from ..precision import PRECISIONS, precision_autocast

__all__ = ["CONVENTIONS", "PRECISIONS", "explanation_logits", "model_device", "check_convention", "precision_autocast"]

CONVENTIONS: tuple[str, ...] = ("image", "normalized")


def check_convention(convention: str) -> str:
    """Return ``convention`` if valid, else raise ``ValueError`` listing the valid ones."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid conventions: {', '.join(CONVENTIONS)}")
    return convention


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def model_device(model: nn.Module, fallback: torch.device | None = None) -> torch.device:
    """The device of the model's first parameter (or buffer); ``fallback`` (or CPU) if it has none."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback if fallback is not None else torch.device("cpu")


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0:b], [b:2b], ...`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _as_mask(masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` (or ``[N, 1, H, W]``) masks as ``[N, 1, H, W]``, checked against the images."""
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    if masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)} (N, H, W)")
    return masks


def masked_forward(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, convention: str) -> torch.Tensor:
    """One forward pass of the explanation ``images (x) masks`` (``masks`` ``[N, 1, H, W]``), no chunking.

    Runs on :func:`lib.inference.forward_logits` (the CPU fast path under ``no_grad``, PyTorch otherwise).
    """
    if convention == "image":
        return forward_logits(model, images * masks)
    return forward_logits(model, model.normalize(images) * masks, part="net")


def explanation_logits(model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                       convention: str = "image", batch_size: int = 64) -> torch.Tensor:
    """Logits of the classifier on the explanation maps ``images (x) masks``.

    Args:
        model: classifier following the module protocol (``model.net``, ``model.normalize``).
        images: ``[N, 3, H, W]`` images in ``[0, 1]`` (any device; moved chunk by chunk).
        masks: ``[N, H, W]`` masks, broadcast over the channels.
        convention: ``"image"`` -> ``model(images * mask)``; ``"normalized"`` ->
            ``model.net(model.normalize(images) * mask)`` (see the module docstring).
        batch_size: forward passes are done in chunks of this many images.

    Returns:
        ``[N, C]`` logits on the model's device, computed under ``torch.no_grad``.
    """
    check_convention(convention)
    _check_batch_size(batch_size)
    check_images(images)
    masks = _as_mask(masks, images)
    device = model_device(model, images.device)
    out = []
    with torch.no_grad():
        for sl in chunks(images.shape[0], batch_size):
            x = images[sl].to(device)
            m = masks[sl].to(device=device, dtype=x.dtype)
            out.append(masked_forward(model, x, m, convention))
    return torch.cat(out)
