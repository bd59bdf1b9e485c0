"""Out-of-memory back-off and the per-image map cache."""

from __future__ import annotations

import pytest
import torch

from lib.batching import map_batches, suggest_batch_size
from lib.cache import DiskCache, cached_maps


def test_map_batches_halves_on_out_of_memory_and_keeps_order():
    seen = []

    def fn(chunk: slice) -> torch.Tensor:
        size = chunk.stop - chunk.start
        seen.append(size)
        if size > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return torch.arange(chunk.start, chunk.stop)

    out = map_batches(fn, 10, 8)
    assert torch.equal(out, torch.arange(10))
    assert seen[:3] == [8, 4, 2] and max(seen[3:]) == 2


def test_map_batches_reraises_other_errors():
    def fn(chunk):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        map_batches(fn, 4, 2)


def test_suggest_batch_size_on_cpu_is_the_default():
    assert suggest_batch_size(10_000, "cpu", default=7) == 7


def test_cached_maps_computes_only_missing_images(tmp_path):
    cache = DiskCache(tmp_path)
    calls = []

    def compute(ids):
        calls.append(list(ids))
        return torch.stack([torch.full((2, 2), float(int(i[1:]))) for i in ids])

    a = cached_maps(cache, compute, ["i1", "i2"], model="m", method="gradcam")
    b = cached_maps(cache, compute, ["i3", "i2", "i1"], model="m", method="gradcam")
    assert calls == [["i1", "i2"], ["i3"]]
    assert torch.equal(b[2], a[0]) and b[0][0, 0] == 3
    cached_maps(cache, compute, ["i1"], model="m", method="gradcam++")  # other key: recomputed
    assert calls[-1] == ["i1"]
