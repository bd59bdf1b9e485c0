"""Read one image file as an RGB PIL image, with a clear error when it cannot be read."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..config import get_logger
from .errors import ImageReadError

__all__ = ["ImageReadError", "load_rgb", "to_rgb"]

log = get_logger(__name__)

_FIX = "re-copy the file from its source (check it with SHA256SUMS), or remove its row from labels.csv"
_warned_truncated = False
_HIGH_BIT_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def _composite_over_white(image: Image.Image) -> Image.Image:
    """An image with transparency, flattened over a white background."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_bit_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float greyscale -> 8-bit RGB (PIL's own conversion clips at 255)."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = values.max(initial=0.0)
    if image.mode.startswith("I;16") or top > 255.0:
        values = values / 257.0  # 16-bit: 65535 -> 255
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0  # float image in [0, 1]
    grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """``image`` in mode RGB: greyscale, palette, CMYK, 16-bit and transparent images converted.

    Transparent images (RGBA, LA, PA, palette with transparency) are composited over white.
    Each conversion is logged at INFO level, naming ``name``.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    transparent = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in image.info)
    try:
        if transparent:
            out, how = _composite_over_white(image), " (composited over white)"
        elif mode in _HIGH_BIT_MODES:
            out, how = _high_bit_to_rgb(image), " (scaled to 8 bits)"
        else:
            out, how = image.convert("RGB"), ""
    except (ValueError, OSError) as err:
        raise ImageReadError(
            f"{name}: cannot convert an image of mode {mode!r} to RGB ({err}). "
            f"Save it as an RGB JPEG or PNG, or remove its row from labels.csv."
        ) from err
    log.info("%s: converted a mode %s image to RGB%s", name, mode, how)
    return out


def load_rgb(path: str | Path) -> Image.Image:
    """Open ``path``, decode it fully and return it in mode RGB.

    Decoding is forced here (``Image.load``), so a truncated file fails at once rather than
    inside a batch.  Unreadable, truncated or non-image files raise :class:`ImageReadError`
    naming the file and the fix; non-RGB images are converted (see :func:`to_rgb`).
    """
    path = Path(path)
    global _warned_truncated
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
        _warned_truncated = True
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set (by some other code): truncated files will not be detected")
    try:
        with warnings.catch_warnings():
            # PIL warns (rather than fails) on some corrupt EXIF data; that is harmless here.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as opened:
                opened.load()
                image = to_rgb(opened, str(path))
                if image is opened:
                    image = opened.copy()  # closing ``opened`` invalidates it; keep a detached copy
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(f"Image file not found: {path}. Fix: {_FIX}.") from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            f"{path}: image is too large for PIL's decompression-bomb guard ({err}). Fix: shrink the image, "
            "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        kind = "truncated" if "truncated" in str(err).lower() else "unreadable (not an image, or corrupt)"
        raise ImageReadError(f"Cannot read image {path}: file is {kind} ({err}). Fix: {_FIX}.") from err
    return image
