"""Notebook 03's images: the evaluation groups, the selection sample, the composites and the hosts.

Every draw is a seeded order of :mod:`lib.analysis.draws` (``seeded_order``), one stream per use:

* ``seed``: the five evaluation groups (consecutive slices of one order of the validation sample,
  Tables 1-5) and, independently, the training images of the parameter selection;
* ``seed + 1``: the two-class composites of Fig. 6 (correctly classified photos, each class once);
* ``seed + 2``: the same-class composites of Fig. 7 (the first two images of a class, both
  correctly classified);
* ``seed + 3``: the host images of the adversarial verification (Tables 4-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from lib import config
from lib.analysis.draws import composite_pairs, seeded_order, split_draws
from lib.data import CompositeDataset, ImageFolder, collate_samples, open_dataset, verify_checksums
from lib.data.images import load_rgb
from lib.models import layer_name

__all__ = ["GROUPS", "Samples", "stack", "load_samples", "selection_sample", "load_images", "adversarial_setup", "resolve_layer",
           "layer_channels", "classified_correctly", "one_per_class", "two_class_pairs", "same_class_pairs",
           "composite_dataset", "adversarial_hosts", "host_images"]

GROUPS = 5
"""The paper's five image groups (Tables 1-2)."""

Keep = Callable[[list[str]], list[bool]]


@dataclass
class Samples:
    """The evaluation images (``x_val [N, 3, H, W]``, ``y_val``, ``ids_val`` in draw order, cut into
    ``groups``), the selection images (``x_sel``, ``y_sel``, ``ids_sel``) and the whole validation
    sample's ``root`` and ``labels`` (for the composites and the hosts)."""

    root: Path
    labels: dict[str, int]
    groups: dict[str, list[str]]
    x_val: torch.Tensor
    y_val: torch.Tensor
    ids_val: list[str]
    x_sel: torch.Tensor
    y_sel: torch.Tensor
    ids_sel: list[str]
    checked: int

    @property
    def group_of(self) -> dict[str, str]:
        return {i: g for g, ids in self.groups.items() for i in ids}


