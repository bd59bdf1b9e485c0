"""The explorer's images: packaged photos, the data sample and uploaded files, under one key each.

Keys are stable strings, so they can key caches: ``"photo:<name>"`` (:func:`lib.data.packaged_photos`),
``"sample:<image id>"`` (an :class:`lib.data.ImageFolder` in the data directory) and
``"upload:<sha256 of the bytes>"`` (the same file uploaded twice is one image).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..config import get_logger, split_dir
from ..data import ImageFolder, ImageReadError, PHOTO_LABELS, load_rgb, packaged_photos

__all__ = ["SOURCES", "ImageEntry", "ImageLibrary", "read_upload"]

log = get_logger(__name__)

SOURCES: tuple[str, ...] = ("photos", "data sample", "upload")
"""Where an image comes from; the explorer's source toggle lists these."""

_KEEP_SAMPLES = 32  # data-sample images kept decoded in memory


@dataclass
class ImageEntry:
    """One selectable image: its key, the label shown in the dropdown and its class (``None``: unknown)."""

    key: str
    label: str
    source: str
    true_class: int | None = None


def read_upload(name: str, content: bytes) -> Image.Image:
    """An uploaded file's bytes as an RGB PIL image (via :func:`lib.data.load_rgb`).

    Raises :class:`lib.data.ImageReadError` naming the upload and the fix when the bytes are
    empty, not an image, truncated, or of a mode that cannot be made RGB.
    """
    content = bytes(content)
    if not content:
        raise ImageReadError(f"Upload {name!r} is empty (0 bytes). Fix: upload a JPEG or PNG photo.")
    suffix = Path(name).suffix if Path(name).suffix else ".img"
    with tempfile.TemporaryDirectory(prefix="cam-explorer-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            return load_rgb(path)
        except ImageReadError as err:
            reason = str(err.__cause__ if err.__cause__ is not None else err).replace(str(path), name)
            raise ImageReadError(
                f"Upload {name!r} ({len(content)} bytes) could not be read as an image: {reason}. "
                "Fix: upload a JPEG, PNG or other image file that opens in an image viewer."
            ) from err


class ImageLibrary:
    """Images by key: the packaged photos always, the data sample when its folder exists, uploads.

    Args:
        split: the data sample's folder, resolved by :func:`lib.config.split_dir` (a name inside
            the data directory, e.g. ``"imagenet-val-1300"``, or a path).
        data_dir: the data directory (``None``: ``$CAM_DATA_DIR`` or ``../shared/data``).
        categories: ImageNet class names, for the dropdown labels.

    ``sample_error`` holds why the data sample is unavailable (missing or malformed folder); the
    explorer shows it and keeps working with the photos and uploads.
    """

    def __init__(self, split: str = "imagenet-val-1300", data_dir: str | Path | None = None,
                 categories: list[str] | None = None) -> None:
        self.categories = categories
        self._pil: dict[str, Image.Image] = {}
        self.entries: dict[str, ImageEntry] = {}
        for name, (_, label, _) in PHOTO_LABELS.items():  # decoded on first use
            key = f"photo:{name}"
            self.entries[key] = ImageEntry(key, f"{name} ({self._class_name(label)})", "photos", label)
        self.sample_error: str | None = None
        self._folder: ImageFolder | None = None
        try:
            root = split_dir(split, data_dir)
            self._folder = ImageFolder(root, preprocess=None)
        except Exception as err:  # noqa: BLE001 - shown in the UI; the photos still work
            self.sample_error = f"Data sample unavailable: {err}"
            log.info("%s", self.sample_error)
        else:
            for image_id in self._folder.ids:
                label = self._folder.labels[image_id]
                key = f"sample:{image_id}"
                self.entries[key] = ImageEntry(key, f"{image_id} ({self._class_name(label)})", "data sample", label)

    def _class_name(self, label: int | None) -> str:
        if label is None:
            return "unlabelled"
        return self.categories[label] if self.categories else f"class {label}"

    def options(self, source: str) -> list[tuple[str, str]]:
        """``[(dropdown label, key), ...]`` of one source (see :data:`SOURCES`)."""
        if source not in SOURCES:
            raise ValueError(f"Unknown image source {source!r}. Fix: use one of {', '.join(SOURCES)}.")
        return [(e.label, e.key) for e in self.entries.values() if e.source == source]

    def resolve(self, name: str) -> str:
        """The key of ``name``: a key itself, a photo name (``"chelsea"``) or a data-sample image id."""
        if name in self.entries:
            return name
        for prefix in ("photo", "sample"):
            if f"{prefix}:{name}" in self.entries:
                return f"{prefix}:{name}"
        photos = ", ".join(PHOTO_LABELS)
        raise KeyError(f"Unknown image {name!r}. Fix: use a packaged photo ({photos}), an image id of the data "
                       "sample, or a key from ImageLibrary.options(source).")

    def add_upload(self, name: str, content: bytes) -> str:
        """Read an uploaded file (see :func:`read_upload`) and return its key; errors name the file."""
        image = read_upload(name, content)
        key = f"upload:{hashlib.sha256(bytes(content)).hexdigest()[:16]}"
        self._pil[key] = image
        self.entries[key] = ImageEntry(key, f"{name} ({image.width}x{image.height})", "upload", None)
        return key

    def image(self, key: str) -> Image.Image:
        """The RGB PIL image of ``key`` (data-sample files are read on first use, then kept)."""
        if key not in self.entries:
            raise KeyError(f"Unknown image key {key!r}. Fix: pick an image from the dropdown.")
        if key not in self._pil and key.startswith("photo:"):
            self._pil[key] = packaged_photos([key.split(":", 1)[1]])[0].image
        if key not in self._pil:
            assert self._folder is not None
            read = [k for k in self._pil if k.startswith("sample:")]
            for old in read[: max(0, len(read) - _KEEP_SAMPLES + 1)]:  # keep memory bounded while browsing
                del self._pil[old]
            self._pil[key] = load_rgb(self._folder.path(key.split(":", 1)[1]))
        return self._pil[key]

    def source_of(self, key: str) -> str:
        return self.entries[key].source
