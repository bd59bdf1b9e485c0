"""Method keys to CAM objects: the registry of :func:`lib.cams.get_method` plus AM-Grad-CAM.

A method key is what the pipeline's ``{method}`` wildcard and the rows' ``method`` column hold:

* any name :func:`lib.cams.get_method` accepts (``"gradcam"``, ``"scorecam"``, ``"ucag-gradcam++"``);
* ``"amgradcam"``: AM-Grad-CAM with the trained attention of ``settings["checkpoint"]``
  (:func:`lib.train_am_gradcam.load_attention`); ``"amgradcam-free"``: its parameter-free attention.

``settings`` are the method's keyword arguments (e.g. ``{"n_masks": 4000}`` for RISE). The map
store keys maps by :func:`lib.analysis.map_store.describe` of the built object, so a changed
setting or checkpoint is a different map.
"""

from __future__ import annotations

from typing import Any, Mapping

from lib.cams import get_method

__all__ = ["build_method", "normalize_key"]


def normalize_key(key: str) -> str:
    """``"Grad-CAM++"`` -> ``"gradcam++"``: lower case, no '-', '_' or spaces (get_method's rule)."""
    return str(key).lower().replace("-", "").replace("_", "").replace(" ", "")


def build_method(key: str, model, settings: Mapping[str, Any] | None = None):
    """The CAM object of method ``key`` with ``settings`` for ``model`` (see the module docstring)."""
    settings = dict(settings or {})
    name = normalize_key(key)
    if name in ("amgradcam", "amgradcamfree"):
        from lib.cams.attention import AMGradCAM, ParameterFreeAttention
        checkpoint = settings.pop("checkpoint", None)
        if name == "amgradcamfree":
            return AMGradCAM(model, ParameterFreeAttention(), **settings)
        if not checkpoint:
            raise ValueError("amgradcam needs settings['checkpoint'], the trained attention "
                             "(results/checkpoints/am_gradcam_<model>.pt from the train_am_gradcam rule). "
                             "Fix: give the checkpoint, or use 'amgradcam-free'.")
        from lib.train_am_gradcam import load_attention
        attention, _ = load_attention(checkpoint, next(model.parameters()).device)
        return AMGradCAM(model, attention, **settings)
    return get_method(key, model, **settings)
