"""The evaluation data set a run uses: a folder from the data directory, else the packaged photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import DATA_DIR_ENV, get_logger, split_dir
from .folder import ImageFolder
from .photos import PHOTO_LABELS, PhotoDataset, packaged_photos

__all__ = ["open_dataset"]

log = get_logger(__name__)


def open_dataset(
    preprocess,
    split: str = "imagenet-val-1300",
    data_dir: str | Path | None = None,
    ids: Sequence[str] | None = None,
) -> ImageFolder | PhotoDataset:
    """:class:`ImageFolder` of ``split`` in the data directory, or the packaged photos if it is absent.

    ``split`` and ``data_dir`` are resolved by :func:`lib.config.split_dir`.  A folder that exists
    but is malformed raises (no silent fallback); only a missing folder falls back to
    :class:`PhotoDataset`, with a warning naming the path tried.  ``ids`` selects images of the
    folder; with the photos, ids that are photo names select photos and other ids are ignored.
    """
    root = split_dir(split, data_dir)
    if root.is_dir():
        return ImageFolder(root, preprocess, ids=ids)
    log.warning(
        "Data directory absent: %s not found, so the %d photos packaged with scikit-image, matplotlib and "
        "scikit-learn are used instead. To use the data set, set the config key data_dir or the environment "
        "variable %s to the folder holding %s (see data/README.md).",
        root, len(PHOTO_LABELS), DATA_DIR_ENV, Path(split).name,
    )
    if ids is not None:
        chosen = [i for i in ids if i in PHOTO_LABELS]
        if len(chosen) != len(list(ids)):
            log.warning("open_dataset: ids that are not packaged photo names are ignored with the photos")
        if chosen:
            return PhotoDataset(preprocess, packaged_photos(chosen))
    return PhotoDataset(preprocess)
