"""Method keys to CAM objects: the registry of :func:`lib.cams.get_method` plus the trained attentions.

A method key is what the pipeline's ``{method}`` wildcard and the rows' ``method`` column hold:

* any name :func:`lib.cams.get_method` accepts (``"gradcam"``, ``"scorecam"``, ``"ucag-gradcam++"``);
* ``"amgradcam"``: AM-Grad-CAM with the trained attention of ``settings["checkpoint"]``
  (:func:`lib.train_am_gradcam.load_attention`); ``"amgradcam-free"``: its parameter-free attention;
* ``"lcam"``: L-CAM (Eq. 2 of its paper) with the trained attention of ``settings["checkpoint"]``
  (:func:`lib.train_lcam.load_lcam`; L-CAM-Fm and L-CAM-Img differ only in training, not in the map),
  or, without a checkpoint, its CAM start (:meth:`lib.cams.lcam.LCAMAttention.from_classifier`).

An alias names its base method in ``settings["method"]``: ``{"lcam-fm": {"method": "lcam", "checkpoint":
...}}`` in ``config/config.yaml`` ``evaluation.methods`` is L-CAM-Fm under its own key, so several variants
of one method (trained attentions, UCAG's settings) get their own shards. The other ``settings`` are the
method's keyword arguments (e.g. ``{"n_masks": 4000}`` for RISE); ``target_layer`` may be ``"default"`` or
``"last-block"`` (:func:`lib.models.layer_name`), and SA-CAM's ``selection`` names a selection grid file whose
chosen point (:func:`lib.cams.sacam.parameters_from_grid`) gives its ``threshold``, ``lambda1`` and ``lambda2``. The map store keys maps by
:func:`lib.analysis.map_store.describe` of the built object (a trained attention by the digest of its
weights), so a changed setting or checkpoint is a different map, and the same one is the same map
whichever key or notebook asks for it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from lib.cams import get_method
from lib.models import LAYER_ALIASES, layer_name

__all__ = ["build_method", "normalize_key", "shared_passes"]


def normalize_key(key: str) -> str:
    """``"Grad-CAM++"`` -> ``"gradcam++"``: lower case, no '-', '_' or spaces (get_method's rule)."""
    return str(key).lower().replace("-", "").replace("_", "").replace(" ", "")


def build_method(key: str, model, settings: Mapping[str, Any] | None = None):
    """The CAM object of method ``key`` with ``settings`` for ``model`` (see the module docstring)."""
    settings = dict(settings or {})
    base = settings.pop("method", key)
    name = normalize_key(base)
    device = next(model.parameters()).device
    if settings.get("target_layer") in LAYER_ALIASES:  # "default" or "last-block" (lib.models.layer_name)
        settings["target_layer"] = layer_name(model, settings["target_layer"])
    if "selection" in settings:  # SA-CAM's threshold and lambdas chosen from a selection grid file
        from lib.cams.sacam import parameters_from_grid
        if name != "sacam":
            raise ValueError(f"{key}: `selection` is SA-CAM's (a selection grid file); {base} has none.")
        settings.update(parameters_from_grid(settings.pop("selection")))
    if name in ("amgradcam", "amgradcamfree"):
        from lib.cams.attention import AMGradCAM, ParameterFreeAttention
        checkpoint = settings.pop("checkpoint", None)
        if name == "amgradcamfree":
            return AMGradCAM(model, ParameterFreeAttention(), **settings)
        if not checkpoint:
            raise ValueError(f"{key}: amgradcam needs settings['checkpoint'], the trained attention "
                             "(results/checkpoints/am_gradcam_<model>.pt from the train_am_gradcam rule). "
                             "Fix: give the checkpoint, or use 'amgradcam-free'.")
        from lib.train_am_gradcam import load_attention
        attention, _ = load_attention(checkpoint, device)
        return AMGradCAM(model, attention, **settings)
    if name == "lcam":
        from lib.cams.lcam import LCAM, LCAMAttention
        checkpoint = settings.pop("checkpoint", None)
        if checkpoint:
            from lib.train_lcam import load_lcam
            attention, _ = load_lcam(checkpoint, device)
        else:  # the CAM start every L-CAM training begins from
            attention = LCAMAttention.from_classifier(model, settings.get("target_layer")).to(device).eval()
        return LCAM(model, attention, **settings)
    return get_method(base, model, **settings)


def shared_passes(key: str, settings: Mapping[str, Any] | None = None) -> tuple | None:
    """What a key's maps share their passes with, from its settings alone (no model needed: the pipeline plans
    with it): UCAG keys (``ucag-<method>``) of one crop geometry (``n``, ``rho``, ``alpha``, ``crop_batch``) give
    the same tuple, so one job can make all their maps (:func:`lib.cams.ucag.maps_sharing_passes`); None for
    every other key (its maps are its own)."""
    from lib.cams.ucag import UCAGSettings

    settings = dict(settings or {})
    name = normalize_key(settings.pop("method", key))
    if not name.startswith("ucag") or name == "ucag":
        return None
    fields = {f.name for f in dataclasses.fields(UCAGSettings)}
    ucag = UCAGSettings(**{k: v for k, v in settings.items() if k in fields})
    return ("ucag", ucag.n, float(ucag.rho), float(ucag.alpha), ucag.crop_batch, settings.get("precision"))
