"""The one check of the images every CAM method and metric takes: a ``[N, 3, H, W]`` float batch in ``[0, 1]``.

The classifiers of :mod:`lib.models` normalise ``[0, 1]`` images themselves, so an image in any
other form (``uint8``, 0..255 floats, already normalised with the ImageNet mean/std, NaN, a
missing batch dimension, channels last) would otherwise give a confident wrong map or score with
no word.  :func:`check_images` refuses them with a message that names what was found and the fix.

It is called once at each public entry point (``CAM.__call__``, ``raw``, ``signed_raw``,
FM-G-CAM's ``explain``, UCAG, SA-CAM's ``candidate_maps``, the metrics of :mod:`lib.metrics`),
never on the intermediate tensors a method builds itself (UCAG's crops, masked, blurred or
noisy copies: SmoothGrad-CAM++'s and SA-CAM's noise leaves ``[0, 1]`` on purpose).
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_images", "IMAGE_TOL"]

IMAGE_TOL = 1e-3
"""Values in ``[-IMAGE_TOL, 1 + IMAGE_TOL]`` pass (float noise of a resize or a sum, ~1e-6, is far
below it; the smallest mistake it must catch, a ``[-1, 1]`` or 0..255 image, is far above)."""

_EXPECTED = "a float tensor [N, 3, H, W] with values in [0, 1]"
_SMALL_OVERSHOOT = 0.1  # beyond the tolerance but within this of [0, 1]: a resize overshoot, not a unit mistake


def check_images(images: torch.Tensor, *, name: str = "images") -> torch.Tensor:
    """Return ``images`` unchanged (not copied, not clamped) if it is a ``[N, 3, H, W]`` float batch in [0, 1].

    Args:
        images: what a method or metric was given.
        name: how the message calls it (e.g. ``"hosts"``).

    Values may lie :data:`IMAGE_TOL` (1e-3) outside ``[0, 1]``; they are passed on as they are.
    Any floating dtype passes (float32, float64, float16, bfloat16), on any device.

    Cost: one ``aminmax`` reduction and one host synchronisation (two numbers); the NaN / inf
    counts of the message are taken only when the check fails.

    Raises:
        TypeError: not a ``torch.Tensor``, or not a floating-point dtype (``uint8``: "convert with
            ``images.float() / 255``"; other integers, ``bool``, complex).  A wrong shape of such a
            tensor is named in the same message.
        ValueError: a shape other than ``[N, 3, H, W]`` (a single ``[3, H, W]`` image, channels last
            ``[N, H, W, 3]``, another channel count), an empty batch or image (``N``, ``H`` or ``W``
            is 0), NaN or inf values ("k of M values are NaN"), values below ``-IMAGE_TOL`` (these
            look normalised) or above ``1 + IMAGE_TOL`` (0..255 pixels, or a resize overshoot).
    """
    if not isinstance(images, torch.Tensor):
        kind = type(images)
        found = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"{name} must be a torch.Tensor ({_EXPECTED}), got a {found}. "
                        "Fix: model.preprocess(pil_image)[None] for a PIL image, or torch.from_numpy(array) "
                        "(then [N, 3, H, W] floats in [0, 1]).")
    problems = [p for p in (_shape_problem(images, name), _dtype_problem(images, name)) if p]
    if problems:
        error = ValueError if images.is_floating_point() else TypeError
        raise error(f"{name} must be {_EXPECTED}, got {_describe(images)}: " + "; ".join(problems) + ".")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        what = "an empty batch (N = 0)" if images.shape[0] == 0 else "images of zero height or width"
        raise ValueError(f"{name} is {what}, shape {tuple(images.shape)}. Fix: pass at least one non-empty image.")
    _check_values(images, name)
    return images


def _describe(images: torch.Tensor) -> str:
    return f"{str(images.dtype).replace('torch.', '')} {list(images.shape)}"


def _shape_problem(images: torch.Tensor, name: str) -> str | None:
    """What is wrong with the shape and how to fix it, or None for ``[N, 3, H, W]``."""
    shape = tuple(images.shape)
    if len(shape) == 4 and shape[1] == 3:
        return None
    if len(shape) == 3 and shape[0] == 3:
        return f"a single [3, H, W] image: add a batch dimension with {name}[None]"
    if len(shape) == 3 and shape[-1] == 3:
        return f"a single channels-last [H, W, 3] image: use {name}.permute(2, 0, 1)[None]"
    if len(shape) == 4 and shape[-1] == 3:
        return f"channels last [N, H, W, 3]: use {name}.permute(0, 3, 1, 2)"
    if len(shape) == 4 and shape[1] == 1:
        return f"1 channel (grayscale): repeat it with {name}.expand(-1, 3, -1, -1)"
    if len(shape) == 4 and shape[1] == 4:
        return f"4 channels (RGBA?): keep the colours with {name}[:, :3] or composite over a background"
    if len(shape) == 4:
        return f"{shape[1]} channels, not 3 (RGB): pass [N, 3, H, W]"
    return f"a {len(shape)}-D tensor: stack RGB images into [N, 3, H, W]"


def _dtype_problem(images: torch.Tensor, name: str) -> str | None:
    """What is wrong with the dtype and how to fix it, or None for a floating dtype."""
    dtype = images.dtype
    if images.is_floating_point():
        return None
    if dtype == torch.uint8:
        return f"{name} are uint8: convert with {name}.float() / 255"
    if dtype == torch.bool:
        return f"{name} are bool: convert with {name}.float()"
    if images.is_complex():
        return f"{name} are complex ({dtype}): pass the real image"
    return f"{name} are integers ({dtype}): convert to floats in [0, 1], e.g. {name}.float() / 255 for 0..255 pixels"


def _overshoot_hint(name: str) -> str:
    return f"this looks like the overshoot of a bicubic resize: clamp with {name}.clamp(0, 1) where you resize"


def _check_values(images: torch.Tensor, name: str) -> None:
    """NaN / inf and the range ``[-IMAGE_TOL, 1 + IMAGE_TOL]``: one reduction, one synchronisation."""
    lo, hi = torch.aminmax(images.detach())  # NaN anywhere makes both NaN; inf shows in the extremes
    lo, hi = torch.stack([lo, hi]).float().tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        detached = images.detach()
        total = detached.numel()
        n_nan, n_inf = int(torch.isnan(detached).sum()), int(torch.isinf(detached).sum())
        counts = " and ".join(f"{k} of {total} values are {kind}" for k, kind in ((n_nan, "NaN"), (n_inf, "inf")) if k)
        raise ValueError(f"{name} contain non-finite values: {counts}. Fix: find where they come from "
                         "(a division by zero, a failed decode or resize); no map or score of them means anything.")
    if lo < -IMAGE_TOL:
        if lo >= -_SMALL_OVERSHOOT and hi <= 1 + _SMALL_OVERSHOOT:
            hint = _overshoot_hint(name)
        else:
            hint = ("these look normalised (e.g. with the ImageNet mean/std): pass [0, 1] images "
                    "(model.preprocess(pil_image), no Normalize), the model normalises them itself")
        raise ValueError(f"{name} have values down to {lo:.4g} (below 0 by more than {IMAGE_TOL:g}), "
                         f"up to {hi:.4g}: {hint}.")
    if hi > 1 + IMAGE_TOL:
        if hi <= 1 + _SMALL_OVERSHOOT:
            hint = _overshoot_hint(name)
        elif hi > 2:
            hint = f"these look like 0..255 pixels: divide by 255 ({name} / 255)"
        else:
            hint = f"divide 0..255 pixels by 255, or clamp a resize overshoot with {name}.clamp(0, 1)"
        raise ValueError(f"{name} have values up to {hi:.4g} (above 1 by more than {IMAGE_TOL:g}): {hint}.")
