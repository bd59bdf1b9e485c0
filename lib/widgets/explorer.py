"""The CAM explorer: controls wired to the engine, computing in a background thread.

In a notebook::

    from lib.widgets import Explorer
    explorer = Explorer(image="chelsea", methods=["gradcam", "layercam"])
    explorer                                  # displays the controls, maps and tables

Every change of a control takes a :class:`lib.widgets.state.Selection` snapshot and hands it to
one worker thread, so the notebook stays responsive; a newer change supersedes an older one (a
slow method still running is stopped at its next progress step). Results are cached in memory
(:class:`lib.widgets.compute.ResultCache`), so going back to an earlier setting or moving only the
threshold is immediate.

Headless use (tests): set widget values (``explorer.controls.threshold.value = 0.3``), then
``explorer.wait()`` returns the :class:`lib.widgets.compute.ExplorerResult`; with
``background=False`` every change computes synchronously before the assignment returns.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..cache import DiskCache
from ..cams import METHODS
from ..config import get_logger
from ..data import ImageReadError
from ..models import Classifier, categories as imagenet_categories, resolve_layer
from . import view
from .compute import Cancelled, Engine, ExplorerResult, ModelStore, ResultCache, method_label
from .controls import SLOW_METHODS, Controls
from .images import ImageLibrary
from .state import Selection, normalize_method, search_classes

__all__ = ["Explorer", "DEFAULT_METHODS"]

log = get_logger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")


def _method_options(names: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for name in names:
        label = method_label(name)
        if normalize_method(name) in SLOW_METHODS:
            label += " (slow)"
        out.append((label, name))
    return out


class Explorer:
    """Interactive CAM explorer (ipywidgets): image, model, methods, target, layer, threshold.

    Args:
        image: the first image: a packaged photo name (``"chelsea"``), a data-sample image id, or a key.
        model: the first model (default: the first of ``models``).
        methods: methods shown first (names of :data:`lib.cams.METHODS`).
        target: ``"predicted"``, ``"top-k"`` / ``"top3"``, a class id, or a class name (``"tabby"``).
        layer: target layer (dotted module name, any module of the model, not only the dropdown's
            candidates); ``None``: the model's default. A name the model lacks raises ``ValueError``.
        threshold: in ``[0, 1)``; map values below it are set to 0 for display and for AD/IC.
        models: model names offered (default: every name of :data:`lib.models.MODELS`, the offline
            EfficientNet-Lite ones first), or a mapping of names to loaded :class:`lib.models.Classifier`
            objects (used as given; ``None`` values are loaded by name when picked).
        method_names: methods offered (default: every key of :data:`lib.cams.METHODS`).
        method_options: keyword arguments per method, e.g. ``{"rise": {"n_masks": 1000}}``.
        split, data_dir: the data sample (see :class:`lib.widgets.images.ImageLibrary`).
        background: compute in a worker thread (default); ``False``: synchronously, in the caller.
        disk_cache: optional folder (or :class:`lib.cache.DiskCache`) that keeps maps across sessions.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, for models loaded here.

    Attributes:
        controls: the :class:`lib.widgets.controls.Controls` (widgets).
        engine: the :class:`lib.widgets.compute.Engine` (``engine.calls`` counts fresh computations).
        cache: the :class:`lib.widgets.compute.ResultCache` (``hits`` / ``misses``).
        result: the last :class:`ExplorerResult` shown (``None`` before the first).
        error: the message of the last failure shown in the status line, else ``None``.
    """

    def __init__(self, image: str = "chelsea", model: str | None = None,
                 methods: Sequence[str] = DEFAULT_METHODS, target: str | int = "predicted",
                 layer: str | None = None, threshold: float = 0.0,
                 models: Sequence[str] | Mapping[str, Classifier] | None = None,
                 method_names: Sequence[str] | None = None, method_options: Mapping[str, dict] | None = None,
                 split: str = "imagenet-val-1300", data_dir: str | Path | None = None, background: bool = True,
                 disk_cache: str | Path | DiskCache | None = None, device: str = "auto") -> None:
        self.categories = imagenet_categories()
        if isinstance(models, Mapping):
            loaded = {name: m for name, m in models.items() if m is not None}
            store = ModelStore(list(models), preloaded=loaded, device=device)
        else:
            store = ModelStore(models, device=device)
        self.images = ImageLibrary(split, data_dir, self.categories)
        self.cache = ResultCache(disk=disk_cache)
        self.engine = Engine(self.images, store, self.cache, dict(method_options or {}))
        names = list(method_names) if method_names is not None else list(METHODS)
        for m in methods:
            if m not in names:
                names.append(m)
        self.controls = Controls(store.names, _method_options(names))
        self.background = background
        self.result: ExplorerResult | None = None
        self.error: str | None = None
        self._quiet_depth = 0
        self._lock = threading.Lock()
        self._generation = 0
        self._future: Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cam-explorer") if background else None
        self._layers_for: str | None = None
        self._last_progress = 0.0

        c = self.controls
        with self._quiet():
            key = self.images.resolve(image)
            c.source.value = self.images.source_of(key)
            c.image.options = self.images.options(c.source.value)
            c.image.value = key
            c.model.value = model if model is not None else store.names[0]  # lite0 unless models says otherwise
            c.methods.value = tuple(methods)
            self._set_target(target)
            c.threshold.value = float(threshold)
            self._on_search({"new": c.class_search.value})
        ready = self._prepare_model(c.model.value, layer)
        if not ready and layer is not None and self.engine.models.is_loaded(c.model.value):
            raise ValueError(self.error)  # the model loaded, so the layer argument is wrong: say so at once
        if ready and self.images.sample_error:
            self._status(f"{self.images.sample_error}\nThe packaged photos and uploads still work.", "warning")

        for widget in c.inputs.values():
            widget.observe(self._on_input, names="value")
        c.source.observe(self._on_source, names="value")
        c.class_search.observe(self._on_search, names="value")
        c.upload.observe(self._on_upload, names="value")
        c.stop.on_click(self._on_stop)
        if ready:
            self.refresh()

    # --- public --------------------------------------------------------------------------------
    @property
    def widget(self):
        """The root ipywidgets box (display it, or just put the explorer last in a cell)."""
        return self.controls.widget

    def _repr_mimebundle_(self, **kwargs) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # what a saved notebook shows where the live widget is gone
            bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        s = self.controls
        return (f"Explorer(image={s.image.value!r}, model={s.model.value!r}, methods={list(s.methods.value)}, "
                f"target={s.target_mode.value!r}, threshold={s.threshold.value}): an interactive widget, run the "
                "notebook in Jupyter to use it")

    def selection(self) -> Selection:
        """The current controls as a :class:`Selection` (``ValueError`` naming the fix when incomplete)."""
        c = self.controls
        if c.image.value is None:
            raise ValueError("No image selected. Fix: pick an image, or upload one.")
        if self._layers_for != c.model.value:
            raise ValueError(f"Model {c.model.value!r} is not loaded (see the error above). Fix: pick another "
                             "model, e.g. efficientnet_lite0.")
        layer = c.layer.value
        return Selection(image=c.image.value, model=c.model.value, methods=tuple(c.methods.value),
                         target_mode=c.target_mode.value, k=int(c.k.value), class_id=c.class_id.value,
                         layer=layer, threshold=float(c.threshold.value))

    def refresh(self) -> None:
        """Recompute for the current controls (the widgets call this on every change)."""
        self._schedule()

    def wait(self, timeout: float = 300.0) -> ExplorerResult | None:
        """Block until the latest requested computation has finished; return :attr:`result`.

        Raises ``TimeoutError`` after ``timeout`` seconds. A failure of the computation is not
        raised: it is shown in the status line and kept in :attr:`error`.
        """
        deadline = time.monotonic() + timeout
        while True:
            future = self._future
            if future is None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"The explorer's computation did not finish within {timeout} s.")
            try:
                future.result(timeout=remaining)
            except TimeoutError:
                raise TimeoutError(f"The explorer's computation did not finish within {timeout} s.") from None
            if future is self._future:
                break
        return self.result

    def close(self) -> None:
        """Stop the worker thread and close the widgets."""
        with self._lock:
            self._generation += 1
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.controls.close()

    # --- control events ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Programmatic widget changes inside this block trigger no computation."""
        self._quiet_depth += 1
        try:
            yield
        finally:
            self._quiet_depth -= 1

    def _set_target(self, target: str | int) -> None:
        c = self.controls
        if isinstance(target, int) and not isinstance(target, bool):
            c.target_mode.value = "class"
            c.class_search.value = str(target)
            self._on_search({"new": str(target)})
            c.class_id.value = target
            return
        name = str(target).strip()
        low = name.lower()
        if low == "predicted":
            c.target_mode.value = "predicted"
        elif re.fullmatch(r"top-?(k|\d+)", low):
            c.target_mode.value = "top-k"
            digits = low.lstrip("top-")
            if digits.isdigit():
                c.k.value = int(digits)
        else:
            hits = search_classes(name, self.categories)
            exact = [i for i, n in hits if n.lower() == low]
            if not hits:
                raise ValueError(f"No ImageNet class matches target {target!r}. Fix: use 'predicted', 'top-k', "
                                 "a class id, or part of a class name (e.g. 'tabby').")
            c.target_mode.value = "class"
            c.class_search.value = name
            self._on_search({"new": name})
            c.class_id.value = exact[0] if exact else hits[0][0]
        c.show_target_inputs(c.target_mode.value)

    def _on_input(self, change: dict) -> None:
        owner = change.get("owner")
        if owner is self.controls.target_mode:
            self.controls.show_target_inputs(change["new"])
        if self._quiet_depth:
            return
        if owner is self.controls.model and not self._prepare_model(change["new"]):
            return
        self._schedule()

    def _on_source(self, change: dict) -> None:
        c = self.controls
        options = self.images.options(change["new"])
        with self._quiet():
            c.image.options = options
            c.image.value = options[0][1] if options else None
        if not options:
            hint = {"upload": "Use the upload button to add an image.",
                    "data sample": self.images.sample_error or "The data sample lists no image."}
            self._status(hint.get(change["new"], "No image."), "warning")
            return
        self._schedule()

    def _on_search(self, change: dict) -> None:
        c = self.controls
        hits = search_classes(change["new"] or "", self.categories, limit=50)
        options = [(f"{name} ({i})", i) for i, name in hits]
        keep = c.class_id.value
        with self._quiet():
            c.class_id.options = options
            ids = [i for _, i in options]
            c.class_id.value = keep if keep in ids else (ids[0] if ids else None)
        changed = c.class_id.value != keep
        if not options and change["new"]:
            self._status(f"No ImageNet class name contains {change['new']!r}. Fix: try another spelling "
                         "or part of the name (e.g. 'cat', 'espresso').", "warning")
        elif changed and c.target_mode.value == "class" and not self._quiet_depth:
            self._schedule()

    def _on_stop(self, _button=None) -> None:
        """Abandon the running computation (a slow method stops at its next progress step)."""
        with self._lock:
            self._generation += 1
            self.controls.progress_label.value = "stopped: change a control to compute again"

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[-1]
        name = entry.get("name", "upload")
        try:
            key = self.images.add_upload(name, bytes(entry.get("content", b"")))
        except ImageReadError as err:
            self._fail(str(err))
            return
        c = self.controls
        with self._quiet():
            c.source.value = "upload"
            c.image.options = self.images.options("upload")
            c.image.value = key
        self._schedule()

    # --- computation ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        try:
            selection = self.selection()
        except ValueError as err:
            self._fail(str(err))
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
        if self._executor is None:
            self._job(generation, selection)
        else:
            self._future = self._executor.submit(self._job, generation, selection)

    def _is_stale(self, generation: int) -> bool:
        return generation != self._generation

    def _job(self, generation: int, selection: Selection) -> None:
        if self._is_stale(generation):
            return  # superseded before it started
        cancelled = lambda: self._is_stale(generation)  # noqa: E731

        def report(fraction: float, message: str) -> None:
            with self._lock:  # a stale job never overwrites the label of a newer one (or "stopped")
                if not cancelled():
                    self._progress(fraction, message)

        self._progress(0.0, "starting", force=True)
        try:
            result = self.engine.compute(selection, report, cancelled)
            if cancelled():
                return
            figure = view.maps_figure(result)
            png = view.figure_png(figure, dpi=view.DPI)
            width = round(figure.get_figwidth() * view.DPI)  # shown at its own size, never stretched
        except Cancelled:
            return
        except Exception as err:  # noqa: BLE001 - every failure is shown in the UI, none crashes it
            if not cancelled():
                log.info("explorer: %s", err, exc_info=True)
                self._fail(f"{type(err).__name__}: {err}")
            return
        if cancelled():
            return
        c = self.controls
        c.maps.value = png
        c.maps.width = str(width)
        c.probabilities.value = view.probabilities_html(result)
        c.metrics.value = view.metrics_html(result)
        self.result, self.error = result, None
        self._progress(1.0, f"done in {result.seconds:.1f} s"
                       + (f" (computed: {', '.join(map(method_label, result.computed))})" if result.computed
                          else " (maps from the cache)"), force=True)
        if result.errors:
            self._status("\n".join(result.errors.values()), "error")
        else:
            predicted = result.predicted_name
            note = f"\n{self.images.sample_error}" if self.images.sample_error else ""
            self._status(f"{self.images.entries[selection.image].label}: predicted {predicted} "
                         f"({float(result.probabilities.max()):.1%}); layer {result.layer}.{note}", "info")

    def _prepare_model(self, name: str, layer: str | None = None) -> bool:
        """Load model ``name`` (in the calling thread) and list its layers in the layer dropdown.

        Loading runs here, not in the worker: ``lib.models.load_model`` silences the EfficientNet
        package with ``contextlib.redirect_stdout``, which swaps ``sys.stdout`` for the whole
        process, and from a worker thread that swallows the notebook's own output. A failure
        (e.g. :class:`lib.models.WeightsMissingError`) is shown in the status line; returns False.
        """
        c = self.controls
        self._status(f"loading {name} ...", "busy")
        try:
            model = self.engine.models.get(name)
            layers = list(self.engine.models.layers(name))
            if layer is not None and layer not in layers:
                resolve_layer(model, layer)  # any module of the model may be asked for; a typo fails here
                layers.append(layer)
        except Exception as err:  # noqa: BLE001 - shown in the UI
            self._fail(f"{type(err).__name__}: {err}")
            return False
        wanted = layer if layer is not None else model.target_layer
        with self._quiet():
            c.layer.options = [(f"{n} (default)" if n == model.target_layer else n, n) for n in layers]
            c.layer.value = wanted
        self._layers_for = name
        self._status(f"{name} loaded", "info")
        return True

    def _progress(self, fraction: float, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        self.controls.progress.value = float(fraction)
        self.controls.progress_label.value = message

    def _status(self, text: str, kind: str) -> None:
        self.controls.status.value = view.message_html(text, kind)

    def _fail(self, message: str) -> None:
        self.error = message
        self._status(message, "error")
        self.controls.progress_label.value = "stopped"
