"""Interactive CAM explorer for Jupyter (ipywidgets), with its logic testable without a browser.

* :mod:`lib.widgets.state`: the selection snapshot, class-name search, candidate target layers;
* :mod:`lib.widgets.images`: packaged photos, the data sample and uploads under one key each;
* :mod:`lib.widgets.compute`: probabilities, maps, thresholds, AD/IC and their cache (no widgets);
* :mod:`lib.widgets.view`: the maps figure (PNG) and the HTML tables;
* :mod:`lib.widgets.controls`: the ipywidgets and their layout;
* :mod:`lib.widgets.explorer`: :class:`Explorer`, which wires them together and computes in a
  background thread.

``Explorer`` is imported lazily so that ``lib.widgets.compute`` and friends load without ipywidgets.
"""

from __future__ import annotations

from .compute import Cancelled, Engine, ExplorerResult, ModelStore, ResultCache, map_metrics, threshold_maps
from .images import SOURCES, ImageLibrary, read_upload
from .state import TARGET_MODES, Selection, candidate_layers, search_classes

__all__ = [
    "Explorer",
    "DEFAULT_METHODS",
    "Selection",
    "TARGET_MODES",
    "SOURCES",
    "Engine",
    "ExplorerResult",
    "ModelStore",
    "ResultCache",
    "Cancelled",
    "ImageLibrary",
    "read_upload",
    "candidate_layers",
    "search_classes",
    "threshold_maps",
    "map_metrics",
]


def __getattr__(name: str):
    if name in ("Explorer", "DEFAULT_METHODS"):
        from . import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'lib.widgets' has no attribute {name!r}")
