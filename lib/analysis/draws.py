"""Seeded draws of images and composite pairs: one scheme for every notebook.

* :func:`seeded_order`: every id of a sample in the order of a seeded permutation of the sorted ids
  (NumPy ``default_rng(seed)``), the order :func:`lib.data.seeded_subset` takes its prefixes from.
  A notebook that needs several disjoint draws takes consecutive slices of one order
  (:func:`split_draws`); an independent stream uses ``seed + k`` with its ``k`` stated in the notebook.
* :func:`composite_pairs`: pairs of consecutive ids of an order whose labels differ (optionally only
  ids a filter keeps, e.g. correctly classified images), as ``(id_left, id_right)``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["seeded_order", "split_draws", "composite_pairs"]


def seeded_order(ids: Iterable[str], seed: int) -> list[str]:
    """All ``ids`` in a seeded order: ``default_rng(seed).permutation`` of the sorted ids."""
    if isinstance(ids, str):
        raise TypeError("seeded_order expects a collection of image ids, not one string")
    ordered = sorted(str(i) for i in ids)
    return [ordered[k] for k in np.random.default_rng(seed).permutation(len(ordered))]


def split_draws(order: Sequence[str], sizes: Mapping[str, int]) -> dict[str, list[str]]:
    """Consecutive, disjoint slices of ``order``: ``{name: ids}`` of the given sizes, in that order,
    plus ``"rest"``: what follows. Raises when the sample is too small, naming the sizes."""
    needed = sum(sizes.values())
    if needed > len(order):
        raise ValueError(f"the draws {dict(sizes)} need {needed} distinct images, but the sample has {len(order)}. "
                         "Fix: lower those parameters.")
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = list(order[start:start + size])
        start += size
    out["rest"] = list(order[start:])
    return out


def composite_pairs(order: Sequence[str], labels: Mapping[str, int], n: int,
                    keep: Callable[[list[str]], list[bool]] | None = None, chunk: int = 64
                    ) -> list[tuple[str, str]]:
    """Up to ``n`` pairs ``(left, right)`` of consecutive ids of ``order`` with different labels.

    With ``keep`` (a function of a list of ids returning one bool per id, e.g. "the model classifies
    it correctly"), ids it rejects are skipped before pairing; it is called on chunks of ``chunk``
    ids, so only as many images are classified as the pairs need. Fewer than ``n`` pairs come back
    when the order runs out (the caller says so)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pairs: list[tuple[str, str]] = []
    pending: list[str] = []
    for start in range(0, len(order), chunk if keep else max(len(order), 1)):
        ids = list(order[start:start + chunk]) if keep else list(order)
        kept = [i for i, ok in zip(ids, keep(ids)) if ok] if keep else ids
        pending += kept
        while len(pending) >= 2 and len(pairs) < n:
            a, b = pending.pop(0), pending.pop(0)
            if int(labels[a]) != int(labels[b]):
                pairs.append((a, b))
        if len(pairs) >= n:
            break
    return pairs
