"""What every data set yields (:class:`Sample`), batching (:class:`Batch`) and seeded subsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["Batch", "Sample", "collate_samples", "make_sample", "seeded_subset"]


@dataclass
class Sample:
    """One preprocessed image with its class and object boxes.

    ``image`` is ``[3, H, W]`` float in ``[0, 1]`` (after ``preprocess.geometry``; not normalised);
    ``boxes`` is ``[K, 4]`` float ``x0, y0, x1, y1`` in pixels of that preprocessed image (continuous
    pixel edges, clipped to the crop: a box cut off by the crop has zero area); ``box_labels`` is
    ``[K]`` long, the class of each box.  Images without boxes have ``K = 0``.
    """

    image_id: str
    image: torch.Tensor
    label: int
    boxes: torch.Tensor
    box_labels: torch.Tensor


@dataclass
class Batch:
    """Samples stacked for a model: ``images [N, 3, H, W]``, ``labels [N]`` and per-image boxes."""

    image_ids: list[str]
    images: torch.Tensor
    labels: torch.Tensor
    boxes: list[torch.Tensor]
    box_labels: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.image_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor on ``device``."""
        return Batch(
            list(self.image_ids),
            self.images.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            [b.to(device, non_blocking=non_blocking) for b in self.boxes],
            [b.to(device, non_blocking=non_blocking) for b in self.box_labels],
        )


def collate_samples(samples: Sequence[Sample]) -> Batch:
    """``collate_fn`` for a :class:`torch.utils.data.DataLoader` over any data set of this package."""
    if not samples:
        raise ValueError("collate_samples got an empty list of samples")
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(
            f"Cannot batch images of different sizes {sorted(shapes)}: give every data set the same "
            "Preprocess (its centre crop makes all images the same size)."
        )
    return Batch(
        image_ids=[s.image_id for s in samples],
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([int(s.label) for s in samples], dtype=torch.long),
        boxes=[s.boxes for s in samples],
        box_labels=[s.box_labels for s in samples],
    )


def make_sample(image_id: str, image: Image.Image, label: int, boxes, box_labels, preprocess) -> Sample:
    """Preprocess an RGB PIL image and its boxes (``[K, 4]`` xyxy in the PIL image's pixels)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    box_labels = torch.as_tensor(box_labels, dtype=torch.long).reshape(-1)
    if len(boxes) != len(box_labels):
        raise ValueError(f"{image_id}: {len(boxes)} boxes but {len(box_labels)} box labels")
    width, height = image.size
    if len(boxes):
        boxes = preprocess.transform_boxes(boxes, width, height)
    return Sample(image_id, preprocess.geometry(image), int(label), boxes, box_labels)


def seeded_subset(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` of ``ids`` chosen by ``seed``: the first ``n`` of a seeded permutation of the sorted ids.

    Deterministic across runs and machines (NumPy ``default_rng(seed)``); a smaller ``n`` gives a
    prefix of a larger ``n``'s list.  ``n <= 0`` or ``n >= len(ids)`` returns every id, sorted.
    """
    if isinstance(ids, str):
        raise TypeError("seeded_subset expects a sequence of image ids, not one string")
    ordered = sorted(ids)
    if n <= 0 or n >= len(ordered):
        return ordered
    order = np.random.default_rng(seed).permutation(len(ordered))[: int(n)]
    return [ordered[i] for i in order]