def stack(dataset, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``[N, 3, H, W]`` and labels ``[N]`` on ``device``, and the ids, of a (small) data set."""
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    return batch.images.to(device), batch.labels.to(device), batch.image_ids


def load_samples(model: nn.Module, val_dir: str, train_dir: str, data_dir: str | None, seed: int,
                 n_per_group: int, n_select: int, device: torch.device | str) -> Samples:
    """The five groups of ``n_per_group`` validation images (consecutive slices of
    ``seeded_order(val ids, seed)``) and ``n_select`` training images (``seeded_order(train ids,
    seed)``), loaded with the model's preprocessing and checked against ``SHA256SUMS``."""
    if n_per_group < 1 or n_select < 1:
        raise ValueError("n_per_group_* and n_select_* must be at least 1.")
    full_val = open_dataset(model.preprocess, split=val_dir, data_dir=data_dir or None)
    train_root = config.split_dir(train_dir, data_dir or None)
    if not isinstance(full_val, ImageFolder) or not train_root.is_dir():
        raise FileNotFoundError(f"Notebook 03 needs the validation and training samples ({val_dir!r}, {train_dir!r}). "
                                "Fix: set data_dir or $CAM_DATA_DIR to the folder holding them (see data/README.md).")
    sizes = {f"Group-{g + 1}": n_per_group for g in range(GROUPS)}
    groups = split_draws(seeded_order(full_val.ids, seed), sizes)
    groups.pop("rest")
    draw = [i for ids in groups.values() for i in ids]
    val = ImageFolder(full_val.root, model.preprocess, ids=draw)
    checked = verify_checksums(val.root, names=[f"images/{i}" for i in draw])
    train, train_checked = selection_sample(model, train_root, seed, n_select)
    return Samples(full_val.root, dict(full_val.labels), groups, *stack(val, device), *stack(train, device),
                   checked + train_checked)


def selection_sample(model: nn.Module, train_root: str | Path, seed: int, n_select: int) -> tuple[ImageFolder, int]:
    """The ``n_select`` training images of the parameter selection (the first of ``seeded_order(train ids,
    seed)``) with the model's preprocessing, and how many checksums were verified."""
    if n_select < 1:
        raise ValueError(f"n_select must be at least 1, got {n_select}.")
    select_ids = seeded_order(ImageFolder(train_root, model.preprocess).ids, seed)[:n_select]
    train = ImageFolder(train_root, model.preprocess, ids=select_ids)
    return train, verify_checksums(train.root, names=[f"images/{i}" for i in select_ids])


resolve_layer = layer_name
"""The module name of a target layer: ``"default"``, ``"last-block"`` or a module name (:func:`lib.models.layer_name`)."""


def layer_channels(model: nn.Module, layer: str, images: torch.Tensor) -> tuple[int, float, tuple[int, int]]:
    """``(C, share of negative activations, (h, w))`` of ``layer`` on ``images``: SA-CAM costs
    ``2C + 1`` forward passes per map (Alg. 2)."""
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    a = acts["a"]
    return a.shape[1], float((a < 0).float().mean()), tuple(a.shape[-2:])


def classified_correctly(model: nn.Module, root: Path, device: torch.device | str) -> Keep:
    """``keep(ids)``: for each id of the sample in ``root``, whether the model's top-1 class is its label."""
    def keep(ids: list[str]) -> list[bool]:
        if not ids:
            return []
        x, y, _ = stack(ImageFolder(root, model.preprocess, ids=ids), device)
        with torch.no_grad():
            return (model(x).argmax(1) == y).cpu().tolist()
    return keep


def one_per_class(keep: Keep, labels: Mapping[str, int]) -> Keep:
    """``keep``, and the first id of each class only (the filter remembers the classes it let
    through, so the composites of Fig. 6 show each class once)."""
    seen: set[int] = set()

    def first(ids: list[str]) -> list[bool]:
        out = []
        for i, ok in zip(ids, keep(ids)):
            fresh = ok and int(labels[i]) not in seen
            seen.add(int(labels[i])) if fresh else None
            out.append(fresh)
        return out
    return first


def two_class_pairs(ids: Sequence[str], labels: Mapping[str, int], seed: int, n: int, keep: Keep
                    ) -> list[tuple[str, str]]:
    """Fig. 6's ``n`` pairs: consecutive correctly classified photos of ``seeded_order(ids, seed)``,
    every class at most once (:func:`lib.analysis.draws.composite_pairs` with :func:`one_per_class`),
    classified in chunks of ``4 n``."""
    return composite_pairs(seeded_order(ids, seed), labels, n, keep=one_per_class(keep, labels), chunk=max(4 * n, 2))


def same_class_pairs(labels: Mapping[str, int], seed: int, n: int, keep: Keep) -> list[tuple[str, str]]:
    """Fig. 7's ``n`` pairs: classes with two images or more, in ``seeded_order`` of each class's
    first (smallest) id; a class gives its two smallest ids when both pass ``keep``."""
    by_class: dict[int, list[str]] = {}
    for image_id in sorted(labels):
        by_class.setdefault(int(labels[image_id]), []).append(image_id)
    first_two = {ids[0]: ids[:2] for ids in by_class.values() if len(ids) >= 2}
    order = seeded_order(first_two, seed)
    pairs: list[tuple[str, str]] = []
    for start in range(0, len(order), max(2 * n, 1)):
        chunk = [first_two[i] for i in order[start:start + max(2 * n, 1)]]
        ok = keep([i for pair in chunk for i in pair])
        pairs += [tuple(pair) for k, pair in enumerate(chunk) if ok[2 * k] and ok[2 * k + 1]]
        if len(pairs) >= n:
            break
    return pairs[:n]


def composite_dataset(root: Path, labels: Mapping[str, int], pairs: Sequence[tuple[str, str]], preprocess
                      ) -> CompositeDataset:
    """The composites of ``pairs`` (left, right), photos named by their class (``class<label>``)."""
    folder = ImageFolder(root, preprocess, ids=sorted({i for pair in pairs for i in pair}))

    def photo(i: str):
        return load_rgb(folder.path(i)), int(labels[i])
    return CompositeDataset(preprocess, [(photo(a), photo(b)) for a, b in pairs])


def adversarial_hosts(order: Sequence[str], labels: Mapping[str, int], targets: Sequence[int], n_hosts: int
                      ) -> list[list[str]]:
    """For each image (of class ``targets[k]``), the next ``n_hosts`` ids of ``order`` of another
    class, one cursor running on (cyclically) through the order."""
    if n_hosts < 1:
        raise ValueError(f"n_hosts must be at least 1, got {n_hosts}")
    hosts, cursor = [], 0
    for target in targets:
        if all(int(labels[i]) == int(target) for i in order):
            raise ValueError(f"no host of a class other than {target} in the sample")
        mine = []
        while len(mine) < n_hosts:
            candidate = order[cursor % len(order)]
            cursor += 1
            if int(labels[candidate]) != int(target):
                mine.append(candidate)
        hosts.append(mine)
    return hosts


def host_images(root: Path, preprocess, host_ids: Sequence[Sequence[str]], device: torch.device | str
                ) -> torch.Tensor:
    """The hosts' images ``[N, K, 3, H, W]``, each distinct host loaded once."""
    unique = sorted({i for ids in host_ids for i in ids})
    images = load_images(root, preprocess, unique, device)[0]
    where = {i: k for k, i in enumerate(unique)}
    return images[torch.tensor([[where[i] for i in ids] for ids in host_ids], device=images.device).long()]


def load_images(root: Path, preprocess, ids: Sequence[str], device: torch.device | str
                ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images, labels and ids of ``ids`` of the sample in ``root`` (with ``preprocess``), on ``device``."""
    return stack(ImageFolder(root, preprocess, ids=list(ids)), device)


def adversarial_setup(model: nn.Module, samples: Samples, n_hosts: int, seed: int, device: torch.device | str,
                      chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables 4-5's inputs: the positions of the evaluation images the model classifies correctly
    ``[M]``, and their hosts ``[M, n_hosts, 3, H, W]`` (:func:`adversarial_hosts` on
    ``seeded_order(validation ids, seed)``; the notebook passes ``seed + 3``)."""
    with torch.no_grad():
        predicted = torch.cat([model(samples.x_val[s:s + chunk]).argmax(1)
                               for s in range(0, len(samples.x_val), chunk)])
    correct = (predicted == samples.y_val).nonzero().flatten()
    host_ids = adversarial_hosts(seeded_order(samples.labels, seed), samples.labels,
                                 samples.y_val[correct].tolist(), n_hosts)
    return correct, host_images(samples.root, model.preprocess, host_ids, device)
