"""CAM methods with one call shape: ``Method(model, target_layer)(images, targets) -> maps``."""

from __future__ import annotations

import dataclasses

from .ablation import AblationCAM
from .activation import EigenCAM, HiResCAM, LayerCAM, OriginalCAM
from .gradient import CAM, GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, XGradCAM, finalize_maps
from .hooks import Captured, capture_layer, forward_with_gradients
from .fmgcam import FMGCAM, FusedExplanation
from .group import GroupCAM
from .rise import RISE
from .sacam import SACAM
from .score import ScoreCAM
from .targets import resolve_targets
from .ucag import UCAG, UCAGSettings, unfold_and_conquer

METHODS: dict[str, type[CAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "smoothgradcam++": SmoothGradCAMPlusPlus,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "eigencam": EigenCAM,
    "cam": OriginalCAM,
    "scorecam": ScoreCAM,
    "groupcam": GroupCAM,
    "ablationcam": AblationCAM,
    "rise": RISE,
    "sacam": SACAM,
    "fmgcam": FMGCAM,
}


def get_method(name: str, model, target_layer=None, **kwargs) -> CAM:
    """Build the CAM method ``name`` (case-insensitive, '-' and '_' ignored) for ``model``.

    ``"ucag-<method>"`` (e.g. ``"ucag-gradcam++"``) wraps the method in :class:`UCAG`: the keyword
    arguments that are fields of :class:`UCAGSettings` (``n``, ``rho``, ``alpha``, ``count_init``,
    ``blur_kernel``, ``blur_sigma``, ``crop_batch``) go to UCAG (the authors' constants where not given:
    ``get_method("ucag-gradcam", model, n=1, rho=1.0)`` is the scaling-only ablation), the others to the
    wrapped method.
    """
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key.startswith("ucag") and key != "ucag":
        fields = {f.name for f in dataclasses.fields(UCAGSettings)}
        ucag = {k: v for k, v in kwargs.items() if k in fields}
        wrapped = {k: v for k, v in kwargs.items() if k not in fields}
        return UCAG(get_method(key[4:], model, target_layer, **wrapped), **ucag)
    if key not in METHODS:
        raise ValueError(f"Unknown CAM method {name!r}. Fix: use one of {', '.join(METHODS)}, "
                         "or 'ucag-' + one of them.")
    return METHODS[key](model, target_layer, **kwargs)


__all__ = [
    "CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "SmoothGradCAMPlusPlus", "METHODS", "get_method",
    "LayerCAM", "HiResCAM", "EigenCAM", "OriginalCAM", "ScoreCAM", "GroupCAM", "AblationCAM", "RISE", "SACAM",
    "FMGCAM", "FusedExplanation", "UCAG", "UCAGSettings", "unfold_and_conquer", "Captured", "capture_layer", "forward_with_gradients", "resolve_targets", "finalize_maps",
]
