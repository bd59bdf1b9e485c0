"""Preprocessing shared by images and their boxes.

Every classifier in :mod:`lib.models` carries a :class:`Preprocess`.  It is split in two
steps so that both masking conventions of PROTOCOLS.md are easy to express:

1. :meth:`Preprocess.geometry` turns a PIL image into a ``[3, crop, crop]`` float tensor in
   ``[0, 1]`` (resize of the shorter side, then centre crop).  Boxes follow the same
   resize and crop through :meth:`Preprocess.transform_boxes`.
2. :meth:`Preprocess.normalize` maps ``[0, 1]`` images to the tensor the network expects
   (``(x - mean) / std``).  :class:`lib.models.Classifier` applies it inside ``forward``, so
   classifiers take ``[0, 1]`` images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

__all__ = ["Preprocess"]


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop``, normalise with mean/std.

    ``mean`` and ``std`` are in ``[0, 1]`` units (EfficientNet-Lite's ``(x - 127) / 128``
    on ``[0, 255]`` is ``mean = 127/255``, ``std = 128/255``).
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @property
    def _mode(self) -> InterpolationMode:
        return InterpolationMode(self.interpolation)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Size ``(w, h)`` after resizing the shorter side to ``resize`` (torchvision's rule)."""
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def geometry(self, image: Image.Image) -> torch.Tensor:
        """PIL RGB image -> ``[3, crop, crop]`` float32 tensor in ``[0, 1]``."""
        w, h = self.resized_size(*image.size)
        image = TF.resize(image, [h, w], interpolation=self._mode, antialias=True)
        image = TF.center_crop(image, [self.crop, self.crop])
        return TF.to_tensor(image)

    def crop_offset(self, width: int, height: int) -> tuple[float, float]:
        """Top-left corner ``(x, y)`` of the centre crop in the resized image (torchvision's rounding)."""
        w, h = self.resized_size(width, height)
        return float(int(round((w - self.crop) / 2.0))), float(int(round((h - self.crop) / 2.0)))

    def transform_boxes(self, boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Map ``[K, 4]`` ``x0, y0, x1, y1`` boxes in original pixels through resize and crop.

        Coordinates are continuous pixel edges (0 is the left edge of the first pixel), scaled
        by the resize factors, shifted by the crop offset and clipped to the crop.  A box that
        falls entirely outside the crop comes back with zero area (``x0 == x1`` or ``y0 == y1``).
        """
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        w, h = self.resized_size(width, height)
        scale = torch.tensor([w / width, h / height, w / width, h / height])
        ox, oy = self.crop_offset(width, height)
        out = boxes * scale - torch.tensor([ox, oy, ox, oy])
        return out.clamp(0.0, float(self.crop))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` images in ``[0, 1]`` -> network input ``(x - mean) / std``."""
        mean = torch.as_tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.as_tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Geometry only: the ``[0, 1]`` tensor a :class:`lib.models.Classifier` takes."""
        return self.geometry(image)
