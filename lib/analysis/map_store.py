"""One store of saliency maps for every notebook, keyed by what determines a map.

A map is determined by the model, the method with its settings, the layer, the image and the
target class; nothing else (batch size, progress bars, the notebook asking) enters the key. So
notebook 03's Grad-CAM map of an image for its predicted class is the map notebook 04 reads, and
an interrupted run recomputes only the maps it had not stored.

* :func:`describe`: the canonical description of a CAM object, like TorchCAM's ``repr``: its class
  and its public settings, the layer resolved to its name, learned modules (an attention) by a hash
  of their weights.
* :class:`MapStore`: ``store.maps(cam, images, image_ids, targets)`` gives ``[N, H, W]`` maps (or
  the CAM's own shape), computing only the (image, target) pairs not stored yet;
  ``store.maps_many(cams, ...)`` the same for several methods whose maps share passes (UCAG's
  variants). Entries are :class:`lib.cache.DiskCache` files, written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lib.cache import DiskCache, cache_key

__all__ = ["EXECUTION_SETTINGS", "describe", "weights_digest", "MapStore"]

EXECUTION_SETTINGS = frozenset({"model", "batch_size", "crop_batch", "progress", "device"})
"""Attributes of a CAM object that change how a map is computed, not the map."""


def weights_digest(module: nn.Module) -> str:
    """A SHA-256 digest (16 hex digits) of a module's parameters and buffers, in order."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _setting(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return f"{type(value).__name__}#{weights_digest(value)}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_setting(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _setting(v) for k, v in sorted(value.items())}
    if isinstance(value, torch.Tensor):
        return hashlib.sha256(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # settings objects (UCAG's)
        return {f.name: _setting(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in EXECUTION_SETTINGS}
    if hasattr(value, "model") and callable(value):  # a wrapped method (UCAG around Grad-CAM)
        return describe(value)
    return type(value).__name__


def describe(cam: Any) -> str:
    """``"ScoreCAM(baseline='zero', convention='image01', layer='net.conv_head', precision='fp32')"``:
    the class and every public setting that can change the map (not :data:`EXECUTION_SETTINGS`);
    the default layer (``target_layer=None``) is resolved to the model's layer name; settings
    dataclasses and wrapped CAM objects are described field by field, recursively."""
    settings = {}
    for name, value in sorted(vars(cam).items()):
        if name.startswith("_") or name in EXECUTION_SETTINGS:
            continue
        if name == "target_layer":
            name, value = "layer", value if value is not None else getattr(getattr(cam, "model", None), "target_layer", None)
        settings[name] = _setting(value)
    return f"{type(cam).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")"


class MapStore:
    """Maps of one model, computed once per (method, settings, layer, image, target)."""

    def __init__(self, root: str | Path | None, model_name: str):
        self.cache = DiskCache(root) if root else None
        self.model_name = model_name

    def key(self, cam: Any, image_id: str, target: Any, **settings: Any) -> str:
        return cache_key(model=self.model_name, method=describe(cam), image_id=str(image_id),
                         target=torch.as_tensor(target).tolist(), **settings)

    def maps(self, cam: Callable, images: torch.Tensor, image_ids: list[str], targets: torch.Tensor,
             **settings: Any) -> torch.Tensor:
        """``cam(images, targets)``, from the store where stored; ``settings``: anything else that
        determines the map and is not an attribute of ``cam`` (e.g. a composite's layout)."""
        return self.maps_many([cam], images, image_ids, targets, compute=lambda cams, x, t: [cams[0](x, t)],
                              **settings)[0]

    def maps_many(self, cams: list, images: torch.Tensor, image_ids: list[str], targets: torch.Tensor,
                  compute: Callable | None = None, **settings: Any) -> list[torch.Tensor]:
        """The maps of several CAM objects for the same images and targets (:meth:`maps`: one), each under its own key.
        The images with any map missing go to ``compute(cams, images, targets) -> [maps per cam]`` once
        (default :func:`lib.cams.ucag.maps_sharing_passes`: UCAG objects of one crop geometry share their
        crop passes), so one job can make the maps that several methods' jobs read."""
        if compute is None:
            from lib.cams.ucag import maps_sharing_passes as compute
        if len(image_ids) != len(images) or len(targets) != len(images):
            raise ValueError(f"{len(images)} images, {len(image_ids)} ids and {len(targets)} targets: one each. "
                             "Fix: pass the batch's ids and targets.")
        if self.cache is None:
            return compute(cams, images, targets)
        keys = [[self.key(cam, i, t, **settings) for i, t in zip(image_ids, targets)] for cam in cams]
        maps: list[list] = [[None] * len(images) for _ in cams]
        missing = [k for k in range(len(images)) if any(per[k] not in self.cache for per in keys)]
        if missing:
            rows = torch.tensor(missing, device=images.device)
            fresh = compute(cams, images[rows], targets[rows.to(targets.device)])
            for c, per in enumerate(fresh):
                for k, m in zip(missing, per):
                    maps[c][k] = m.detach().cpu().clone()  # kept in memory too: not read back from disk
                    if keys[c][k] not in self.cache:
                        self.cache.save(keys[c][k], maps[c][k])
        return [torch.stack([m if m is not None else self.cache.load(key) for m, key in zip(per, ks)]).to(images.device)
                for per, ks in zip(maps, keys)]
