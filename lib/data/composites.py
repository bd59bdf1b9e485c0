"""Two labelled photos side by side on a grey canvas: multi-object images with a known box per class.

Each photo is fitted (aspect ratio kept) into a ``size/2 x size/2`` tile and centred in it; the two
tiles sit side by side, vertically centred on a ``size x size`` canvas of uniform grey.  A
composite's boxes are the areas its photos actually cover, so they stay exact through any resize
and crop of the preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import get_logger
from .photos import Photo
from .samples import Sample, make_sample

__all__ = ["Composite", "CompositeDataset", "PhotoLike", "make_composite"]

log = get_logger(__name__)

PhotoLike = Photo | tuple[Image.Image, int]
"""A :class:`Photo`, or ``(RGB PIL image, ImageNet-1k label)``."""


@dataclass
class Composite:
    """A composite image (RGB, ``size x size``), its two labels and boxes ``[2, 4]`` xyxy in its pixels."""

    image: Image.Image
    labels: tuple[int, int]
    boxes: torch.Tensor
    name: str = "composite"


def _as_photo(photo: PhotoLike) -> Photo:
    """``photo`` as a :class:`Photo` (an ``(image, label)`` pair is named ``class<label>``)."""
    if isinstance(photo, Photo):
        return photo
    try:
        image, label = photo
    except (TypeError, ValueError):
        raise TypeError(f"Expected a Photo or an (image, label) pair, got {type(photo).__name__}") from None
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL image in the (image, label) pair, got {type(image).__name__}")
    return Photo(f"class{label}", image, label)


def _grey(background: float | Sequence[float]) -> tuple[int, int, int]:
    """A background in ``[0, 1]`` (one value or three) as an 8-bit RGB colour."""
    values = [float(background)] * 3 if isinstance(background, (int, float)) else [float(v) for v in background]
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"background must be one value or three values in [0, 1], got {background!r}")
    return tuple(int(round(v * 255)) for v in values)  # type: ignore[return-value]


def _fit(image: Image.Image, tile: int) -> Image.Image:
    """``image`` resized (aspect kept) to fit a ``tile x tile`` square, touching two of its sides."""
    width, height = image.size
    scale = min(tile / width, tile / height)
    size = (max(1, min(tile, round(width * scale))), max(1, min(tile, round(height * scale))))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=None) if size != image.size else image.copy()


def make_composite(photo_a: PhotoLike, photo_b: PhotoLike, size: int = 448, background: float = 0.5) -> Composite:
    """``photo_a`` left and ``photo_b`` right, each fitted into a ``size // 2`` square tile.

    The tiles are side by side (left tile at ``x = 0``, right tile at ``x = size // 2``) and
    vertically centred on a ``size x size`` canvas of colour ``background`` (in ``[0, 1]``).
    Each photo is centred in its tile; ``boxes[i]`` is the area photo ``i`` covers.
    """
    if int(size) < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")
    size = int(size)
    a, b = _as_photo(photo_a), _as_photo(photo_b)
    tile = size // 2
    canvas = Image.new("RGB", (size, size), _grey(background))
    tile_top = (size - tile) // 2
    boxes = []
    for tile_left, image in ((0, a.image), (tile, b.image)):
        fitted = _fit(image, tile)
        w, h = fitted.size
        left = tile_left + (tile - w) // 2
        top = tile_top + (tile - h) // 2
        canvas.paste(fitted, (left, top))
        boxes.append([left, top, left + w, top + h])
    return Composite(canvas, (a.label, b.label), torch.tensor(boxes, dtype=torch.float32), f"{a.name}+{b.name}")


class CompositeDataset(Dataset):
    """Composites of ``pairs`` as :class:`Sample`: both boxes, ``box_labels`` the two labels.

    ``Sample.label`` is the left photo's label.  Ids are ``"<name a>+<name b>"`` (photo names;
    ``class<label>`` for bare ``(image, label)`` pairs), made unique with a ``#<index>`` suffix.
    Composites are built when read, so a data set of many pairs is cheap to hold.
    """

    def __init__(
        self,
        preprocess,
        pairs: Sequence[tuple[PhotoLike, PhotoLike]],
        size: int = 448,
        background: float = 0.5,
    ) -> None:
        self.preprocess = preprocess
        self.pairs = [(_as_photo(a), _as_photo(b)) for a, b in pairs]
        self.size = size
        self.background = background
        _grey(background)  # validate now, not when reading
        names = [f"{a.name}+{b.name}" for a, b in self.pairs]
        self.ids = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]
        self.labels = {i: a.label for i, (a, _) in zip(self.ids, self.pairs)}

    def __len__(self) -> int:
        return len(self.pairs)

    def composite(self, index: int) -> Composite:
        """The composite of pair ``index`` before preprocessing."""
        a, b = self.pairs[index]
        return make_composite(a, b, self.size, self.background)

    def __getitem__(self, index: int) -> Sample:
        comp = self.composite(index)
        return make_sample(self.ids[index], comp.image, comp.labels[0], comp.boxes, list(comp.labels), self.preprocess)

    def __repr__(self) -> str:
        return f"CompositeDataset({len(self)} pairs, size={self.size})"
