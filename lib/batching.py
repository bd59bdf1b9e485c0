"""Batch sizes that fit the device, with back-off on out-of-memory instead of failure.

:func:`map_batches` runs ``fn`` over chunks of a batch; when CUDA runs out of memory it halves the
chunk and retries the same chunk, so a long evaluation adapts to the free memory instead of
dying half-way.  :func:`suggest_batch_size` starts from the free memory that CUDA reports.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

__all__ = ["map_batches", "suggest_batch_size", "is_out_of_memory"]

log = logging.getLogger(__name__)


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA (and CPU allocator) out-of-memory errors."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def suggest_batch_size(bytes_per_item: int, device: torch.device | str, default: int = 16,
                       fraction: float = 0.5, cap: int = 1024) -> int:
    """A batch size using ``fraction`` of the free CUDA memory; ``default`` on other devices."""
    device = torch.device(device)
    if device.type != "cuda" or bytes_per_item <= 0:
        return default
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(cap, free * fraction // bytes_per_item)))


def map_batches(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int) -> torch.Tensor:
    """``torch.cat([fn(chunk) for chunk in chunks(n)])``, halving the chunk on out-of-memory.

    ``fn`` receives a ``slice`` of the ``n`` items and returns a tensor whose first dimension is
    the chunk's length.  The batch size that worked is kept for the remaining chunks.
    """
    if n <= 0:
        raise ValueError(f"nothing to batch: n = {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs, start = [], 0
    while start < n:
        stop = min(n, start + batch_size)
        try:
            outputs.append(fn(slice(start, stop)))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not is_out_of_memory(err) or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("Out of memory: retrying with batch size %d", batch_size)
            continue
        start = stop
    return torch.cat(outputs)
