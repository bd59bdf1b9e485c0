"""Which class each image is explained for: class ids, the predicted class, or the top-k."""

from __future__ import annotations

import re
from typing import Sequence, Union

import torch

__all__ = ["Targets", "resolve_targets", "is_topk", "is_multi_target"]

Targets = Union[str, int, Sequence[int], torch.Tensor]

_TOPK = re.compile(r"^top-?(\d+)$")


def is_topk(targets: Targets) -> bool:
    return isinstance(targets, str) and _TOPK.match(targets.lower()) is not None


def is_multi_target(targets: Targets) -> bool:
    """Several classes per image: ``"top-k"`` or an ``[N, K]`` array of ids (maps come back ``[N, K, H, W]``)."""
    if is_topk(targets):
        return True
    return not isinstance(targets, (str, int)) and torch.as_tensor(targets).ndim == 2


def resolve_targets(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Target class ids as a LongTensor ``[N, K]`` on the logits' device.

    Args:
        logits: ``[N, num_classes]``.
        targets: ``"predicted"`` (argmax, K = 1); ``"top-k"`` / ``"topk"`` (e.g. ``"top3"``: the k
            highest logits, K = k); one int for every image; N ints (list, tuple, tensor);
            or an ``[N, K]`` tensor of ids.
    Raises:
        ValueError naming the bad value and the valid range.
    """
    n, num_classes = logits.shape
    if isinstance(targets, str):
        name = targets.lower()
        if name == "predicted":
            return logits.argmax(1, keepdim=True)
        match = _TOPK.match(name)
        if match:
            k = int(match.group(1))
            if not 1 <= k <= num_classes:
                raise ValueError(f"targets={targets!r}: k must be in 1..{num_classes}.")
            return logits.topk(k, dim=1).indices
        raise ValueError(
            f"Unknown targets {targets!r}. Fix: use 'predicted', 'top-k' (e.g. 'top3'), or class ids."
        )
    ids = torch.as_tensor(targets, device=logits.device)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"Class ids must be integers, got dtype {ids.dtype}.")
    ids = ids.long()
    if ids.ndim == 0:
        ids = ids.expand(n)
    if ids.ndim not in (1, 2) or ids.shape[0] != n:
        raise ValueError(f"Got {tuple(ids.shape)} class ids for {n} images. Fix: give one id per image.")
    bad = (ids < 0) | (ids >= num_classes)
    if bad.any():
        first = int(ids[bad][0])
        raise ValueError(
            f"Class id {first} is out of range: this model has classes 0..{num_classes - 1}."
        )
    return ids.unsqueeze(1) if ids.ndim == 1 else ids
