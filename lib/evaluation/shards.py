"""Shards: consecutive slices of the seeded order of a data set's ids.

Shard ``k`` of size ``S`` holds ids ``k*S .. (k+1)*S - 1`` of :func:`lib.analysis.draws.seeded_order`
(the order every notebook draws its images in), so the first ``n`` images of a notebook are exactly
the first :func:`shards_for` ``(n, S)`` shards, truncated to ``n``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from lib.analysis.draws import seeded_order

__all__ = ["n_shards", "shard_ids", "shards_for", "shard_path"]


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


def shard_path(root: str | Path, model: str, method: str, target: str, group: str, shard: int) -> Path:
    """``root/model/method/target/group/shard-0003.parquet``: one file of rows per shard."""
    return Path(root) / model / method / target / group / f"shard-{int(shard):04d}.parquet"
