"""Localisation metrics: the pointing game (TorchRay style) and Score-CAM's energy-based pointing game.

Boxes are ``[K, 4]`` float ``x0, y0, x1, y1`` in *continuous* pixel coordinates of the
preprocessed image (``lib.data.Sample.boxes``: pixel ``(row i, column j)`` covers
``[j, j + 1] x [i, i + 1]``), with ``[K]`` long class labels (``Sample.box_labels``); a batch
passes one such pair per image (``lib.data.Batch.boxes`` / ``Batch.box_labels``, lists of
tensors). Maps ``[N, H, W]`` must have the preprocessed image's size.

**Rasterisation.** A box covers the pixels whose *centre* lies in it, half-open:
``x0 <= j + 0.5 < x1`` and ``y0 <= i + 0.5 < y1``. Integer boxes ``[x0, x1)`` cover columns
``x0 .. x1 - 1`` (TorchRay's VOC masks are the same thing for the VOC 1-based inclusive boxes); a
box clipped away by the crop (zero area) or thinner than a pixel between two centres covers
nothing. The class mask of an image is the union of its boxes of the target class.

**Pointing game** (Zhang et al.; TorchRay ``PointingGame.evaluate``): the point is the map's
maximum (``argmax`` of the row-major flattened map: the first maximum among ties), as pixel
indices ``(u, v) = (column, row)``. It is a hit when some pixel of the class mask lies within
``tolerance`` pixels of it: TorchRay's test is ``(x - u)^2 + (y - v)^2 < tolerance^2`` over pixel
indices ``(x, y)`` of the mask (strict; ``inclusive=True`` gives ``<=``). For a box this is the
squared distance from the point to the box's pixel range.

**Energy-based pointing game** (Score-CAM): ``sum(map * mask) / sum(map)`` with ``mask`` the
class mask; ``0 / 0`` (an all-zero map) gives 0 (PROTOCOLS: "NaN -> 0"). Maps are expected to
be non-negative (ReLU'd, min-max normalised CAMs).

**Images without a box of the target class** (``valid = False``): TorchRay skips them (returns
0, counted neither as hit nor miss). Here they get ``hits = False`` and ``energy = 0`` (never
NaN) and a ``valid`` mask; aggregate over valid images only, e.g.
``res["hits"][res["valid"]].float().mean()`` or ``bootstrap_ci(res["energy"][res["valid"]])``.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["box_pixel_ranges", "class_box_masks", "energy_pointing_game", "pointing_game"]

_BoxList = Sequence[torch.Tensor]


def box_pixel_ranges(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inclusive pixel index ranges ``[K, 4] = (col_lo, row_lo, col_hi, row_hi)`` (long) of xyxy boxes.

    Centre rule (see the module docstring), clipped to the image; a box covers nothing when
    ``col_lo > col_hi`` or ``row_lo > row_hi``.
    """
    b = boxes.reshape(-1, 4).double()
    lo = torch.ceil(b[:, :2] - 0.5)
    hi = torch.ceil(b[:, 2:] - 0.5) - 1
    limit = torch.tensor([width - 1, height - 1], dtype=b.dtype, device=b.device)
    lo = torch.maximum(lo, torch.zeros_like(lo))
    hi = torch.minimum(hi, limit.expand_as(hi))
    return torch.cat([lo, hi], dim=1).long()


def _flatten_boxes(boxes: _BoxList, box_labels: _BoxList, targets: torch.Tensor | Sequence[int],
                   n: int, height: int, width: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ranges [K, 4], owner [K], relevant [K] bool, targets [N])`` of all boxes of the batch.

    ``relevant``: the box has the image's target class and covers at least one pixel.
    """
    if len(boxes) != n or len(box_labels) != n:
        raise ValueError(f"boxes and box_labels need one entry per image ({n}), "
                         f"got {len(boxes)} and {len(box_labels)}")
    t = torch.as_tensor(targets, device=device).long().reshape(-1)
    if t.numel() != n:
        raise ValueError(f"targets must have one class per image ({n}), got {t.numel()}")
    counts = []
    for i, (b, lab) in enumerate(zip(boxes, box_labels)):
        k = b.reshape(-1, 4).shape[0] if b.numel() else 0
        if lab.reshape(-1).shape[0] != k:
            raise ValueError(f"image {i}: {k} boxes but {lab.numel()} box labels")
        counts.append(k)
    all_boxes = _cat_to([b.reshape(-1, 4).double() for b in boxes], device)
    all_labels = _cat_to([lab.reshape(-1).long() for lab in box_labels], device)
    owner = torch.repeat_interleave(torch.arange(n), torch.tensor(counts, dtype=torch.long)).to(device)
    ranges = box_pixel_ranges(all_boxes, height, width)
    nonempty = (ranges[:, 0] <= ranges[:, 2]) & (ranges[:, 1] <= ranges[:, 3])
    relevant = nonempty & (all_labels == t[owner])
    return ranges, owner, relevant, t


def _cat_to(parts: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Concatenate where the parts live (one transfer), or part by part if their devices differ."""
    if len({p.device for p in parts}) == 1:
        return torch.cat(parts).to(device)
    return torch.cat([p.to(device) for p in parts])


