"""Notebook 04's images and maps: every variant of a method with and without UCAG, computed together.

For each image and target class: the three plain maps (Grad-CAM, Grad-CAM++, LayerCAM), their UCAG
versions (Alg. 1; one pass over the ``n^2`` crops serves all three methods,
:func:`lib.cams.ucag.maps_together`), UCAG Grad-CAM folded with the released code's
``count + 1`` (Eq. 6's duplication matrix started at ones, from the same partial maps) and the
*scaling-only* ablation (the whole image upscaled by ``alpha``: ``UCAG(n=1, rho=1)``).

Maps are kept in the shared :class:`lib.analysis.map_store.MapStore`, one entry per (variant, image,
target) under the key of the variant's own CAM object, so a map stored here is the map any notebook
gets from ``store.maps(UCAG(GradCAM(model)), ...)`` and vice versa.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from tqdm.auto import tqdm

from lib.analysis.draws import composite_pairs
from lib.analysis.map_store import MapStore, describe
from lib.cams import UCAG, GradCAM, GradCAMPlusPlus, LayerCAM, UCAGSettings
from lib.cams.ucag import maps_together, postprocess
from lib.data import CompositeDataset, collate_samples
from lib.data.images import load_rgb

__all__ = ["METHODS", "UCAG_NAMES", "RELEASED", "SCALING", "BLUR", "VARIANTS", "COMPOSITE_LAYOUT", "Stacked",
           "stack", "composites", "check_sizes", "variant_cams", "joint_maps", "variant_maps",
           "blurred"]

METHODS = ["Grad-CAM", "Grad-CAM++", "LayerCAM"]
"""The wrapped methods; LayerCAM stands in for the paper's WGradCAM (not in lib)."""
UCAG_NAMES = [f"UCAG {m}" for m in METHODS]
RELEASED = "UCAG Grad-CAM (count + 1)"
SCALING = "Scaling only Grad-CAM"
BLUR = "Grad-CAM + blur"
"""A control the paper does not have: plain Grad-CAM with UCAG's post-processing blur."""
VARIANTS = METHODS + UCAG_NAMES + [RELEASED, SCALING]
COMPOSITE_LAYOUT = {"size": 448, "background": 0.5}
""":class:`lib.data.CompositeDataset`'s layout (its defaults), part of a composite map's store key."""


class Stacked(NamedTuple):
    """A small data set on the device: images ``[N, 3, S, S]``, labels ``[N]``, ids, boxes and box
    labels (lists of ``[B_i, 4]`` / ``[B_i]``), and the target classes ``[N, K]`` to explain."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    boxes: list[torch.Tensor]
    box_labels: list[torch.Tensor]
    targets: torch.Tensor


def stack(dataset, device: torch.device | str, targets: torch.Tensor | None = None) -> Stacked:
    """Every sample of ``dataset`` as one :class:`Stacked` batch; targets: the labels unless given."""
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    labels = batch.labels.to(device)
    chosen = labels[:, None] if targets is None else targets.to(device)
    return Stacked(batch.images.to(device), labels, list(batch.image_ids), batch.boxes, batch.box_labels, chosen)


def composites(dataset, order: Sequence[str], n: int, preprocess, device: torch.device | str
               ) -> tuple[Stacked, list[str]]:
    """Two-photo composites of the first ``n`` pairs of consecutive ``order`` ids with different labels
    (:func:`lib.analysis.draws.composite_pairs`), both classes as targets ``[N, 2]`` (left, right),
    and each composite's store key ``"<id a>+<id b>"`` (its own id names only the classes)."""
    pairs = composite_pairs(order, dataset.labels, n)
    if not pairs:
        raise ValueError(f"no composite pair in the {len(order)} images after the draw. Fix: lower n_pointing_* "
                         "or use a larger val_dir.")
    photos = [tuple((load_rgb(dataset.path(i)), int(dataset.labels[i])) for i in pair) for pair in pairs]
    comp = stack(CompositeDataset(preprocess, photos, **COMPOSITE_LAYOUT), device)
    both = torch.stack([torch.stack([bl[0], bl[1]]) for bl in comp.box_labels])
    return comp._replace(targets=both.to(device)), [f"{a}+{b}" for a, b in pairs]


def check_sizes(n_pointing: int, n_causal: int, n_second: int, n_scales: int, n_qualitative: int,
                scales: Sequence[int]) -> None:
    """The notebook's draws nest: causal, second-model, Fig. 2 and Fig. 4 images are the first of the
    pointing-game draw; Fig. 2 compares its first and last input side."""
    if not 1 <= n_causal <= n_pointing:
        raise ValueError(f"Need 1 <= n_causal ({n_causal}) <= n_pointing ({n_pointing}): the causal images are the "
                         "first of the pointing-game draw. Fix: raise n_pointing_* or lower n_causal_*.")
    if max(n_scales, n_qualitative, n_second) > n_pointing:
        raise ValueError("n_scales_*, n_qualitative and n_second_* may not exceed n_pointing_* (they reuse its draw).")
    if len(scales) < 2 or sorted(scales) != list(scales):
        raise ValueError(f"scales must list at least two increasing input sides, got {list(scales)}.")


