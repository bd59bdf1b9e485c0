"""Labelled photos that ship inside installed packages: a data set that needs no data directory.

scikit-image (``chelsea``, ``coffee``, ``rocket``, the two ``stereo_motorcycle`` views), matplotlib
(``grace_hopper.jpg``) and scikit-learn (``china.jpg``) install these files with the package, so
they load offline.  ``label`` is the ImageNet-1k class the photo shows; ``acceptable_labels`` are
the classes a correct prediction may name (e.g. the three cat breeds a tabby can be taken for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import get_logger
from .errors import check_label
from .images import to_rgb
from .samples import Sample, make_sample

__all__ = ["PHOTO_LABELS", "Photo", "PhotoDataset", "packaged_photos"]

log = get_logger(__name__)


@dataclass
class Photo:
    """A named RGB photo with its ImageNet-1k label and the labels a correct prediction may name."""

    name: str
    image: Image.Image
    label: int
    acceptable_labels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        self.label = check_label(self.label, f"photo {self.name!r}")
        self.image = to_rgb(self.image, f"photo {self.name!r}")
        accepted = tuple(check_label(v, f"photo {self.name!r}") for v in self.acceptable_labels)
        self.acceptable_labels = accepted if self.label in accepted else (self.label, *accepted)


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


def _matplotlib(filename: str) -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data(filename) as handle, Image.open(handle) as image:
        return np.asarray(image.convert("RGB"))


def _sklearn(filename: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image(filename)


# name -> (loader, label, acceptable labels)
PHOTO_LABELS: dict[str, tuple[Callable[[], np.ndarray], int, tuple[int, ...]]] = {
    "chelsea": (lambda: _skimage("chelsea"), 281, (281, 282, 285)),  # tabby, tiger cat, Egyptian cat
    "coffee": (lambda: _skimage("coffee"), 967, (967, 968)),  # espresso, cup
    "rocket": (lambda: _skimage("rocket"), 657, (657, 744)),  # missile, projectile
    "motorcycle_left": (lambda: _skimage("motorcycle_left"), 665, (665, 670)),  # moped, motor scooter
    "motorcycle_right": (lambda: _skimage("motorcycle_right"), 665, (665, 670)),
    "grace_hopper": (lambda: _matplotlib("grace_hopper.jpg"), 652, (652,)),  # military uniform
    "china": (lambda: _sklearn("china.jpg"), 698, (698,)),  # palace
}
"""The packaged photos: name -> (loader of an ``[H, W, 3]`` uint8 array, label, acceptable labels)."""


@lru_cache(maxsize=None)
def _pixels(name: str) -> np.ndarray:
    array = np.ascontiguousarray(PHOTO_LABELS[name][0]())
    array.setflags(write=False)
    return array


def packaged_photos(names: Sequence[str] | None = None) -> list[Photo]:
    """The packaged photos (all, or ``names`` in that order) as fresh :class:`Photo` objects."""
    names = list(PHOTO_LABELS) if names is None else list(names)
    unknown = [n for n in names if n not in PHOTO_LABELS]
    if unknown:
        raise KeyError(f"Unknown packaged photo(s) {unknown}; choose from {list(PHOTO_LABELS)}")
    photos = []
    for name in names:
        _, label, acceptable = PHOTO_LABELS[name]
        photos.append(Photo(name, Image.fromarray(_pixels(name)).convert("RGB"), label, acceptable))
    return photos


class PhotoDataset(Dataset):
    """Photos as :class:`Sample` (ids = photo names); each has one box covering the whole photo."""

    def __init__(self, preprocess, photos: Sequence[Photo] | None = None) -> None:
        self.preprocess = preprocess
        self.photos = list(packaged_photos() if photos is None else photos)
        self.ids = [p.name for p in self.photos]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"PhotoDataset: photo names must be unique, got {self.ids}")
        self.labels = {p.name: p.label for p in self.photos}

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> Sample:
        photo = self.photos[index]
        width, height = photo.image.size
        box = torch.tensor([[0.0, 0.0, float(width), float(height)]])
        return make_sample(photo.name, photo.image, photo.label, box, [photo.label], self.preprocess)

    def __repr__(self) -> str:
        return f"PhotoDataset({self.ids})"
