"""Shards: consecutive slices of the seeded order of a data set's ids.

Shard ``k`` of size ``S`` holds ids ``k*S .. (k+1)*S - 1`` of :func:`lib.analysis.draws.seeded_order`
(the order every notebook draws its images in), so the first ``n`` images of a notebook are exactly
the first :func:`shards_for` ``(n, S)`` shards, truncated to ``n``.

A notebook that needs fewer images than a shard holds (Score-CAM and RISE on 8 images in notebook 02)
reads a *head* instead: the rows of the first ``n`` images only (``head-0008.parquet``), shard 0 of size
``n``, so a slow method is not run on a whole shard for a handful of images. :func:`part_names` says
which files hold the first ``n`` images: one head, or shards.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from lib.analysis.draws import seeded_order

__all__ = ["n_shards", "shard_ids", "shards_for", "shard_path", "head_name", "part_name", "part_names", "parse_part"]


def _check_size(size: int) -> int:
    if int(size) < 1:
        raise ValueError(f"shard size must be >= 1, got {size!r}. Fix: set evaluation.shard_size in the config.")
    return int(size)


def n_shards(n_images: int, size: int) -> int:
    """Shards of ``size`` images that hold ``n_images`` (the last may be smaller)."""
    return math.ceil(max(0, int(n_images)) / _check_size(size))


def shards_for(n_images: int, size: int, total: int | None = None) -> list[int]:
    """Shard numbers holding the first ``n_images`` of the seeded order (of ``total`` ids when given;
    ``n_images <= 0`` means every image, which needs ``total``)."""
    if n_images <= 0 or (total is not None and n_images > total):
        if total is None:
            raise ValueError("n_images <= 0 means every image: pass total, the number of ids.")
        n_images = total
    return list(range(n_shards(n_images, size)))


def shard_ids(ids: Sequence[str], shard: int, size: int, seed: int) -> list[str]:
    """The ids of shard ``shard``: ``seeded_order(ids, seed)[shard*size:(shard+1)*size]``."""
    size = _check_size(size)
    order = seeded_order(ids, seed)
    last = n_shards(len(order), size) - 1
    if not 0 <= int(shard) <= last:
        raise ValueError(f"shard {shard} does not exist: {len(order)} images in shards of {size} are shards 0..{last}.")
    return order[int(shard) * size:(int(shard) + 1) * size]


def head_name(n_images: int) -> str:
    """``"head-0008"``: the part holding the first ``n_images`` of the seeded order (shard 0 of that size)."""
    if int(n_images) < 1:
        raise ValueError(f"a head holds at least one image, got {n_images!r}.")
    return f"head-{int(n_images):04d}"


def part_names(n_images: int, size: int, total: int | None = None) -> list[int | str]:
    """The parts holding the first ``n_images`` (``<= 0``: every image, which needs ``total``): the
    :func:`shards_for` numbers, or, when fewer images than a shard holds are wanted (and the data set has
    more), one :func:`head_name`."""
    size = _check_size(size)
    if 0 < int(n_images) < size and (total is None or int(n_images) < total):
        return [head_name(n_images)]
    return list(shards_for(n_images, size, total))


def parse_part(part: int | str) -> tuple[int, int | None]:
    """``(shard, head size)`` of a part: ``3`` or ``"shard-0003"`` -> ``(3, None)``, ``"head-0008"`` -> ``(0, 8)``."""
    if isinstance(part, int):
        return part, None
    kind, _, number = str(part).partition("-")
    if kind not in ("shard", "head") or not number.isdigit():
        raise ValueError(f"{part!r} is not a part name. Fix: use shard-NNNN or head-NNNN.")
    return (int(number), None) if kind == "shard" else (0, int(number))


def part_name(part: int | str) -> str:
    """A part's file stem: shard ``3`` -> ``"shard-0003"``; a name (``"head-0008"``) checked and kept."""
    name = f"shard-{int(part):04d}" if isinstance(part, int) else str(part)
    parse_part(name)
    return name


def shard_path(root: str | Path, model: str, method: str, target: str, group: str, shard: int | str) -> Path:
    """``root/model/method/target/group/shard-0003.parquet``: one file of rows per shard (``shard`` a number),
    or ``.../head-0008.parquet`` for a head (``shard`` a :func:`head_name`)."""
    return Path(root) / model / method / target / group / f"{part_name(shard)}.parquet"
