"""A small on-disk cache for expensive results, written atomically.

Entries are keyed by a hash of everything that determines them (model, method, parameters,
image ids, ...), so a rerun, or a run interrupted half-way and started again, recomputes only
what is missing.  Each entry is one ``torch.save`` file written to a temporary name and then
renamed (``os.replace``), so an interruption never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["DiskCache", "cache_key", "cached_maps"]

log = logging.getLogger(__name__)


def cache_key(**parts: Any) -> str:
    """A stable hex key for keyword parts (JSON-serialisable values; lists of ids included)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DiskCache:
    """``cache.get_or_compute(key, fn)``: load ``key`` if present, else compute, save and return it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def load(self, key: str) -> Any:
        return torch.load(self.path(key), map_location="cpu", weights_only=False)

    def save(self, key: str, value: Any) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(value, tmp)
        os.replace(tmp, path)

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self:
            try:
                return self.load(key)
            except Exception as err:  # a corrupt entry (e.g. disk full earlier): recompute it
                log.warning("Recomputing unreadable cache entry %s (%s)", self.path(key), err)
        value = compute()
        self.save(key, value)
        return value


def cached_maps(cache: DiskCache, compute: Callable[[list[str]], torch.Tensor], image_ids: list[str],
                **key: Any) -> torch.Tensor:
    """Maps ``[N, ...]`` for ``image_ids``, computing only the images not cached yet.

    Each image's map is one entry keyed by ``key`` (model, method, parameters, ...) and its id,
    so a different subset, order or batch size reuses what is there.  ``compute(missing_ids)``
    returns the maps of the missing ids in that order.
    """
    keys = [cache_key(image_id=i, **key) for i in image_ids]
    missing = [i for i, k in zip(image_ids, keys) if k not in cache]
    if missing:
        fresh = compute(missing)
        if len(fresh) != len(missing):
            raise ValueError(f"compute returned {len(fresh)} maps for {len(missing)} images")
        for image_id, m in zip(missing, fresh):
            cache.save(cache_key(image_id=image_id, **key), m.detach().cpu().clone())
    return torch.stack([cache.load(k) for k in keys])
