"""Errors raised while reading data sets; each message names the input and the fix."""

from __future__ import annotations

__all__ = ["ChecksumError", "DataDirError", "DataFormatError", "ImageReadError", "NUM_CLASSES", "check_label"]

NUM_CLASSES = 1000
"""ImageNet-1k: labels are 0-based class indices in the standard (sorted-wnid) order."""


class DataDirError(FileNotFoundError):
    """A data folder, one of its files, or a requested image is missing."""


class DataFormatError(ValueError):
    """A labels or boxes file is malformed (missing columns, a label out of range, a bad number)."""


class ImageReadError(ValueError):
    """An image file cannot be read (missing, truncated, not an image, unsupported mode)."""


class ChecksumError(ValueError):
    """Files do not match their ``SHA256SUMS`` entries, or are missing."""


def check_label(label: object, where: str) -> int:
    """``label`` as an int in ``0..NUM_CLASSES-1``, else :class:`DataFormatError` naming ``where``."""
    try:
        value = int(label)  # type: ignore[arg-type]
        if value != label and not (isinstance(label, str) and label.strip() == str(value)):
            raise ValueError
    except (TypeError, ValueError):
        raise DataFormatError(
            f"{where}: label {label!r} is not an integer; labels are 0-based ImageNet-1k class indices "
            f"(0..{NUM_CLASSES - 1}). Fix the label or remove the row."
        ) from None
    if not 0 <= value < NUM_CLASSES:
        raise DataFormatError(
            f"{where}: label {value} is outside 0..{NUM_CLASSES - 1} (0-based ImageNet-1k class indices, "
            "sorted-wnid order). Fix the label (a 1-based label needs 1 subtracted) or remove the row."
        )
    return value