def _per_image_any(flags: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """``out[i] = any(flags[owner == i])`` without host syncs."""
    return torch.zeros(n, dtype=torch.int32, device=flags.device).index_add_(0, owner, flags.int()) > 0


def _check_maps(maps: torch.Tensor) -> None:
    if maps.dim() != 3:
        raise ValueError(f"maps must be [N, H, W], got shape {tuple(maps.shape)}")
    if maps.shape[0] == 0:
        raise ValueError("maps is empty (N = 0)")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")


def class_box_masks(boxes: _BoxList, box_labels: _BoxList, targets: torch.Tensor | Sequence[int],
                    size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """``[N, H, W]`` bool: union of each image's boxes of its target class (centre rule).

    Args:
        boxes: ``N`` tensors ``[K_i, 4]`` xyxy in pixels of the ``size = (H, W)`` image.
        box_labels: ``N`` tensors ``[K_i]`` of box classes.
        targets: ``[N]`` class per image.
        size: ``(H, W)``.
        device: where to build the masks (default: the first box tensor's device).
    """
    h, w = size
    n = len(boxes)
    if device is None:
        device = boxes[0].device if n else torch.device("cpu")
    device = torch.device(device)
    ranges, owner, relevant, _ = _flatten_boxes(boxes, box_labels, targets, n, h, w, device)
    cols = torch.arange(w, device=device)
    rows = torch.arange(h, device=device)
    in_x = (cols >= ranges[:, 0:1]) & (cols <= ranges[:, 2:3])  # [K, W]
    in_y = (rows >= ranges[:, 1:2]) & (rows <= ranges[:, 3:4])  # [K, H]
    per_box = (in_y[:, :, None] & in_x[:, None, :] & relevant[:, None, None]).int()  # [K, H, W]
    return torch.zeros(n, h, w, dtype=torch.int32, device=device).index_add_(0, owner, per_box) > 0


def pointing_game(maps: torch.Tensor, boxes: _BoxList, box_labels: _BoxList,
                  targets: torch.Tensor | Sequence[int], tolerance: float = 15,
                  inclusive: bool = False) -> dict[str, torch.Tensor]:
    """Per-image pointing-game hits (TorchRay rule, see the module docstring).

    Args:
        maps: ``[N, H, W]`` saliency maps of the preprocessed image size.
        boxes: ``N`` tensors ``[K_i, 4]`` xyxy in pixels of that image (``Batch.boxes``).
        box_labels: ``N`` tensors ``[K_i]`` (``Batch.box_labels``).
        targets: ``[N]`` class per image (the class the map explains).
        tolerance: radius in pixels (TorchRay and UCAG: 15).
        inclusive: ``False`` (TorchRay): hit if the squared distance is ``< tolerance^2``;
            ``True``: ``<= tolerance^2``.

    Returns:
        ``{"hits": [N] bool, "valid": [N] bool, "points": [N, 2] long (u = column, v = row)}``
        on the maps' device. ``valid`` is False for images with no (non-empty) box of the
        target class; their ``hits`` are False. Accuracy = ``hits[valid].float().mean()``.
    """
    _check_maps(maps)
    if not (tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    n, h, w = maps.shape
    device = maps.device
    ranges, owner, relevant, _ = _flatten_boxes(boxes, box_labels, targets, n, h, w, device)
    flat_idx = maps.reshape(n, -1).argmax(dim=1)  # first maximum among ties
    u, v = flat_idx % w, torch.div(flat_idx, w, rounding_mode="floor")
    pu, pv = u[owner], v[owner]
    dx = (ranges[:, 0] - pu).clamp_min(0) + (pu - ranges[:, 2]).clamp_min(0)
    dy = (ranges[:, 1] - pv).clamp_min(0) + (pv - ranges[:, 3]).clamp_min(0)
    d2 = (dx * dx + dy * dy).double()
    tol2 = float(tolerance) ** 2
    close = d2 <= tol2 if inclusive else d2 < tol2
    return {"hits": _per_image_any(relevant & close, owner, n),
            "valid": _per_image_any(relevant, owner, n),
            "points": torch.stack([u, v], dim=1)}


def energy_pointing_game(maps: torch.Tensor, boxes: _BoxList, box_labels: _BoxList,
                         targets: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-image energy-based pointing game (Score-CAM): ``sum(map * mask) / sum(map)``.

    ``mask`` is :func:`class_box_masks` (union of the target class's boxes). An all-zero map
    (``0 / 0``) gives 0; images without a box of the class give 0 and ``valid = False``.

    Returns:
        ``{"energy": [N] float32 in [0, 1] for non-negative maps, "valid": [N] bool}`` on the
        maps' device.
    """
    _check_maps(maps)
    n, h, w = maps.shape
    masks = class_box_masks(boxes, box_labels, targets, (h, w), maps.device)
    m = maps.float()
    inside = (m * masks).flatten(1).sum(1)
    total = m.flatten(1).sum(1)
    energy = torch.where(total != 0, inside / torch.where(total != 0, total, torch.ones_like(total)),
                         torch.zeros_like(total))
    return {"energy": energy, "valid": masks.flatten(1).any(1)}