def variant_cams(net, settings: UCAGSettings) -> dict[str, Any]:
    """The CAM object of every variant (what keys its maps in the store), in :data:`VARIANTS` order."""
    plain = [cls(net) for cls in (GradCAM, GradCAMPlusPlus, LayerCAM)]
    cams: dict[str, Any] = dict(zip(METHODS, plain))
    cams.update({name: UCAG(cam, settings) for name, cam in zip(UCAG_NAMES, plain)})
    cams[RELEASED] = UCAG(plain[0], settings, count_init=1.0)
    cams[SCALING] = UCAG(plain[0], n=1, rho=1.0)
    return cams


def joint_maps(cams: Mapping[str, Any], images: torch.Tensor, targets: torch.Tensor,
               timer: dict | None = None) -> dict[str, torch.Tensor]:
    """Every variant's maps ``[N, K, S, S]`` for targets ``[N, K]``, sharing UCAG's crop passes among
    the three methods and both count initialisations; ``timer[(model, step)]`` accumulates
    ``[seconds, images]``."""
    plain = [cams[m] for m in METHODS]
    t0 = time.perf_counter()
    out = {m: cam(images, targets) for m, cam in zip(METHODS, plain)}
    t1 = time.perf_counter()
    together = [*UCAG_NAMES, RELEASED]  # one set of crop passes (lib.cams.ucag.maps_together)
    out.update(zip(together, maps_together([cams[name] for name in together], images, targets)))
    t2 = time.perf_counter()
    out[SCALING] = cams[SCALING](images, targets)
    t3 = time.perf_counter()
    if timer is not None:
        for step, spent in (("plain (3 methods)", t1 - t0), ("UCAG (3 methods + count + 1)", t2 - t1),
                            ("scaling only", t3 - t2)):
            acc = timer.setdefault((plain[0].model.name, step), [0.0, 0])
            acc[0] += spent
            acc[1] += len(images)
    return out


def variant_maps(store: MapStore, net, images: torch.Tensor, keys: Sequence[str], targets: torch.Tensor,
                 settings: UCAGSettings, batch_size: int = 8, timer: dict | None = None, desc: str = "maps",
                 variants: Sequence[str] = tuple(VARIANTS), **key_settings) -> dict[str, torch.Tensor]:
    """``{variant: [N, K, S, S]}`` of ``variants`` (default all) for targets ``[N, K]``: read from ``store``
    where every one of them is stored for an image, else computed (:func:`joint_maps`, all variants together,
    ``batch_size`` images at a time) and stored.

    ``keys``: the images' ids in the store; ``key_settings``: anything else that determines the
    images (e.g. a composite's layout)."""
    if not len(keys) == len(images) == len(targets):
        raise ValueError(f"{len(images)} images, {len(keys)} keys and {len(targets)} targets: one each.")
    cams = variant_cams(net, settings)

    def batches(rows: list[int]):  # (rows, their maps) per batch of batch_size images
        for s in tqdm(range(0, len(rows), batch_size), desc=f"{net.name} {desc}", unit="batch"):
            chunk = rows[s:s + batch_size]
            yield chunk, joint_maps(cams, images[chunk], targets[chunk], timer)

    if store.cache is None:
        parts = [maps for _, maps in batches(list(range(len(images))))]
        return {v: torch.cat([p[v] for p in parts]) for v in variants}
    # one target per image: stored as ``store.maps(cam, images, ids, targets[:, 0])`` stores it ([H, W], int target)
    single = targets.shape[1] == 1
    entry = {v: [store.key(cams[v], i, t[0] if single else t, **key_settings)
                 for i, t in zip(keys, targets)] for v in variants}
    missing = [r for r in range(len(images)) if any(entry[v][r] not in store.cache for v in variants)]
    for rows, fresh in batches(missing):  # stored batch by batch: an interrupted run keeps what it finished
        for v in variants:
            for k, r in enumerate(rows):
                store.cache.save(entry[v][r], (fresh[v][k, 0] if single else fresh[v][k]).detach().cpu().clone())
    loaded = {v: torch.stack([store.cache.load(k) for k in entry[v]]).to(images.device) for v in variants}
    return {v: m[:, None] if single else m for v, m in loaded.items()}


def blurred(maps: torch.Tensor, settings: UCAGSettings) -> torch.Tensor:
    """The blur-only control: a plain map through UCAG's post-processing (ReLU, min-max, blur)."""
    return postprocess(maps, settings.blur_kernel, settings.blur_sigma)
